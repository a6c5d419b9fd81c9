"""The cache keeps the README's promise across processes and can never cost a result."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nodeflow.cli import main
from nodeflow.engine.cache import Cache
from nodeflow.engine.context import FolderBusy, _lock_folder
from nodeflow.engine.events import Event, NodeFinished, NodeProgress, NodeStarted, RunWarning
from nodeflow.engine.executor import Executor
from nodeflow.engine.plan import build_plan
from nodeflow.graph import Graph
from nodeflow.registry import Registry
from nodeflow.types import Batch

GRAPH = textwrap.dedent(
    """
    version = 1
    [nodes.photos]
    type = "sample_images"
    params = { names = "astronaut, coffee, chelsea", size = 32, batch_size = 2 }
    [nodes.noisy]
    type = "add_noise"
    params = { sigma = 25.0, seed = 1 }
    inputs = { image = "photos.image" }
    [nodes.quality]
    type = "metrics"
    inputs = { image = "noisy.image", reference = "photos.image" }
    [nodes.save]
    type = "save_images"
    params = { folder = "out" }
    inputs = { image = "noisy.image" }
    """
)


@pytest.fixture
def graph_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NODEFLOW_CACHE_MIN_SECONDS", "0")  # persist everything, however cheap
    path = tmp_path / "graph.toml"
    path.write_text(GRAPH)
    return path


def events_of(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def started(output: str) -> list[str]:
    return [e["node"] for e in events_of(output) if e["event"] == "NodeStarted"]


def test_an_unchanged_graph_run_again_in_a_new_process_computes_nothing(graph_file: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["run", str(graph_file), "--events", "jsonl"])
    assert first.exit_code == 0, first.output
    assert set(started(first.output)) == {"photos", "noisy", "quality", "save"}
    again = runner.invoke(main, ["run", str(graph_file), "--events", "jsonl"])
    assert again.exit_code == 0, again.output
    assert started(again.output) == []
    finished = [e for e in events_of(again.output) if e["event"] == "NodeFinished"]
    assert finished and all(e["cached"] for e in finished)

    (graph_file.parent / "out" / "astronaut.png").unlink()  # a sink's file is gone: it runs
    third = runner.invoke(main, ["run", str(graph_file), "--events", "jsonl"])
    assert started(third.output) == ["save"]  # its input comes back from the cache
    assert (graph_file.parent / "out" / "astronaut.png").is_file()


def test_expensive_streams_persist_batch_by_batch_and_are_read_back(graph_file: Path) -> None:
    runner = CliRunner()
    runner.invoke(main, ["run", str(graph_file), "--only", "quality"])
    streams = Cache().folder / "streams"
    assert any((folder / "complete").is_file() for folder in streams.iterdir())
    # a new reader of the same noisy images reads them from disk: add_noise does not run
    text = GRAPH + '[nodes.more]\ntype = "grid"\ninputs = { image = "noisy.image" }\n'
    graph_file.write_text(text)
    result = runner.invoke(main, ["run", str(graph_file), "--only", "more", "--events", "jsonl"])
    assert result.exit_code == 0, result.output
    assert started(result.output) == ["more"]


def _run(registry: Registry, path: Path, cache: Cache) -> tuple[object, list[Event]]:
    events: list[Event] = []
    result = Executor(registry, cache, device="cpu").run(Graph.load(path), on_event=events.append)
    return result, events


def test_a_damaged_entry_is_a_miss_reported_once(registry: Registry, graph_file: Path) -> None:
    folder = graph_file.parent / "cache"
    first, _ = _run(registry, graph_file, Cache(folder))
    for entry in (folder / "results").iterdir():
        entry.write_bytes(entry.read_bytes()[:40])  # truncated, as a kill -9 or full disk leaves
    second, events = _run(registry, graph_file, Cache(folder))
    assert second.ok, second.failed
    assert second.outputs["quality"] == first.outputs["quality"]
    warnings = [e.message for e in events if isinstance(e, RunWarning)]
    assert warnings and all("damaged cache entry" in w for w in warnings)
    assert "quality" in [e.node for e in events if isinstance(e, NodeStarted)]


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_failure(
    registry: Registry, graph_file: Path
) -> None:
    blocked = graph_file.parent / "blocked"
    blocked.write_text("a file where the cache folder should be")
    result, events = _run(registry, graph_file, Cache(blocked))
    assert result.ok, result.failed
    assert any(
        "could not write to the cache" in e.message for e in events if isinstance(e, RunWarning)
    )


def test_clear_removes_what_the_cache_made_and_nothing_else(graph_file: Path) -> None:
    runner = CliRunner()
    runner.invoke(main, ["run", str(graph_file)])
    folder = Cache().folder
    mine = folder / "my-model.safetensors"
    mine.write_bytes(b"the user's own file")
    (folder / "results" / "notes.txt").write_text("also the user's")
    leftover = folder / "results" / ".0123.safetensors.abc.part"
    leftover.write_bytes(b"x" * 1000)
    info = runner.invoke(main, ["cache", "info"]).output
    assert "temporary" in info and "1 entries" in info.split("temporary")[1].splitlines()[0]
    runner.invoke(main, ["cache", "clear"])
    assert mine.is_file() and (folder / "results" / "notes.txt").is_file()
    assert not leftover.exists()
    assert not [p for p in (folder / "results").iterdir() if p.suffix == ".safetensors"]


def test_least_recently_used_entries_go_first_past_the_size_limit(
    registry: Registry, tmp_path: Path
) -> None:
    noise = registry.nodes["add_noise"]
    batch = Batch(torch.zeros(1, 3, 16, 16), ["x"])  # 3 KB a batch
    cache = Cache(tmp_path / "cache", max_bytes=7000)  # room for two
    a, b, c = (letter * 32 for letter in "abc")
    for age, key in enumerate((a, b)):
        cache.put_batch(key, 0, noise, {"image": batch})
        cache.complete_stream(key, 1, {"image": False})
        os.utime(cache.folder / "streams" / key, (1000 + age, 1000 + age))
    assert cache.stream(a, "image", torch.device("cpu")) is not None  # a is used: b is older
    cache.put_batch(c, 0, noise, {"image": batch})
    kept = sorted(p.name for p in (cache.folder / "streams").iterdir())
    assert kept == [a, c]


TRAIN = textwrap.dedent(
    """
    version = 1
    [nodes.photos]
    type = "sample_images"
    params = { names = "astronaut", size = 32 }
    [nodes.pairs]
    type = "pairs"
    params = { task = "denoise", crop = 16, crops_per_image = 2 }
    inputs = { image = "photos.image" }
    [nodes.train]
    type = "train_unet"
    params = { steps = 6, num_downs = 2, ngf = 4, batch_size = 2 }
    inputs = { dataset = "pairs.dataset" }
    """
)


class _UnwritableCache(Cache):
    def _write_safetensors(self, path, tensors, layout):
        self._warn(f"could not write to the cache folder {self.folder}: disk full")
        return False


def test_a_trained_model_survives_a_failed_cache_write(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text(TRAIN)
    folder = tmp_path / "cache"
    first, _ = _run(registry, path, _UnwritableCache(folder))
    assert first.ok, first.failed
    checkpoints = list((folder / "work").glob("*/training.pt"))
    assert len(checkpoints) == 1  # kept: the result never reached the disk cache

    _second, events = _run(registry, path, Cache(folder))
    progress = [e for e in events if isinstance(e, NodeProgress) and e.node == "train"]
    assert progress[0].info.get("resumed") == 6  # nothing retrained
    assert not list((folder / "work").glob("*/training.pt"))  # stored now, so removed


def test_two_processes_never_train_into_one_work_folder(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text(TRAIN)
    folder = tmp_path / "cache"
    plan = build_plan(Graph.load(path), registry, None, "cpu", "fp32")
    work = folder / "work" / plan.steps["train"].key
    work.mkdir(parents=True)
    held = _lock_folder(work, "train")  # what the first process holds while it trains
    result, _ = _run(registry, path, Cache(folder))
    assert "another nodeflow process" in result.failed["train"]
    assert "resume" in result.failed["train"]
    with pytest.raises(FolderBusy):
        _lock_folder(work, "train")
    os.close(held)
    again, events = _run(registry, path, Cache(folder))
    assert again.ok, again.failed
    assert any(isinstance(e, NodeFinished) and e.node == "train" for e in events)
