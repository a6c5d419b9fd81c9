"""One pass over streams: sources and per-item nodes stepped together, batch by batch.

A pass holds the stream nodes that one or more collecting nodes read. Step i pulls batch i
from every source (and from every stream that comes whole from outside the pass: a
contact sheet, a cached stream), then runs each per-item node once on its inputs' batch i,
in plan order. Whatever reads the results (channels to collecting nodes, a replay for a
second pass over a dataset) gets the same batch objects: nothing is computed twice.

A one-batch (`single`) stream is computed at step 0 and repeated to the per-item nodes that
zip it with a longer stream. The loop is flat: a 3,000-node chain is a 3,000-entry list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from nodeflow.engine.context import NodeContext, RunCancelled
from nodeflow.engine.errors import NodeError, OutputError
from nodeflow.engine.plan import Step
from nodeflow.images import as_float
from nodeflow.types import PIXEL_TYPES, Batch, Stream

if TYPE_CHECKING:
    from nodeflow.engine.scheduler import LocalRun

Port = tuple[str, str]
"""(node id, output name): one stream."""

END = object()
"""The stream has no more batches."""


@dataclass
class _Node:
    """A stream node's state during one pass."""

    step: Step
    ctx: NodeContext
    streams: dict[str, Iterator[Batch]] = field(default_factory=dict)
    seconds: float = 0.0
    batches: int = 0
    persisted: int = 0
    single: bool = False
    total: int | None = None
    failed: bool = False
    ended: bool = False


class PassSteps:
    """Steps one pass; iterate it for {port: batch} of each step (END once a stream ends).

    `live` passes report progress and timings, keep previews and write expensive batches
    to the cache; replays (a second pass over a dataset) only compute.
    """

    def __init__(
        self,
        run: LocalRun,
        nodes: list[str],
        live: bool,
        on_fail: Callable[[str], None] = lambda _node: None,
    ):
        self.run = run
        self.live = live
        self.on_fail = on_fail
        self.order = [run.plan.steps[n] for n in nodes]
        self.inside = set(nodes)
        self.nodes: dict[str, _Node] = {}
        self.held: dict[Port, Batch] = {}
        self.outside: dict[Port, Iterator[Batch]] = {}
        self.outside_single: dict[Port, bool] = {}
        self.outside_total: dict[Port, int | None] = {}

    # -- set-up --------------------------------------------------------------------------------

    def _start(self) -> None:
        """Contexts for the nodes, and iterators over the streams that come from outside."""
        for step in self.order:
            self.nodes[step.id] = _Node(step, self.run.context(step))
            for link in step.inputs.values():
                port = (link.node, link.output)
                if link.node in self.inside or port in self.outside:
                    continue
                value = self.run.value(link.node, link.output)
                if isinstance(value, Stream):
                    self.outside[port] = iter(value)
                    self.outside_single[port] = value.single
                    self.outside_total[port] = value.total

    def __iter__(self) -> Iterator[dict[Port, Any]]:
        self._start()
        index = 0
        while True:
            self.run.stop.check()
            produced = self._step(index)
            if not produced:
                return
            yield produced
            index += 1
            if all(node.ended or node.failed for node in self.nodes.values()):
                return

    def _step(self, index: int) -> dict[Port, Any]:
        current: dict[Port, Any] = {}
        for port, iterator in self.outside.items():
            if port in self.held:
                continue
            batch = next(iterator, END)
            current[port] = batch
            if self.outside_single[port] and batch is not END:
                self.held[port] = batch
        produced: dict[Port, Any] = {}
        stop = self.run.stop
        for step in self.order:
            node = self.nodes[step.id]
            if node.failed or node.ended:
                continue
            stop.check()
            outputs = self._advance(node, index, current)
            if outputs is None:
                continue
            for name, batch in outputs.items():
                port = (step.id, name)
                current[port] = batch
                produced[port] = batch
                if node.single and batch is not END:
                    self.held[port] = batch
        return produced

    # -- one node, one step ----------------------------------------------------------------------

    def _advance(self, node: _Node, index: int, current: dict[Port, Any]) -> dict[str, Any] | None:
        """This node's batch `index`, END for each output when it is done, None if it failed."""
        step = node.step
        try:
            if step.mode == "source":
                outputs = self._pull_source(node, index)
            else:
                outputs = self._map(node, index, current)
        except RunCancelled:
            raise
        except UpstreamBroken as broken:
            node.failed = True
            self.run.node_skipped(step, broken.node_id)
            self.on_fail(step.id)
            return None
        except NodeError as exc:
            node.failed = True
            self.run.node_failed(step, exc)
            self.on_fail(step.id)
            return None
        if outputs is None:
            node.ended = True
            return dict.fromkeys(step.node_type.outputs, END)
        if self.live:
            node.batches += 1
            self.run.batch_done(node, index, outputs)
        return outputs

    def _pull_source(self, node: _Node, index: int) -> dict[str, Batch] | None:
        step = node.step
        began = time.perf_counter()
        if index == 0:
            whole = {
                name: self.run.value(link.node, link.output) for name, link in step.inputs.items()
            }
            result = self.run.call(step, whole, node.ctx)
            for name, value in result.items():
                stream = value if isinstance(value, Stream) else Stream.of(value)
                node.streams[name] = iter(stream)
                node.single = node.single or stream.single
                node.total = stream.total
        if node.single and index > 0:
            return None
        outputs = {}
        for name, iterator in node.streams.items():
            try:
                batch = next(iterator, None)
            except (RunCancelled, NodeError):
                raise
            except Exception as exc:
                raise NodeError(step.id, step.node_type.id, exc) from exc
            if batch is None:
                node.seconds += time.perf_counter() - began
                return None
            outputs[name] = _checked_batch(step, name, batch)
        node.seconds += time.perf_counter() - began
        return outputs

    def _map(self, node: _Node, index: int, current: dict[Port, Any]) -> dict[str, Batch] | None:
        step = node.step
        batches: dict[str, Batch] = {}
        whole: dict[str, Any] = {}
        singles, ended, going = [], [], []
        for name, link in step.inputs.items():
            port = (link.node, link.output)
            if port in self.held:
                batches[name] = self.held[port]
                singles.append(name)
            elif port in current:
                batch = current[port]
                (ended if batch is END else going).append(name)
                if batch is not END:
                    batches[name] = batch
            elif link.node in self.inside:
                raise UpstreamBroken(link.node if self.nodes[link.node].failed else "?")
            else:
                whole[name] = self.run.value(link.node, link.output)
        if not going and not ended:  # only one-batch streams: computed once
            if index > 0:
                return None
            node.single = True
        elif not going:
            return None
        elif ended:
            raise NodeError(
                step.id,
                step.node_type.id,
                ValueError(f"input stream(s) {', '.join(sorted(ended))} ended before the others"),
            )
        first = batches[going[0] if going else singles[0]]
        inputs = {**{name: batch.data for name, batch in batches.items()}, **whole}
        node.ctx.batch_index = index
        began = time.perf_counter()
        result = self.run.call(step, inputs, node.ctx)
        node.seconds += time.perf_counter() - began
        if node.total is None:
            totals = [self._total(step.inputs[name]) for name in going]
            node.total = max((t for t in totals if t is not None), default=None)
        outputs = {}
        for name, value in result.items():
            size = _length(value)
            names = first.names if len(first.names) == size else None
            outputs[name] = _checked_batch(
                step, name, Batch(value, names or [f"{index:05d}-{i:03d}" for i in range(size)])
            )
        return outputs

    def _total(self, link: Any) -> int | None:
        port = (link.node, link.output)
        if port in self.outside_total:
            return self.outside_total[port]
        node = self.nodes.get(link.node)
        return node.total if node else None


class UpstreamBroken(Exception):
    """A node inside the pass that this one reads has failed."""

    def __init__(self, node_id: str):
        self.node_id = node_id
        super().__init__(node_id)


def _length(value: Any) -> int:
    if isinstance(value, torch.Tensor):  # shape[0]: a tenth of len()'s cost on a tensor
        return value.shape[0] if value.dim() else 1
    try:
        return len(value)
    except TypeError:
        return 1


def _checked_batch(step: Step, output: str, batch: Batch) -> Batch:
    """Refuse an image batch without its batch dimension at the node that made it."""
    socket = step.node_type.outputs[output].type
    data = batch.data
    if socket.name in PIXEL_TYPES and isinstance(data, torch.Tensor) and data.dim() != 4:
        raise NodeError(
            step.id,
            step.node_type.id,
            OutputError(
                f"output {output!r} must be a B x C x H x W batch, got a tensor of shape "
                f"{tuple(data.shape)}; add the batch dimension (image[None]) for one image"
            ),
        )
    return batch


def float_pixels(step: Step, name: str, value: Any) -> Any:
    """An input's value as the node wants it: 8-bit pixels become float unless it takes them."""
    if name in step.float_inputs and isinstance(value, torch.Tensor):
        return as_float(value)
    return value
