"""Engine v2 figures, side by side in one run.

    .venv/bin/python benchmarks/engine.py [--quick]

The machine is noisy (2 cores, often shared), so the two sides of every comparison run in
turns, each figure is the best of N, and the spread (best..worst) is printed beside it.

- fan-out: a denoising U-Net read by one node, then by three (save_images, metrics,
  grid); the extra time of the two extra readers as a fraction of the U-Net's own time.
- per-node overhead: a chain of 1,000 per-image nodes (`flip` on one 16x16 image) against a
  chain of 1, through the engine API with no cache, graph parsing and validation included;
  a 3,000-node chain must run.
- `nodeflow validate` and `nodeflow nodes` against `python -c "import torch"`, whole
  processes.
- `graphs/showcase.toml` run in a new process after a first run, against that first run.
- 2,000 JPEGs from 512 to 256 px through `load_images -> resize -> save_images`, whole
  `nodeflow run` process, against a plain single-threaded Pillow loop doing the same.
- peak memory (max RSS) of that graph over 2,000 images against 200.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
NODEFLOW = [str(BIN / "nodeflow")]


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def in_turns(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each side's timings, the sides taking turns so drifts of the machine hit both alike."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, measure in sides.items():
            times[name].append(measure())
    return times


def spread(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    return (
        f"{min(values) * scale:.3g} {unit} ({min(values) * scale:.3g}..{max(values) * scale:.3g})"
    )


def run_process(args: list[str], env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - began


def max_rss_mb(args: list[str], env: dict[str, str]) -> float:
    """Peak resident memory of a whole command, from a wrapper process's child usage."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *args], check=True, capture_output=True, text=True, env=env
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def environment(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEFLOW_")}
    env["NODEFLOW_CACHE_DIR"] = str(cache)
    return env


# -- fan-out ----------------------------------------------------------------------------------

FAN_OUT = """version = 1
[nodes.photos]
type = "sample_images"
params = {{ size = 256, batch_size = 3 }}
[nodes.noisy]
type = "add_noise"
params = {{ sigma = 25.0 }}
inputs = {{ image = "photos.image" }}
[nodes.model]
type = "load_model"
params = {{ checkpoint = "denoise" }}
[nodes.denoised]
type = "unet"
inputs = {{ image = "noisy.image", model = "model.model" }}
[nodes.save]
type = "save_images"
params = {{ folder = "{out}" }}
inputs = {{ image = "denoised.image" }}
"""
READERS = """[nodes.quality]
type = "metrics"
inputs = { image = "denoised.image", reference = "photos.image" }
[nodes.sheet]
type = "grid"
inputs = { image = "denoised.image" }
"""


NO_UNET = """version = 1
[nodes.photos]
type = "sample_images"
params = {{ size = 256, batch_size = 3 }}
[nodes.noisy]
type = "add_noise"
params = {{ sigma = 25.0 }}
inputs = {{ image = "photos.image" }}
[nodes.save]
type = "save_images"
params = {{ folder = "{out}" }}
inputs = {{ image = "noisy.image" }}
"""


def fan_out(repeats: int, work: Path) -> list[tuple[str, str, str]]:
    """The U-Net graph with one reader and with three; and, to tell the readers' own work
    from the engine's, the same readers on the noisy photos with no U-Net before them."""
    from nodeflow.engine.cache import Cache
    from nodeflow.engine.events import NodeFinished
    from nodeflow.engine.executor import Executor
    from nodeflow.graph import Graph
    from nodeflow.plugins import load_registry

    registry = load_registry()
    one = Graph.parse(FAN_OUT.format(out=work / "fan1"))
    three = Graph.parse(FAN_OUT.format(out=work / "fan3") + READERS)
    bare = Graph.parse(NO_UNET.format(out=work / "bare1"))
    bare_readers = Graph.parse(
        NO_UNET.format(out=work / "bare3") + READERS.replace("denoised.image", "noisy.image")
    )
    unet_seconds: list[float] = []

    def measure(graph: Graph) -> Callable[[], float]:
        def once() -> float:
            events: list = []
            executor = Executor(registry, Cache(enabled=False))
            took = timed(lambda: executor.run(graph, on_event=events.append))
            unet_seconds.extend(
                e.seconds for e in events if isinstance(e, NodeFinished) and e.node == "denoised"
            )
            return took

        return once

    measure(one)()  # warm-up: model file, sample photo decoding
    graphs = {
        "one reader": one,
        "three readers": three,
        "no U-Net": bare,
        "no U-Net, three": bare_readers,
    }
    times = in_turns({name: measure(graph) for name, graph in graphs.items()}, repeats)
    unet = min(unet_seconds)
    extra = min(times["three readers"]) - min(times["one reader"])
    readers = min(times["no U-Net, three"]) - min(times["no U-Net"])
    return [
        ("fan-out: graph with one reader of the U-Net", spread(times["one reader"]), ""),
        ("fan-out: the same with three readers", spread(times["three readers"]), ""),
        ("fan-out: the U-Net's own time", spread(unet_seconds), ""),
        ("fan-out: two extra readers / U-Net time", f"{extra / unet:.2f}", "<= 0.25 (was 2.9)"),
        ("fan-out: the two readers' own work, no U-Net", f"{readers:.3f} s", ""),
        ("fan-out: extra time less the readers' own work / U-Net time",
         f"{(extra - readers) / unet:.2f}", ""),
    ]  # fmt: skip


# -- per-node overhead --------------------------------------------------------------------------


def chain_text(length: int) -> str:
    lines = ['version = 1\n[nodes.n0]\ntype = "random_image"\nparams = { count = 1, size = 16 }\n']
    for i in range(1, length):
        lines.append(f'[nodes.n{i}]\ntype = "flip"\ninputs = {{ image = "n{i - 1}.image" }}\n')
    lines.append(
        f'[nodes.end]\ntype = "metrics"\ninputs = {{ image = "n{length - 1}.image", reference = "n0.image" }}\n'
    )
    return "".join(lines)


def flip_seconds() -> float:
    """The `flip` node's function on the chain's 16x16 image, best of many calls."""
    import timeit

    import torch

    from nodeflow.plugins import load_registry

    flip = load_registry().nodes["flip"]
    direction = flip.params["direction"].default
    image = torch.rand(1, 3, 16, 16)
    number = 2000
    calls = timeit.repeat(lambda: flip.fn(image, direction=direction), number=number, repeat=5)
    return min(calls) / number


def overhead(repeats: int) -> list[tuple[str, str, str]]:
    from nodeflow.engine.cache import Cache
    from nodeflow.engine.executor import Executor
    from nodeflow.graph import Graph
    from nodeflow.plugins import load_registry

    registry = load_registry()
    texts = {n: chain_text(n) for n in (1, 1000, 3000)}
    graphs = {n: Graph.parse(text) for n, text in texts.items()}

    def measure(length: int, parse: bool) -> Callable[[], float]:
        def once() -> float:
            def work() -> None:
                graph = Graph.parse(texts[length]) if parse else graphs[length]
                result = Executor(registry, Cache(enabled=False)).run(graph)
                assert result.ok, list(result.failed.items())[:2]

            return timed(work)

        return once

    times = in_turns(
        {
            "run 1": measure(1, False),
            "run 1000": measure(1000, False),
            "file 1": measure(1, True),
            "file 1000": measure(1000, True),
        },
        repeats,
    )

    def per_node(short: str, long: str) -> list[float]:
        pairs = zip(sorted(times[short]), sorted(times[long]), strict=True)
        return [(b - a) / 999 * 1e6 for a, b in pairs]

    long_chain = measure(3000, True)()
    own = flip_seconds()
    engine_only = [t - own * 1e6 for t in per_node("run 1", "run 1000")]
    return [
        ("1,000-node chain: validate, plan and run", spread(times["run 1000"]), ""),
        ("per-node cost, no cache, the node's own work included", spread(per_node("run 1", "run 1000"), "us"),
         "<= 50 us (was ~1,000)"),
        ("the node's own work: flip of one 16x16 image, called alone", f"{own * 1e6:.1f} us", ""),
        ("per-node overhead of the engine alone", spread(engine_only, "us"), ""),
        ("per-node cost with reading the TOML file too", spread(per_node("file 1", "file 1000"), "us"),
         ""),
        ("3,000-node chain, whole run from text", f"{long_chain:.2f} s", "runs (was RecursionError)"),
    ]  # fmt: skip


# -- start-up -------------------------------------------------------------------------------------


def start_up(repeats: int, work: Path) -> list[tuple[str, str, str]]:
    env = environment(work / "startup-cache")
    graph = str(ROOT / "graphs" / "showcase.toml")
    run_process([*NODEFLOW, "validate", graph], env)  # builds the manifest once
    times = in_turns(
        {
            "torch": lambda: run_process([sys.executable, "-c", "import torch"], env),
            "validate": lambda: run_process([*NODEFLOW, "validate", graph], env),
            "nodes": lambda: run_process([*NODEFLOW, "nodes"], env),
        },
        repeats,
    )
    torch_s = min(times["torch"])
    return [
        ('python -c "import torch"', spread(times["torch"]), ""),
        ("nodeflow validate graphs/showcase.toml", spread(times["validate"]), ""),
        ("nodeflow nodes", spread(times["nodes"]), ""),
        ("validate / import torch", f"{min(times['validate']) / torch_s:.2f}", "<= 0.25 (was 2.5)"),
        ("nodes / import torch", f"{min(times['nodes']) / torch_s:.2f}", "<= 0.25 (was 2.5)"),
    ]


# -- showcase re-run ------------------------------------------------------------------------------


def showcase(repeats: int, work: Path) -> list[tuple[str, str, str]]:
    graph = str(ROOT / "graphs" / "showcase.toml")
    firsts, seconds = [], []
    for i in range(repeats):
        env = environment(work / f"showcase-cache-{i}")
        firsts.append(run_process([*NODEFLOW, "run", graph, "--quiet"], env))
        seconds.append(run_process([*NODEFLOW, "run", graph, "--quiet"], env))
    ratios = [b / a for a, b in zip(firsts, seconds, strict=True)]
    return [
        ("graphs/showcase.toml, first run (new cache)", spread(firsts), ""),
        ("the same, run again in a new process", spread(seconds), ""),
        (
            "re-run / first run",
            f"{min(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f})",
            "<= 0.5 (was 1.0)",
        ),
    ]


# -- folders ---------------------------------------------------------------------------------------

PILLOW_LOOP = """
import sys
from pathlib import Path
from PIL import Image
source, target = Path(sys.argv[1]), Path(sys.argv[2])
target.mkdir(parents=True, exist_ok=True)
for path in sorted(source.iterdir()):
    with Image.open(path) as image:
        image.convert("RGB").resize((256, 256), Image.Resampling.BILINEAR).save(target / (path.stem + ".png"))
"""

FOLDER_GRAPH = """version = 1
[nodes.photos]
type = "load_images"
params = {{ path = "{source}" }}
[nodes.small]
type = "resize"
params = {{ size = 256 }}
inputs = {{ image = "photos.image" }}
[nodes.save]
type = "save_images"
params = {{ folder = "{target}" }}
inputs = {{ image = "small.image" }}
"""


def make_jpegs(folder: Path, count: int) -> None:
    """`count` different 512 x 512 JPEGs cut from the bundled sample photos."""
    import numpy as np
    from PIL import Image

    from nodeflow.nodes.io import sample_photos

    photos = [Image.open(p).convert("RGB") for p in sample_photos().values()]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        smallest = min(photo.size)
        side = int(rng.integers(smallest // 2, smallest + 1))
        left = int(rng.integers(0, photo.width - side + 1))
        top = int(rng.integers(0, photo.height - side + 1))
        tile = photo.crop((left, top, left + side, top + side)).resize((512, 512))
        tile.save(folder / f"photo_{i:05d}.jpg", quality=90)


def folders(repeats: int, work: Path, count: int) -> list[tuple[str, str, str]]:
    env = environment(work / "folder-cache")
    rows = []
    sources = {}
    for n in sorted({count, count // 10}):
        sources[n] = work / f"jpegs-{n}"
        make_jpegs(sources[n], n)
    graphs = {}
    for n, source in sources.items():
        graphs[n] = work / f"folder-{n}.toml"
        graphs[n].write_text(FOLDER_GRAPH.format(source=source, target=work / f"out-{n}"))

    def pillow() -> float:
        shutil.rmtree(work / "pillow-out", ignore_errors=True)
        return run_process(
            [sys.executable, "-c", PILLOW_LOOP, str(sources[count]), str(work / "pillow-out")], env
        )

    def graph() -> float:
        shutil.rmtree(work / f"out-{count}", ignore_errors=True)
        return run_process([*NODEFLOW, "run", str(graphs[count]), "--no-cache", "--quiet"], env)

    times = in_turns({"pillow": pillow, "graph": graph}, repeats)
    rows += [
        (f"{count} JPEGs 512->256, plain Pillow loop", spread(times["pillow"]), ""),
        (f"{count} JPEGs 512->256, nodeflow run (whole process)", spread(times["graph"]), ""),
        (
            "nodeflow / Pillow loop",
            f"{min(times['graph']) / min(times['pillow']):.2f}",
            "<= 1.0 (was ~8)",
        ),
    ]
    rss = {}
    for n in sources:
        shutil.rmtree(work / f"out-{n}", ignore_errors=True)
        rss[n] = max_rss_mb([*NODEFLOW, "run", str(graphs[n]), "--no-cache", "--quiet"], env)
    small, large = sorted(rss)
    rows += [
        (f"peak memory, {small} images", f"{rss[small]:.0f} MB", ""),
        (f"peak memory, {large} images", f"{rss[large]:.0f} MB", ""),
        (f"peak memory {large} / {small}", f"{rss[large] / rss[small]:.2f}", "<= 1.2"),
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images")
    parser.add_argument("--only", choices=["fanout", "overhead", "startup", "showcase", "folders"])
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    work = Path(tempfile.mkdtemp(prefix="nodeflow-engine-bench-"))
    os.environ.setdefault("NODEFLOW_CACHE_DIR", str(work / "cache"))
    parts = {
        "fanout": lambda: fan_out(repeats, work),
        "overhead": lambda: overhead(repeats),
        "startup": lambda: start_up(repeats * 2, work),
        "showcase": lambda: showcase(2 if args.quick else 3, work),
        "folders": lambda: folders(2 if args.quick else 3, work, 200 if args.quick else 2000),
    }
    for name, part in parts.items():
        if args.only in (None, name):
            for row, value, target in part():  # printed part by part: a long run shows progress
                print(f"{row:<52}  {value:<28}  {target}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
