"""Writes that would collide, found at validation, before anything is written.

Node types declare the path params they write to (`writes`, folder or file), the params
that choose file names in a folder (`names`), and the path params of image files they
read (`reads`). A graph is refused, each problem naming both nodes, when
- two nodes write the same file;
- two nodes of one type write into one folder with equal `names` values (two save_images
  with the same pattern and format): one would replace the other's files. A name param
  holding `{node}` makes names no other node makes;
- a folder is written where the run reads images (the originals could be replaced),
  unless that writer sets `allow_input_folder = true`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeflow.files.listing import pattern_root

if TYPE_CHECKING:
    from nodeflow.graph import Graph, Problem
    from nodeflow.registry import Registry

ALLOW_INPUT_FOLDER = "allow_input_folder"
_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class _Use:
    node: str
    param: str
    path: Path
    kind: str  # "folder" or "file" for writes; "recursive" or "flat" for reads
    names: tuple[Any, ...] | None = None  # for folder writes: what chooses the file names


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _param(spec: Any, node_type: Any, name: str) -> Any:
    param = node_type.params[name]
    return spec.params.get(name, None if param.required else param.default)


def _uses(graph: Graph, registry: Registry) -> tuple[list[_Use], list[_Use]]:
    writes: list[_Use] = []
    reads: list[_Use] = []
    base = graph.base_dir
    for spec in graph.nodes.values():
        node_type = registry.node_type(spec.type)
        if node_type is None:
            continue
        for name, kind in node_type.writes.items():
            value = _param(spec, node_type, name)
            if isinstance(value, str) and value:
                names = (spec.type, *(_param(spec, node_type, n) for n in node_type.names))
                unique = any(isinstance(n, str) and "{node}" in n for n in names[1:])
                path = _resolve(base, value)
                writes.append(_Use(spec.id, name, path, kind, None if unique else names))
        for name in node_type.reads:
            value = _param(spec, node_type, name)
            if isinstance(value, str) and value:
                reads.append(_read_area(spec, node_type, name, base, value))
    return writes, reads


def _read_area(spec: Any, node_type: Any, name: str, base: Path, value: str) -> _Use:
    """The folder a read param takes images from, and whether its sub-folders too."""
    path = _resolve(base, value)
    if path.is_dir():
        recursive = "recursive" in node_type.params and _param(spec, node_type, "recursive")
        return _Use(spec.id, name, path, "recursive" if recursive else "flat")
    if _MAGIC.search(value):
        root = _resolve(base, str(pattern_root(value)))
        return _Use(spec.id, name, root, "recursive" if "**" in value else "flat")
    return _Use(spec.id, name, path.parent, "flat")


def _what(use: _Use) -> str:
    return "file" if use.kind == "file" else "file names in the same folder"


def write_conflicts(graph: Graph, registry: Registry) -> list[Problem]:
    """Every pair of colliding writes, and every write into a folder the run reads."""
    from nodeflow.graph import Problem

    writes, reads = _uses(graph, registry)
    problems: list[Problem] = []
    for index, later in enumerate(writes):
        for earlier in writes[:index]:
            same_names = later.kind == "file" or (
                later.names is not None and later.names == earlier.names
            )
            if earlier.path == later.path and earlier.kind == later.kind and same_names:
                problems.append(
                    Problem(
                        f"writes the same {_what(later)} as node {earlier.node!r} "
                        f"({str(later.path)!r}): one would replace the other's files; "
                        f"give each its own {later.kind}"
                        + ("" if later.kind == "file" else " or file name pattern"),
                        later.node,
                        f"param {later.param!r}",
                    )
                )
    for write in writes:
        spec = graph.nodes[write.node]
        if write.kind != "folder" or spec.params.get(ALLOW_INPUT_FOLDER) is True:
            continue
        for read in reads:
            inside = write.path == read.path or (
                read.kind == "recursive" and write.path.is_relative_to(read.path)
            )
            if inside:
                problems.append(
                    Problem(
                        f"writes into {str(write.path)!r}, where node {read.node!r} reads "
                        "images: its files could replace the originals; choose another "
                        f"folder, or set {ALLOW_INPUT_FOLDER} = true to write there anyway",
                        write.node,
                        f"param {write.param!r}",
                    )
                )
    return problems
