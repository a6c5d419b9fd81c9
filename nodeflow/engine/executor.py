"""The executor: validate a graph, plan what the requested outputs need, and run the plan.

Clients (the CLI, the TUI, scripts, tests) hold one `Executor` per session with its
registry, cache, device and precision, and call `run(graph, ...)` for each run. The plan
(`plan.py`) is plain data; the local scheduler (`scheduler.py`) runs it batch by batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken
from nodeflow.engine.device import resolve_device, resolve_precision
from nodeflow.engine.errors import NodeError
from nodeflow.engine.events import Event, RunFinished, RunStarted
from nodeflow.engine.plan import build_plan
from nodeflow.engine.scheduler import LocalRun, RunSettings
from nodeflow.graph import Graph, GraphFileError
from nodeflow.registry import Registry
from nodeflow.types import Batch

if TYPE_CHECKING:
    from nodeflow.engine.ray_engine import RayOptions

__all__ = ["ENGINES", "Executor", "NodeError", "RunOutputs", "RunResult"]

ENGINES = ("local", "ray")
"""`local` runs on this machine's threads; `ray` runs folder passes on Ray Data."""


class RunOutputs(Mapping[str, dict[str, Any]]):
    """Each evaluated node's outputs, in plan order. A per-item node's streams are made
    when first asked for: a run of thousands of nodes does not build thousands of replays
    nobody reads."""

    def __init__(self, run: LocalRun, node_ids: list[str]):
        self._run = run
        self._ids = node_ids
        self._known = set(node_ids)
        self._made: dict[str, dict[str, Any]] = {}

    def __getitem__(self, node_id: str) -> dict[str, Any]:
        if node_id not in self._known:
            raise KeyError(node_id)
        if node_id in self._run.values:
            return self._run.values[node_id]
        if node_id not in self._made:
            outputs = self._run.plan.steps[node_id].node_type.outputs
            self._made[node_id] = {name: self._run.replay(node_id, name) for name in outputs}
        return self._made[node_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._known


@dataclass
class RunResult:
    """What a run produced: outputs of evaluated nodes, failures, and a first image per stream.

    `outputs` holds whole values of collecting nodes and, for per-item nodes, streams that
    recompute their batches when iterated. `skipped` are the nodes that did not run because
    a node they read failed (they are in `failed` too, with that reason).
    """

    ok: bool
    seconds: float
    outputs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    previews: dict[str, Batch] = field(default_factory=dict)
    cancelled: bool = False
    skipped: list[str] = field(default_factory=list)


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
        output_root: Path | None = None,
        engine: str = "local",
        ray: RayOptions | None = None,
    ):
        self.registry = registry
        self.output_root = output_root
        self.cache = cache if cache is not None else Cache()
        self.device = resolve_device(device)
        self.precision = precision
        self.dtype = resolve_precision(precision)
        self.fail_fast = fail_fast
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
        self.engine = engine
        self.ray = ray

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
        emit = on_event or (lambda _event: None)
        root = str(self.output_root or "")
        plan = build_plan(graph, self.registry, targets, str(self.device), self.precision, root)
        settings = RunSettings(
            self.device,
            self.dtype,
            self.precision,
            self.cache,
            fail_fast=self.fail_fast,
            describe_graph=graph.to_json,
            output_root=self.output_root,
        )
        started = time.perf_counter()
        if self.engine == "ray":
            from nodeflow.engine.ray_engine import RayOptions, RayRun

            run: LocalRun = RayRun(
                plan, settings, emit, cancel or CancelToken(), self.ray or RayOptions()
            )
        else:
            run = LocalRun(plan, settings, emit, cancel or CancelToken())
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        run.emit(
            RunStarted(list(plan.steps), str(self.device), self.precision, self.engine, world_size)
        )
        run.demand(plan.targets)
        run.run()
        cancelled = run.stop.cancelled and not (self.fail_fast and run.failed)
        ok = not run.failed and not cancelled
        if ok:
            for callback in run.stored_callbacks:
                callback()
        evaluated = [
            node_id
            for node_id, step in plan.steps.items()
            if node_id not in run.failed
            and (node_id in run.values or (node_id in run.needed and step.streams))
        ]
        outputs = RunOutputs(run, evaluated)
        skipped = [n for n, message in run.failed.items() if message.startswith("skipped:")]
        seconds = time.perf_counter() - started
        run.emit(RunFinished(ok, seconds, list(run.failed), cancelled))
        return RunResult(ok, seconds, outputs, dict(run.failed), run.previews, cancelled, skipped)
