"""What a Ray worker runs: one fused stage of a pass, for one batch at a time.

A stage is plain data (`StageSpec`): the folder source's params and the per-item nodes of a
pass, as node type ids, params and links. A worker builds the registry once per process,
rebuilds the models the stage reads (a `load_model` runs in each actor, once), and for each
row (a batch index and its files) decodes the files and runs the nodes with the local
engine's own pass code (`PassSteps`), so every node is called exactly as on one machine.
What comes back is pickled: the batches that leave the stage, item errors, failures and
timings.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken
from nodeflow.engine.device import compute_mode
from nodeflow.engine.errors import NodeError
from nodeflow.engine.events import Event, ItemError, RunWarning
from nodeflow.engine.passes import END, PassSteps
from nodeflow.engine.plan import Plan, Step
from nodeflow.engine.scheduler import LocalRun, RunSettings
from nodeflow.graph import Link
from nodeflow.types import Batch, Stream

if TYPE_CHECKING:
    from nodeflow.files.decode import DecodeOptions
    from nodeflow.nodes.io import FileFrames

Port = tuple[str, str]


@dataclass(frozen=True)
class StepSpec:
    """A plan step as plain data: what a worker needs to rebuild it from its own registry."""

    id: str
    type_id: str
    params: dict[str, Any]
    inputs: dict[str, tuple[str, str]]
    key: str

    @classmethod
    def of(cls, step: Step) -> StepSpec:
        inputs = {name: (link.node, link.output) for name, link in step.inputs.items()}
        return cls(step.id, step.node_type.id, dict(step.params), inputs, step.key)


@dataclass(frozen=True)
class StageSpec:
    """One fused stage: decode a source's files, then run per-item nodes, batch by batch."""

    source: StepSpec
    nodes: list[StepSpec]
    rebuilt: list[StepSpec]
    """Whole-value producers (model loaders) each worker runs once for itself."""
    shipped: dict[str, Any]
    """Whole values made on the driver, by producer id (a Ray object ref or the value)."""
    returned: set[Port]
    """The ports whose batches leave the stage; batch 0 returns every port (previews)."""
    device: str
    precision: str
    fail_fast: bool


@dataclass
class RowResult:
    """What one batch index gave: the batches, the worker's events, failures, timings."""

    index: int
    ports: dict[Port, Batch] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    failed: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """node -> ("failed", message, traceback) or ("skipped", upstream, "")."""
    seconds: dict[str, float] = field(default_factory=dict)
    empty: bool = False


class _WorkerRun(LocalRun):
    """A local run inside a worker: failures are recorded for the driver, not emitted."""

    def __init__(self, plan: Plan, settings: RunSettings, events: list[Event]):
        super().__init__(plan, settings, events.append, CancelToken())
        self.failures: dict[str, tuple[str, str, str]] = {}

    def node_failed(self, step: Step, exc: NodeError) -> None:
        self.failures.setdefault(step.id, ("failed", str(exc), exc.traceback or ""))
        self.failed[step.id] = str(exc)

    def node_skipped(self, step: Step, upstream: str) -> None:
        self.failures.setdefault(step.id, ("skipped", upstream, ""))
        self.failed[step.id] = f"skipped: upstream node {upstream!r} failed"


class StageRunner:
    """Runs rows of one stage; built once per worker process (or actor)."""

    def __init__(self, spec: StageSpec):
        from nodeflow.engine.device import resolve_precision
        from nodeflow.nodes.io import decode_options
        from nodeflow.plugins import load_registry

        registry = load_registry()
        self.spec = spec
        self.events: list[Event] = []
        specs = [spec.source, *spec.rebuilt, *spec.nodes]
        steps = {s.id: _step(s, registry) for s in specs}
        plan = Plan(steps, [])
        device = torch.device(spec.device)
        dtype = resolve_precision(spec.precision)
        settings = RunSettings(
            device, dtype, spec.precision, Cache(enabled=False), fail_fast=spec.fail_fast
        )
        self.run = _WorkerRun(plan, settings, self.events)
        self.whole: dict[str, dict[str, Any]] = {}
        for node_id, value in spec.shipped.items():
            self.whole[node_id] = _resolved(value)
        for producer in spec.rebuilt:
            step = steps[producer.id]
            self.whole[producer.id] = self.run.call(step, {}, self.run.context(step))
        self.source = steps[spec.source.id]
        self.options = decode_options(spec.source.params)
        self.rescale = bool(spec.source.params.get("rescale"))
        self.nodes = [steps[s.id] for s in spec.nodes]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [
            pickle.dumps(self.row(int(index), pickle.loads(parts)))
            for index, parts in zip(batch["index"], batch["parts"], strict=True)
        ]
        return {"result": np.array(results, dtype=object)}

    def row(self, index: int, parts: list[FileFrames]) -> RowResult:
        """Decode batch `index` from its planned file parts, then run the stage's nodes on it."""
        from nodeflow.nodes.io import read_planned

        self.events.clear()
        run = self.run
        run.values = dict(self.whole)
        run.failed.clear()
        run.failures = {}
        result = RowResult(index)
        ctx = run.context(self.source)
        ctx.batch_index = index
        began = time.perf_counter()
        try:
            decoded = read_planned(parts, self.options, self.rescale, ctx)
        except Exception as exc:
            error = NodeError(self.source.id, self.source.node_type.id, exc)
            run.node_failed(self.source, error)
            decoded = None
        result.seconds[self.source.id] = time.perf_counter() - began
        if decoded is None and not run.failures:
            result.empty = True
            result.events = _kept(self.events)
            return result
        if decoded is not None:
            name = next(iter(self.source.node_type.outputs))
            run.values[self.source.id] = {name: _one_batch(decoded)}
            result.ports[(self.source.id, name)] = decoded
        nodes = self._runnable(run)
        inference = all(step.node_type.inference for step in nodes)
        with compute_mode(run.settings.device, run.settings.dtype, inference):
            steps = PassSteps(run, [step.id for step in nodes], live=False)
            steps._start()
            produced = steps._step(index)
        for port, batch in produced.items():
            if batch is not END:
                result.ports[port] = batch
        for node_id, node in steps.nodes.items():
            result.seconds[node_id] = node.seconds
        keep = None if index == 0 else self.spec.returned
        result.ports = {
            port: _on_cpu(batch)
            for port, batch in result.ports.items()
            if keep is None or port in keep
        }
        result.failed = dict(run.failures)
        result.events = _kept(self.events)
        return result

    def _runnable(self, run: _WorkerRun) -> list[Step]:
        """The stage's nodes whose inputs did not fail (those that did are skipped)."""
        broken = set(run.failures)
        nodes = []
        for step in self.nodes:
            upstream = next(
                (link.node for link in step.inputs.values() if link.node in broken), None
            )
            if upstream is not None:
                run.node_skipped(step, upstream)
                broken.add(step.id)
            else:
                nodes.append(step)
        return nodes


_RUNNERS: dict[int, StageRunner] = {}


def run_stage_task(batch: dict[str, np.ndarray], spec: StageSpec, stage: int) -> Any:
    """A Ray task's entry: the stage's runner is built once per worker process."""
    runner = _RUNNERS.get(stage)
    if runner is None:
        _RUNNERS.clear()
        runner = _RUNNERS[stage] = StageRunner(spec)
    return runner(batch)


def probe_headers(batch: dict[str, np.ndarray], options: DecodeOptions) -> dict[str, np.ndarray]:
    """C, H, W of each frame of each file from its header ([] where unreadable), as a Ray task."""
    from nodeflow.files.decode import probe_file

    shapes = [pickle.dumps(probe_file(Path(path), options)) for path in batch["path"]]
    return {"shapes": np.array(shapes, dtype=object)}


def _step(spec: StepSpec, registry: Any) -> Step:
    inputs = {name: Link(node, output) for name, (node, output) in spec.inputs.items()}
    return Step(spec.id, registry.nodes[spec.type_id], spec.params, inputs, spec.key)


def _resolved(value: Any) -> Any:
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def _one_batch(batch: Batch) -> Stream:
    """One batch as a stream that zips like any other (not a repeated `single` value)."""
    return Stream(lambda: iter([batch]), total=None, single=False)


def _on_cpu(batch: Batch) -> Batch:
    data = batch.data
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu()
    return Batch(data, list(batch.names))


def _kept(events: list[Event]) -> list[Event]:
    """The events the driver repeats: item errors and warnings (it counts progress itself)."""
    return [event for event in events if isinstance(event, ItemError | RunWarning)]
