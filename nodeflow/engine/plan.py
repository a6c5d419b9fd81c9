"""A run's plan: plain data saying which nodes run, how, with what params, under which key.

The local scheduler and the Ray engine both execute a plan. Each step is one node with its
resolved params (relative paths made absolute against the graph's folder), its cache key
(a hash of its type, params and the keys of its inputs, so a change upstream changes every
key below it) and its mode:

- `source`: no streamed inputs, streamed outputs (a folder of images);
- `map`: per-item, a pure function of (inputs, params, batch index);
- `collect`: reads whole streams and gives whole values (a basis, a model, metrics), or
  writes files (a sink).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from nodeflow import dag
from nodeflow.engine.cache import cache_key
from nodeflow.graph import Graph, GraphFileError, Link, Problem
from nodeflow.node import NodeType
from nodeflow.registry import Registry
from nodeflow.types import PIXEL_TYPES


@dataclass
class Step:
    """One node of the plan."""

    id: str
    node_type: NodeType
    params: dict[str, Any]
    inputs: dict[str, Link]
    key: str

    @property
    def mode(self) -> str:
        return self.node_type.mode

    @property
    def streams(self) -> bool:
        """Whether the node's outputs are streams computed batch by batch."""
        return self.node_type.mode != "collect"

    @cached_property
    def float_inputs(self) -> frozenset[str]:
        """Inputs whose 8-bit pixels the node wants as float (it did not say `uint8`)."""
        return frozenset(
            name
            for name, socket in self.node_type.inputs.items()
            if socket.type.name in PIXEL_TYPES and not socket.uint8
        )

    @property
    def sink(self) -> bool:
        """A collecting node without outputs: it writes files (or reports) and is done."""
        return self.node_type.mode == "collect" and not self.node_type.outputs


@dataclass
class Plan:
    """The steps the targets need, in topological order (the file's order where free)."""

    steps: dict[str, Step]
    targets: list[str]
    consumers: dict[str, list[str]] = field(default_factory=dict)

    def producers(self, node_id: str) -> list[str]:
        return [link.node for link in self.steps[node_id].inputs.values()]


def default_targets(graph: Graph, registry: Registry) -> list[str]:
    """The graph's output nodes (writers, reports), else the nodes nothing reads."""
    outputs = [n for n, spec in graph.nodes.items() if registry.nodes[spec.type].output_node]
    if outputs:
        return outputs
    read = {link.node for spec in graph.nodes.values() for link in spec.inputs.values()}
    return [n for n in graph.nodes if n not in read]


def build_plan(
    graph: Graph,
    registry: Registry,
    targets: list[str] | None,
    device: str,
    precision: str,
    output_root: str = "",
) -> Plan:
    """The steps `targets` (default: the output nodes) need; the graph must be valid.

    The output root enters the keys of nodes that write files: a writer confined elsewhere
    is a different writer."""
    if targets:
        unknown = [t for t in targets if t not in graph.nodes]
        if unknown:
            problems = [
                Problem(f"cannot run up to {t!r}: the graph has no such node") for t in unknown
            ]
            raise GraphFileError(graph.path, problems)
    else:
        targets = default_targets(graph, registry)
    producers = graph.producers()
    wanted = dag.ancestors(targets, producers)
    order = dag.topological_order([n for n in graph.nodes if n in wanted], producers)
    steps: dict[str, Step] = {}
    consumers: dict[str, list[str]] = {node_id: [] for node_id in order}
    base_dir = graph.base_dir
    for node_id in order:
        spec = graph.nodes[node_id]
        node_type = registry.nodes[spec.type]
        params = resolve_params(spec.params, node_type, base_dir)
        input_keys = {
            name: f"{steps[link.node].key}.{link.output}" for name, link in spec.inputs.items()
        }
        fingerprint = node_type.fingerprint(params) if node_type.fingerprint else ""
        if node_type.writes and output_root:
            fingerprint += f"|output root {output_root}"
        key = cache_key(node_type, params, input_keys, fingerprint, device, precision)
        steps[node_id] = Step(node_id, node_type, params, dict(spec.inputs), key)
        for link in spec.inputs.values():
            consumers[link.node].append(node_id)
    return Plan(steps, list(targets), consumers)


def resolve_params(given: dict[str, Any], node_type: NodeType, base_dir: Path) -> dict[str, Any]:
    """Every param of the node as its function gets it: the given value or the default,
    path params as `pathlib.Path`s resolved against the graph's folder."""
    params = {}
    for name, param in node_type.params.items():
        value = given.get(name, None if param.required else param.default)
        params[name] = param.coerce(value, base_dir)
    return params
