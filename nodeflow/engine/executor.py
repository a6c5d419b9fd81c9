"""The executor: plan what the requested outputs need, then run it node by node.

The loop is small on purpose. A plan (`_plan`) lists the nodes the targets depend on in
topological order, with their resolved params and cache keys, and marks which must run:
a node whose result is cached satisfies everything above it. Then each needed node is
evaluated in order. `map` and `source` nodes build lazy streams, so their work happens
batch by batch inside whichever node consumes them; their start and finish events bracket
that work. A failure marks the node and everything downstream of it; independent branches
go on unless `fail_fast`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch

from nodeflow.engine.cache import Cache, cache_key
from nodeflow.engine.context import CancelToken, NodeContext, RunCancelled
from nodeflow.engine.device import compute_mode, resolve_device, resolve_precision
from nodeflow.engine.events import (
    Event,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from nodeflow.engine.values import describe, summarize_outputs
from nodeflow.graph import Graph, GraphFileError, NodeSpec, Problem
from nodeflow.node import NodeType
from nodeflow.registry import Registry
from nodeflow.types import Batch, Stream


class NodeError(Exception):
    """A node raised while running; the message names the node, its type and its inputs."""

    def __init__(self, node_id: str, type_id: str, cause: BaseException, inputs: str):
        self.node_id = node_id
        self.type_id = type_id
        self.cause = cause
        reason = str(cause) or type(cause).__name__
        text = f"node {node_id!r} ({type_id}) failed: {reason}"
        if inputs:
            text += f"\n  inputs: {inputs}"
        super().__init__(text)


@dataclass
class RunResult:
    """What a run produced: outputs of evaluated nodes, failures, and a first batch per stream."""

    ok: bool
    seconds: float
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    previews: dict[str, Batch] = field(default_factory=dict)
    cancelled: bool = False


@dataclass
class _Step:
    spec: NodeSpec
    node_type: NodeType
    params: dict[str, Any]
    key: str
    needed: bool = False


class Executor:
    """Runs graphs against a registry with one cache, device and precision.

    Keep one executor for a session (the TUI does) and re-runs reuse its memory cache.
    """

    def __init__(
        self,
        registry: Registry,
        cache: Cache | None = None,
        device: str = "auto",
        precision: str = "fp32",
        fail_fast: bool = False,
    ):
        self.registry = registry
        self.cache = cache if cache is not None else Cache()
        self.device = resolve_device(device)
        self.precision = precision
        self.dtype = resolve_precision(precision)
        self.fail_fast = fail_fast

    def run(
        self,
        graph: Graph,
        targets: list[str] | None = None,
        on_event: Callable[[Event], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        """Validate `graph`, then run what `targets` need (default: its output nodes)."""
        problems = graph.validate(self.registry)
        if problems:
            raise GraphFileError(graph.path, problems)
        return _Run(self, graph, targets, on_event or (lambda _e: None), cancel or CancelToken())()


class _Run:
    """One run of one graph: the plan, the values computed so far, the events sent."""

    def __init__(
        self,
        executor: Executor,
        graph: Graph,
        targets: list[str] | None,
        emit: Callable[[Event], None],
        cancel: CancelToken,
    ):
        self.ex = executor
        self.graph = graph
        self.emit = emit
        self.cancel = cancel
        self.values: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}
        self.stream_time: dict[str, float] = {}
        self.open_streams: dict[str, int] = {}
        self.targets = self._targets(targets)
        self.steps = self._plan()

    def _targets(self, targets: list[str] | None) -> list[str]:
        if targets:
            unknown = [t for t in targets if t not in self.graph.nodes]
            if unknown:
                raise GraphFileError(
                    self.graph.path,
                    [
                        Problem(f"cannot run up to {t!r}: the graph has no such node")
                        for t in unknown
                    ],
                )
            return list(targets)
        registry = self.ex.registry
        outputs = [
            n for n, spec in self.graph.nodes.items() if registry.nodes[spec.type].output_node
        ]
        if outputs:
            return outputs
        g = self.graph.digraph()
        return [n for n in g if g.out_degree(n) == 0]

    def _plan(self) -> dict[str, _Step]:
        g = self.graph.digraph()
        wanted = set(self.targets)
        for target in self.targets:
            wanted |= nx.ancestors(g, target)
        order = list(nx.lexicographical_topological_sort(g.subgraph(wanted)))
        steps: dict[str, _Step] = {}
        device, precision = str(self.ex.device), self.ex.precision
        for node_id in order:
            spec = self.graph.nodes[node_id]
            node_type = self.ex.registry.nodes[spec.type]
            params = self._resolve_params(spec, node_type)
            input_keys = {
                name: f"{steps[link.node].key}.{link.output}" for name, link in spec.inputs.items()
            }
            fingerprint = node_type.fingerprint(params) if node_type.fingerprint else ""
            key = cache_key(node_type, params, input_keys, fingerprint, device, precision)
            steps[node_id] = _Step(spec, node_type, params, key)

        # Walk up from the targets; a cached collecting node satisfies everything above it.
        pending = list(self.targets)
        while pending:
            step = steps[pending.pop()]
            if step.needed:
                continue
            mode, node_type = step.node_type.mode, step.node_type
            if mode == "collect" and self.ex.cache.has(step.key, node_type):
                continue
            step.needed = True
            pending.extend(link.node for link in step.spec.inputs.values())
        for step in steps.values():
            if step.needed and step.node_type.mode != "collect":
                self.open_streams[step.spec.id] = 0
        for step in steps.values():
            if step.needed:
                for link in step.spec.inputs.values():
                    if link.node in self.open_streams:
                        self.open_streams[link.node] += 1
        return steps

    def _resolve_params(self, spec: NodeSpec, node_type: NodeType) -> dict[str, Any]:
        params = {}
        for name, param in node_type.params.items():
            value = spec.params.get(name, None if param.required else param.default)
            params[name] = param.coerce(value, self.graph.base_dir)
        return params

    # -- the loop ------------------------------------------------------------------------

    def __call__(self) -> RunResult:
        started = time.perf_counter()
        self.emit(RunStarted(list(self.steps), str(self.ex.device), self.ex.precision))
        result = RunResult(ok=True, seconds=0.0)
        try:
            for node_id, step in self.steps.items():
                self.cancel.check()
                if not step.needed:
                    self.emit(NodeFinished(node_id, 0.0, cached=True))
                    continue
                if self._evaluate(node_id, step) is False and self.ex.fail_fast:
                    break
            stopped_early = self.ex.fail_fast and self.failed
            for target in [] if stopped_early else self.targets:
                self._drain_if_stream(target, result)
                if target not in self.values and target not in self.failed:
                    self._value(target, None)
        except RunCancelled:
            result.cancelled = True
        result.failed = dict(self.failed)
        result.ok = not self.failed and not result.cancelled
        result.outputs = self.values
        result.seconds = time.perf_counter() - started
        self.emit(RunFinished(result.ok, result.seconds, list(self.failed), result.cancelled))
        return result

    def _evaluate(self, node_id: str, step: _Step) -> bool:
        broken = [link.node for link in step.spec.inputs.values() if link.node in self.failed]
        if broken:
            self._fail(node_id, step, f"skipped: upstream node {broken[0]!r} failed", broken[0])
            return False
        self.emit(NodeStarted(node_id, step.node_type.id))
        started = time.perf_counter()
        inputs = {
            name: self._value(link.node, link.output) for name, link in step.spec.inputs.items()
        }
        for name in step.node_type.inputs:
            inputs.setdefault(name, None)
        ctx = self._context(node_id, step)
        try:
            if step.node_type.mode == "map":
                outputs = self._map_streams(node_id, step, inputs, ctx)
            else:
                outputs = self._call(node_id, step, inputs, ctx)
                if step.node_type.mode == "source":
                    outputs = {
                        name: self._metered(node_id, value, ctx)
                        if isinstance(value, Stream)
                        else value
                        for name, value in outputs.items()
                    }
        except RunCancelled:
            raise
        except NodeError as exc:
            self._fail_from(node_id, step, exc)
            return False
        self.values[node_id] = outputs
        if step.node_type.mode == "collect":
            self.ex.cache.put(step.key, step.node_type, outputs, written=ctx.written)
            seconds = time.perf_counter() - started
            self.emit(NodeFinished(node_id, seconds, summary=summarize_outputs(outputs)))
            self._release_inputs(step)
        else:
            self.stream_time[node_id] = time.perf_counter() - started
        return True

    def _value(self, node_id: str, output: str | None) -> Any:
        if node_id not in self.values:
            step = self.steps[node_id]
            cached = self.ex.cache.get(step.key, step.node_type, self.ex.device)
            if cached is None:
                raise RuntimeError(f"internal: node {node_id!r} was neither run nor cached")
            self.values[node_id] = cached
        return self.values[node_id].get(output)

    @functools.cache  # noqa: B019 - one run object lives for one run
    def _graph_json(self) -> str:
        return self.graph.to_json()

    def _context(self, node_id: str, step: _Step) -> NodeContext:
        return NodeContext(
            node_id,
            step.node_type.id,
            self.ex.device,
            self.ex.dtype,
            self.emit,
            self.cancel,
            describe_graph=self._graph_json,
            fail_fast=self.ex.fail_fast,
            cache_key=step.key,
            cache_folder=self.ex.cache.folder,
        )

    def _call(self, node_id: str, step: _Step, inputs: dict[str, Any], ctx: NodeContext) -> dict:
        node_type = step.node_type
        if node_type.mode == "collect":
            inputs = {
                name: self._counted(value, ctx) if isinstance(value, Stream) else value
                for name, value in inputs.items()
            }
        kwargs = {**inputs, **step.params}
        if node_type.wants_ctx:
            kwargs["ctx"] = ctx
        try:
            with compute_mode(self.ex.device, self.ex.dtype, node_type.inference):
                result = node_type.fn(**kwargs)
        except (RunCancelled, NodeError):
            raise
        except Exception as exc:
            raise NodeError(node_id, node_type.id, exc, _describe_inputs(inputs)) from exc
        return _as_outputs(node_id, node_type, result)

    # -- streams -------------------------------------------------------------------------

    def _map_streams(
        self, node_id: str, step: _Step, inputs: dict[str, Any], ctx: NodeContext
    ) -> dict[str, Stream]:
        streamed = {n: v for n, v in inputs.items() if isinstance(v, Stream)}
        whole = {n: v for n, v in inputs.items() if n not in streamed}
        totals = [s.total for s in streamed.values() if s.total is not None]
        total = max(totals) if totals else None
        single = all(s.single for s in streamed.values())

        def produce(output: str) -> Iterator[Batch]:
            for index, batches in enumerate(_zip_batches(node_id, ctx.type_id, streamed)):
                self.cancel.check()
                ctx.batch_index = index
                first = next(iter(batches.values()))
                data = {name: batch.data for name, batch in batches.items()}
                began = time.perf_counter()
                outputs = self._call(node_id, step, {**data, **whole}, ctx)
                self.stream_time[node_id] = self.stream_time.get(node_id, 0.0) + (
                    time.perf_counter() - began
                )
                if not ctx.manual_progress:
                    ctx._emit_progress(index + 1, total, {})
                value = outputs[output]
                names = first.names if len(first.names) == _length(value) else None
                yield Batch(value, names or [f"{index:05d}-{i:03d}" for i in range(_length(value))])

        return {
            name: Stream(lambda name=name: produce(name), total=total, single=single)
            for name in step.node_type.outputs
        }

    def _metered(self, node_id: str, stream: Stream, ctx: NodeContext) -> Stream:
        """A source's stream, with cancellation checks, progress and time accounting."""

        def produce() -> Iterator[Batch]:
            iterator = iter(stream)
            index = 0
            while True:
                self.cancel.check()
                began = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                except (RunCancelled, NodeError):
                    raise
                except Exception as exc:
                    raise NodeError(node_id, ctx.type_id, exc, "") from exc
                finally:
                    self.stream_time[node_id] = self.stream_time.get(node_id, 0.0) + (
                        time.perf_counter() - began
                    )
                index += 1
                if not ctx.manual_progress:
                    ctx._emit_progress(index, stream.total, {})
                yield batch

        return Stream(produce, total=stream.total, single=stream.single)

    def _counted(self, stream: Stream, ctx: NodeContext) -> Stream:
        """A stream handed to a collecting node; pulling it reports the node's progress."""

        def produce() -> Iterator[Batch]:
            for index, batch in enumerate(stream):
                if not ctx.manual_progress:
                    ctx._emit_progress(index + 1, stream.total, {})
                yield batch

        return Stream(produce, total=stream.total, single=stream.single)

    def _drain_if_stream(self, node_id: str, result: RunResult) -> None:
        """A streaming target is run through to the end; its first batch is kept as a preview."""
        step = self.steps[node_id]
        if step.node_type.mode == "collect" or node_id in self.failed or not step.needed:
            return
        streams = [v for v in self.values.get(node_id, {}).values() if isinstance(v, Stream)]
        try:
            for batch in streams[0] if streams else ():
                result.previews.setdefault(node_id, batch)
        except NodeError as exc:
            self._fail_from(node_id, step, exc)
            return
        self._finish_stream(node_id)

    def _release_inputs(self, step: _Step) -> None:
        for link in step.spec.inputs.values():
            if link.node in self.open_streams:
                self.open_streams[link.node] -= 1
                if self.open_streams[link.node] == 0:
                    self._finish_stream(link.node)

    def _finish_stream(self, node_id: str) -> None:
        """Every consumer of this stream is done: report its time and release its inputs."""
        self.open_streams[node_id] = -1
        if node_id not in self.failed:
            self.emit(NodeFinished(node_id, self.stream_time.get(node_id, 0.0)))
        self._release_inputs(self.steps[node_id])

    # -- failures ------------------------------------------------------------------------

    def _fail(self, node_id: str, step: _Step, message: str, upstream: str | None = None) -> None:
        self.failed[node_id] = message
        self.emit(NodeFailed(node_id, step.node_type.id, message, upstream))

    def _fail_from(self, node_id: str, step: _Step, exc: NodeError) -> None:
        """Mark the node that raised (maybe a stream upstream of `node_id`) and `node_id`."""
        if exc.node_id != node_id and exc.node_id not in self.failed:
            self._fail(exc.node_id, self.steps[exc.node_id], str(exc))
        if exc.node_id == node_id:
            self._fail(node_id, step, str(exc))
        else:
            self._fail(node_id, step, f"skipped: upstream node {exc.node_id!r} failed", exc.node_id)
        self._release_inputs(step)


def _zip_batches(
    node_id: str, type_id: str, streams: dict[str, Stream]
) -> Iterator[dict[str, Batch]]:
    """Batches of several streams in lockstep; a one-batch stream is repeated for every step."""
    single = {n: s for n, s in streams.items() if s.single}
    multi = {n: s for n, s in streams.items() if n not in single}
    fixed = {name: next(iter(stream)) for name, stream in single.items()}
    if not multi:
        yield fixed
        return
    iterators = {name: iter(stream) for name, stream in multi.items()}
    while True:
        batches = {}
        for name, iterator in iterators.items():
            batch = next(iterator, None)
            if batch is not None:
                batches[name] = batch
        if not batches:
            return
        if len(batches) != len(iterators):
            short = sorted(set(iterators) - set(batches))
            reason = f"input stream(s) {', '.join(short)} ended before the others"
            raise NodeError(node_id, type_id, ValueError(reason), "")
        yield {**batches, **fixed}


def _length(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 1


def _as_outputs(node_id: str, node_type: NodeType, result: Any) -> dict[str, Any]:
    names = list(node_type.outputs)
    if not names:
        return {}
    if len(names) == 1 and not (isinstance(result, dict) and set(result) == set(names)):
        result = {names[0]: result}
    if not isinstance(result, dict) or set(result) != set(names):
        raise NodeError(
            node_id,
            node_type.id,
            TypeError(f"the node returned {type(result).__name__}, expected outputs {names}"),
            "",
        )
    if node_type.mode != "map":
        for name in names:
            if node_type.outputs[name].type.streamed and isinstance(result[name], torch.Tensor):
                result[name] = Stream.of(result[name])
    return result


def _describe_inputs(inputs: dict[str, Any]) -> str:
    return ", ".join(f"{name}: {describe(value)}" for name, value in inputs.items())
