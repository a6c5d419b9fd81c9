"""The local scheduler: run a plan's nodes, each batch once, with no recursion.

The loop is small: find the collecting nodes whose whole-value inputs are all there, group
those that read the same streams, start one pass per group (`passes.PassSteps` in a thread)
with a bounded channel to each reader, run the readers (in threads when more than one
thing runs), and when one finishes, look again. Independent branches run at the same time;
every node's result depends only on its inputs, params and batch index, so a run gives
what a sequential one gives. Training nodes run one at a time: they seed and draw from
the process's random generator.

What comes back from the cache is never run: a whole value read from disk, a stream
whose every batch is on disk, a writing node whose files are all still there. A damaged
entry is a miss: the node is planned in then and there.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nodeflow.engine.cache import Cache
from nodeflow.engine.channels import Channel, Reader, UpstreamFailed
from nodeflow.engine.context import CancelToken, NodeContext, RunCancelled
from nodeflow.engine.device import compute_mode
from nodeflow.engine.errors import NodeError, OutputError
from nodeflow.engine.events import (
    Event,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    RunWarning,
)
from nodeflow.engine.passes import END, PassSteps, Port, float_pixels
from nodeflow.engine.plan import Plan, Step
from nodeflow.engine.values import describe, summarize_outputs
from nodeflow.images import as_float
from nodeflow.types import BUILTIN_TYPES, PIXEL_TYPES, Batch, Stream

if TYPE_CHECKING:
    from nodeflow.engine.passes import _Node

_BUILTIN_TYPE_NAMES = {t.name for t in BUILTIN_TYPES}
_MISSING = object()


def _in_mode(dtype: torch.dtype) -> bool:
    """Whether this thread already runs as an inference node with `dtype` wants."""
    return torch.is_inference_mode_enabled() and (
        dtype == torch.float32 or torch.is_autocast_enabled()
    )


def _nothing() -> None:
    pass


def _nothing_failed(_node_id: str) -> None:
    pass


@dataclass
class RunSettings:
    """What a run is run with: device, precision, cache, failure policy."""

    device: torch.device
    dtype: torch.dtype
    precision: str
    cache: Cache
    fail_fast: bool = False
    describe_graph: Callable[[], str] = str
    output_root: Path | None = None


@dataclass
class _Reader:
    """A collecting node (or a stream target drained to its end) waiting to run."""

    step: Step
    streams: set[str] = field(default_factory=set)
    requires: set[str] = field(default_factory=set)


class LocalRun:
    """One run of one plan on this machine."""

    def __init__(
        self, plan: Plan, settings: RunSettings, emit: Callable[[Event], None], cancel: CancelToken
    ):
        self.plan = plan
        self.settings = settings
        self.cache = settings.cache
        self._emit_lock = threading.Lock()
        self._emit = emit
        self.stop = CancelToken(parent=cancel)
        self.values: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}
        self.previews: dict[str, Batch] = {}
        self.needed: set[str] = set()
        self.cached: set[str] = set()
        self.started: set[str] = set()
        self.stream_seconds: dict[str, float] = {}
        self.stream_totals: dict[str, int | None] = {}
        self.pending: dict[str, _Reader] = {}
        self.finished_streams: set[str] = set()
        self.stored_callbacks: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        self._done: queue.Queue[Callable[[], None]] = queue.Queue()
        self._running = 0
        self._training = threading.Lock()

    # -- events ----------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        with self._emit_lock:
            self._emit(event)

    def _warnings(self) -> None:
        for message in self.cache.take_warnings():
            self.emit(RunWarning(message))

    # -- what must run -----------------------------------------------------------------------

    def demand(self, targets: list[str]) -> None:
        """Plan in `targets` and whatever they need that the cache does not hold."""
        stack = list(reversed(targets))
        while stack:
            node_id = stack.pop()
            if node_id in self.needed:
                continue
            step = self.plan.steps[node_id]
            if node_id not in self.values and self._cached(step):
                self.cached.add(node_id)
                continue
            self.cached.discard(node_id)
            self.needed.add(node_id)
            if not step.streams or node_id in self.plan.targets:
                self.pending[node_id] = _Reader(step)
            stack.extend(reversed(self.plan.producers(node_id)))
        for reader in self.pending.values():
            reader.streams, reader.requires = self._closure(reader.step)

    def _cached(self, step: Step) -> bool:
        cache = self.cache
        if step.sink:
            return cache.has_sink(step.key)
        if step.streams:
            return step.mode == "map" and cache.has_stream(step.key)
        return cache.has(step.key, step.node_type) and cache.has_sink_or_none(step.key)

    def _closure(self, step: Step) -> tuple[set[str], set[str]]:
        """The stream nodes a reader's pass must run, and the whole values it waits for."""
        streams: set[str] = set()
        requires: set[str] = set()
        stack = [step.id] if step.streams else self.plan.producers(step.id)
        while stack:
            node_id = stack.pop()
            inner = self.plan.steps[node_id]
            if inner.streams and node_id in self.needed:
                if node_id not in streams:
                    streams.add(node_id)
                    stack.extend(self.plan.producers(node_id))
            else:
                requires.add(node_id)
        return streams, requires

    # -- values ------------------------------------------------------------------------------------

    def value(self, node_id: str, output: str) -> Any:
        """A whole value, a cached stream, or (for a stream node) a replay of its stream."""
        with self._lock:
            if node_id not in self.values:
                step = self.plan.steps[node_id]
                if step.streams and node_id in self.needed:
                    self.values[node_id] = {
                        name: self.replay(node_id, name) for name in step.node_type.outputs
                    }
                else:
                    self.values[node_id] = self._from_cache(step)
            return self.values[node_id].get(output)

    def _from_cache(self, step: Step) -> dict[str, Any]:
        device = self.settings.device
        if step.streams:
            streams = {
                name: self.cache.stream(step.key, name, device) for name in step.node_type.outputs
            }
            if all(s is not None for s in streams.values()):
                return streams
        else:
            outputs = self.cache.get(step.key, step.node_type, device)
            if outputs is not None:
                return outputs
        raise _CacheMiss(step.id)

    def _fetch(self, node_id: str) -> bool:
        """Make a cached node's value available; False when its entry turned out damaged."""
        try:
            self.value(node_id, next(iter(self.plan.steps[node_id].node_type.outputs), ""))
        except _CacheMiss:
            self.demand([node_id])
            return False
        return True

    def _fetch_targets(self) -> bool:
        """Read the targets the cache satisfied, for the run's result; True when one of them
        turned out damaged and is now planned in."""
        missed = False
        for node_id in self.plan.targets:
            outputs = self.plan.steps[node_id].node_type.outputs
            if outputs and node_id not in self.values and node_id not in self.failed:
                missed |= not self._fetch(node_id)
        return missed

    def replay(self, node_id: str, output: str) -> Stream:
        """A stream node's output as a re-iterable stream: each pass over it recomputes it."""
        port = (node_id, output)
        socket = self.plan.steps[node_id].node_type.outputs[output].type
        pixels = socket.name in PIXEL_TYPES

        def produce() -> Iterator[Batch]:
            streams, _ = self._closure(self.plan.steps[node_id])
            nodes = [n for n in self.plan.steps if n in streams]
            steps = self.pass_steps(nodes, live=False)
            for produced in steps:
                batch = produced.get(port)
                if batch is END:
                    return
                if batch is not None:
                    yield Batch(as_float(batch.data), batch.names) if pixels else batch
            if steps.nodes[node_id].failed:
                raise UpstreamFailed(node_id)

        return Stream(produce, total=self.stream_totals.get(node_id), single=False)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        for node_id in self.plan.steps:
            if node_id not in self.needed:
                self.emit(NodeFinished(node_id, 0.0, cached=True))
        try:
            while True:
                self._start_ready()
                if self._running == 0 and (self.stop.cancelled or not self._fetch_targets()):
                    break
                with contextlib.suppress(queue.Empty):
                    self._done.get(timeout=0.1)()
                    while True:
                        self._done.get_nowait()()
        except BaseException:
            self.stop.cancel()
            raise
        finally:
            while self._running:
                self._done.get()()
            self._warnings()
        if self.pending and not self.stop.cancelled:
            for reader in self.pending.values():
                error = RuntimeError("internal: the scheduler found no way to run this node")
                self.node_failed(
                    reader.step, NodeError(reader.step.id, reader.step.node_type.id, error)
                )

    def _start_ready(self) -> None:
        ready: list[_Reader] = []
        for node_id in list(self.pending):
            reader = self.pending[node_id]
            state = self._readiness(reader)
            if state is None:
                ready.append(reader)
                del self.pending[node_id]
            elif state is not _MISSING:
                del self.pending[node_id]
                self.node_skipped(reader.step, state)
        if self.stop.cancelled:
            for reader in ready:
                self.pending[reader.step.id] = reader
            if self._running == 0:
                self.pending.clear()
            return
        groups = _groups(ready)
        if (
            len(groups) == 1
            and self._running == 0
            and len(groups[0]) == 1
            and not groups[0][0].streams
        ):
            self._running += 1  # the only thing to do: run it here, no thread needed
            self._run_reader(groups[0][0], {})
            return
        for group in groups:
            self._start_group(group)

    def _readiness(self, reader: _Reader) -> Any:
        """None when ready, _MISSING while waiting, else the failed node it depends on."""
        for node_id in reader.requires:
            if node_id in self.failed:
                return node_id
        for node_id in reader.streams:
            if node_id in self.failed:
                return node_id
        waiting = False
        for node_id in reader.requires:
            if node_id in self.values:
                continue
            if node_id in self.needed:
                waiting = True
            elif not self._fetch(node_id):
                return _MISSING
        return _MISSING if waiting else None

    def _start_group(self, group: list[_Reader]) -> None:
        streams = set().union(*(reader.streams for reader in group))
        nodes = [n for n in self.plan.steps if n in streams]
        channels: dict[Port, list[Channel]] = {}
        inputs: dict[str, dict[str, Channel]] = {}
        for reader in group:
            if reader.step.streams:
                continue
            pipe = Reader(self.stop)
            inputs[reader.step.id] = {}
            for name, link in reader.step.inputs.items():
                if link.node in streams:
                    channel = pipe.channel()
                    channels.setdefault((link.node, link.output), []).append(channel)
                    inputs[reader.step.id][name] = channel
        drains = {reader.step.id for reader in group if reader.step.streams}
        if nodes:
            self._spawn(lambda: self._run_pass(nodes, channels, drains))
        for reader in group:
            if not reader.step.streams:
                self._spawn(lambda reader=reader: self._run_reader(reader, inputs[reader.step.id]))

    def _spawn(self, work: Callable[[], None]) -> None:
        self._running += 1
        threading.Thread(target=work, daemon=True).start()

    def _finished(self, then: Callable[[], None] = _nothing) -> None:
        """Called in a worker thread when its work is over; the loop does `then`."""

        def finish() -> None:
            self._running -= 1
            then()

        self._done.put(finish)

    # -- a pass --------------------------------------------------------------------------------

    def pass_steps(
        self, nodes: list[str], live: bool, on_fail: Callable[[str], None] = _nothing_failed
    ) -> PassSteps:
        """What steps a pass over `nodes` (the Ray engine steps it on a cluster)."""
        return PassSteps(self, nodes, live=live, on_fail=on_fail)

    def _run_pass(
        self, nodes: list[str], channels: dict[Port, list[Channel]], drains: set[str]
    ) -> None:
        failures: set[str] = set()

        def on_fail(node_id: str) -> None:
            failures.add(node_id)
            for port, port_channels in channels.items():
                if port[0] == node_id:
                    for channel in port_channels:
                        channel.close(UpstreamFailed(node_id))

        steps = self.pass_steps(nodes, live=True, on_fail=on_fail)
        settings = self.settings
        inference = all(self.plan.steps[n].node_type.inference for n in nodes)
        mode = compute_mode(settings.device, settings.dtype, inference)
        mode.__enter__()
        try:
            for node_id in nodes:
                self.emit(NodeStarted(node_id, self.plan.steps[node_id].node_type.id))
            for produced in steps:
                for port, batch in produced.items():
                    for channel in channels.get(port, ()):
                        channel.total = steps.nodes[port[0]].total
                        if batch is END:
                            channel.close()
                        else:
                            channel.put(batch)
                open_channels = any(not c.detached for cs in channels.values() for c in cs)
                if not open_channels and all(
                    steps.nodes[n].ended or steps.nodes[n].failed for n in drains
                ):
                    break
        except RunCancelled:
            pass
        except BaseException as exc:  # a bug in the engine: fail every node of the pass
            for node_id in nodes:
                if node_id not in self.failed:
                    self.node_failed(self.plan.steps[node_id], NodeError(node_id, "engine", exc))
        finally:
            mode.__exit__(None, None, None)
            for port_channels in channels.values():
                for channel in port_channels:
                    channel.close(
                        RunCancelled("the run was cancelled") if self.stop.cancelled else None
                    )
            self._finished(lambda: self._pass_over(steps, failures))

    def _pass_over(self, steps: PassSteps, failures: set[str]) -> None:
        for node_id, node in steps.nodes.items():
            node.ctx.release()
            if node.failed or node_id in self.failed:
                continue
            if self.stop.cancelled and not node.ended:
                continue
            self.stream_seconds[node_id] = self.stream_seconds.get(node_id, 0.0) + node.seconds
            if node.step.mode == "map" and node.batches and node.persisted == node.batches:
                singles = {name: node.single for name in node.step.node_type.outputs}
                self.cache.complete_stream(node.step.key, node.batches, singles)
            if node_id not in self.finished_streams:
                self.finished_streams.add(node_id)
                self.emit(NodeFinished(node_id, node.seconds))
        self._warnings()

    def batch_done(self, node: _Node, index: int, outputs: dict[str, Batch]) -> None:
        """A live pass computed batch `index` of a node: preview, progress, maybe persist."""
        step = node.step
        if index == 0:
            first = next(iter(outputs.values()))
            data = as_float(first.data) if isinstance(first.data, torch.Tensor) else first.data
            self.previews[step.id] = Batch(data, first.names)
            self.stream_totals[step.id] = node.total
        if not node.ctx.manual_progress:
            node.ctx._emit_progress(index + 1, node.total, {})
        if step.mode == "map" and node.persisted == index and self.cache.enabled:
            seconds = node.seconds / max(node.batches, 1)
            if seconds >= self.cache.min_seconds and self.cache.put_batch(
                step.key, index, step.node_type, outputs
            ):
                node.persisted += 1

    # -- a collecting node -------------------------------------------------------------------------

    def _run_reader(self, reader: _Reader, channels: dict[str, Channel]) -> None:
        step = reader.step
        ctx = self.context(step)
        outcome: Callable[[], None] = _nothing
        try:
            self.emit(NodeStarted(step.id, step.node_type.id))
            inputs: dict[str, Any] = {}
            for name, link in step.inputs.items():
                if name in channels:
                    replay = self.replay(link.node, link.output)
                    inputs[name] = _ChannelStream(channels[name], replay, step, name, ctx)
                else:
                    inputs[name] = _readable(self.value(link.node, link.output), step, name, ctx)
            began = time.perf_counter()
            guard = self._training if not step.node_type.inference else contextlib.nullcontext()
            with guard:
                outputs = self.call(step, inputs, ctx)
            seconds = time.perf_counter() - began
            outcome = functools.partial(self._reader_done, step, ctx, outputs, seconds)
        except RunCancelled:
            pass
        except UpstreamFailed as exc:
            outcome = functools.partial(self.node_skipped, step, exc.node_id)
        except BaseException as exc:
            error = (
                exc if isinstance(exc, NodeError) else NodeError(step.id, step.node_type.id, exc)
            )
            outcome = functools.partial(self.node_failed, step, error)
            if self.settings.fail_fast:
                self.stop.cancel()
        finally:
            for channel in channels.values():
                channel.detach()
            ctx.release()
            self._finished(outcome)

    def _reader_done(
        self, step: Step, ctx: NodeContext, outputs: dict[str, Any], seconds: float
    ) -> None:
        self.values[step.id] = outputs
        stored = False
        if step.sink or ctx.written:
            self.cache.put_sink(step.key, ctx.written)
        if outputs:
            stored = self.cache.put(step.key, step.node_type, outputs, seconds)
        if stored:
            for callback in ctx.stored_callbacks:
                callback()
        elif not self.cache.enabled:  # nothing to keep it in: the run hands it on
            self.stored_callbacks.extend(ctx.stored_callbacks)
        self.emit(NodeFinished(step.id, seconds, summary=summarize_outputs(outputs)))
        self._warnings()

    # -- calling a node ------------------------------------------------------------------------

    def context(self, step: Step) -> NodeContext:
        settings = self.settings
        return NodeContext(
            step.id,
            step.node_type.id,
            settings.device,
            settings.dtype,
            self.emit,
            self.stop,
            describe_graph=settings.describe_graph,
            fail_fast=settings.fail_fast,
            cache_key=step.key,
            cache_folder=self.cache.folder,
            output_root=settings.output_root,
        )

    def call(self, step: Step, inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        """Call the node's function; its result as a dict of outputs, checked."""
        node_type = step.node_type
        kwargs = dict.fromkeys(node_type.inputs)  # None for an optional input left unlinked
        for name, value in inputs.items():
            kwargs[name] = float_pixels(step, name, value)
        kwargs.update(step.params)
        if node_type.wants_ctx:
            kwargs["ctx"] = ctx
        try:
            if node_type.inference and _in_mode(self.settings.dtype):
                result = node_type.fn(**kwargs)  # the pass already set inference mode
            else:
                with compute_mode(self.settings.device, self.settings.dtype, node_type.inference):
                    result = node_type.fn(**kwargs)
            return _as_outputs(step, result)
        except (RunCancelled, NodeError, UpstreamFailed):
            raise
        except Exception as exc:
            raise NodeError(step.id, node_type.id, exc, _describe_inputs(inputs)) from exc

    # -- failures ---------------------------------------------------------------------------------

    def node_failed(self, step: Step, exc: NodeError) -> None:
        with self._lock:
            if step.id in self.failed:
                return
            self.failed[step.id] = str(exc)
        self.emit(NodeFailed(step.id, step.node_type.id, str(exc), traceback=exc.traceback or None))
        if self.settings.fail_fast:
            self.stop.cancel()

    def node_skipped(self, step: Step, upstream: str) -> None:
        with self._lock:
            if step.id in self.failed:
                return
            self.failed[step.id] = f"skipped: upstream node {upstream!r} failed"
        self.emit(NodeFailed(step.id, step.node_type.id, self.failed[step.id], upstream))


class _CacheMiss(Exception):
    """A node planned as cached has no usable entry after all."""


class _ChannelStream(Stream):
    """A stream handed to a collecting node: the pass's batches through its channel the first
    time it is read, a recomputing replay after that (a second epoch)."""

    def __init__(self, channel: Channel, replay: Stream, step: Step, name: str, ctx: NodeContext):
        self._channel = channel
        self._replay = replay
        self._step = step
        self._name = name
        self._ctx = ctx
        self._used = False
        self.single = False

    @property
    def total(self) -> int | None:  # type: ignore[override]
        """Known once the pass has read its sources' file lists."""
        return self._channel.total

    def __iter__(self) -> Iterator[Batch]:
        if self._used:
            return _converted(iter(self._replay), self._step, self._name)
        self._used = True
        return _counted(self._first(), self._step, self._name, self._ctx, lambda: self.total)

    def _first(self) -> Iterator[Batch]:
        try:
            while True:
                batch = self._channel.get()
                if batch is None:
                    return
                yield batch
        finally:
            self._channel.detach()


def _readable(value: Any, step: Step, name: str, ctx: NodeContext) -> Any:
    """A whole stream from outside a pass, with pixels converted and progress counted."""
    if not isinstance(value, Stream):
        return value

    def produce() -> Iterator[Batch]:
        return _counted(iter(value), step, name, ctx, lambda: value.total)

    return Stream(produce, total=value.total, single=value.single)


def _converted(batches: Iterator[Batch], step: Step, name: str) -> Iterator[Batch]:
    for batch in batches:
        yield Batch(float_pixels(step, name, batch.data), batch.names)


def _counted(
    batches: Iterator[Batch],
    step: Step,
    name: str,
    ctx: NodeContext,
    total: Callable[[], int | None],
) -> Iterator[Batch]:
    for index, batch in enumerate(_converted(batches, step, name)):
        if not ctx.manual_progress:
            ctx._emit_progress(index + 1, total(), {})
        yield batch


def _groups(readers: list[_Reader]) -> list[list[_Reader]]:
    """Readers that share a stream node go in one pass (union-find over stream nodes)."""
    parent = list(range(len(readers)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, reader in enumerate(readers):
        for node_id in reader.streams:
            if node_id in owner:
                parent[root(i)] = root(owner[node_id])
            else:
                owner[node_id] = i
    groups: dict[int, list[_Reader]] = {}
    for i, reader in enumerate(readers):
        groups.setdefault(root(i), []).append(reader)
    return list(groups.values())


def _as_outputs(step: Step, result: Any) -> dict[str, Any]:
    """The node's return value as {output: value}; wrong or misspelt keys are named."""
    node_type = step.node_type
    names = list(node_type.outputs)
    if not names:
        return {}
    if len(names) == 1 and node_type.mode == "map" and not isinstance(result, dict):
        return {names[0]: result}  # the common case, decided as the checks below would
    as_mapping = isinstance(result, dict) and (
        len(names) > 1
        or set(result) == set(names)
        or node_type.outputs[names[0]].type.name in _BUILTIN_TYPE_NAMES
    )
    if not as_mapping:
        if len(names) > 1:
            raise OutputError(
                f"the node returned {type(result).__name__}; return a dict with the outputs {names}"
            )
        result = {names[0]: result}
    missing = [n for n in names if n not in result]
    unknown = [k for k in result if k not in node_type.outputs]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing output(s) {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"unknown key(s) {', '.join(map(repr, unknown))}")
        raise OutputError(f"the node returned {'; '.join(parts)}; its outputs are {names}")
    if node_type.mode != "map":
        for name in names:
            value = result[name]
            if node_type.outputs[name].type.streamed and isinstance(value, torch.Tensor):
                if node_type.outputs[name].type.name in PIXEL_TYPES and value.dim() != 4:
                    raise OutputError(
                        f"output {name!r} must be a B x C x H x W batch, got a tensor of shape "
                        f"{tuple(value.shape)}; add the batch dimension (image[None]) for one image"
                    )
                result[name] = Stream.of(value)
    return result


def _describe_inputs(inputs: dict[str, Any]) -> str:
    return ", ".join(f"{name}: {describe(value)}" for name, value in inputs.items())
