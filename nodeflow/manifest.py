"""The registry's description on disk, so commands that only read it start without torch.

`nodeflow validate`, `nodes`, `plugins` and the TUI's palette need every node's id,
sockets, params and docs, and every plugin's record, but not the node functions. Building
the registry imports every plugin, and so torch (seconds). The manifest keeps what was
built as JSON in the cache folder and is rebuilt when anything it came from changes: the
nodeflow version or source files, the Python version, an installed plugin distribution or
its files, a file in a `NODEFLOW_PLUGIN_PATH` folder, or a `NODEFLOW_*` variable.

Node types read from it describe nodes exactly like the real ones but cannot run:
`run` builds the real registry (`nodeflow.plugins.load_registry`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import nodeflow
from nodeflow.atomic import write_text_atomic
from nodeflow.locations import default_cache_dir
from nodeflow.memory import Footprint
from nodeflow.node import _REQUIRED, Input, NodeType, Output, Param
from nodeflow.registry import Architecture, PluginRecord, Registry
from nodeflow.types import SocketType

FORMAT = 2
FILE_NAME = "manifest.json"


def load_described_registry(cache_folder: Path | None = None) -> Registry:
    """The registry as the manifest describes it, rebuilt (importing plugins) when stale."""
    path = (cache_folder or default_cache_dir()) / FILE_NAME
    fingerprint = sources_fingerprint()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == FORMAT and data.get("fingerprint") == fingerprint:
            return from_manifest(data)
    from nodeflow.plugins import load_registry

    registry = load_registry()
    data = to_manifest(registry, fingerprint)
    with contextlib.suppress(OSError):
        write_text_atomic(path, json.dumps(data))
    return registry


def sources_fingerprint() -> str:
    """A hash of everything the registry is built from (see the module docstring)."""
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        digest.update(repr(parts).encode())

    add(nodeflow.__version__, sys.version, FORMAT)
    _add_files(add, Path(nodeflow.__file__).parent)
    for entry in sorted(importlib.metadata.entry_points(group="nodeflow"), key=lambda e: e.name):
        dist = entry.dist
        add(entry.name, entry.value, dist.name if dist else "", dist.version if dist else "")
        top = entry.value.split(":")[0].split(".")[0]
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(top)
            if spec is not None and spec.origin:
                origin = Path(spec.origin)
                _add_files(add, origin.parent if origin.name == "__init__.py" else origin)
    for folder in filter(None, os.environ.get("NODEFLOW_PLUGIN_PATH", "").split(os.pathsep)):
        _add_files(add, Path(folder).expanduser())
    add(sorted((k, v) for k, v in os.environ.items() if k.startswith("NODEFLOW_")))
    return digest.hexdigest()


def _add_files(add: Any, root: Path) -> None:
    files = [root] if root.is_file() else sorted(root.rglob("*.py")) if root.is_dir() else []
    for path in files:
        with contextlib.suppress(OSError):
            stat = path.stat()
            add(str(path), stat.st_size, stat.st_mtime_ns)


# -- to and from JSON -------------------------------------------------------------------------


def to_manifest(registry: Registry, fingerprint: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "types": [
            {"name": t.name, "doc": t.doc, "streamed": t.streamed} for t in registry.types.values()
        ],
        "nodes": [_node_to_json(node_type) for node_type in registry.nodes.values()],
        "architectures": [
            {"id": a.id, "doc": a.doc, "plugin": a.plugin} for a in registry.architectures.values()
        ],
        "plugins": [record.to_json() for record in registry.plugins.values()],
    }


def _node_to_json(node_type: NodeType) -> dict[str, Any]:
    data = node_type.to_json()
    data["output_node"] = node_type.output_node
    data["persist"] = node_type.persist
    data["inference"] = node_type.inference
    data["writes"] = node_type.writes
    data["names"] = list(node_type.names)
    data["reads"] = list(node_type.reads)
    data["one_of"] = [list(group) for group in node_type.one_of]
    data["footprint"] = node_type.footprint.to_json() if node_type.footprint else None
    for name, socket in node_type.inputs.items():
        data["inputs"][name]["uint8"] = socket.uint8
    for name, param in node_type.params.items():
        data["params"][name]["default"] = None if param.required else param.default
    return data


def from_manifest(data: dict[str, Any]) -> Registry:
    registry = Registry(described=True)
    for entry in data["types"]:
        registry.types[entry["name"]] = SocketType(entry["name"], entry["doc"], entry["streamed"])
    for entry in data["nodes"]:
        registry.nodes[entry["id"]] = _node_from_json(entry, registry.types)
    for entry in data["architectures"]:
        registry.architectures[entry["id"]] = Architecture(
            entry["id"], _not_loaded, _not_loaded, entry["doc"], plugin=entry["plugin"]
        )
    for entry in data["plugins"]:
        record = PluginRecord(**entry)
        registry.plugins[_record_key(registry, record)] = record
    return registry


def _record_key(registry: Registry, record: PluginRecord) -> str:
    return (
        record.name if record.name not in registry.plugins else f"{record.name} ({record.source})"
    )


def _node_from_json(entry: dict[str, Any], types: dict[str, SocketType]) -> NodeType:
    def socket(name: str) -> SocketType:
        return types.get(name) or SocketType(name, "")

    params = {}
    for name, p in entry["params"].items():
        default = _REQUIRED if p["required"] else p["default"]
        choices = tuple(p.get("choices", ()))
        params[name] = Param(
            p["kind"], default, p.get("min"), p.get("max"), choices, p["help"],
            tuple(p.get("fields", ())),
        )  # fmt: skip
    return NodeType(
        id=entry["id"],
        fn=_not_loaded,
        inputs={
            name: Input(socket(i["type"]), i["optional"], i["help"], i.get("uint8", False))
            for name, i in entry["inputs"].items()
        },
        outputs={
            name: Output(socket(o["type"]), o["help"]) for name, o in entry["outputs"].items()
        },
        params=params,
        doc=entry["doc"],
        mode=entry["mode"],
        version=entry["version"],
        output_node=entry["output_node"],
        persist=entry["persist"],
        inference=entry["inference"],
        writes=entry["writes"],
        names=tuple(entry["names"]),
        reads=tuple(entry["reads"]),
        one_of=tuple(tuple(group) for group in entry["one_of"]),
        footprint=Footprint(**entry["footprint"]) if entry["footprint"] else None,
        plugin=entry["plugin"],
    )


def _not_loaded(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(
        "this node type was read from the registry manifest and cannot run; "
        "run graphs with the registry from nodeflow.plugins.load_registry()"
    )
