"""`nodeflow run` as a person uses it: progress, results, exit codes, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

NODEFLOW = [sys.executable, "-m", "nodeflow.cli"]

SLOW_GRAPH = """
version = 1

[nodes.photos]
type = "load_images"
params = {{ path = "in", batch_size = 2 }}

[nodes.soft]
type = "blur"
params = {{ sigma = 4.0 }}
inputs = {{ image = "photos.image" }}

[nodes.out]
type = "save_images"
params = {{ folder = "out" }}
inputs = {{ image = "soft.image" }}
"""


def _folder(path: Path, count: int, size: int) -> None:
    path.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path / f"p{i:04d}.png")


def test_ctrl_c_stops_cleanly_with_exit_130(tmp_path: Path) -> None:
    _folder(tmp_path / "in", 300, 96)
    (tmp_path / "slow.toml").write_text(SLOW_GRAPH.format())
    env = {**os.environ, "NODEFLOW_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [*NODEFLOW, "run", "slow.toml", "--events", "jsonl"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "NodeProgress" and event["node"] == "out" and event["done"] >= 3:
            process.send_signal(signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "cancel" in stderr
    written = list((tmp_path / "out").iterdir())
    assert 0 < len(written) < 300
    assert not [p for p in written if p.suffix != ".png"], "a partial file was left behind"
    for path in written:
        with Image.open(path) as image:
            image.load()


def test_run_prints_results_and_reruns_from_cache(tmp_path: Path) -> None:
    graph = tmp_path / "measure.toml"
    graph.write_text(
        """
version = 1

[nodes.photos]
type = "sample_images"
params = { names = "astronaut,coffee", size = 32 }

[nodes.noisy]
type = "add_noise"
params = { sigma = 25.0 }
inputs = { image = "photos.image" }

[nodes.quality]
type = "metrics"
inputs = { image = "noisy.image", reference = "photos.image" }
"""
    )
    env = {**os.environ, "NODEFLOW_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run(
        [*NODEFLOW, "run", str(graph)], env=env, capture_output=True, text=True, check=False
    )
    assert first.returncode == 0, first.stderr
    psnr = float(first.stdout.split("quality.psnr = ")[1].split()[0])
    assert 20 < psnr < 24  # sigma 25 on the 0-255 scale is about 20.2 dB before clipping

    changed = subprocess.run(
        [*NODEFLOW, "run", str(graph), "--set", "noisy.sigma=5", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert changed.returncode == 0, changed.stderr
    assert float(changed.stdout.split("quality.psnr = ")[1].split()[0]) > psnr + 10


def test_invalid_graph_exits_2_with_every_problem(tmp_path: Path) -> None:
    graph = tmp_path / "bad.toml"
    graph.write_text(
        'version = 1\n[nodes.a]\ntype = "blurr"\n[nodes.b]\ntype = "blur"\n'
        'params = { sigma = -1.0 }\ninputs = { image = "nowhere.image" }\n'
    )
    result = subprocess.run(
        [*NODEFLOW, "run", str(graph)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "did you mean 'blur'" in result.stderr
    assert "below the minimum" in result.stderr
    assert "no node 'nowhere'" in result.stderr


def test_help_does_not_import_torch() -> None:
    code = "import sys; from nodeflow.cli import main; main(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().endswith("False")
