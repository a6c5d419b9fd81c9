"""The editing model behind `nodeflow edit`: a graph, edits as small reversible commands, undo.

Every change the editor makes is an `Edit` applied through a `Document`: add, delete, rename,
set a param, link or unlink an input. Each edit records what it replaced when it is applied,
so undo puts the graph back exactly (node order, links of renamed or deleted nodes). The
document knows whether it differs from the file it was saved to, and answers the questions
the editor asks of a graph: execution order, the outputs that may feed an input, fresh ids.
Nothing here imports Textual, so it is tested on its own.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import networkx as nx

from nodeflow.graph import NODE_ID, Graph, Link, NodeSpec, Problem
from nodeflow.registry import Registry

REFERENCE_INPUTS = {"reference", "target", "ground_truth", "clean", "original"}
"""Inputs that compare against the source a chain started from (auto-linking takes the
farthest upstream output for them)."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""A param value meaning "not set in the file": the node type's default applies."""


class Edit(Protocol):
    """One reversible change to a graph."""

    label: str

    def apply(self, graph: Graph) -> None: ...

    def revert(self, graph: Graph) -> None: ...

    def touched(self) -> set[str]:
        """Ids (after the edit) of the nodes whose results the edit may change."""
        ...


def _reorder(graph: Graph, order: list[str]) -> None:
    graph.nodes = {node_id: graph.nodes[node_id] for node_id in order if node_id in graph.nodes}


@dataclass
class AddNode:
    spec: NodeSpec
    label: str = "add node"

    def apply(self, graph: Graph) -> None:
        graph.nodes[self.spec.id] = copy.deepcopy(self.spec)

    def revert(self, graph: Graph) -> None:
        del graph.nodes[self.spec.id]

    def touched(self) -> set[str]:
        return {self.spec.id}


@dataclass
class DeleteNode:
    """Remove a node and unlink every input that read from it."""

    node_id: str
    label: str = "delete node"
    _spec: NodeSpec | None = field(default=None, repr=False)
    _order: list[str] = field(default_factory=list, repr=False)
    _links: list[tuple[str, str, Link]] = field(default_factory=list, repr=False)

    def apply(self, graph: Graph) -> None:
        self._order = list(graph.nodes)
        self._spec = graph.nodes.pop(self.node_id)
        self._links = []
        for spec in graph.nodes.values():
            for name, link in list(spec.inputs.items()):
                if link.node == self.node_id:
                    self._links.append((spec.id, name, link))
                    del spec.inputs[name]

    def revert(self, graph: Graph) -> None:
        assert self._spec is not None
        graph.nodes[self.node_id] = self._spec
        for consumer, name, link in self._links:
            graph.nodes[consumer].inputs[name] = link
        _reorder(graph, self._order)

    def touched(self) -> set[str]:
        return {consumer for consumer, _name, _link in self._links}


@dataclass
class RenameNode:
    """Give a node a new id; links that read from it follow."""

    old: str
    new: str
    label: str = "rename node"

    def _rename(self, graph: Graph, old: str, new: str) -> None:
        order = [new if node_id == old else node_id for node_id in graph.nodes]
        spec = graph.nodes.pop(old)
        spec.id = new
        graph.nodes[new] = spec
        for other in graph.nodes.values():
            for name, link in other.inputs.items():
                if link.node == old:
                    other.inputs[name] = Link(new, link.output)
        _reorder(graph, order)

    def apply(self, graph: Graph) -> None:
        self._rename(graph, self.old, self.new)

    def revert(self, graph: Graph) -> None:
        self._rename(graph, self.new, self.old)

    def touched(self) -> set[str]:
        return {self.new}


@dataclass
class SetParam:
    """Set one param of a node; `UNSET` removes it from the file (the default applies)."""

    node_id: str
    name: str
    value: Any
    label: str = "set param"
    _old: Any = field(default=UNSET, repr=False)

    def apply(self, graph: Graph) -> None:
        params = graph.nodes[self.node_id].params
        self._old = params.get(self.name, UNSET)
        _put(params, self.name, self.value)

    def revert(self, graph: Graph) -> None:
        _put(graph.nodes[self.node_id].params, self.name, self._old)

    def touched(self) -> set[str]:
        return {self.node_id}

    def absorb(self, later: SetParam) -> bool:
        """Fold a later edit of the same param into this one (typing a number is one edit)."""
        if (later.node_id, later.name) != (self.node_id, self.name):
            return False
        self.value = later.value
        return True


@dataclass
class SetInput:
    """Link an input to an output, or unlink it (`link=None`)."""

    node_id: str
    name: str
    link: Link | None
    label: str = "link input"
    _old: Link | None = field(default=None, repr=False)

    def apply(self, graph: Graph) -> None:
        inputs = graph.nodes[self.node_id].inputs
        self._old = inputs.get(self.name)
        _put(inputs, self.name, self.link if self.link is not None else UNSET)

    def revert(self, graph: Graph) -> None:
        inputs = graph.nodes[self.node_id].inputs
        _put(inputs, self.name, self._old if self._old is not None else UNSET)

    def touched(self) -> set[str]:
        return {self.node_id}


@dataclass
class SetComment:
    """Set a node's comment (saved as `#` lines above its table)."""

    node_id: str
    comment: str
    label: str = "set comment"
    _old: str = field(default="", repr=False)

    def apply(self, graph: Graph) -> None:
        spec = graph.nodes[self.node_id]
        self._old, spec.comment = spec.comment, self.comment

    def revert(self, graph: Graph) -> None:
        graph.nodes[self.node_id].comment = self._old

    def touched(self) -> set[str]:
        return set()


@dataclass
class ChangeType:
    """Make a node one of another type in place (see `Document.change_type`): `spec` is the
    node as it becomes; the inputs in `unlink` read outputs it no longer gives."""

    spec: NodeSpec
    unlink: list[tuple[str, str]]
    label: str = "change type"
    _old: NodeSpec | None = field(default=None, repr=False)
    _links: list[tuple[str, str, Link]] = field(default_factory=list, repr=False)

    def apply(self, graph: Graph) -> None:
        self._old = graph.nodes[self.spec.id]
        graph.nodes[self.spec.id] = copy.deepcopy(self.spec)
        self._links = []
        for consumer, name in self.unlink:
            self._links.append((consumer, name, graph.nodes[consumer].inputs.pop(name)))

    def revert(self, graph: Graph) -> None:
        assert self._old is not None
        graph.nodes[self.spec.id] = self._old
        for consumer, name, link in self._links:
            graph.nodes[consumer].inputs[name] = link

    def touched(self) -> set[str]:
        return {self.spec.id} | {consumer for consumer, _name in self.unlink}


def _put(table: dict[str, Any], key: str, value: Any) -> None:
    if value is UNSET:
        table.pop(key, None)
    else:
        table[key] = value


class Document:
    """A graph being edited: its edits, undo and redo stacks, and whether it is saved."""

    def __init__(self, graph: Graph, registry: Registry):
        self.graph = graph
        self.registry = registry
        self.undo_stack: list[Edit] = []
        self.redo_stack: list[Edit] = []
        self._saved_at: Edit | None = None

    @property
    def path(self) -> Path | None:
        return self.graph.path

    @property
    def dirty(self) -> bool:
        """Whether the graph differs from what was last loaded or saved."""
        top = self.undo_stack[-1] if self.undo_stack else None
        return top is not self._saved_at

    # -- editing -------------------------------------------------------------------------

    def apply(self, edit: Edit, merge: bool = False) -> Edit:
        """Apply `edit`; with `merge`, fold it into the previous edit of the same param."""
        top = self.undo_stack[-1] if self.undo_stack else None
        edit.apply(self.graph)
        self.graph.text = None
        self.redo_stack.clear()
        if (
            merge
            and isinstance(top, SetParam)
            and isinstance(edit, SetParam)
            and top is not self._saved_at
            and top.absorb(edit)
        ):
            return top
        self.undo_stack.append(edit)
        return edit

    def undo(self) -> Edit | None:
        if not self.undo_stack:
            return None
        edit = self.undo_stack.pop()
        edit.revert(self.graph)
        self.graph.text = None
        self.redo_stack.append(edit)
        return edit

    def redo(self) -> Edit | None:
        if not self.redo_stack:
            return None
        edit = self.redo_stack.pop()
        edit.apply(self.graph)
        self.graph.text = None
        self.undo_stack.append(edit)
        return edit

    def save(self, path: str | Path | None = None, overwrite: bool = False) -> Path:
        """Write the graph (TOML or JSON by suffix) and mark this state as saved.

        Raises `FileChangedError` when the graph's file changed on disk since it was read,
        unless `overwrite`.
        """
        written = self.graph.save(path, overwrite=overwrite)
        self._saved_at = self.undo_stack[-1] if self.undo_stack else None
        return written

    # -- questions -----------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        return self.graph.validate(self.registry)

    def execution_order(self) -> list[str]:
        """Node ids in the order a run takes them (file order among equals; file order on a cycle)."""
        g = self.graph.digraph()
        index = {node_id: i for i, node_id in enumerate(self.graph.nodes)}
        try:
            return list(nx.lexicographical_topological_sort(g, key=index.__getitem__))
        except nx.NetworkXUnfeasible:
            return list(self.graph.nodes)

    def downstream(self, node_ids: set[str]) -> set[str]:
        """These nodes and every node that reads from them, directly or not."""
        g = self.graph.digraph()
        found = {n for n in node_ids if n in g}
        for node_id in list(found):
            found |= nx.descendants(g, node_id)
        return found

    def candidates(self, node_id: str, input_name: str) -> list[Link]:
        """Outputs that may feed this input: the type fits, no cycle; nearest upstream first."""
        spec = self.graph.nodes[node_id]
        node_type = self.registry.node_type(spec.type)
        if node_type is None or input_name not in node_type.inputs:
            return []
        g = self.graph.digraph()
        banned = {node_id} | nx.descendants(g, node_id)
        distance = nx.single_source_shortest_path_length(g.reverse(copy=False), node_id)
        socket = node_type.inputs[input_name]
        return self._fitting_outputs(socket.type.name, banned, distance, node_id)

    def _fitting_outputs(
        self, type_name: str, banned: set[str], distance: dict[str, int], anchor: str
    ) -> list[Link]:
        """Outputs of `type_name` outside `banned`: first those upstream of `anchor`, fewest
        links away; then the rest by execution order, the nodes just before `anchor` first,
        then those after it."""
        order = {node_id: i for i, node_id in enumerate(self.execution_order())}
        here = order.get(anchor, len(order))
        found: list[tuple[tuple[float, int, int], Link]] = []
        for other in self.graph.nodes.values():
            other_type = self.registry.node_type(other.type)
            if other.id in banned or other_type is None:
                continue
            gap = order[other.id] - here
            rank = (distance.get(other.id, math.inf), gap > 0, abs(gap))
            for output_name, output in other_type.outputs.items():
                if output.type.name == type_name:
                    found.append((rank, Link(other.id, output_name)))
        found.sort(key=lambda item: item[0])
        return [link for _rank, link in found]

    def unique_id(self, base: str) -> str:
        """`base` made into a valid id no node has yet: `blur`, `blur_2`, `blur_3`, ..."""
        stem = "".join(c if c.isalnum() or c in "_-" else "_" for c in base) or "node"
        if not (stem[0].isalpha() or stem[0] == "_"):
            stem = f"n_{stem}"
        if stem not in self.graph.nodes:
            return stem
        number = 2
        while f"{stem}_{number}" in self.graph.nodes:
            number += 1
        return f"{stem}_{number}"

    def id_problem(self, text: str, current: str | None = None) -> str | None:
        """Why `text` cannot be a node's new id, or None when it can."""
        if not NODE_ID.match(text):
            return "an id starts with a letter or _ and holds only letters, digits, _ and -"
        if text != current and text in self.graph.nodes:
            return f"there is already a node {text!r}"
        return None

    def new_node(self, type_id: str, after: str | None = None) -> NodeSpec:
        """A node of `type_id` with a fresh id, its required inputs linked to what is nearest
        `after` (the selected node and then its upstream), each to a different output.

        Names and roles come first: an input takes an output of its own name when one fits
        (`model` from a `model` output), and a reference (`reference`, `target`, ...) takes
        the farthest upstream output, the source the chain started from, not the
        processed image next to it."""
        node_type = self.registry.nodes[type_id]
        spec = NodeSpec(self.unique_id(type_id.rsplit(".", 1)[-1]), type_id)
        if after is None or after not in self.graph.nodes:
            return spec
        g = self.graph.digraph()
        distance = dict(nx.single_source_shortest_path_length(g.reverse(copy=False), after))
        used: set[Link] = set()
        for name, socket in node_type.inputs.items():
            if socket.optional:
                continue
            fitting = [
                link
                for link in self._fitting_outputs(socket.type.name, set(), distance, after)
                if link not in used and link.node in distance
            ]
            if name in REFERENCE_INPUTS:
                fitting.sort(key=lambda link: -distance[link.node])
            else:
                fitting.sort(key=lambda link: link.output != name)
            if fitting:
                spec.inputs[name] = fitting[0]
                used.add(fitting[0])
        return spec

    def change_type(self, node_id: str, type_id: str) -> ChangeType:
        """The edit that makes `node_id` a `type_id` in place: the params the new type takes
        (with values it accepts) and the input links that fit it stay, and so do the links
        of the nodes that read an output the new type gives with the same type."""
        new_type = self.registry.nodes[type_id]
        old = self.graph.nodes[node_id]
        params = {
            name: value
            for name, value in old.params.items()
            if name in new_type.params and new_type.params[name].check(value) is None
        }
        inputs = {
            name: link
            for name, link in old.inputs.items()
            if name in new_type.inputs
            and self._output_type(link) == new_type.inputs[name].type.name
        }
        spec = NodeSpec(node_id, type_id, params, inputs, old.comment)
        unlink = []
        for other in self.graph.nodes.values():
            for name, link in other.inputs.items():
                given = new_type.outputs.get(link.output)
                if link.node == node_id and (
                    given is None or given.type.name != self._output_type(link)
                ):
                    unlink.append((other.id, name))
        return ChangeType(spec, unlink, label=f"change {node_id} to {type_id}")

    def _output_type(self, link: Link) -> str | None:
        """The type name of the output a link reads, if its node and output exist."""
        source = self.graph.nodes.get(link.node)
        source_type = self.registry.node_type(source.type) if source else None
        output = source_type.outputs.get(link.output) if source_type else None
        return output.type.name if output else None

    def duplicate(self, node_id: str) -> NodeSpec:
        """A copy of a node (same type, params and input links) under a fresh id."""
        spec = copy.deepcopy(self.graph.nodes[node_id])
        spec.id = self.unique_id(node_id)
        return spec
