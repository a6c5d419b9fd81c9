"""Building graphs in Python: `Graph.add` checks a node at once and returns a handle to it.

    g = nodeflow.Graph()
    photos = g.add("sample_images", size=256)
    noisy = g.add("add_noise", image=photos.image, sigma=25)

The builder's `Graph` is the graph file model (`nodeflow.graph.Graph`) with `add` and
handles on top: what it builds is what `save` writes and `nodeflow run` runs, and a loaded
file gets the same handles (`g["photos"]`). `add` checks the node with the graph's own
validation, so a mistake fails there with the message `nodeflow validate` gives.
"""

from __future__ import annotations

import keyword
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx

from nodeflow.graph import NODE_ID, NODE_ID_RULE, GraphFileError, Link, NodeSpec, Problem
from nodeflow.graph import Graph as GraphModel
from nodeflow.node import NodeType
from nodeflow.registry import Registry


class NodeHandle:
    """A node of a builder graph; its outputs are attributes (`photos.image`), each a `Link`
    to set another node's input to.

    `id` and `type` say which node it is; `handle["name"]` reaches an output whose name
    is not a Python identifier or clashes with those two.
    """

    def __init__(self, graph: Graph, node_id: str):
        self.graph = graph
        self.id = node_id

    @property
    def type(self) -> str:
        return self.graph.nodes[self.id].type

    def _node_type(self) -> NodeType | None:
        return self.graph.node_types().node_type(self.type)

    def _outputs(self) -> list[str]:
        node_type = self._node_type()
        return list(node_type.outputs) if node_type else []

    def __getitem__(self, output: str) -> Link:
        outputs = self._outputs()
        if output not in outputs:
            names = ", ".join(outputs) or "none"
            raise KeyError(
                f"node {self.id!r} ({self.type}) has no output {output!r}; its outputs: {names}"
            )
        return Link(self.id, output)

    def __getattr__(self, name: str) -> Link:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(exc.args[0]) from None

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._outputs()})

    def _ipython_key_completions_(self) -> list[str]:
        return self._outputs()

    def __repr__(self) -> str:
        return f"<node {self.id!r} ({self.type}), outputs: {', '.join(self._outputs()) or 'none'}>"


@dataclass
class Graph(GraphModel):
    """A graph to build node by node with `add`; it saves, loads and runs like a graph file.

    `registry` is what node types are checked against (default: every installed plugin's,
    loaded on the first `add`).
    """

    registry: Registry | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path = Path(self.path)

    def node_types(self) -> Registry:
        """The registry nodes are checked against, loaded on first use."""
        if self.registry is None:
            from nodeflow.manifest import load_described_registry

            self.registry = load_described_registry()
        return self.registry

    def add(self, node_type: str, /, id: str | None = None, **values: Any) -> NodeHandle:
        """Add a node of `node_type`; keywords set its params (literals) and inputs (outputs).

        An input takes another node's output (`image=photos.image`); a param takes a value
        (`sigma=25`, a `pathlib.Path` for a path). The id is `id`, or one made from the type
        (`add_noise`, then `add_noise_2`, ...). Raises `GraphFileError` listing every problem
        (unknown type, param or input, a value out of range, a missing required one) as
        `nodeflow validate` words them, but for a missing input's example, which is in
        Python; the graph is then left as it was.
        """
        registry = self.node_types()
        node_id = self._new_id(node_type) if id is None else id
        problems = self._id_problems(node_id)
        declared = registry.node_type(node_type)
        spec = NodeSpec(node_id, node_type)
        for name, value in values.items():
            problems += _place(spec, name, value, declared)
        if not problems:
            problems = [self._in_python(p, spec, declared) for p in self.check_node(spec, registry)]
        if problems:
            raise GraphFileError(None, problems)
        self.nodes[node_id] = spec
        return NodeHandle(self, node_id)

    def _in_python(self, problem: Problem, spec: NodeSpec, node_type: NodeType | None) -> Problem:
        """`problem`, a missing input's told how to link it from Python rather than in TOML."""
        missing = {
            f"input {name!r}": (name, socket.type.name)
            for name, socket in (node_type.inputs.items() if node_type else [])
            if not socket.optional and name not in spec.inputs
        }
        if problem.field not in missing:
            return problem
        name, type_name = missing[problem.field]
        example = _keyword(name, self._fitting_output(type_name) or "other.<output>")
        message = (
            f"missing required input ({type_name}); link it to another node's output, "
            f"e.g. g.add({spec.type!r}, {example})"
        )
        return replace(problem, message=message)

    def _fitting_output(self, type_name: str) -> str | None:
        """`g['id'].output` for the latest node with an output of `type_name`, if any."""
        registry = self.node_types()
        for other in reversed(self.nodes.values()):
            other_type = registry.node_type(other.type)
            for output, socket in other_type.outputs.items() if other_type else []:
                if socket.type.name == type_name:
                    reach = f".{output}" if output.isidentifier() else f"[{output!r}]"
                    return f"g[{other.id!r}]{reach}"
        return None

    def __getitem__(self, node_id: str) -> NodeHandle:
        """The handle of the node `node_id` (of a loaded graph, say)."""
        if node_id not in self.nodes:
            raise KeyError(f"the graph has no node {node_id!r}; its nodes: {', '.join(self.nodes)}")
        return NodeHandle(self, node_id)

    def _new_id(self, node_type: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_-]", "_", node_type.rsplit(".", 1)[-1]) or "node"
        base = base if NODE_ID.match(base) else f"_{base}"
        number = 1
        node_id = base
        while node_id in self.nodes:
            number += 1
            node_id = f"{base}_{number}"
        return node_id

    def _id_problems(self, node_id: str) -> list[Problem]:
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            return [Problem(NODE_ID_RULE, node=str(node_id))]
        if node_id in self.nodes:
            return [Problem("the graph already has a node of this id; give another", node_id)]
        return []


def _place(spec: NodeSpec, name: str, value: Any, node_type: NodeType | None) -> list[Problem]:
    """Put one keyword of `add` into the spec: a link to an input, a literal to a param."""
    if isinstance(value, NodeHandle):
        outputs = ", ".join(f"{value.id}.{o}" for o in value._outputs())
        return [Problem(f"link one output of node {value.id!r}: {outputs}", spec.id, name)]
    if isinstance(value, Link):
        if node_type is not None and name in node_type.params:
            message = f"a param takes a value ({node_type.params[name].describe()}), not a link"
            return [Problem(message, spec.id, f"param {name!r}")]
        spec.inputs[name] = value
        return []
    if node_type is not None and name in node_type.inputs:
        message = f"an input takes another node's output, such as photos.image; got {value!r}"
        return [Problem(message, spec.id, f"input {name!r}")]
    spec.params[name] = _literal(value)
    return []


def _literal(value: Any) -> Any:
    """A param value as a graph file holds it: paths as text, tuples as lists."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return [_literal(v) for v in value]
    return value


def load(path: str | os.PathLike[str]) -> Graph:
    """Read a graph file (TOML or JSON) to add to, run or save; `g["id"]` is a node's handle."""
    return Graph.load(path)


def to_script(graph: GraphModel, registry: Registry, script: Path | None = None) -> str:
    """A Python script that builds `graph` with `Graph.add` and runs it.

    Nodes come in link order (each after the nodes it reads), with `id=` only where the
    id is not the one `add` would make. The script's graph keeps the file's path, so
    relative paths resolve against the graph file's folder, as `nodeflow run` resolves
    them, from whatever folder the script runs in, and `g.save()` writes that file. The
    path is anchored on the script's own folder when the script is to be written to
    `script` and the graph file is in that folder or below it, else absolute. Its run prints the scalar outputs of the output nodes, as
    `nodeflow run` does. The `ui` table (editor layout) is not carried over.
    """
    position = {node_id: i for i, node_id in enumerate(graph.nodes)}
    order = list(nx.lexicographical_topological_sort(graph.digraph(), key=position.get))
    made = Graph(registry=registry)
    names: dict[str, str] = {}
    where = _graph_path(graph, script)
    lines = ["import nodeflow", "", f"g = nodeflow.Graph({where})"]
    if "__file__" in where:
        lines[:0] = ["from pathlib import Path", ""]
    for node_id in order:
        spec = graph.nodes[node_id]
        names[node_id] = _variable(node_id, set(names.values()))
        arguments = [repr(spec.type)]
        if made._new_id(spec.type) != node_id:
            arguments.append(f"id={node_id!r}")
        made.nodes[node_id] = spec
        for name, value in spec.params.items():
            arguments.append(_keyword(name, repr(value)))
        for name, link in spec.inputs.items():
            source = names.get(link.node, link.node)
            output = f".{link.output}" if link.output.isidentifier() else f"[{link.output!r}]"
            arguments.append(_keyword(name, f"{source}{output}"))
        lines.append(f"{names[node_id]} = g.add({', '.join(arguments)})")
    lines += ["", "result = nodeflow.run(g)"]
    for node_id in order:
        node_type = registry.node_type(graph.nodes[node_id].type)
        if node_type is None or not node_type.output_node:
            continue
        for output, socket in node_type.outputs.items():
            if socket.type.name in ("Float", "Int", "Bool", "Str"):
                value = f"result[{names[node_id]}][{output!r}]"
                lines.append(f'print("{node_id}.{output} =", {value})')
    return "\n".join(lines) + "\n"


def _graph_path(graph: GraphModel, script: Path | None) -> str:
    """The `path=` argument that names the graph's file from wherever the script runs."""
    if graph.path is None:
        return ""
    target = Path(graph.path).resolve()
    if script is None:
        return f"path={str(target)!r}"
    folder = Path(script).resolve().parent
    if not target.is_relative_to(folder):
        return f"path={str(target)!r}"
    return f"path=Path(__file__).parent / {target.relative_to(folder).as_posix()!r}"


def _variable(node_id: str, taken: set[str]) -> str:
    name = node_id.replace("-", "_")
    while keyword.iskeyword(name) or name in taken or name in ("g", "nodeflow", "result"):
        name += "_"
    return name


def _keyword(name: str, value: str) -> str:
    """`name=value`, or `**{"name": value}` for a name Python cannot take as a keyword."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"{name}={value}"
    return f"**{{{name!r}: {value}}}"
