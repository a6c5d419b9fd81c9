"""The graph model: reading and writing graph files (TOML or JSON), overrides, validation.

A graph file holds `version`, a `nodes` table (id -> type, params, inputs) and an optional
`ui` table the engine ignores. `inputs` values are links `"<node id>.<output>"`; `params`
values are literals. Reading never raises anything but `GraphFileError`, whose message is
meant for people.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeflow import dag
from nodeflow.memory import memory_budget
from nodeflow.registry import Registry

if TYPE_CHECKING:
    import networkx as nx

FORMAT_VERSION = 1
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
NODE_ID_RULE = "a node id starts with a letter or _ and holds only letters, digits, _ and -"
NODE_HEADER = re.compile(r'^\s*\[\s*nodes\s*\.\s*(?:"([^"]+)"|([^".\]\s]+))\s*(\.[^\]]*)?\]')
"""A TOML table header of a node, `[nodes.<id>]` or `[nodes.<id>.<sub-table>]`: the id is
group 1 (quoted) or 2 (bare)."""
_TOP_KEYS = {"version", "nodes", "ui"}
_NODE_KEYS = {"type", "params", "inputs"}
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Link:
    """A reference to one output of another node: `<node>.<output>`."""

    node: str
    output: str

    def __str__(self) -> str:
        return f"{self.node}.{self.output}"

    @classmethod
    def parse(cls, text: str) -> Link | None:
        node_id, dot, output = text.partition(".")
        if not dot or not NODE_ID.match(node_id) or not output:
            return None
        return cls(node_id, output)


@dataclass
class NodeSpec:
    """One node of a graph as the file states it."""

    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Link] = field(default_factory=dict)
    comment: str = ""
    """The comment lines written right above the node's table in a TOML file, without `#`."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph, located as precisely as possible."""

    message: str
    node: str | None = None
    field: str | None = None
    line: int | None = None

    def where(self) -> str:
        parts = []
        if self.node:
            parts.append(f"node {self.node!r}")
        if self.field:
            parts.append(self.field)
        return " ".join(parts)

    def format(self, source: str | Path | None = None) -> str:
        prefix = ""
        if source:
            prefix = f"{source}:{self.line}: " if self.line else f"{source}: "
        where = self.where()
        return f"{prefix}{where}: {self.message}" if where else f"{prefix}{self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "field": self.field, "line": self.line, "message": self.message}


class FileChangedError(Exception):
    """The graph's file changed on disk since it was read; saving would lose that change."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(
            f"{path} changed on disk since it was opened; save again to overwrite it, "
            "or save under another name"
        )


class GraphFileError(Exception):
    """A graph file could not be read; `problems` says every reason found.

    When the file parsed but some of it is malformed, `graph` holds the well-formed rest,
    so a caller can validate that too and report every problem in one pass.
    """

    def __init__(
        self, source: str | Path | None, problems: list[Problem], graph: Graph | None = None
    ):
        self.source = source
        self.problems = problems
        self.graph = graph
        super().__init__("\n".join(p.format(source) for p in problems))

    def all_problems(self, registry: Registry) -> list[Problem]:
        """These problems, and those of the well-formed rest of the graph."""
        if self.graph is None:
            return self.problems
        broken = {p.node for p in self.problems if p.node}
        rest = [
            p
            for p in self.graph.validate(registry)
            if not any(f"no node {b!r}" in p.message for b in broken)
        ]
        return self.problems + rest


@dataclass
class Graph:
    """Nodes by id, the editor's `ui` table, and where the graph was read from.

    A graph taken from an image has no `path` (it is saved only to a file given anew) and
    remembers the `image`; its relative paths resolve against the current folder.
    """

    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    ui: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    text: str | None = field(default=None, repr=False)
    """The text the graph was read from, while it still matches (for problems' line numbers)."""
    image: Path | None = None
    file_text: str | None = field(default=None, repr=False)
    """The text of `path` when it was last read or written: saving edits it in place, and
    refuses to overwrite the file if it has changed since."""

    @property
    def base_dir(self) -> Path:
        """The folder relative paths resolve against, absolute.

        Absolute so that cache keys (which include resolved path params) do not depend on
        whether the graph was named by a relative or an absolute path, or from which folder.
        """
        return (self.path.parent if self.path else Path.cwd()).resolve()

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Graph:
        """A graph file, or the graph a PNG or TIFF written by nodeflow carries."""
        path = Path(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return cls.from_image(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GraphFileError(path, [Problem("no such file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise GraphFileError(path, [Problem(f"cannot read the file: {exc}")]) from None
        return cls.parse(text, path=path)

    @classmethod
    def from_image(cls, path: Path) -> Graph:
        """The graph that made an image (save_images keeps it in PNG and TIFF files)."""
        from nodeflow.files.encode import graph_in_image

        try:
            text = graph_in_image(path)
        except FileNotFoundError:
            raise GraphFileError(path, [Problem("no such file")]) from None
        except (OSError, ValueError) as exc:  # Pillow refuses oversized text chunks
            raise GraphFileError(path, [Problem(f"cannot read the image: {exc}")]) from None
        if text is None:
            raise GraphFileError(
                path,
                [
                    Problem(
                        "this image carries no nodeflow graph (the PNG and TIFF files "
                        "save_images writes carry the graph that made them)"
                    )
                ],
            )
        try:
            graph = cls.parse(text, fmt="json")
        except GraphFileError as exc:
            raise GraphFileError(path, exc.problems, exc.graph) from None
        graph.image = path
        return graph

    @classmethod
    def parse(cls, text: str, path: Path | None = None, fmt: str | None = None) -> Graph:
        """Read a graph from text; `fmt` is "toml" or "json" (by default, from the suffix)."""
        fmt = fmt or ("json" if path and path.suffix.lower() == ".json" else "toml")
        try:
            data = _json_without_duplicates(text) if fmt == "json" else tomllib.loads(text)
        except json.JSONDecodeError as exc:
            problem = Problem(f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno)
            raise GraphFileError(path, [problem]) from None
        except tomllib.TOMLDecodeError as exc:
            raise GraphFileError(path, [_toml_problem(exc)]) from None
        except _DuplicateKey as exc:
            raise GraphFileError(
                path, [Problem(str(exc), line=_json_line(text, exc.key))]
            ) from None
        except (RecursionError, ValueError) as exc:
            raise GraphFileError(path, [Problem(f"cannot parse the file: {exc}")]) from None
        try:
            graph = cls.from_dict(data, path=path, text=text)
        except GraphFileError as exc:
            if exc.graph is not None:
                exc.graph.file_text = text
                _read_comments(exc.graph, text, fmt)
            raise
        graph.file_text = text
        _read_comments(graph, text, fmt)
        return graph

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None, text: str | None = None) -> Graph:
        """Build a graph from parsed data, reporting every structural problem at once."""
        locate = _Locator(text)
        problems: list[Problem] = []
        if not isinstance(data, dict):
            raise GraphFileError(path, [Problem("the file must hold a table at its top level")])
        version = data.get("version")
        if version is None:
            problems.append(Problem(f"missing format version: add `version = {FORMAT_VERSION}`"))
        elif version != FORMAT_VERSION or isinstance(version, bool):
            problems.append(
                Problem(
                    f"format version {version!r} is not one this nodeflow reads "
                    f"(it reads version {FORMAT_VERSION})",
                    line=locate.key("version"),
                )
            )
        for key in sorted(set(data) - _TOP_KEYS, key=str):
            problems.append(Problem(f"unknown top-level key {key!r}; expected version, nodes, ui"))
        ui = data.get("ui", {})
        if not isinstance(ui, dict):
            problems.append(Problem("`ui` must be a table"))
            ui = {}
        raw_nodes = data.get("nodes", {})
        if not isinstance(raw_nodes, dict):
            problems.append(Problem("`nodes` must be a table of node id -> node"))
            raw_nodes = {}
        graph = cls(ui=ui, path=path, text=text)
        for node_id, raw in raw_nodes.items():
            spec = _read_node(str(node_id), raw, problems, locate)
            if spec is not None:
                graph.nodes[spec.id] = spec
        if problems:
            raise GraphFileError(path, problems, graph)
        return graph

    # -- writing -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        nodes: dict[str, Any] = {}
        for spec in self.nodes.values():
            entry: dict[str, Any] = {"type": spec.type}
            if spec.params:
                entry["params"] = dict(spec.params)
            if spec.inputs:
                entry["inputs"] = {name: str(link) for name, link in spec.inputs.items()}
            nodes[spec.id] = entry
        data: dict[str, Any] = {"version": FORMAT_VERSION, "nodes": nodes}
        if self.ui:
            data["ui"] = self.ui
        return data

    def to_toml(self) -> str:
        """TOML in the hand-written style: one table per node, params and inputs inline."""
        from nodeflow.graph_writer import new_toml  # the writer builds on this module

        return new_toml(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path | None = None, overwrite: bool = False) -> Path:
        """Write the graph atomically, TOML or JSON by the file's suffix.

        A TOML file the graph was read from is edited in place (its comments and layout
        stay; see `nodeflow.graph_writer`). Raises `FileChangedError` rather than overwrite
        the graph's own file when it changed on disk since it was read, unless `overwrite`.
        """
        from nodeflow.graph_writer import write_graph

        target = Path(path) if path else self.path
        if target is None:
            raise ValueError("the graph has no file yet: give a path to save it to")
        if not overwrite and self.changed_on_disk(target):
            raise FileChangedError(target)
        self.file_text = write_graph(self, target, self.file_text)
        self.path, self.text = target, self.file_text
        return target

    def changed_on_disk(self, target: Path | None = None) -> bool:
        """Whether `target` (by default the graph's file) is the file the graph was read from
        and now holds something else."""
        target = target or self.path
        if target is None or self.path is None or self.file_text is None:
            return False
        if target.resolve() != self.path.resolve():
            return False
        try:
            return target.read_text(encoding="utf-8") != self.file_text
        except FileNotFoundError:
            return False
        except (OSError, UnicodeDecodeError):
            return True

    # -- editing -------------------------------------------------------------------------

    def apply_overrides(self, assignments: list[str]) -> None:
        """Apply `--set node.param=value` overrides; the value is read as a TOML literal."""
        problems = []
        for assignment in assignments:
            target, eq, raw = assignment.partition("=")
            node_id, dot, param = target.strip().partition(".")
            if not eq or not dot or not param:
                problems.append(Problem(f"--set {assignment!r}: write it as node.param=value"))
                continue
            if node_id not in self.nodes:
                problems.append(Problem(f"--set {assignment!r}: the graph has no node {node_id!r}"))
                continue
            self.nodes[node_id].params[param] = parse_literal(raw)
        if problems:
            raise GraphFileError(self.path, problems)

    def producers(self) -> dict[str, list[str]]:
        """For each node, the nodes its inputs link to (only those that exist)."""
        return {
            spec.id: [link.node for link in spec.inputs.values() if link.node in self.nodes]
            for spec in self.nodes.values()
        }

    def digraph(self) -> nx.DiGraph:
        """The links as a networkx graph, edges from producer to consumer (for the TUI)."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for node_id, producers in self.producers().items():
            g.add_edges_from((producer, node_id) for producer in producers)
        return g

    # -- validation ----------------------------------------------------------------------

    def check_node(self, spec: NodeSpec, registry: Registry) -> list[Problem]:
        """The problems of one node (type, params, inputs and their links) in this graph."""
        return _check_node(self, spec, registry, _Locator(self.text))

    def validate(self, registry: Registry) -> list[Problem]:
        """Every problem of the graph against the registered node types, in one pass."""
        from nodeflow.files.conflicts import write_conflicts

        locate = _Locator(self.text)
        problems: list[Problem] = []
        for spec in self.nodes.values():
            problems += _check_node(self, spec, registry, locate)
        for cycle in dag.cycles(list(self.nodes), self.producers()):
            if len(cycle) == 1:
                message = (
                    f"node {cycle[0]!r} links to itself (a cycle: {cycle[0]} -> {cycle[0]}); "
                    "a graph must flow one way"
                )
            else:
                path = " -> ".join([*cycle, cycle[0]])
                message = f"the links form a cycle: {path}; a graph must flow one way"
            problems.append(Problem(message, node=cycle[0], line=locate.node(cycle[0])))
        problems += write_conflicts(self, registry)
        return problems


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(
            f"the key {key!r} appears twice in one object; JSON readers keep only the last, "
            "so one of them would be lost: give each node its own id"
        )


def _json_without_duplicates(text: str) -> Any:
    """JSON with every object's keys checked: a repeated node id is an error, not a loss."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise _DuplicateKey(key)
            seen[key] = value
        return seen

    return json.loads(text, object_pairs_hook=pairs)


def _json_line(text: str, key: str) -> int | None:
    """The line of the second appearance of `"key":` in JSON text."""
    lines = [i for i, line in enumerate(text.splitlines(), 1) if f'"{key}"' in line]
    return lines[1] if len(lines) > 1 else None


def parse_literal(raw: str) -> Any:
    """A value as TOML reads it (`3`, `0.5`, `true`, `[64, 64]`, `"x"`); else the bare text."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def _read_comments(graph: Graph, text: str, fmt: str) -> None:
    """Give each node the comment lines written right above its table (TOML only)."""
    if fmt != "toml":
        return
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = NODE_HEADER.match(line)
        spec = graph.nodes.get((match[1] or match[2]) if match else "")
        if spec is None or match[3] or spec.comment:
            continue
        first = index
        while first > 0 and lines[first - 1].lstrip().startswith("#"):
            first -= 1
        spec.comment = "\n".join(re.sub(r"^\s*# ?", "", c) for c in lines[first:index])


def _read_node(
    node_id: str, raw: Any, problems: list[Problem], locate: _Locator
) -> NodeSpec | None:
    line = locate.node(node_id)
    before = len(problems)

    def problem(message: str, field: str | None = None, key: str | None = None) -> None:
        found = locate.field(node_id, key or field)
        problems.append(Problem(message, node_id, field, found or line))

    if not NODE_ID.match(node_id):
        problem(NODE_ID_RULE)
    if not isinstance(raw, dict):
        problem("a node must be a table with `type`, and optionally `params` and `inputs`")
        return None
    for key in sorted(set(raw) - _NODE_KEYS, key=str):
        problem(f"unknown key {key!r}; a node has type, params and inputs", key)
    node_type = raw.get("type")
    if not isinstance(node_type, str) or not node_type:
        problem('missing `type`: name the node type, for example type = "load_images"', "type")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        problem("`params` must be a table of name = value", "params")
        params = {}
    raw_inputs = raw.get("inputs", {})
    if not isinstance(raw_inputs, dict):
        problem('`inputs` must be a table of name = "node.output"', "inputs")
        raw_inputs = {}
    inputs = {}
    for name, value in raw_inputs.items():
        link = Link.parse(value) if isinstance(value, str) else None
        if link is None:
            message = f'a link is written "<node id>.<output>", got {value!r}'
            problem(message, f"input {name!r}", str(name))
        else:
            inputs[str(name)] = link
    if len(problems) > before:
        return None
    return NodeSpec(node_id, node_type, dict(params), inputs)


def _check_node(
    graph: Graph, spec: NodeSpec, registry: Registry, locate: _Locator
) -> list[Problem]:
    problems: list[Problem] = []

    def problem(message: str, field: str | None = None, key: str | None = None) -> None:
        line = locate.field(spec.id, key) if key else None
        problems.append(Problem(message, spec.id, field, line or locate.node(spec.id)))

    node_type = registry.node_type(spec.type)
    if node_type is None:
        problem(_unknown_type(spec.type, registry), "type", "type")
        return problems

    for name, value in spec.params.items():
        param = node_type.params.get(name)
        if param is None:
            problem(_unknown("param", name, node_type.params), f"param {name!r}", name)
            continue
        reason = param.check(value)
        if reason:
            problem(reason, f"param {name!r}", name)
    for name, param in node_type.params.items():
        if param.required and name not in spec.params:
            problem(f"missing required param ({param.describe()})", f"param {name!r}")
    if node_type.footprint and not problems:
        given = {n: p.default for n, p in node_type.params.items() if not p.required}
        too_big = node_type.footprint.problem({**given, **spec.params}, memory_budget())
        if too_big:
            size = node_type.footprint.size
            problem(too_big, f"param {size!r}", size if size in spec.params else None)
    for group in node_type.one_of:
        given = [name for name in group if spec.params.get(name) is not None]
        if len(given) != 1:
            names = " or ".join(f"`{name}`" for name in group)
            found = "neither" if not given else "both" if len(group) == 2 else ", ".join(given)
            problem(
                f"give exactly one of {names}, got {found}",
                f"param {given[-1]!r}" if given else "params",
                given[-1] if given else None,
            )

    for name, link in spec.inputs.items():
        socket = node_type.inputs.get(name)
        if socket is None:
            problem(_unknown("input", name, node_type.inputs), f"input {name!r}", name)
            continue
        source = graph.nodes.get(link.node)
        if source is None:
            close = [n for n in graph.nodes if n != spec.id]
            hint = _did_you_mean(link.node, close)
            problem(f"links to {str(link)!r}, but there is no node {link.node!r}{hint}",
                    f"input {name!r}", name)  # fmt: skip
            continue
        source_type = registry.node_type(source.type)
        if source_type is None:
            continue
        output = source_type.outputs.get(link.output)
        if output is None:
            names = ", ".join(source_type.outputs) or "none"
            problem(
                f"links to {str(link)!r}, but {source.type!r} has no output {link.output!r} "
                f"(its outputs: {names})",
                f"input {name!r}",
                name,
            )
            continue
        if output.type.name != socket.type.name:
            problem(
                f"type mismatch: {str(link)!r} gives {output.type.name}, "
                f"this input takes {socket.type.name}",
                f"input {name!r}",
                name,
            )
    for name, socket in node_type.inputs.items():
        if not socket.optional and name not in spec.inputs:
            problem(
                f"missing required input ({socket.type.name}); link it to an output, "
                f'e.g. inputs = {{ {name} = "<node>.<output>" }}',
                f"input {name!r}",
            )
    return problems


def _unknown_type(type_id: str, registry: Registry) -> str:
    """Why `type_id` is unknown: its plugin failed or is disabled, or a typo (closest names)."""
    plugin = registry.plugins.get(type_id.partition(".")[0]) if "." in type_id else None
    if plugin is not None and plugin.disabled:
        return (
            f"unknown node type {type_id!r}: its plugin {plugin.name!r} is disabled by "
            "NODEFLOW_DISABLE_PLUGINS"
        )
    if plugin is not None and plugin.errors:
        return (
            f"unknown node type {type_id!r}: its plugin {plugin.name!r} ({plugin.source}) "
            f"reported: {'; '.join(plugin.errors)} (`nodeflow plugins` shows every plugin)"
        )
    close = registry.close_matches(type_id)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    prefix = type_id.partition(".")[0]
    if "." in type_id and plugin is None and not close:
        return (
            f"unknown node type {type_id!r}: no plugin {prefix!r} is loaded; install it, or "
            "name its folder in NODEFLOW_PLUGIN_PATH (`nodeflow plugins` lists the loaded ones)"
        )
    return f"unknown node type {type_id!r}{hint} (`nodeflow nodes` lists them)"


def _unknown(kind: str, name: str, known: dict[str, Any]) -> str:
    names = ", ".join(known) or "none"
    return f"unknown {kind}{_did_you_mean(name, list(known))} ({kind}s of this node: {names})"


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _toml_problem(exc: tomllib.TOMLDecodeError) -> Problem:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        message = message[: match.start()].strip()
        return Problem(f"not valid TOML: {message} (column {match[2]})", line=int(match[1]))
    return Problem(f"not valid TOML: {message}")


class _Locator:
    """Finds the line of a node or a node's field in the graph file text, when there is one."""

    def __init__(self, text: str | None):
        self.lines = text.splitlines() if text else []
        self._sections: dict[str, tuple[int, int]] | None = None

    def key(self, key: str) -> int | None:
        pattern = re.compile(rf'^\s*"?{re.escape(key)}"?\s*[=:]')
        return next((i + 1 for i, line in enumerate(self.lines) if pattern.match(line)), None)

    def node(self, node_id: str) -> int | None:
        span = self._span(node_id)
        return span[0] + 1 if span else None

    def field(self, node_id: str, key: str | None) -> int | None:
        span = self._span(node_id)
        if not span or not key:
            return None
        pattern = re.compile(rf'(^|[{{,\s"]){re.escape(key)}"?\s*[=:]')
        for i in range(span[0], span[1]):
            if pattern.search(self.lines[i]):
                return i + 1
        return None

    def _span(self, node_id: str) -> tuple[int, int] | None:
        if self._sections is None:
            self._sections = {}
            json_key = re.compile(r'^\s*"([^"]+)"\s*:\s*\{')
            starts: list[tuple[str, int]] = []
            for i, line in enumerate(self.lines):
                match = NODE_HEADER.match(line)
                name = (match[1] or match[2]) if match else None
                if name is None and (match := json_key.match(line)):
                    name = match[1] if match[1] not in _NODE_KEYS | _TOP_KEYS else None
                if name is None:
                    continue
                if not starts or starts[-1][0] != name:
                    starts.append((name, i))
            for n, (name, start) in enumerate(starts):
                end = starts[n + 1][1] if n + 1 < len(starts) else len(self.lines)
                self._sections.setdefault(name, (start, end))
        return self._sections.get(node_id)
