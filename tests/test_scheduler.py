"""Engine v2: each batch computed once for all readers, no recursion, errors a plugin author
can debug, and a registry that validates without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeflow.cli import main
from nodeflow.engine.cache import Cache
from nodeflow.engine.events import Event, NodeFailed, NodeStarted
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

PLUGINS = Path(__file__).parent / "plugins_for_tests"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(PLUGINS))
    reset_registry()
    yield load_registry()
    reset_registry()


def calls(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def run(registry: Registry, text: str, cache: Cache | None = None, **options):
    events: list[Event] = []
    executor = Executor(registry, cache or Cache(enabled=False), device="cpu", **options)
    result = executor.run(Graph.parse(text), on_event=events.append)
    return result, events


FAN_OUT = """version = 1
[nodes.src]
type = "toy.numbers"
params = {{ count = 4, batch_size = 2 }}
[nodes.costly]
type = "toy.scale"
params = {{ factor = 2.0, log = "{log}" }}
inputs = {{ image = "src.image" }}
[nodes.a]
type = "toy.total"
inputs = {{ image = "costly.image" }}
[nodes.b]
type = "toy.total"
inputs = {{ image = "costly.image" }}
[nodes.c]
type = "toy.total"
inputs = {{ image = "costly.image" }}
"""


def test_every_reader_of_a_stream_gets_the_same_batches_computed_once(
    toy: Registry, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    result, _ = run(toy, FAN_OUT.format(log=log.as_posix()))
    assert result.ok, result.failed
    assert calls(log)["costly"] == 4  # one call per batch, not one per batch per reader
    totals = {result.outputs[n]["value"] for n in "abc"}
    assert len(totals) == 1


def test_readers_that_read_two_streams_of_one_pass_in_turn_do_not_deadlock(
    toy: Registry, tmp_path: Path
) -> None:
    # metrics-like readers that drain one input before the other: the channel they are not
    # reading must take more batches rather than hold the pass back forever
    text = textwrap.dedent(
        """
        version = 1
        [nodes.src]
        type = "toy.numbers"
        params = { count = 12, batch_size = 1 }
        [nodes.left]
        type = "toy.scale"
        inputs = { image = "src.image" }
        [nodes.both]
        type = "toy.sum_one_then_other"
        inputs = { first = "src.image", second = "left.image" }
        """
    )
    result, _ = run(toy, text)
    assert result.ok, result.failed
    assert result.outputs["both"]["value"] > 0


def chain(length: int) -> str:
    lines = ['version = 1\n[nodes.n0]\ntype = "toy.numbers"\nparams = { count = 2 }\n']
    for i in range(1, length):
        lines.append(f'[nodes.n{i}]\ntype = "toy.scale"\ninputs = {{ image = "n{i - 1}.image" }}\n')
    lines.append(f'[nodes.end]\ntype = "toy.total"\ninputs = {{ image = "n{length - 1}.image" }}\n')
    return "".join(lines)


def test_a_3000_node_chain_runs_without_recursion(toy: Registry) -> None:
    result, _ = run(toy, chain(3000))
    assert result.ok, list(result.failed.items())[:3]
    assert result.outputs["end"]["value"] > 0


def test_branches_that_run_at_once_give_what_a_sequential_run_gives(registry: Registry) -> None:
    text = textwrap.dedent(
        """
        version = 1
        [nodes.photos]
        type = "sample_images"
        params = { names = "astronaut, coffee, chelsea", size = 48, batch_size = 1 }
        [nodes.noisy]
        type = "add_noise"
        params = { sigma = 20.0, seed = 3 }
        inputs = { image = "photos.image" }
        [nodes.blurred]
        type = "blur"
        inputs = { image = "noisy.image" }
        [nodes.q_noisy]
        type = "metrics"
        inputs = { image = "noisy.image", reference = "photos.image" }
        [nodes.q_blurred]
        type = "metrics"
        inputs = { image = "blurred.image", reference = "photos.image" }
        [nodes.gray]
        type = "sample_images"
        params = { names = "camera, coins", size = 48, gray = true }
        [nodes.q_gray]
        type = "metrics"
        inputs = { image = "gray.image", reference = "gray.image" }
        """
    )
    results = [run(registry, text)[0] for _ in range(3)]
    assert all(r.ok for r in results), [r.failed for r in results]
    for node in ("q_noisy", "q_blurred", "q_gray"):
        values = {json.dumps(r.outputs[node], sort_keys=True, default=str) for r in results}
        assert len(values) == 1, node


# -- errors a plugin author can debug ----------------------------------------------------------

BROKEN_PLUGIN = '''
import torch
from nodeflow.api import IMAGE, Input, Output, hookimpl, node


@node("misspelt", inputs={"image": Input(IMAGE)}, outputs={"image": Output(IMAGE), "mask": Output(IMAGE)})
def misspelt(image):
    """Returns a key that is not one of its outputs."""
    return {"image": image, "mask_": image}


@node("unbatched", inputs={"image": Input(IMAGE)}, outputs={"image": Output(IMAGE)})
def unbatched(image):
    """Returns one image without its batch dimension."""
    return image[0]


@hookimpl
def register_nodes(register):
    register(misspelt)
    register(unbatched)


@hookimpl
def register_node(register):
    pass
'''


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text(BROKEN_PLUGIN)
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", f"{folder}:{PLUGINS}")
    reset_registry()
    yield load_registry()
    reset_registry()


def graph_through(node_type: str) -> str:
    return (
        'version = 1\n[nodes.src]\ntype = "toy.numbers"\n'
        f'[nodes.bad]\ntype = "{node_type}"\ninputs = {{ image = "src.image" }}\n'
        '[nodes.sum]\ntype = "toy.total"\ninputs = { image = "bad.image" }\n'
    )


def test_a_misspelt_output_key_is_named_at_the_node_that_returned_it(broken: Registry) -> None:
    result, _ = run(broken, graph_through("broken.misspelt"))
    message = result.failed["bad"]
    assert "missing output(s) 'mask'" in message and "unknown key(s) 'mask_'" in message
    assert result.failed["sum"] == "skipped: upstream node 'bad' failed"
    assert result.skipped == ["sum"]


def test_an_image_without_its_batch_dimension_is_refused_where_it_was_made(
    broken: Registry,
) -> None:
    result, _ = run(broken, graph_through("broken.unbatched"))
    assert "must be a B x C x H x W batch" in result.failed["bad"]
    assert "(1, 4, 4)" in result.failed["bad"]


def test_a_misspelt_hook_is_reported_as_the_plugins_error(broken: Registry) -> None:
    errors = broken.plugins["broken"].errors
    assert errors == ["'register_node' is not a nodeflow hook; did you mean 'register_nodes'?"]
    assert "broken.misspelt" in broken.nodes  # its other hooks still count


def test_traceback_shows_the_line_in_the_plugin_that_failed(
    broken: Registry, tmp_path: Path
) -> None:
    graph = tmp_path / "g.toml"
    graph.write_text(graph_through("toy.crash"))
    runner = CliRunner()
    plain = runner.invoke(main, ["run", str(graph)])
    assert plain.exit_code == 1
    assert "Traceback" not in plain.output
    hint = "run again with --traceback to see where in its code bad failed"
    assert plain.output.count("--traceback") == 1 and hint in plain.output
    traced = runner.invoke(main, ["run", str(graph), "--traceback"])
    assert "Traceback (most recent call last)" in traced.output
    assert "toy.py" in traced.output and "--traceback" not in traced.output
    events = runner.invoke(main, ["run", str(graph), "--events", "jsonl"])
    failed = [json.loads(line) for line in events.output.splitlines() if '"NodeFailed"' in line]
    bad = next(e for e in failed if e["node"] == "bad")
    assert "toy.py" in bad["traceback"] and bad["upstream"] is None
    started = next(json.loads(line) for line in events.output.splitlines() if "RunStarted" in line)
    assert started["engine"] == "local" and started["world_size"] == 1
    graph.write_text(graph_through("toy.scale"))
    fine = runner.invoke(main, ["run", str(graph)])
    assert fine.exit_code == 0 and "--traceback" not in fine.output, fine.output


def test_training_in_fp16_is_refused_with_a_reason(registry: Registry) -> None:
    text = textwrap.dedent(
        """
        version = 1
        [nodes.photos]
        type = "sample_images"
        params = { names = "astronaut", size = 32 }
        [nodes.pairs]
        type = "pairs"
        params = { task = "denoise", crop = 16 }
        inputs = { image = "photos.image" }
        [nodes.train]
        type = "train_unet"
        params = { steps = 2, num_downs = 2, ngf = 4 }
        inputs = { dataset = "pairs.dataset" }
        """
    )
    events: list[Event] = []
    executor = Executor(registry, Cache(enabled=False), device="cpu", precision="fp16")
    result = executor.run(Graph.parse(text), on_event=events.append)
    assert "training does not run in fp16" in result.failed["train"]
    assert "train" not in [e.node for e in events if isinstance(e, NodeStarted)][1:] or any(
        isinstance(e, NodeFailed) and e.node == "train" for e in events
    )


# -- fast start ----------------------------------------------------------------------------------


def _cli_in_fresh_python(args: list[str], env_cache: Path) -> tuple[str, bool]:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom nodeflow.cli import main\n"
        f"result = CliRunner().invoke(main, {args!r})\n"
        "print(result.output)\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**_env(), "NODEFLOW_CACHE_DIR": str(env_cache)},
        check=True,
    )
    return done.stdout, done.stdout.rstrip().endswith("TORCH") and "NO-TORCH" not in done.stdout


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("NODEFLOW_")}


def test_validate_nodes_and_plugins_answer_without_importing_torch(tmp_path: Path) -> None:
    graph = Path(__file__).parent.parent / "graphs" / "showcase.toml"
    cache = tmp_path / "cache"
    _, imported = _cli_in_fresh_python(["validate", str(graph)], cache)
    assert imported  # the first call builds the manifest, which imports every plugin
    for args in (["validate", str(graph)], ["nodes"], ["nodes", "unet"], ["plugins"]):
        output, imported = _cli_in_fresh_python(args, cache)
        assert not imported, args
        assert "ok" in output or "unet" in output or "nodeflow.nodes.io" in output


def test_the_manifest_describes_every_node_as_the_registry_does(
    registry: Registry, tmp_path: Path
) -> None:
    from nodeflow.manifest import from_manifest, to_manifest

    described = from_manifest(json.loads(json.dumps(to_manifest(registry, "x"))))
    assert set(described.nodes) == set(registry.nodes)
    for type_id, real in registry.nodes.items():
        copy = described.nodes[type_id]
        assert copy.to_json() == real.to_json(), type_id
        for field in ("output_node", "persist", "inference", "writes", "names", "reads", "mode"):
            assert getattr(copy, field) == getattr(real, field), (type_id, field)
        assert {n: i.uint8 for n, i in copy.inputs.items()} == {
            n: i.uint8 for n, i in real.inputs.items()
        }
    assert [p.to_json() for p in described.plugins.values()] == [
        p.to_json() for p in registry.plugins.values()
    ]


def test_8_bit_files_stream_as_bytes_and_reach_float_nodes_as_floats(
    registry: Registry, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    rng = np.random.default_rng(0)
    originals = {}
    (tmp_path / "in").mkdir()
    for i in range(5):
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / f"p{i}.png")
        originals[f"p{i}"] = pixels
    text = textwrap.dedent(
        f"""
        version = 1
        [nodes.photos]
        type = "load_images"
        params = {{ path = "{tmp_path / "in"}", batch_size = 2 }}
        [nodes.flipped]
        type = "flip"
        inputs = {{ image = "photos.image" }}
        [nodes.small]
        type = "resize"
        params = {{ size = [12, 16] }}
        inputs = {{ image = "photos.image" }}
        [nodes.save_flipped]
        type = "save_images"
        params = {{ folder = "{tmp_path / "flipped"}" }}
        inputs = {{ image = "flipped.image" }}
        [nodes.save_small]
        type = "save_images"
        params = {{ folder = "{tmp_path / "small"}" }}
        inputs = {{ image = "small.image" }}
        """
    )
    result, _ = run(registry, text)
    assert result.ok, result.failed
    assert result.previews["photos"].data.dtype == torch.float32  # clients see floats
    for name, pixels in originals.items():
        flipped = np.asarray(Image.open(tmp_path / "flipped" / f"{name}.png"))
        np.testing.assert_array_equal(flipped, pixels[:, ::-1])
        small = np.asarray(Image.open(tmp_path / "small" / f"{name}.png")).astype(int)
        as_float = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        expected = F.interpolate(as_float, size=(12, 16), mode="bilinear", antialias=True)
        expected = (expected[0].permute(1, 2, 0).clamp(0, 1) * 255).round().int().numpy()
        assert np.abs(small - expected).max() <= 1
