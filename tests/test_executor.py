"""The executor: what runs, in what order, what a failure stops, caching, events, cancelling."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nodeflow.cli import main
from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken
from nodeflow.engine.device import DeviceError
from nodeflow.engine.events import (
    Event,
    NodeFailed,
    NodeFinished,
    NodeProgress,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from nodeflow.engine.executor import Executor, RunResult
from nodeflow.graph import Graph, GraphFileError
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

PLUGINS = Path(__file__).parent / "plugins_for_tests"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The registry with the test-only plugins (`toy.*`, `toypkg.*`) loaded."""
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(PLUGINS))
    reset_registry()
    yield load_registry()
    reset_registry()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """The file toy nodes append their node id to on every call."""
    return tmp_path / "calls.log"


def calls(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def started(events: list[Event]) -> list[str]:
    return [e.node for e in events if isinstance(e, NodeStarted)]


def of_type(events: list[Event], kind: type[Event]) -> list:
    return [e for e in events if isinstance(e, kind)]


class Runner:
    """One executor kept across runs (as the TUI keeps one), recording each run's events."""

    def __init__(self, registry: Registry, cache: Cache, **options: object):
        self.executor = Executor(registry, cache, device="cpu", **options)
        self.events: list[Event] = []

    def __call__(self, graph: Graph, **kwargs: object) -> RunResult:
        self.events = []
        return self.executor.run(graph, on_event=self.events.append, **kwargs)


@pytest.fixture
def runner(toy: Registry, tmp_path: Path) -> Runner:
    return Runner(toy, Cache(tmp_path / "cache"))


# src feeds two branches; branch a goes on through two more collecting nodes.
#   src -> sa -> ta -> oa -> fa      (ta, fa: output nodes)
#   src -> sb -> tb                  (tb: output node)
BRANCHES = """version = 1

[nodes.src]
type = "toy.numbers"
params = {{ count = 3, batch_size = 2, fill = 0.5, log = "{log}" }}

[nodes.sa]
type = "toy.scale"
params = {{ factor = 2.0, log = "{log}" }}
inputs = {{ image = "src.image" }}

[nodes.ta]
type = "toy.total"
params = {{ log = "{log}" }}
inputs = {{ image = "sa.image" }}

[nodes.oa]
type = "toy.offset"
params = {{ amount = 1.0, log = "{log}" }}
inputs = {{ value = "ta.value" }}

[nodes.fa]
type = "toy.add"
params = {{ log = "{log}" }}
inputs = {{ a = "oa.value" }}

[nodes.sb]
type = "toy.scale"
params = {{ factor = 3.0, log = "{log}" }}
inputs = {{ image = "src.image" }}

[nodes.tb]
type = "toy.total"
params = {{ log = "{log}" }}
inputs = {{ image = "sb.image" }}
"""

# 3 batches x 2 items x 16 values
VALUES = 3 * 2 * 16
ALL = {"src", "sa", "ta", "oa", "fa", "sb", "tb"}


@pytest.fixture
def branches(log: Path) -> Graph:
    return Graph.parse(BRANCHES.format(log=log.as_posix()))


# -- what runs -------------------------------------------------------------------------------


def test_a_run_computes_every_output_node(runner: Runner, branches: Graph) -> None:
    result = runner(branches)
    assert result.ok and not result.failed and not result.cancelled
    assert result.outputs["ta"]["value"] == VALUES * 0.5 * 2
    assert result.outputs["fa"]["value"] == VALUES * 0.5 * 2 + 1
    assert result.outputs["tb"]["value"] == VALUES * 0.5 * 3
    assert set(started(runner.events)) == ALL


def test_only_what_the_targets_need_runs(runner: Runner, branches: Graph, log: Path) -> None:
    result = runner(branches, targets=["ta"])
    assert result.ok
    assert set(result.outputs) == {"src", "sa", "ta"}
    assert runner.events[0] == RunStarted(["src", "sa", "ta"], "cpu", "fp32")
    assert sorted(started(runner.events)) == ["sa", "src", "ta"]
    assert set(calls(log)) == {"src", "sa", "ta"}


def test_by_default_only_output_nodes_and_their_inputs_run(runner: Runner, log: Path) -> None:
    graph = Graph.parse(
        BRANCHES.format(log=log.as_posix())
        + '\n[nodes.dangling]\ntype = "toy.offset"\ninputs = { value = "tb.value" }\n'
    )
    runner(graph)
    assert "dangling" not in started(runner.events)
    assert "dangling" not in runner.events[0].nodes


def test_without_output_nodes_the_leaves_run(runner: Runner) -> None:
    graph = Graph.parse(
        'version = 1\n[nodes.c]\ntype = "toypkg.constant"\nparams = { value = 2.0 }\n'
        '[nodes.leaf]\ntype = "toy.offset"\nparams = { amount = 0.5 }\n'
        'inputs = { value = "c.value" }\n'
    )
    result = runner(graph)
    assert result.outputs["leaf"]["value"] == 2.5


def test_an_unknown_target_is_a_graph_error(runner: Runner, branches: Graph) -> None:
    with pytest.raises(GraphFileError, match="cannot run up to 'ghost'"):
        runner(branches, targets=["ghost"])


def test_an_invalid_graph_is_refused_before_anything_runs(runner: Runner) -> None:
    graph = Graph.parse('version = 1\n[nodes.s]\ntype = "toy.scale"\n')
    with pytest.raises(GraphFileError, match="missing required input"):
        runner(graph)
    assert runner.events == []


def test_nodes_start_in_topological_order(runner: Runner, log: Path) -> None:
    # ids sort against the link order, so a name-sorted run would go wrong
    graph = Graph.parse(
        BRANCHES.format(log=log.as_posix())
        .replace("src", "z_src")
        .replace("[nodes.ta]", "[nodes.a_ta]")
        .replace('"ta.value"', '"a_ta.value"')
    )
    runner(graph)
    order = runner.events[0].nodes
    assert set(order) == {"z_src", "sa", "a_ta", "oa", "fa", "sb", "tb"}
    position = {node: i for i, node in enumerate(order)}
    for producer, consumer in graph.digraph().edges:
        assert position[producer] < position[consumer]
    begun = {node: i for i, node in enumerate(started(runner.events))}
    for producer, consumer in graph.digraph().edges:
        assert begun[producer] < begun[consumer]


# -- failures --------------------------------------------------------------------------------

FAILING = """version = 1

[nodes.src]
type = "toy.numbers"
params = { count = 3, batch_size = 2, fill = 0.5 }

[nodes.a_bad]
type = "toy.fail"
params = { message = "the toy failed on purpose" }
inputs = { image = "src.image" }

[nodes.after_bad]
type = "toy.add"
inputs = { a = "a_bad.value" }

[nodes.b_good]
type = "toy.total"
inputs = { image = "src.image" }
"""


def test_a_failing_branch_does_not_stop_an_independent_one(runner: Runner) -> None:
    result = runner(Graph.parse(FAILING))
    assert not result.ok
    assert set(result.failed) == {"a_bad", "after_bad"}
    assert result.outputs["b_good"]["value"] == VALUES * 0.5
    finished = [e.node for e in of_type(runner.events, NodeFinished)]
    assert "b_good" in finished and "a_bad" not in finished
    assert runner.events[-1] == RunFinished(
        False, runner.events[-1].seconds, ["a_bad", "after_bad"]
    )


def test_a_failure_names_the_node_its_type_and_its_inputs(runner: Runner) -> None:
    result = runner(Graph.parse(FAILING))
    assert result.failed["a_bad"] == (
        "node 'a_bad' (toy.fail) failed: the toy failed on purpose\n"
        "  inputs: image: stream of 3 batches"
    )
    failures = {e.node: e for e in of_type(runner.events, NodeFailed)}
    failure = failures["a_bad"]
    assert (failure.type, failure.message, failure.upstream) == (
        "toy.fail",
        result.failed["a_bad"],
        None,
    )
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert "toy.py" in failure.traceback and "scheduler.py" not in failure.traceback
    assert failure.traceback.rstrip().endswith("ValueError: the toy failed on purpose")
    assert failures["after_bad"].upstream == "a_bad"
    assert "skipped: upstream node 'a_bad' failed" in failures["after_bad"].message


def test_a_failure_inside_a_stream_is_put_on_the_node_that_raised(runner: Runner) -> None:
    graph = Graph.parse(
        'version = 1\n[nodes.src]\ntype = "toy.numbers"\nparams = { count = 4 }\n'
        '[nodes.mid]\ntype = "toy.crash"\nparams = { at = 2 }\ninputs = { image = "src.image" }\n'
        '[nodes.sum]\ntype = "toy.total"\ninputs = { image = "mid.image" }\n'
    )
    result = runner(graph)
    assert set(result.failed) == {"mid", "sum"}
    assert result.failed["mid"].startswith("node 'mid' (toy.crash) failed: crashed at batch 2")
    assert "inputs: image: gray image batch 2x1x4x4" in result.failed["mid"]
    assert result.failed["sum"] == "skipped: upstream node 'mid' failed"


def test_fail_fast_stops_at_the_first_failure(toy: Registry, tmp_path: Path) -> None:
    runner = Runner(toy, Cache(tmp_path / "cache"), fail_fast=True)
    result = runner(Graph.parse(FAILING))
    assert not result.ok
    assert "a_bad" in result.failed
    assert "after_bad" not in started(runner.events)
    failed_at = next(i for i, e in enumerate(runner.events) if isinstance(e, NodeFailed))
    assert not of_type(runner.events[failed_at:], NodeStarted)
    assert isinstance(runner.events[-1], RunFinished) and not runner.events[-1].ok


# -- caching ---------------------------------------------------------------------------------


def test_an_unchanged_rerun_runs_nothing(runner: Runner, branches: Graph, log: Path) -> None:
    first = runner(branches)
    calls_before = calls(log)
    second = runner(branches)
    assert started(runner.events) == []
    assert calls(log) == calls_before
    finished = of_type(runner.events, NodeFinished)
    assert {e.node for e in finished} == ALL and all(e.cached for e in finished)
    for node in ("ta", "fa", "tb"):
        assert second.outputs[node] == first.outputs[node]


def test_changing_a_collecting_node_reruns_it_and_its_descendants_only(
    runner: Runner, branches: Graph, log: Path
) -> None:
    runner(branches)
    before = calls(log)
    branches.apply_overrides(["oa.amount=5"])
    result = runner(branches)
    assert sorted(started(runner.events)) == ["fa", "oa"]
    assert calls(log) - before == Counter({"oa": 1, "fa": 1})
    assert result.outputs["fa"]["value"] == VALUES * 0.5 * 2 + 5
    cached = {e.node for e in of_type(runner.events, NodeFinished) if e.cached}
    assert cached == {"src", "sa", "ta", "sb", "tb"}


def test_changing_a_streaming_node_reruns_its_branch_and_repulls_its_source(
    runner: Runner, branches: Graph, log: Path
) -> None:
    runner(branches)
    before = calls(log)
    branches.apply_overrides(["sa.factor=4"])
    result = runner(branches)
    # streams are never cached: the source is pulled again for the branch that changed,
    # and the other branch, whose result is cached, does not run
    assert sorted(started(runner.events)) == ["fa", "oa", "sa", "src", "ta"]
    new_calls = calls(log) - before
    assert set(new_calls) == {"src", "sa", "ta", "oa", "fa"}
    assert new_calls["sa"] == 3  # once per batch
    assert result.outputs["ta"]["value"] == VALUES * 0.5 * 4
    assert result.outputs["tb"]["value"] == VALUES * 0.5 * 3


def test_without_a_cache_everything_reruns(toy: Registry, branches: Graph, log: Path) -> None:
    runner = Runner(toy, Cache(enabled=False))
    runner(branches)
    first = calls(log)
    runner(branches)
    assert set(started(runner.events)) == ALL
    assert calls(log) == first + first


def test_a_changed_file_reruns_the_node_that_reads_it(runner: Runner, tmp_path: Path) -> None:
    number = tmp_path / "number.txt"
    number.write_text("2.0")
    graph = Graph.parse(
        f'version = 1\n[nodes.r]\ntype = "toy.read_number"\nparams = {{ file = "{number.as_posix()}" }}\n'
        '[nodes.out]\ntype = "toy.add"\ninputs = { a = "r.value" }\n'
    )
    assert runner(graph).outputs["out"]["value"] == 2.0
    assert runner(graph).outputs["out"]["value"] == 2.0
    assert started(runner.events) == []
    number.write_text("12.5")
    stat = number.stat()
    os.utime(number, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    result = runner(graph)
    assert started(runner.events) == ["r", "out"]
    assert result.outputs["out"]["value"] == 12.5


def test_a_new_executor_does_not_share_the_memory_cache(
    toy: Registry, branches: Graph, tmp_path: Path
) -> None:
    Runner(toy, Cache(tmp_path / "cache"))(branches)
    again = Runner(toy, Cache(tmp_path / "cache"))
    again(branches)
    assert set(started(again.events)) == ALL


# -- events ----------------------------------------------------------------------------------


def test_events_bracket_each_node_with_progress(runner: Runner, branches: Graph) -> None:
    runner(branches, targets=["ta"])
    events = runner.events
    assert isinstance(events[0], RunStarted) and events[0].device == "cpu"
    assert events[-1] == RunFinished(True, events[-1].seconds, [], False)
    assert not any(isinstance(e, RunStarted | RunFinished) for e in events[1:-1])
    for node in ("src", "sa", "ta"):
        indices = [i for i, e in enumerate(events) if getattr(e, "node", None) == node]
        kinds = [type(events[i]) for i in indices]
        assert kinds[0] is NodeStarted and kinds[-1] is NodeFinished
        assert kinds.count(NodeStarted) == kinds.count(NodeFinished) == 1
        progress = [events[i] for i in indices if isinstance(events[i], NodeProgress)]
        assert [(p.done, p.total) for p in progress] == [(1, 3), (2, 3), (3, 3)]
        assert progress[-1].eta == 0.0
    summary = {e.node: e for e in of_type(events, NodeFinished)}["ta"].summary
    assert summary == {"value": str(int(VALUES * 0.5 * 2))}
    for event in events:
        data = json.loads(json.dumps(event.to_json(), default=str))
        assert data["event"] == type(event).__name__


def test_cancelling_from_an_event_handler_stops_the_run(
    runner: Runner, log: Path, tmp_path: Path
) -> None:
    graph = Graph.parse(
        BRANCHES.format(log=log.as_posix()).replace("count = 3", "count = 50"),
    )
    cancel = CancelToken()
    events: list[Event] = []

    def handler(event: Event) -> None:
        events.append(event)
        if isinstance(event, NodeProgress) and event.node == "src" and event.done == 2:
            cancel.cancel()

    result = runner.executor.run(graph, targets=["ta"], on_event=handler, cancel=cancel)
    assert result.cancelled and not result.ok
    assert events[-1] == RunFinished(False, events[-1].seconds, [], True)
    assert max(e.done for e in of_type(events, NodeProgress) if e.node == "src") == 2
    assert calls(log)["sa"] == 1  # the batch pulled after the cancel is not processed
    assert "ta" not in result.outputs
    assert not any(isinstance(e, NodeFinished) and e.node == "ta" for e in events)

    # nothing half-done was cached: the next run computes the whole total
    again = runner(graph, targets=["ta"])
    assert "ta" in started(runner.events)
    assert again.outputs["ta"]["value"] == 50 * 2 * 16 * 0.5 * 2


def test_a_run_cancelled_before_it_starts_runs_nothing(runner: Runner, branches: Graph) -> None:
    cancel = CancelToken()
    cancel.cancel()
    result = runner(branches, cancel=cancel)
    assert result.cancelled
    assert started(runner.events) == []
    assert isinstance(runner.events[-1], RunFinished) and runner.events[-1].cancelled


# -- device ----------------------------------------------------------------------------------


def test_the_cpu_device_is_used_for_node_values(toy: Registry) -> None:
    executor = Executor(toy, Cache(enabled=False), device="cpu")
    assert executor.device == torch.device("cpu")
    graph = Graph.parse(
        'version = 1\n[nodes.src]\ntype = "toy.numbers"\n'
        '[nodes.half]\ntype = "toy.scale"\nparams = { factor = 0.5 }\n'
        'inputs = { image = "src.image" }\n'
    )
    result = executor.run(graph)
    assert result.ok
    preview = result.previews["half"]
    assert preview.data.device.type == "cpu" and preview.data.shape == (2, 1, 4, 4)
    assert preview.names == ["000-0", "000-1"]
    assert float(preview.data.max()) <= 0.5


@pytest.mark.parametrize("device", ["gpu", "cuda0", "CPU", "tpu:1", ""])
def test_a_bad_device_string_is_a_clear_error(toy: Registry, device: str) -> None:
    with pytest.raises(DeviceError, match=r"unknown device .*use auto, cpu, cuda, cuda:N or mps"):
        Executor(toy, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(toy: Registry) -> None:
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        Executor(toy, device="cuda:0")


def test_a_bad_precision_is_a_clear_error(toy: Registry) -> None:
    with pytest.raises(DeviceError, match="unknown precision 'fp64'"):
        Executor(toy, device="cpu", precision="fp64")


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def graph_file(tmp_path: Path, log: Path) -> Path:
    path = tmp_path / "g.toml"
    path.write_text(BRANCHES.format(log=log.as_posix()))
    return path


def test_cli_events_jsonl_prints_one_event_per_line(toy: Registry, graph_file: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(graph_file), "--events", "jsonl"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all("event" in e for e in events)
    assert events[0]["event"] == "RunStarted" and events[0]["device"] in ("cpu", "cuda", "mps")
    assert events[-1]["event"] == "RunFinished" and events[-1]["ok"] is True
    kinds = Counter(e["event"] for e in events)
    assert kinds["NodeStarted"] == kinds["NodeFinished"] == len(ALL)
    assert kinds["NodeProgress"] > 0
    totals = {e["node"]: e["summary"] for e in events if e["event"] == "NodeFinished"}
    assert totals["tb"] == {"value": str(int(VALUES * 0.5 * 3))}


def test_cli_only_and_device(toy: Registry, graph_file: Path, log: Path) -> None:
    args = ["run", str(graph_file), "--only", "tb", "--device", "cpu", "--events", "jsonl"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    begun = {json.loads(line).get("node") for line in result.stdout.splitlines()} - {None}
    assert begun == {"src", "sb", "tb"}
    assert set(calls(log)) == {"src", "sb", "tb"}


def test_cli_a_bad_device_is_a_usage_error(toy: Registry, graph_file: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(graph_file), "--device", "gpu"])
    assert result.exit_code == 2
    assert "unknown device 'gpu'" in result.stderr
    assert "Traceback" not in result.output


def test_cli_a_failing_node_exits_1(
    toy: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "g.toml"
    path.write_text(FAILING)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 1
    assert "node 'a_bad' (toy.fail) failed: the toy failed on purpose" in result.stderr
    assert "b_good.value = 48.0000" in result.stdout


def test_cli_no_cache_reruns_everything(toy: Registry, graph_file: Path, log: Path) -> None:
    args = ["run", str(graph_file), "--no-cache", "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = calls(log)
    assert CliRunner().invoke(main, args).exit_code == 0
    assert calls(log) == first + first
