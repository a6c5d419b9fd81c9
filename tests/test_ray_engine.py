"""`--engine ray`: the same graph on a local Ray runtime (2 CPUs) gives what a local run gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nodeflow.cli import main
from nodeflow.engine import ray_engine
from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken
from nodeflow.engine.events import (
    Event,
    ItemError,
    NodeFailed,
    NodeProgress,
    RunStarted,
    RunWarning,
)
from nodeflow.engine.executor import Executor, RunResult
from nodeflow.engine.ray_engine import RayOptions
from nodeflow.graph import Graph

ray = pytest.importorskip("ray")

FOLDER_GRAPH = """
version = 1
[nodes.photos]
type = "load_images"
params = { path = "photos", batch_size = 3, recursive = true, frames = "all" }
[nodes.small]
type = "resize"
params = { scale = 0.5 }
inputs = { image = "photos.image" }
[nodes.save_small]
type = "save_images"
params = { folder = "out/{engine}/small" }
inputs = { image = "small.image" }
[nodes.noisy]
type = "add_noise"
params = { sigma = 25.0, seed = 1 }
inputs = { image = "photos.image" }
[nodes.soft]
type = "blur"
params = { sigma = 1.0 }
inputs = { image = "noisy.image" }
[nodes.model]
type = "load_model"
params = { checkpoint = "denoise" }
[nodes.denoised]
type = "unet"
inputs = { image = "noisy.image", model = "model.model" }
[nodes.quality]
type = "metrics"
inputs = { image = "denoised.image", reference = "photos.image" }
[nodes.blur_quality]
type = "metrics"
inputs = { image = "soft.image", reference = "photos.image" }
[nodes.save]
type = "save_images"
params = { folder = "out/{engine}" }
inputs = { image = "denoised.image" }
"""


@pytest.fixture(scope="module")
def ray_runtime():
    """One small local Ray runtime for the whole module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _photos(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"img{i:02d}.png"
        )
    (folder / "img03b.png").write_bytes(b"not an image at all")
    (folder / "sub").mkdir()
    frames = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(folder / "sub" / "anim.gif", save_all=True, append_images=frames[1:])


def _run(registry, tmp_path: Path, engine: str) -> tuple[RunResult, list[Event]]:
    path = tmp_path / f"{engine}.toml"
    path.write_text(FOLDER_GRAPH.replace("{engine}", engine))
    events: list[Event] = []
    executor = Executor(
        registry, Cache(tmp_path / f"cache-{engine}"), device="cpu", engine=engine,
        ray=RayOptions(workers=1),
    )  # fmt: skip
    return executor.run(Graph.load(path), on_event=events.append), events


def test_folder_graph_gives_the_same_outputs_on_both_engines(
    ray_runtime, registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray_engine, "PROBE_ON_RAY", 4)  # file headers read by Ray tasks too
    _photos(tmp_path / "photos")
    local, local_events = _run(registry, tmp_path, "local")
    on_ray, ray_events = _run(registry, tmp_path, "ray")
    assert local.ok and on_ray.ok, on_ray.failed
    assert [e.engine for e in ray_events if isinstance(e, RunStarted)] == ["ray"]
    assert [e.engine for e in local_events if isinstance(e, RunStarted)] == ["local"]
    for node in ("quality", "blur_quality"):
        for name in ("psnr", "ssim"):
            assert on_ray.outputs[node][name] == pytest.approx(local.outputs[node][name], abs=1e-5)
    local_out, ray_out = tmp_path / "out" / "local", tmp_path / "out" / "ray"
    local_files = sorted(str(p.relative_to(local_out)) for p in local_out.rglob("*.png"))
    ray_files = sorted(str(p.relative_to(ray_out)) for p in ray_out.rglob("*.png"))
    assert ray_files == local_files and len(local_files) == 2 * 10  # 7 files + 3 GIF frames
    assert "small/sub/anim#2.png" in local_files
    for name in local_files:
        a = np.asarray(Image.open(local_out / name), dtype=np.int16)
        b = np.asarray(Image.open(ray_out / name), dtype=np.int16)
        tolerance = 0 if name.startswith("small/") else 1  # uint8 end to end: exactly equal
        assert np.abs(a - b).max() <= tolerance, name

    def bad_files(events: list[Event]) -> list[tuple[str, str, str]]:
        return [(e.node, e.item, e.message) for e in events if isinstance(e, ItemError)]

    assert bad_files(ray_events) == bad_files(local_events)
    assert {item for _, item, _ in bad_files(ray_events)} == {str(tmp_path / "photos/img03b.png")}
    assert not [e for e in ray_events if isinstance(e, RunWarning)]


def test_a_failing_node_on_ray_fails_and_skips_what_reads_it(
    ray_runtime, registry, tmp_path: Path
) -> None:
    _photos(tmp_path / "photos")
    path = tmp_path / "graph.toml"
    path.write_text(
        """
version = 1
[nodes.photos]
type = "load_images"
params = { path = "photos", batch_size = 3 }
[nodes.soft]
type = "blur"
inputs = { image = "photos.image" }
[nodes.cut]
type = "crop"
params = { height = 40, width = 8 }
inputs = { image = "soft.image" }
[nodes.cut_quality]
type = "metrics"
inputs = { image = "cut.image", reference = "photos.image" }
[nodes.soft_quality]
type = "metrics"
inputs = { image = "soft.image", reference = "photos.image" }
"""
    )
    events: list[Event] = []
    executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu", engine="ray")
    result = executor.run(Graph.load(path), on_event=events.append)
    failed = {e.node: e for e in events if isinstance(e, NodeFailed)}
    assert failed["cut"].upstream is None and "fall outside the image" in failed["cut"].message
    assert failed["cut_quality"].upstream == "cut"
    assert "soft_quality" not in failed and result.outputs["soft_quality"]["psnr"] > 10


def test_a_pass_ray_cannot_map_runs_on_the_driver_and_says_so(ray_runtime, tmp_path: Path) -> None:
    path = tmp_path / "graph.toml"
    path.write_text(
        """
version = 1
[nodes.photos]
type = "sample_images"
params = { names = "astronaut", size = 32 }
[nodes.soft]
type = "blur"
inputs = { image = "photos.image" }
[nodes.quality]
type = "metrics"
inputs = { image = "soft.image", reference = "photos.image" }
"""
    )
    result = CliRunner().invoke(
        main, ["run", str(path), "--engine", "ray", "--device", "cpu", "--events", "jsonl"]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert events[0]["engine"] == "ray"
    warnings = [e["message"] for e in events if e["event"] == "RunWarning"]
    assert any("run on the driver" in m and "sample_images" in m for m in warnings)
    finished = [e for e in events if e["event"] == "NodeFinished" and e["node"] == "quality"]
    assert float(finished[0]["summary"]["psnr"]) > 10


def test_cancelling_a_ray_run_stops_it_and_leaves_only_whole_files(
    ray_runtime, registry, tmp_path: Path
) -> None:
    _photos(tmp_path / "photos")
    path = tmp_path / "graph.toml"
    path.write_text(
        """
version = 1
[nodes.photos]
type = "load_images"
params = { path = "photos", batch_size = 1 }
[nodes.soft]
type = "blur"
inputs = { image = "photos.image" }
[nodes.save]
type = "save_images"
params = { folder = "out" }
inputs = { image = "soft.image" }
"""
    )
    cancel = CancelToken()

    def on_event(event: Event) -> None:
        if isinstance(event, NodeProgress) and event.node == "save" and event.done >= 2:
            cancel.cancel()

    executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu", engine="ray")
    result = executor.run(Graph.load(path), on_event=on_event, cancel=cancel)
    assert result.cancelled and not result.ok
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert 1 <= len(written) < 7
    assert all(name.endswith(".png") for name in written)
    for name in written:
        Image.open(tmp_path / "out" / name).load()
