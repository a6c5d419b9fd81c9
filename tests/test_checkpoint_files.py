"""Checkpoint files as users meet them: tiny files claiming huge networks, files that are
something else, wrapped state dicts, damaged weights, precisions a model cannot take, and
the general `apply_model` node."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from nodeflow.cli import main
from nodeflow.engine.cache import Cache
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.models.checkpoint import (
    METADATA_KEY,
    detect_architecture,
    load_model,
    new_model,
    save_model,
)
from nodeflow.registry import Architecture, PluginRecord, Registry

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_tiny_file_claiming_a_huge_network_is_refused_before_anything_is_built(
    registry: Registry, tmp_path: Path
) -> None:
    """Metadata of ngf 1024, num_downs 8 describes a 55.7 GB U-Net; the file holds 4 bytes."""
    spec = {"arch": "unet", "purpose": "image-to-image", "in_channels": 3, "out_channels": 3,
            "hparams": {"ngf": 1024, "num_downs": 8}}  # fmt: skip
    path = tmp_path / "huge.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={METADATA_KEY: json.dumps(spec)})
    assert path.stat().st_size < 300

    before = peak_rss_mb()
    with pytest.raises(ValueError) as refused:
        load_model(path, registry)
    assert peak_rss_mb() - before < 200
    message = str(refused.value)
    assert "huge.safetensors" in message
    assert "metadata describes architecture 'unet'" in message
    assert "'ngf': 1024" in message and "missing model.model.0.weight" in message


def test_metadata_that_disagrees_with_the_tensor_shapes_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    model = new_model("unet", {"num_downs": 3, "ngf": 4}, registry)
    tensors = {k: v.contiguous() for k, v in model.net.state_dict().items()}
    spec = {**model.info.to_metadata(), "hparams": {"num_downs": 3, "ngf": 512}}
    save_file(
        tensors, str(tmp_path / "lies.safetensors"), metadata={METADATA_KEY: json.dumps(spec)}
    )
    with pytest.raises(ValueError, match=r"wrong shape model\.model\.0\.weight \(file 4x3x4x4, model 512x3x4x4\)"):  # fmt: skip
        load_model(tmp_path / "lies.safetensors", registry)


def write_png(path: Path) -> Path:
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, format="PNG")
    return path


@pytest.mark.parametrize(
    ("name", "write", "says"),
    [
        ("photo.safetensors", write_png, "it is a PNG image, not a checkpoint"),
        (
            "photo.pth",
            lambda p: Image.new("RGB", (8, 8)).save(p, format="JPEG"),
            "is a JPEG image, not a checkpoint",
        ),
        (
            "model.safetensors",
            lambda p: torch.save({"w": torch.zeros(2)}, p),
            "it is a PyTorch checkpoint (the zip format torch.save writes), not safetensors: "
            "name it model.pth",
        ),
        (
            "model.pth",
            lambda p: save_file({"w": torch.zeros(2)}, str(p)),
            "is a safetensors file, not a PyTorch checkpoint: name it model.safetensors",
        ),
        (
            "model.pth",
            lambda p: p.write_text("<!DOCTYPE html><html><body>Sign in</body></html>"),
            "is an HTML page",
        ),
        ("empty.safetensors", lambda p: p.write_bytes(b""), "it is an empty file"),
        (
            "notes.txt",
            lambda p: p.write_text("version = 1\n[nodes.a]\n"),
            "not a checkpoint nodeflow reads; it is a nodeflow graph file",
        ),
    ],
    ids=["png", "jpeg", "torch-as-safetensors", "safetensors-as-pth", "html", "empty", "graph"],
)
def test_a_file_that_is_not_a_checkpoint_is_called_what_it_is(
    registry: Registry, tmp_path: Path, name: str, write, says: str
) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError) as refused:
        load_model(path, registry)
    assert says in str(refused.value)
    assert "header too large" not in str(refused.value)


def test_models_file_names_a_png_for_what_it_is(tmp_path: Path) -> None:
    png = write_png(tmp_path / "4x-upscaler.safetensors")
    result = CliRunner().invoke(main, ["models", "--file", str(png)])
    assert result.exit_code == 1
    assert "it is a PNG image, not a checkpoint" in result.output


def test_models_file_describes_a_shipped_checkpoint() -> None:
    result = CliRunner().invoke(main, ["models", "--file", "superres4"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines() if "  " in line)
    assert lines["architecture"].startswith("unet, from nodeflow itself")
    assert lines["scale"] == "4x"
    assert "padded to a multiple of 16" in result.output
    assert "shipped with nodeflow" in result.output
    report = json.loads(
        CliRunner().invoke(main, ["models", "--file", "superres4", "--json"]).output
    )
    assert report["parameters"] == sum(
        p.numel() for p in load_model(report["path"]).net.parameters()
    )


def test_wrapped_state_dicts_prefer_the_ema_weights_and_lose_their_prefix(
    registry: Registry, tmp_path: Path
) -> None:
    """BasicSR saves {'params': raw, 'params_ema': averaged}; the averaged ones are better."""
    ema = new_model("unet", {"num_downs": 3, "ngf": 4}, registry).net.state_dict()
    raw = new_model("unet", {"num_downs": 3, "ngf": 4}, registry).net.state_dict()
    torch.save(
        {
            "params": {f"module.{k}": v for k, v in raw.items()},
            "params_ema": {f"module.{k}": v for k, v in ema.items()},
        },
        tmp_path / "net_g.pth",
    )
    loaded = load_model(tmp_path / "net_g.pth", registry).net.state_dict()
    for key, value in ema.items():
        torch.testing.assert_close(loaded[key], value)


def test_a_fallback_architecture_is_asked_only_after_the_others() -> None:
    claims_everything = Architecture("catch_all", lambda _sd: True, lambda sd, md: None, "x")
    claims_convs = Architecture("convs", lambda sd: "conv.weight" in sd, lambda sd, md: None)
    registry = Registry()
    record = PluginRecord("test", "test", builtin=True)
    registry.add_architecture(record, Architecture(**{**vars(claims_everything), "fallback": True}))
    registry.add_architecture(record, claims_convs)
    assert registry.architectures["catch_all"].fallback

    assert detect_architecture({"conv.weight": torch.zeros(1)}, registry).id == "convs"
    assert detect_architecture({"other": torch.zeros(1)}, registry).id == "catch_all"


def nan_model(registry: Registry, folder: Path) -> Path:
    model = new_model("unet", {"num_downs": 3, "ngf": 4}, registry, task="denoise")
    with torch.no_grad():
        for parameter in model.net.parameters():
            parameter.fill_(float("nan"))
    return save_model(model, folder / "diverged.safetensors")


@pytest.mark.parametrize("node_type", ["apply_model", "unet"])
def test_non_finite_outputs_fail_the_node_instead_of_saving_black(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path, node_type: str
) -> None:
    path = nan_model(registry, tmp_path)
    text = "version = 1\n" + tensor_source.node("src", torch.rand(2, 3, 16, 16))
    text += f'[nodes.m]\ntype = "load_model"\nparams = {{ checkpoint = "{path.name}" }}\n'
    text += f'[nodes.clean]\ntype = "{node_type}"\ninputs = {{ image = "src.image", model = "m.model" }}\n'
    text += '[nodes.save]\ntype = "save_images"\nparams = { folder = "out" }\ninputs = { image = "clean.image" }\n'
    result, _ = run_graph(text)
    assert not result.ok
    assert "node 'clean'" in result.failed["clean"]
    assert "output is not finite (100% of its values are NaN or infinite)" in result.failed["clean"]
    assert not list((tmp_path / "out").glob("*.png"))


def shipped_graph(node_type: str, checkpoint: str) -> str:
    return f"""version = 1
[nodes.photos]
type = "sample_images"
params = {{ names = "astronaut", size = 32 }}
[nodes.m]
type = "load_model"
params = {{ checkpoint = "{checkpoint}" }}
[nodes.out]
type = "{node_type}"
inputs = {{ image = "photos.image", model = "m.model" }}
"""


@pytest.mark.parametrize("checkpoint", ["colorize", "superres4"])
def test_apply_model_runs_nodeflows_own_models_as_unet_does(run_graph, checkpoint: str) -> None:
    outputs = {}
    for node_type in ("apply_model", "unet"):
        result, _ = run_graph(shipped_graph(node_type, checkpoint), targets=["out"])
        assert result.ok, result.failed
        outputs[node_type] = torch.cat([b.data for b in result.outputs["out"]["image"]])
    side = 128 if checkpoint == "superres4" else 32
    assert outputs["apply_model"].shape == (1, 3, side, side)
    torch.testing.assert_close(outputs["apply_model"], outputs["unet"])


def test_a_precision_the_model_does_not_support_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    model = new_model("unet", {"num_downs": 3, "ngf": 4}, registry, supports_bfloat16=False)
    path = save_model(model, tmp_path / "no-bf16.safetensors")
    assert load_model(path, registry).info.supports_bfloat16 is False
    graph_file = tmp_path / "graph.toml"
    graph_file.write_text(shipped_graph("apply_model", path.name))

    def run(precision: str):
        executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu", precision=precision)
        return executor.run(Graph.load(graph_file), targets=["out"])

    refused = run("bf16")
    assert not refused.ok
    assert "does not support bf16" in refused.failed["out"]
    assert "run with --precision fp32 or fp16" in refused.failed["out"]
    assert run("fp32").ok
