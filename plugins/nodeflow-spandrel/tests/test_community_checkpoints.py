"""Community checkpoints load through `load_model` and give spandrel's own outputs.

Each network is built in the test from spandrel's own classes with small hyperparameters
and random weights, saved as users' files are (.pth, .safetensors, wrapped dicts, the new
ESRGAN key layout), loaded by a graph's `load_model` and run by `apply_model`; the result
must match what spandrel itself gives for the same network and input.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import spandrel
import torch
from click.testing import CliRunner
from nodeflow_spandrel.community import EXTRA_ARCHES_ENV, PERMISSIVE, RESTRICTIVE
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.DnCNN import DnCNN
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.SCUNet import SCUNet
from spandrel.architectures.SwinIR import SwinIR
from torch import nn

from nodeflow.cli import main
from nodeflow.engine.cache import Cache
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.models.checkpoint import load_model, save_model

GRAPHS = Path(__file__).resolve().parents[3] / "graphs"
TOLERANCE = 1.5 / 255
ESRGAN_BLOCKS = 1


def randomised(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    """A network with random weights (its own init, seeded) and random norm statistics."""
    torch.manual_seed(seed)
    net = make()
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
    return net.eval()


def esrgan() -> nn.Module:
    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=ESRGAN_BLOCKS, scale=4)


def new_esrgan_layout(old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The BasicSR / Real-ESRGAN RRDBNet key names of a 4x old-layout ESRGAN state dict."""
    renames = {
        "model.0.": "conv_first.",
        f"model.1.sub.{ESRGAN_BLOCKS}.": "conv_body.",
        "model.3.": "conv_up1.",
        "model.6.": "conv_up2.",
        "model.8.": "conv_hr.",
        "model.10.": "conv_last.",
    }
    new = {}
    for key, value in old.items():
        block = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key)
        if block:
            new["body.{}.rdb{}.conv{}.{}".format(*block.groups())] = value
            continue
        prefix = next(p for p in renames if key.startswith(p))
        new[renames[prefix] + key[len(prefix) :]] = value
    return new


def wrapped_like_basicsr(state_dict: dict[str, torch.Tensor]) -> dict:
    """A BasicSR training save: EMA weights and (different) raw weights, DataParallel keys."""
    raw = randomised(esrgan, seed=99).state_dict()
    return {
        "params": {f"module.{k}": v for k, v in raw.items()},
        "params_ema": {f"module.{k}": v for k, v in state_dict.items()},
    }


def swinir() -> nn.Module:
    return SwinIR(
        img_size=16,
        embed_dim=12,
        depths=[1],
        num_heads=[2],
        window_size=4,
        mlp_ratio=2.0,
        upscale=2,
        upsampler="pixelshuffledirect",
    )


# name: (network, how the file is written, spandrel architecture, scale)
CASES: dict[str, tuple[Callable[[], nn.Module], str, str, int]] = {
    "esrgan-old-pth": (esrgan, "pth", "ESRGAN", 4),
    "esrgan-new-pth": (esrgan, "new-layout", "ESRGAN", 4),
    "esrgan-safetensors": (esrgan, "safetensors", "ESRGAN", 4),
    "esrgan-params-ema": (esrgan, "wrapped", "ESRGAN", 4),
    "compact": (
        lambda: Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2),
        "pth",
        "Compact",
        2,
    ),
    "swinir": (swinir, "safetensors", "SwinIR", 2),
    "scunet": (lambda: SCUNet(in_nc=3, config=[1] * 7, dim=64), "pth", "SCUNet", 1),
    "dncnn": (lambda: DnCNN(in_nc=3, out_nc=3, nc=8, nb=4), "safetensors", "DnCNN", 1),
}


def write_checkpoint(net: nn.Module, how: str, folder: Path) -> Path:
    state_dict = {k: v.contiguous() for k, v in net.state_dict().items()}
    if how == "safetensors":
        save_file(state_dict, str(folder / "model.safetensors"))
        return folder / "model.safetensors"
    layouts = {"pth": dict, "new-layout": new_esrgan_layout, "wrapped": wrapped_like_basicsr}
    torch.save(layouts[how](state_dict), folder / "model.pth")
    return folder / "model.pth"


def upscale_graph(checkpoint: Path, size: tuple[int, int] = (15, 13)) -> str:
    return f"""version = 1
[nodes.photos]
type = "random_image"
params = {{ count = 2, size = [{size[0]}, {size[1]}], seed = 3 }}
[nodes.model]
type = "load_model"
params = {{ checkpoint = "{checkpoint.as_posix()}" }}
[nodes.out]
type = "apply_model"
inputs = {{ image = "photos.image", model = "model.model" }}
"""


def images(result, node: str) -> torch.Tensor:
    return torch.cat([batch.data for batch in result.outputs[node]["image"]])


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_community_checkpoints_give_spandrels_outputs(run_graph, tmp_path: Path, case: str) -> None:
    make, how, architecture, scale = CASES[case]
    net = randomised(make, seed=len(case))
    checkpoint = write_checkpoint(net, how, tmp_path)
    result, _ = run_graph(upscale_graph(checkpoint), targets=["out", "photos", "model"])
    assert result.ok, result.failed

    model = result.outputs["model"]["model"]
    reference = spandrel.ModelLoader().load_from_state_dict(net.state_dict())
    assert model.info.hparams["architecture"] == architecture
    assert (model.info.scale, model.info.in_channels, model.info.out_channels) == (scale, 3, 3)
    assert model.info.supports_half == reference.supports_half
    assert model.info.supports_bfloat16 == reference.supports_bfloat16
    assert model.info.tiling == (reference.tiling is spandrel.ModelTiling.SUPPORTED)
    assert model.info.extra["licence"] == PERMISSIVE

    photos = images(result, "photos")
    with torch.inference_mode():
        expected = torch.cat([reference(photo[None]) for photo in photos])
    inside = ((expected > 0) & (expected < 1)).float().mean()
    assert inside > 0.25, "random weights that clip most outputs would make a weak comparison"
    out = images(result, "out")
    assert out.shape == (2, 3, 15 * scale, 13 * scale)
    assert (out - expected).abs().max() <= TOLERANCE


def test_a_saved_or_pickled_community_model_rebuilds_with_the_same_outputs(
    nodeflow_registry, tmp_path: Path
) -> None:
    net = randomised(esrgan, seed=5)
    model = load_model(write_checkpoint(net, "pth", tmp_path), nodeflow_registry)
    copy = load_model(save_model(model, tmp_path / "copy.safetensors"), nodeflow_registry)
    unpickled = pickle.loads(pickle.dumps(model.net))
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model.net(x)
        torch.testing.assert_close(copy.net(x), expected)
        torch.testing.assert_close(unpickled(x), expected)
    assert copy.info == model.info


def run_at(precision: str, registry, folder: Path, checkpoint: Path):
    path = folder / f"graph-{precision}.toml"
    path.write_text(upscale_graph(checkpoint, size=(16, 16)))
    executor = Executor(registry, Cache(folder / "cache"), device="cpu", precision=precision)
    return executor.run(Graph.load(path), targets=["out"])


def test_precisions_a_model_does_not_support_are_refused(nodeflow_registry, tmp_path: Path) -> None:
    dncnn = write_checkpoint(
        randomised(lambda: DnCNN(in_nc=3, out_nc=3, nc=8, nb=4), 1), "pth", tmp_path
    )
    refused = run_at("fp16", nodeflow_registry, tmp_path, dncnn)
    assert not refused.ok
    assert "does not support fp16" in refused.failed["out"]
    assert "--precision fp32 or bf16" in refused.failed["out"]
    assert run_at("bf16", nodeflow_registry, tmp_path, dncnn).ok

    (tmp_path / "esrgan").mkdir()
    esrgan_file = write_checkpoint(randomised(esrgan, 2), "pth", tmp_path / "esrgan")
    assert run_at("fp16", nodeflow_registry, tmp_path, esrgan_file).ok


class RunsCode:
    """Unpickling this calls Path.touch: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(
    nodeflow_registry, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    state_dict = randomised(esrgan, 3).state_dict()
    torch.save({"params_ema": state_dict, "hook": RunsCode(marker)}, tmp_path / "4x-evil.pth")
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_model(tmp_path / "4x-evil.pth", nodeflow_registry)
    assert not marker.exists()


def test_models_file_says_what_a_community_checkpoint_is(nodeflow_registry, tmp_path: Path) -> None:
    net = randomised(esrgan, 4)
    checkpoint = write_checkpoint(net, "new-layout", tmp_path)
    text = CliRunner().invoke(main, ["models", "--file", str(checkpoint)], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "ESRGAN (nodeflow architecture spandrel.community), from plugin spandrel" in text.output
    assert "4x" in text.output and "3 in, 3 out" in text.output
    assert f"{sum(p.numel() for p in net.parameters()):,}" in text.output
    assert "permissive licence" in text.output

    report = json.loads(
        CliRunner().invoke(main, ["models", "--file", str(checkpoint), "--json"]).output
    )
    assert (report["architecture"], report["scale"], report["supports_half"]) == ("ESRGAN", 4, True)


def test_a_file_no_architecture_knows_is_refused_with_what_was_tried(
    nodeflow_registry, tmp_path: Path
) -> None:
    torch.save({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "mystery.pth")
    with pytest.raises(ValueError) as refused:
        load_model(tmp_path / "mystery.pth", nodeflow_registry)
    message = str(refused.value)
    assert "mystery.pth" in message and "spandrel.community" in message
    assert "encoder.weight" in message


EXTRA_MODULE = """
import torch
from spandrel import ArchRegistry, ArchSupport, Architecture, ImageModelDescriptor


class Doubler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.toy_extra = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.toy_extra(x)


class ToyExtraArch(Architecture):
    def __init__(self):
        super().__init__(id="ToyExtra", detect=lambda sd: "toy_extra.weight" in sd)

    def load(self, state_dict):
        return ImageModelDescriptor(
            Doubler(), state_dict, architecture=self, purpose="Restoration", tags=[],
            supports_half=True, supports_bfloat16=True, scale=1, input_channels=3,
            output_channels=3,
        )


EXTRA_REGISTRY = ArchRegistry()
EXTRA_REGISTRY.add(ArchSupport.from_architecture(ToyExtraArch()))
"""


def test_restrictively_licensed_architectures_load_only_when_asked_for(
    nodeflow_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spandrel_extra_arches (a stand-in here) is asked only with the opt-in variable."""
    conv = nn.Conv2d(3, 3, 1)
    torch.save({f"toy_extra.{k}": v for k, v in conv.state_dict().items()}, tmp_path / "toy.pth")

    monkeypatch.delenv(EXTRA_ARCHES_ENV, raising=False)
    with pytest.raises(
        ValueError, match=f"spandrel_extra_arches\\) only with {EXTRA_ARCHES_ENV}=1"
    ):
        load_model(tmp_path / "toy.pth", nodeflow_registry)

    monkeypatch.setenv(EXTRA_ARCHES_ENV, "1")
    monkeypatch.setitem(sys.modules, "spandrel_extra_arches", None)
    with pytest.raises(ValueError, match="spandrel_extra_arches is not installed"):
        load_model(tmp_path / "toy.pth", nodeflow_registry)

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "spandrel_extra_arches.py").write_text(EXTRA_MODULE)
    monkeypatch.delitem(sys.modules, "spandrel_extra_arches")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = load_model(tmp_path / "toy.pth", nodeflow_registry)
    assert model.info.hparams["architecture"] == "ToyExtra"
    assert model.info.extra["licence"] == RESTRICTIVE
    assert "ToyExtra" not in spandrel.MAIN_REGISTRY, "the main registry stays untouched"


def test_the_shipped_graph_runs_with_a_stand_in_checkpoint(run_graph, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    write_checkpoint(randomised(esrgan, 6), "pth", tmp_path / "models")
    shutil.move(tmp_path / "models" / "model.pth", tmp_path / "models" / "upscaler.pth")
    graph = Graph.load(GRAPHS / "upscale_community.toml")
    for spec in graph.nodes.values():
        if spec.type == "sample_images":
            spec.params["size"] = 24
    result, _ = run_graph(graph.to_toml())
    assert result.ok, result.failed
    saved = sorted((tmp_path / "out").rglob("*.png"))
    assert saved, "the graph saves the enlarged photos"
