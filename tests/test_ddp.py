"""`nodeflow run --nproc N`: training under torch DDP through torchrun, from the CLI.

Each test starts real processes (torchrun and its workers over gloo), so they are slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

GRAPH = """
version = 1
[nodes.photos]
type = "load_images"
params = {{ path = "photos", batch_size = 4 }}
[nodes.pairs]
type = "pairs"
params = {{ task = "denoise", sigma = 25.0, crop = 16, crops_per_image = 2, seed = 0 }}
inputs = {{ image = "photos.image" }}
[nodes.train]
type = "train_unet"
params = {{ num_downs = 2, ngf = 8, norm = "instance", loss = "L2", steps = {steps}, batch_size = 2, lr = 0.01, sample_every = {sample_every} }}
inputs = {{ dataset = "pairs.dataset" }}
[nodes.save]
type = "save_model"
params = {{ path = "out/model.safetensors" }}
inputs = {{ model = "train.model" }}
"""


def _graph(tmp_path: Path, steps: int, sample_every: int = 0) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        smooth = np.kron(rng.integers(0, 255, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(photos / f"p{i}.png")
    path = tmp_path / "train.toml"
    path.write_text(GRAPH.format(steps=steps, sample_every=sample_every))
    return path


def _run(graph: Path, *args: str, stop_after: int | None = None) -> tuple[int, list[dict]]:
    """Run the CLI with --events jsonl; Ctrl-C (SIGINT to the group) after `stop_after` steps."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "nodeflow.cli", "run", str(graph), "--events", "jsonl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    events = []
    assert process.stdout is not None
    for line in process.stdout:
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        events.append(event)
        done = event.get("done", 0) if event.get("node") == "train" else 0
        if stop_after is not None and done >= stop_after:
            os.killpg(process.pid, signal.SIGINT)
            stop_after = None
    return process.wait(timeout=120), events


def _losses(events: list[dict]) -> list[float]:
    return [
        e["info"]["loss"]
        for e in events
        if e["event"] == "NodeProgress" and e["node"] == "train" and "loss" in e["info"]
    ]


def test_two_processes_step_like_one_with_twice_the_batch(tmp_path: Path) -> None:
    graph = _graph(tmp_path, steps=3)
    code, single = _run(graph, "--set", "train.batch_size=4", "--no-cache")
    assert code == 0
    code, ddp = _run(graph, "--nproc", "2", "--no-cache")
    assert code == 0
    started = next(e for e in ddp if e["event"] == "RunStarted")
    assert started["world_size"] == 2
    assert len(_losses(ddp)) == 3
    assert _losses(ddp) == pytest.approx(_losses(single), rel=1e-4)


def test_two_processes_train_stop_with_one_checkpoint_and_resume(tmp_path: Path) -> None:
    graph = _graph(tmp_path, steps=24, sample_every=12)
    code, first = _run(graph, "--nproc", "2", stop_after=3)
    assert code == 130
    checkpoints = list((tmp_path / "cache" / "work").glob("*/training.pt"))
    assert len(checkpoints) == 1
    stopped_at = max(e.get("done", 0) for e in first if e.get("node") == "train")

    code, second = _run(graph, "--nproc", "2")
    assert code == 0
    resumed = [e["info"]["resumed"] for e in second if "resumed" in e.get("info", {})]
    assert resumed and 3 <= resumed[0] <= stopped_at + 1  # a step may end as the stop comes
    losses = _losses(first) + _losses(second)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    samples = list((tmp_path / "cache" / "work").glob("*/samples/*.png"))
    assert sorted(p.name for p in samples) == ["train-step000012.png", "train-step000024.png"]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert not list((tmp_path / "cache" / "work").glob("*/training.pt"))
