"""Writing graph files: a new file in the hand-written style, an existing one edited in place.

Editing in place keeps whatever the person wrote: the file is cut into sections, one per
node (the comment lines right above its `[nodes.<id>]` table, the table and its sub-tables,
the blank lines after), and everything else (the header, `version`, `ui`) is kept as it is.
A section whose node did not change is copied byte for byte; a changed one is edited with
tomlkit, which keeps its comments and layout and rewrites only the values that changed; a
deleted node's section goes, comment and all; a new node's section is appended after the
last node. A file that is not laid out as one table per node is edited as a whole with
tomlkit, which still keeps every comment. Saving as JSON writes the graph's structure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
import tomlkit
import tomlkit.exceptions

from nodeflow.atomic import write_text_atomic
from nodeflow.graph import FORMAT_VERSION, NODE_HEADER, Graph, NodeSpec

_TABLE_HEADER = re.compile(r"^\s*\[")
_COMMENT = re.compile(r"^\s*#")


@dataclass
class _Section:
    """Lines of the file: a node's (`node` set) or anything else (`node` None)."""

    node: str | None
    lines: list[str]
    comment_lines: int = 0
    """How many of the first lines are the comment written above the node's table."""


def graph_text(graph: Graph, path: Path, original: str | None = None) -> str:
    """The text to write for `graph` at `path`: JSON by suffix, else TOML; TOML edits
    `original` (the file as it was read) in place when there is one."""
    if path.suffix.lower() == ".json":
        return json.dumps(graph.to_dict(), indent=2) + "\n"
    if original and original.strip():
        return edit_toml(original, graph)
    return new_toml(graph)


def write_graph(graph: Graph, path: Path, original: str | None = None) -> str:
    """Write `graph` to `path` atomically (see `graph_text`) and return the text written."""
    text = graph_text(graph, path, original)
    write_text_atomic(path, text)
    return text


# -- a new file --------------------------------------------------------------------------------


def new_toml(graph: Graph) -> str:
    """TOML in the hand-written style: one table per node, params and inputs inline."""
    parts = [f"version = {FORMAT_VERSION}\n"]
    parts += ["\n" + node_toml(spec) for spec in graph.nodes.values()]
    ui = _without_none(graph.ui)
    if ui:
        parts.append("\n" + tomli_w.dumps({"ui": ui}))
    return "".join(parts)


def node_toml(spec: NodeSpec) -> str:
    """One node's table, with its comment above it."""
    lines = [f"# {line}".rstrip() for line in spec.comment.splitlines()]
    lines += [f"[nodes.{toml_key(spec.id)}]", f"type = {toml_value(spec.type)}"]
    params = {k: v for k, v in spec.params.items() if v is not None}
    if params:
        lines.append(f"params = {inline_table(params)}")
    if spec.inputs:
        lines.append(f"inputs = {inline_table(_links(spec))}")
    return "\n".join(lines) + "\n"


def toml_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else toml_value(key)


def toml_value(value: Any) -> str:
    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


def inline_table(values: dict[str, Any]) -> str:
    items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items())
    return "{ " + items + " }"


def _links(spec: NodeSpec) -> dict[str, str]:
    return {name: str(link) for name, link in spec.inputs.items()}


def _without_none(value: Any) -> Any:
    """TOML has no null: drop None values (an unset optional param is the same as absent)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


# -- editing a file in place -----------------------------------------------------------------


def edit_toml(original: str, graph: Graph) -> str:
    """`original` edited to hold `graph`, keeping every untouched byte."""
    try:
        before = Graph.parse(original)
    except Exception:  # a file that does not read as a graph: edit it as a whole
        before = None
    sections = _sections(original)
    if (
        before is None
        or sections is None
        or set(before.nodes) != {section.node for section in sections if section.node}
        or before.ui != graph.ui
    ):
        return _edit_whole(original, graph)
    renamed = _renames(before, graph)
    kept: list[_Section] = []
    for section in sections:
        if section.node is None:
            kept.append(section)
            continue
        new_id = renamed.get(section.node, section.node)
        if new_id not in graph.nodes:
            continue  # deleted: its comment goes with it
        old = before.nodes[section.node]
        spec = graph.nodes[new_id]
        if new_id != section.node:
            section = _renamed(section, new_id)
        if _differs(old, spec):
            section = _edited(section, spec)
        kept.append(section)
    present = {renamed.get(s.node, s.node) for s in sections if s.node}
    added = [spec for node_id, spec in graph.nodes.items() if node_id not in present]
    return _join(kept, added)


def _sections(text: str) -> list[_Section] | None:
    """The file cut into node sections and the rest; None when a node's tables are not
    together in one place (then it is edited as a whole)."""
    lines = text.splitlines(keepends=True)
    starts: list[tuple[int, str | None]] = []
    for index, line in enumerate(lines):
        if not _TABLE_HEADER.match(line):
            continue
        match = NODE_HEADER.match(line)
        node = (match[1] or match[2]) if match else None
        if starts and starts[-1][1] == node and node is not None:
            continue  # a sub-table of the same node, e.g. [nodes.x.params]
        first = index
        while first > 0 and _COMMENT.match(lines[first - 1]) and first - 1 > _floor(starts):
            first -= 1
        starts.append((first, node))
    seen = [node for _start, node in starts if node is not None]
    if len(seen) != len(set(seen)):
        return None
    sections = [_Section(None, lines[: starts[0][0]] if starts else lines)]
    for n, (start, node) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        body = lines[start:end]
        comments = 0
        while comments < len(body) and _COMMENT.match(body[comments]):
            comments += 1
        sections.append(_Section(node, body, comments if node else 0))
    return sections


def _floor(starts: list[tuple[int, str | None]]) -> int:
    """The line a comment block may not reach back over: the previous header's."""
    return starts[-1][0] if starts else -1


def _renames(before: Graph, after: Graph) -> dict[str, str]:
    """Old id -> new id for renamed nodes: each node gone from the file is paired with the
    first new node of the same type, in order, so a renamed node keeps its place and comment."""
    new = [node_id for node_id in after.nodes if node_id not in before.nodes]
    renames = {}
    for old in [node_id for node_id in before.nodes if node_id not in after.nodes]:
        same_type = [n for n in new if after.nodes[n].type == before.nodes[old].type]
        if same_type:
            renames[old] = same_type[0]
            new.remove(same_type[0])
    return renames


def _differs(old: NodeSpec, new: NodeSpec) -> bool:
    return (old.type, old.params, old.inputs, old.comment) != (
        new.type,
        new.params,
        new.inputs,
        new.comment,
    )


def _renamed(section: _Section, new_id: str) -> _Section:
    def rename(line: str) -> str:
        match = NODE_HEADER.match(line)
        if not match:
            return line
        quoted = match[1] is not None
        start, end = match.span(1 if quoted else 2)
        if quoted:
            start, end = start - 1, end + 1
        return line[:start] + toml_key(new_id) + line[end:]

    return _Section(new_id, [rename(line) for line in section.lines], section.comment_lines)


def _edited(section: _Section, spec: NodeSpec) -> _Section:
    """The section with the node's type, params, inputs and comment made those of `spec`."""
    comment = section.lines[: section.comment_lines]
    body = "".join(section.lines[section.comment_lines :])
    written = [f"# {line}".rstrip() + "\n" for line in spec.comment.splitlines()]
    if _comment_text(comment) != spec.comment:
        comment = written
    document = tomlkit.parse(body)
    table = document["nodes"][spec.id]
    if table.get("type") != spec.type:
        table["type"] = spec.type
    _sync(table, "params", {k: v for k, v in spec.params.items() if v is not None})
    _sync(table, "inputs", _links(spec))
    text = tomlkit.dumps(document)
    return _Section(spec.id, comment + text.splitlines(keepends=True), len(comment))


def _comment_text(lines: list[str]) -> str:
    return "\n".join(re.sub(r"^\s*# ?", "", line.rstrip("\r\n")) for line in lines)


def _sync(table: Any, key: str, values: dict[str, Any]) -> None:
    """Make `table[key]` hold `values`, touching only what differs.

    An inline table that changed is written again in the hand-written style (its end-of-line
    comment stays); a table of its own is edited key by key, so each line keeps its comment.
    """
    current = table.get(key)
    if current is None:
        if values:
            table[key] = tomlkit.parse(f"v = {inline_table(values)}")["v"]
        return
    if current.unwrap() == values:
        return
    if not values:
        del table[key]
    elif isinstance(current, tomlkit.items.InlineTable):
        table[key] = tomlkit.parse(f"v = {inline_table(values)}")["v"]
    else:
        for name in [name for name in current if name not in values]:
            del current[name]
        for name, value in values.items():
            if current.get(name) != value:
                current[name] = value


def _join(sections: list[_Section], added: list[NodeSpec]) -> str:
    """The sections in order, new nodes after the last node section."""
    last_node = max((i for i, s in enumerate(sections) if s.node), default=0)
    parts: list[str] = []
    for index, section in enumerate(sections):
        parts.append("".join(section.lines))
        if index == last_node:
            for spec in added:
                parts.append(_separated("".join(parts), node_toml(spec)))
    return "".join(parts)


def _separated(before: str, section: str) -> str:
    """`section` preceded by what it takes for one blank line to stand between them."""
    if not before:
        return section
    if before.endswith("\n\n"):
        return section
    return ("\n" if before.endswith("\n") else "\n\n") + section


def _edit_whole(original: str, graph: Graph) -> str:
    """Edit the file as one tomlkit document: for files not laid out one table per node."""
    try:
        document = tomlkit.parse(original)
    except tomlkit.exceptions.ParseError:
        return new_toml(graph)
    nodes = document.setdefault("nodes", tomlkit.table(is_super_table=True))
    for node_id in [node_id for node_id in nodes if node_id not in graph.nodes]:
        del nodes[node_id]
    for node_id, spec in graph.nodes.items():
        table = nodes.get(node_id)
        if table is None:
            nodes[node_id] = tomlkit.parse(node_toml(spec))["nodes"][node_id]
            continue
        if table.get("type") != spec.type:
            table["type"] = spec.type
        _sync(table, "params", {k: v for k, v in spec.params.items() if v is not None})
        _sync(table, "inputs", _links(spec))
    ui = _without_none(graph.ui)
    if document.get("ui", {}) != ui:
        if ui:
            document["ui"] = ui
        else:
            document.pop("ui", None)
    return tomlkit.dumps(document)
