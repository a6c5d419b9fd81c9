"""Folders stream through the graph in mini-batches: memory stays flat as the folder grows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from nodeflow.engine.cache import Cache
from nodeflow.engine.events import ItemError, NodeProgress
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph

GRAPH = """
version = 1

[nodes.photos]
type = "load_images"
params = {{ path = "{folder}", batch_size = 16 }}

[nodes.noisy]
type = "add_noise"
params = {{ sigma = 10.0 }}
inputs = {{ image = "photos.image" }}

[nodes.out]
type = "save_images"
params = {{ folder = "{out}" }}
inputs = {{ image = "noisy.image" }}
"""


def _make_folder(folder: Path, count: int, size: int = 64) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for i in range(count):
        Image.fromarray(np.roll(tile, i, axis=1)).save(folder / f"img{i:05d}.png")


class _PeakRSS:
    """Samples this process's resident memory in a thread; `peak` is the highest seen."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> _PeakRSS:
        self.start = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _run(registry, tmp_path: Path, count: int) -> tuple[int, list]:
    folder, out = tmp_path / f"in{count}", tmp_path / f"out{count}"
    _make_folder(folder, count)
    path = tmp_path / f"graph{count}.toml"
    path.write_text(GRAPH.format(folder=folder, out=out))
    events: list = []
    with _PeakRSS() as memory:
        result = Executor(registry, Cache(enabled=False), device="cpu").run(
            Graph.load(path), on_event=events.append
        )
    assert result.ok, result.failed
    assert len(list(out.glob("*.png"))) == count
    return memory.growth, events


def test_memory_stays_flat_over_2000_images(registry, tmp_path: Path) -> None:
    small_growth, _ = _run(registry, tmp_path, 200)
    large_growth, events = _run(registry, tmp_path, 2000)
    # 2,000 images of 64x64x3 float32 hold 98 MB; streaming keeps one batch of 16 at a time.
    assert large_growth - small_growth < 40e6, (small_growth, large_growth)
    progress = [e for e in events if isinstance(e, NodeProgress) and e.node == "out"]
    assert progress[-1].done == progress[-1].total == 125


def test_corrupt_file_is_reported_and_skipped(registry, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _make_folder(folder, 5, size=16)
    (folder / "img00002.png").write_bytes(b"not a png at all")
    path = tmp_path / "graph.toml"
    path.write_text(GRAPH.format(folder=folder, out=tmp_path / "out"))
    events: list = []
    result = Executor(registry, Cache(enabled=False), device="cpu").run(
        Graph.load(path), on_event=events.append
    )
    assert result.ok
    errors = [e for e in events if isinstance(e, ItemError)]
    assert [Path(e.item).name for e in errors] == ["img00002.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "img00000.png",
        "img00001.png",
        "img00003.png",
        "img00004.png",
    ]


def test_fail_fast_turns_a_bad_file_into_a_failure(registry, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _make_folder(folder, 3, size=16)
    (folder / "img00001.png").write_bytes(b"broken")
    path = tmp_path / "graph.toml"
    path.write_text(GRAPH.format(folder=folder, out=tmp_path / "out"))
    result = Executor(registry, Cache(enabled=False), device="cpu", fail_fast=True).run(
        Graph.load(path)
    )
    assert not result.ok
    assert "img00001.png" in result.failed["photos"]
    assert "fail-fast" in result.failed["photos"]
