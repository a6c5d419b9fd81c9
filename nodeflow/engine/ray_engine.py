"""The Ray engine: the streaming part of a plan on Ray Data, the rest as on one machine.

`RayRun` is the local scheduler with one change: a pass over a folder (`load_images`) and
the per-item nodes that read it runs as one Ray Data pipeline instead of on the driver's
threads. Its file headers are read by Ray tasks (for large folders), its batches are the
same as locally (`nodes.io.planned_batches`), and decoding plus every per-item node of the
pass are fused into one `map_batches` stage: Ray tasks, or an actor pool when a node reads
a model, each actor loading the model once. Collecting nodes (metrics, PCA, training,
writers) read the results on the driver, in batch order, through the scheduler's channels,
so progress, events, the cache and the outputs are those of a local run.

A pass that cannot be mapped (another kind of source, a stream that comes whole from the
cache or from a collecting node) runs on the driver, and the run says so in a warning.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nodeflow.engine.context import CancelToken, RunCancelled
from nodeflow.engine.errors import NodeError
from nodeflow.engine.events import Event, RunWarning
from nodeflow.engine.passes import END, PassSteps, _Node
from nodeflow.engine.plan import Plan, Step
from nodeflow.engine.ray_worker import (
    RowResult,
    StageRunner,
    StageSpec,
    StepSpec,
    probe_headers,
    run_stage_task,
)
from nodeflow.engine.scheduler import LocalRun, RunSettings
from nodeflow.types import Stream

if TYPE_CHECKING:
    from nodeflow.nodes.io import FileFrames

SHARDED_SOURCES = {"load_images"}
"""Sources whose batches Ray workers can make from file lists."""

PROBE_ON_RAY = 2000
"""Folders with more files than this have their headers read by Ray tasks."""

_stage_ids = itertools.count()


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs."""

    address: str | None = None
    """A running cluster ('auto', 'ray://host:10001', 'host:6379'); None starts a local one."""
    workers: int | None = None
    """CPUs of a local runtime, and most actors per model stage (default: this machine's cores)."""
    gpus_per_worker: float = 0.0
    """GPUs each worker that runs a model asks Ray for (fractions share a GPU)."""


def start_ray(options: RayOptions) -> int:
    """Join the cluster at `options.address` (or RAY_ADDRESS), else start a local runtime;
    the number of CPUs Ray has."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k.startswith("NODEFLOW_")}
        address = options.address or os.environ.get("RAY_ADDRESS") or None
        common = {
            "runtime_env": {"env_vars": env},
            "log_to_driver": False,
            "logging_level": "ERROR",
        }
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(
                num_cpus=options.workers or os.cpu_count() or 1,
                include_dashboard=False,
                **common,
            )
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return int(ray.cluster_resources().get("CPU", 1))


class RayRun(LocalRun):
    """A run whose folder passes run on Ray; everything else as in `LocalRun`."""

    def __init__(
        self,
        plan: Plan,
        settings: RunSettings,
        emit: Callable[[Event], None],
        cancel: CancelToken,
        options: RayOptions,
    ):
        super().__init__(plan, settings, emit, cancel)
        self.options = options
        self.cpus = start_ray(options)
        self._warned: set[str] = set()

    def pass_steps(
        self, nodes: list[str], live: bool, on_fail: Callable[[str], None] = lambda _n: None
    ) -> PassSteps | RayPass:
        if not any(self.plan.steps[n].mode == "source" for n in nodes):
            return PassSteps(self, nodes, live=live, on_fail=on_fail)  # over cached streams
        reason = self._unmapped(nodes)
        if reason is None:
            return RayPass(self, nodes, live, on_fail)
        if live:
            key = ",".join(nodes)
            if key not in self._warned:
                self._warned.add(key)
                self.emit(
                    RunWarning(
                        f"node(s) {', '.join(nodes)} run on the driver, not on Ray: {reason}"
                    )
                )
        return PassSteps(self, nodes, live=live, on_fail=on_fail)

    def _unmapped(self, nodes: list[str]) -> str | None:
        """Why this pass cannot run on Ray (None when it can)."""
        steps = [self.plan.steps[n] for n in nodes]
        sources = [s for s in steps if s.mode == "source"]
        if len(sources) > 1 or sources[0].node_type.id not in SHARDED_SOURCES:
            names = ", ".join(f"{s.id!r} ({s.node_type.id})" for s in sources)
            return f"its source(s) {names} are not a folder read by load_images"
        inside = set(nodes)
        for step in steps:
            for link in step.inputs.values():
                if link.node in inside:
                    continue
                if isinstance(self.value(link.node, link.output), Stream):
                    return f"node {step.id!r} reads a stream made whole by {link.node!r}"
        return None

    def stage_spec(self, nodes: list[str]) -> tuple[StageSpec, bool]:
        """The pass as one stage, and whether it reads a model (then it runs in actors)."""
        import ray

        steps = [self.plan.steps[n] for n in nodes]
        inside = set(nodes)
        rebuilt: dict[str, StepSpec] = {}
        shipped: dict[str, Any] = {}
        for step in steps:
            for link in step.inputs.values():
                producer = self.plan.steps[link.node]
                if link.node in inside or link.node in rebuilt or link.node in shipped:
                    continue
                if _rebuildable(producer):
                    rebuilt[link.node] = StepSpec.of(producer)
                else:
                    value = {
                        name: self.value(link.node, name) for name in producer.node_type.outputs
                    }
                    shipped[link.node] = ray.put(value)
        returned = {
            (link.node, link.output)
            for consumer_id in self.plan.steps
            if consumer_id not in inside
            for link in self.plan.steps[consumer_id].inputs.values()
            if link.node in inside
        }
        returned |= {
            (node_id, name)
            for node_id in nodes
            if node_id in self.plan.targets
            for name in self.plan.steps[node_id].node_type.outputs
        }
        source = next(s for s in steps if s.mode == "source")
        spec = StageSpec(
            StepSpec.of(source),
            [StepSpec.of(s) for s in steps if s.mode == "map"],
            list(rebuilt.values()),
            shipped,
            returned,
            str(self.settings.device),
            self.settings.precision,
            self.settings.fail_fast,
        )
        reads_model = bool(rebuilt) or any(_gives_model(self.plan.steps[n]) for n in shipped)
        return spec, reads_model


def _gives_model(step: Step) -> bool:
    return any(output.type.name == "Model" for output in step.node_type.outputs.values())


def _rebuildable(step: Step) -> bool:
    """A model loader: no inputs, a Model out; each worker runs it once for itself."""
    return not step.inputs and step.mode == "collect" and _gives_model(step)


class RayPass:
    """Steps a pass on Ray; iterate it for {port: batch} of each batch, like `PassSteps`."""

    def __init__(self, run: RayRun, nodes: list[str], live: bool, on_fail: Callable[[str], None]):
        self.run = run
        self.live = live
        self.on_fail = on_fail
        self.node_ids = nodes
        self.nodes: dict[str, _Node] = {}

    def __iter__(self) -> Iterator[dict[tuple[str, str], Any]]:
        run = self.run
        for node_id in self.node_ids:
            step = run.plan.steps[node_id]
            self.nodes[node_id] = _Node(step, run.context(step))
        source = next(n for n in self.nodes.values() if n.step.mode == "source")
        try:
            groups = self._file_batches(source)
        except (RunCancelled, NodeError):
            raise
        except Exception as exc:
            self._fail(source.step.id, ("failed", *_error_text(source.step, exc)))
            self._skip_rest()
            return
        for node in self.nodes.values():
            node.total = len(groups)
        rows = self._rows(groups)
        try:
            for result in rows:
                run.stop.check()
                produced = self._take(result)
                if produced:
                    yield produced
        finally:
            rows.close()
        ends = {}
        for node in self.nodes.values():
            if not node.failed:
                node.ended = True
                ends.update({(node.step.id, name): END for name in node.step.node_type.outputs})
        if ends:
            yield ends

    def _file_batches(self, source: _Node) -> list[list[FileFrames]]:
        from nodeflow.files.decode import probe_file
        from nodeflow.nodes.io import folder_options, planned_batches

        params = source.step.params
        files, names, options = folder_options(params)
        if len(files) > PROBE_ON_RAY:
            import ray.data

            ds = ray.data.from_items([{"path": str(f)} for f in files])
            probed = ds.map_batches(
                probe_headers, fn_kwargs={"options": options}, batch_size=256, batch_format="numpy"
            )
            probes = [pickle.loads(row["shapes"]) for row in probed.iter_rows()]
        else:
            probes = [probe_file(file, options) for file in files]
        return planned_batches(files, names, probes, params["batch_size"])

    def _rows(self, groups: list[list[FileFrames]]) -> Iterator[RowResult]:
        import ray.data

        run = self.run
        spec, reads_model = run.stage_spec(self.node_ids)
        items = [{"index": i, "parts": pickle.dumps(g)} for i, g in enumerate(groups)]
        blocks = max(1, min(len(items), run.cpus * 4))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        if reads_model:
            workers = max(1, min(run.options.workers or run.cpus, len(items)))
            gpus = run.options.gpus_per_worker
            ds = ds.map_batches(
                StageRunner,
                fn_constructor_kwargs={"spec": spec},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                **({"num_gpus": gpus} if gpus else {}),
            )
        else:
            ds = ds.map_batches(
                run_stage_task,
                fn_kwargs={"spec": spec, "stage": next(_stage_ids)},
                batch_size=1,
                batch_format="numpy",
            )
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                yield pickle.loads(row["result"])
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # stops the Ray job: its tasks are cancelled and its actors end

    def _take(self, result: RowResult) -> dict[tuple[str, str], Any]:
        """Hand one batch index's results to the run: events, failures, progress, batches."""
        run = self.run
        if self.live:
            for event in result.events:
                run.emit(event)
        for node_id, failure in result.failed.items():
            self._fail(node_id, failure)
        if result.empty:
            return {}
        produced: dict[tuple[str, str], Any] = {}
        for node_id, node in self.nodes.items():
            if node.failed:
                continue
            names = node.step.node_type.outputs
            outputs = {n: result.ports[(node_id, n)] for n in names if (node_id, n) in result.ports}
            produced.update({(node_id, n): batch for n, batch in outputs.items()})
            if not self.live:
                continue
            node.seconds += result.seconds.get(node_id, 0.0)
            node.batches += 1
            if len(outputs) == len(names):
                run.batch_done(node, result.index, outputs)
            elif not node.ctx.manual_progress:
                node.ctx._emit_progress(result.index + 1, node.total, {})
        return produced

    def _fail(self, node_id: str, failure: tuple[str, str, str]) -> None:
        node = self.nodes[node_id]
        if node.failed:
            return
        node.failed = True
        kind, text, traceback = failure
        if kind == "skipped":
            self.run.node_skipped(node.step, text)
        else:
            error = NodeError(node.step.id, node.step.node_type.id, RuntimeError())
            error.args = (text,)
            error.traceback = traceback
            self.run.node_failed(node.step, error)
        self.on_fail(node_id)

    def _skip_rest(self) -> None:
        failed = {n for n, node in self.nodes.items() if node.failed}
        for node_id, node in self.nodes.items():
            upstream = next(
                (ln.node for ln in node.step.inputs.values() if ln.node in failed), None
            )
            if not node.failed and upstream is not None:
                self._fail(node_id, ("skipped", upstream, ""))
                failed.add(node_id)


def _error_text(step: Step, exc: Exception) -> tuple[str, str]:
    error = NodeError(step.id, step.node_type.id, exc)
    return str(error), error.traceback
