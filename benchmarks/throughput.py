"""Speed side by side: nodeflow graphs against plain torch doing the same work.

    .venv/bin/python benchmarks/throughput.py

1. U-Net inference, images/s: a graph (random_image -> unet) against the same model called
   in a plain torch loop on the same batches. Target: ratio at least 0.95.
2. pix2pix training, seconds per step: a graph (sample_images -> pairs -> train_pix2pix)
   against a minimal plain torch loop with the same networks, losses, optimizers and
   data (the photos decoded once, fresh random crops and Canny edges every pass, made by
   the same `make_pairs`). Target: ratio at most 1.05.
3. Peak memory of U-Net inference on one 4096 x 4096 image, tiled (512) against untiled,
   each in a fresh process: the process's peak RSS, and on a GPU also the peak of memory
   allocated on it.

Everything runs on the `auto` device (the GPU when there is one), both sides alike.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nodeflow.engine import Cache, Executor
from nodeflow.engine.device import resolve_device
from nodeflow.engine.events import NodeFinished
from nodeflow.graph import Graph
from nodeflow.models.checkpoint import new_model, save_model
from nodeflow.models.inference import forward, prepare
from nodeflow.nodes.io import _chosen_photos, _read_sample
from nodeflow.plugins import load_registry
from nodeflow.training.datasets import make_pairs, pair_generator
from nodeflow.training.loop import memory_format

COUNT, SIZE, BATCH = 256, 128, 16  # random_image streams batches of 16
# Timings taken of each side, in turns; the best is the least disturbed by the machine.
INFERENCE_REPEATS, TRAINING_REPEATS = 15, 9
UNET = {"in_channels": 3, "out_channels": 3, "num_downs": 5, "ngf": 16}
DEVICE = resolve_device("auto")


def _unet_file(folder: Path) -> Path:
    torch.manual_seed(0)
    model = new_model("unet", UNET, task="denoise", value_range=(0.0, 1.0))
    return save_model(model, folder / "unet.safetensors")


def _graph(checkpoint: Path, size: int, count: int, tile: int) -> Graph:
    return Graph.parse(
        f"""
version = 1
[nodes.noise]
type = "random_image"
params = {{ count = {count}, size = {size} }}
[nodes.model]
type = "load_model"
params = {{ checkpoint = "{checkpoint}" }}
[nodes.out]
type = "unet"
params = {{ tile = {tile} }}
inputs = {{ image = "noise.image", model = "model.model" }}
"""
    )


def inference_throughput(folder: Path) -> tuple[float, float]:
    checkpoint = _unet_file(folder)
    registry = load_registry()
    graph = _graph(checkpoint, SIZE, COUNT, tile=4096)
    # The model is loaded once and kept in the memory cache, as the plain loop keeps it.
    executor = Executor(registry, Cache(folder / "cache"), device=str(DEVICE))
    assert executor.run(graph, targets=["out"]).ok  # warm-up

    from nodeflow.models.checkpoint import load_model

    net = prepare(load_model(checkpoint, registry), DEVICE)

    def plain_loop() -> None:
        generator = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for _ in range(COUNT // BATCH):
                x = torch.rand(BATCH, 3, SIZE, SIZE, generator=generator).to(DEVICE)
                forward(net, x).clamp(0, 1).cpu()

    plain_loop()  # warm-up
    graph_s, plain_s = _best_of_each(
        _timed(lambda: executor.run(graph, targets=["out"])), _timed(plain_loop), INFERENCE_REPEATS
    )
    return COUNT / graph_s, COUNT / plain_s


def _timed(fn: Callable[[], object]) -> Callable[[], float]:
    """`fn`, returning the seconds it took."""

    def run() -> float:
        began = time.perf_counter()
        fn()
        return time.perf_counter() - began

    return run


def _best_of_each(
    graph: Callable[[], float], plain: Callable[[], float], repeats: int
) -> tuple[float, float]:
    """The fastest of `repeats` timings of each, taken in turns so both see the same machine.

    Each callable returns the seconds it took.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(graph())
        times[1].append(plain())
    return min(times[0]), min(times[1])


PHOTOS = "rocket,motorcycle_left,motorcycle_right,hubble_deep_field,retina,immunohistochemistry"
CROP, CROPS_PER_IMAGE, STEPS, G_BATCH = 64, 16, 60, 8
GENERATOR = {"in_channels": 1, "out_channels": 3, "num_downs": 5, "ngf": 16}
DISCRIMINATOR = {"in_channels": 4, "ndf": 16, "n_layers": 3}


def pix2pix_steps() -> tuple[float, float]:
    """Seconds per training step: train_pix2pix in a graph, and the plain torch loop."""
    graph_s, plain_s = _best_of_each(pix2pix_graph(), _timed(pix2pix_plain()), TRAINING_REPEATS)
    return graph_s / STEPS, plain_s / STEPS


def pix2pix_graph() -> Callable[[], float]:
    """A run of train_pix2pix in a graph, giving the node's own time (without graph set-up)."""
    graph = Graph.parse(
        f"""
version = 1
[nodes.photos]
type = "sample_images"
params = {{ names = "{PHOTOS}", size = 256 }}
[nodes.pairs]
type = "pairs"
params = {{ task = "edges2photo", crop = {CROP}, crops_per_image = {CROPS_PER_IMAGE} }}
inputs = {{ image = "photos.image" }}
[nodes.train]
type = "train_pix2pix"
inputs = {{ dataset = "pairs.dataset" }}
[nodes.train.params]
num_downs = 5
ngf = 16
ndf = 16
steps = {STEPS}
batch_size = {G_BATCH}
sample_every = 0
lr_decay = false
"""
    )
    executor = Executor(load_registry(), Cache(enabled=False), device=str(DEVICE))
    seconds: list[float] = []

    def on_event(event: object) -> None:
        if isinstance(event, NodeFinished) and event.node == "train":
            seconds.append(event.seconds)

    def run() -> float:
        assert executor.run(graph, targets=["train"], on_event=on_event).ok
        return seconds[-1]

    return run


def pix2pix_plain() -> Callable[[], None]:
    """A run of the same training written as a plain torch loop."""
    fmt = memory_format(DEVICE)
    photos = torch.stack([_read_sample(path, 256, False) for _, path in _chosen_photos(PHOTOS)])

    def run() -> None:
        torch.manual_seed(0)
        g = new_model("unet", GENERATOR).net.to(DEVICE, memory_format=fmt).train()
        d = new_model("patchgan", DISCRIMINATOR).net.to(DEVICE, memory_format=fmt).train()
        g_opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        bce = torch.nn.BCEWithLogitsLoss()
        step, epoch = 0, 0
        while step < STEPS:
            pairs = make_pairs(
                photos, "edges2photo", pair_generator(0, epoch, 0), crop=CROP,
                crops_per_image=CROPS_PER_IMAGE, flip=True, sigma=0.0, scale=1,
            )  # fmt: skip
            for start in range(0, len(pairs.input), G_BATCH):
                edges = pairs.input[start : start + G_BATCH].to(DEVICE) * 2 - 1
                edges = edges.contiguous(memory_format=fmt)
                real = pairs.target[start : start + G_BATCH].to(DEVICE) * 2 - 1
                fake = g(edges)
                d_real = d(torch.cat([edges, real], 1))
                d_fake = d(torch.cat([edges, fake.detach()], 1))
                d_loss = 0.5 * (
                    bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
                )
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
                d.requires_grad_(False)
                judged = d(torch.cat([edges, fake], 1))
                g_loss = bce(judged, torch.ones_like(judged)) + 100 * (fake - real).abs().mean()
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                g_opt.step()
                d.requires_grad_(True)
                step += 1
                if step == STEPS:
                    return
            epoch += 1

    return run


def _peak_memory_child(checkpoint: str, tile: int) -> None:
    registry = load_registry()
    result = Executor(registry, Cache(enabled=False), device=str(DEVICE)).run(
        _graph(Path(checkpoint), 4096, 1, tile), targets=["out"]
    )
    assert result.ok, result.failed
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gpu = torch.cuda.max_memory_allocated() / 2**20 if DEVICE.type == "cuda" else None
    print(json.dumps({"peak_mb": peak_kb / 1024, "gpu_mb": gpu}))


def peak_memory(folder: Path, tile: int) -> tuple[dict, float]:
    checkpoint = folder / "unet.safetensors"
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import throughput; "
        f"throughput._peak_memory_child({str(checkpoint)!r}, {tile})"
    )
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), time.perf_counter() - began


def main() -> int:
    torch.set_num_threads(torch.get_num_threads())
    folder = Path(tempfile.mkdtemp(prefix="nodeflow-throughput-"))
    graph_ips, plain_ips = inference_throughput(folder)
    graph_step, plain_step = pix2pix_steps()
    tiled, tiled_s = peak_memory(folder, tile=512)
    untiled, untiled_s = peak_memory(folder, tile=8192)
    rows = [
        ("device", str(DEVICE), ""),
        (f"U-Net inference {SIZE}px, nodeflow graph", f"{graph_ips:.1f} img/s", ""),
        (f"U-Net inference {SIZE}px, plain torch loop", f"{plain_ips:.1f} img/s", ""),
        ("graph / plain", f"{graph_ips / plain_ips:.3f}", ">= 0.95"),
        ("pix2pix training step, nodeflow graph", f"{graph_step * 1000:.0f} ms", ""),
        ("pix2pix training step, plain torch loop", f"{plain_step * 1000:.0f} ms", ""),
        ("graph / plain", f"{graph_step / plain_step:.3f}", "<= 1.05"),
    ]
    for name, peak, seconds in (("tiled 512", tiled, tiled_s), ("untiled", untiled, untiled_s)):
        rows.append((f"4096x4096 U-Net inference, {name}: peak RSS",
                     f"{peak['peak_mb']:.0f} MB", f"{seconds:.1f} s"))  # fmt: skip
        if peak["gpu_mb"] is not None:
            rows.append((f"4096x4096 U-Net inference, {name}: peak GPU memory",
                         f"{peak['gpu_mb']:.0f} MB", ""))  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    return 0 if graph_ips / plain_ips >= 0.95 and graph_step / plain_step <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
