"""Past one machine, measured on this one: Ray workers and DDP processes side by side.

    .venv/bin/python benchmarks/scale.py [--images 96] [--steps 30]

- images/s of a CPU-heavy per-image graph (`load_images -> blur x3 -> add_noise -> metrics`
  over 128x128 PNGs, no cache) on the `local` engine, and on `ray` with a local runtime
  of 1 and 2 CPUs (1 and 2 workers). Each engine runs the graph twice; the second
  (warm: Ray's workers started, their imports done) is the figure, the first is printed
  beside it because a one-off run pays it.
- DDP: seconds per optimizer step of a small U-Net (`train_unet`, batch 8 per process,
  64 px crops) under `nodeflow run --nproc 1` and `--nproc 2`, from the arrival times of the
  progress events after the first 5 steps; pairs/s is processes x batch / step time.

Torch runs one thread per process (OMP_NUM_THREADS=1) so that workers, not threads, make
the parallelism; run it on an idle machine (`uptime`: load under 1 per core).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "1")

GRAPH = """
version = 1
[nodes.photos]
type = "load_images"
params = { path = "photos", batch_size = 4 }
[nodes.a]
type = "blur"
params = { sigma = 4.0 }
inputs = { image = "photos.image" }
[nodes.b]
type = "blur"
params = { sigma = 4.0 }
inputs = { image = "a.image" }
[nodes.c]
type = "blur"
params = { sigma = 4.0 }
inputs = { image = "b.image" }
[nodes.noisy]
type = "add_noise"
params = { sigma = 10.0 }
inputs = { image = "c.image" }
[nodes.quality]
type = "metrics"
inputs = { image = "noisy.image", reference = "photos.image" }
"""

TRAIN = """
version = 1
[nodes.photos]
type = "load_images"
params = { path = "photos", batch_size = 8 }
[nodes.pairs]
type = "pairs"
params = { task = "denoise", sigma = 25.0, crop = 64, crops_per_image = 4, seed = 0 }
inputs = { image = "photos.image" }
[nodes.train]
type = "train_unet"
params = { num_downs = 4, ngf = 16, norm = "instance", steps = STEPS, batch_size = 8 }
inputs = { dataset = "pairs.dataset" }
"""


def make_photos(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize((128, 128), Image.BICUBIC)
        image.save(folder / f"p{i:04d}.png")


def images_per_second(folder: Path, images: int, engine: str, workers: int) -> tuple[float, float]:
    """(first run, warm run) images/s of GRAPH on `engine`."""
    from nodeflow.engine.cache import Cache
    from nodeflow.engine.executor import Executor
    from nodeflow.engine.ray_engine import RayOptions
    from nodeflow.graph import Graph
    from nodeflow.plugins import load_registry

    path = folder / "graph.toml"
    path.write_text(GRAPH)
    executor = Executor(
        load_registry(), Cache(enabled=False), device="cpu", engine=engine,
        ray=RayOptions(workers=workers),
    )  # fmt: skip
    rates = []
    for _ in range(2):
        began = time.perf_counter()
        result = executor.run(Graph.load(path))
        assert result.ok, result.failed
        rates.append(images / (time.perf_counter() - began))
    return rates[0], rates[1]


def ray_rates(folder: Path, images: int, workers: int) -> tuple[float, float]:
    """Ray with a fresh local runtime of `workers` CPUs, in its own process."""
    code = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        "from scale import images_per_second;"
        f"print(*images_per_second(Path({str(folder)!r}), {images}, 'ray', {workers}))"
    )
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    print(f"  (ray with {workers} worker(s): whole process {time.perf_counter() - began:.1f} s)")
    first, warm = map(float, out.stdout.split()[-2:])
    return first, warm


def ddp_step_seconds(folder: Path, nproc: int, steps: int) -> float:
    """Median seconds between training progress events after the first 5 steps."""
    path = folder / "train.toml"
    path.write_text(TRAIN.replace("STEPS", str(steps)))
    env = {**os.environ, "NODEFLOW_CACHE_DIR": str(folder / f"cache-ddp{nproc}")}
    command = [sys.executable, "-m", "nodeflow.cli", "run", str(path), "--events", "jsonl"]
    process = subprocess.Popen(
        [*command, "--nproc", str(nproc), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    arrivals = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("node") == "train" and "loss" in event.get("info", {}):
                arrivals.append(time.perf_counter())
    if process.wait() != 0:
        raise RuntimeError(f"nodeflow run --nproc {nproc} failed")
    gaps = [b - a for a, b in itertools.pairwise(arrivals[5:])]
    return statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_photos(folder / "photos", args.images)
        print(f"per-image graph, {args.images} images of 128x128 (images/s, first run / warm):")
        first, warm = images_per_second(folder, args.images, "local", 0)
        print(f"  local             {first:7.1f} / {warm:7.1f}")
        for workers in (1, 2):
            first, warm = ray_rates(folder, args.images, workers)
            print(f"  ray, {workers} worker(s)  {first:7.1f} / {warm:7.1f}")
        print(f"DDP, train_unet, batch 8 per process, {args.steps} steps:")
        for nproc in (1, 2):
            seconds = ddp_step_seconds(folder, nproc, args.steps)
            print(
                f"  --nproc {nproc}   {seconds * 1000:7.1f} ms/step   {nproc * 8 / seconds:6.1f} pairs/s"
            )


if __name__ == "__main__":
    main()
