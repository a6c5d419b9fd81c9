"""Model nodes in graphs: load/save, encode/decode, latent walks and samples, the U-Net node's
tasks, GAN generators from reference checkpoints, discriminator scores."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import kornia
import pytest
import torch
from torch import nn

from nodeflow.models import checkpoint
from nodeflow.models.checkpoint import load_model, new_model, save_model
from nodeflow.models.model import Model
from nodeflow.models.resnet import ResnetGenerator
from nodeflow.registry import Registry
from nodeflow.types import Latent, Scores, Stream

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]


def node_text(node_id: str, type_id: str, inputs: dict[str, str] | None = None, **params) -> str:
    lines = [f"[nodes.{node_id}]", f'type = "{type_id}"']
    if params:
        values = ", ".join(
            f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in params.items()
        )
        lines.append(f"params = {{ {values} }}")
    if inputs:
        links = ", ".join(f'{k} = "{v}"' for k, v in inputs.items())
        lines.append(f"inputs = {{ {links} }}")
    return "\n".join(lines) + "\n"


def run_ok(run_graph, text: str, targets: list[str]) -> dict:
    result, _ = run_graph("version = 1\n" + text, targets=targets)
    assert result.ok, result.failed
    return result.outputs


def failure(run_graph, text: str, target: str) -> str:
    result, _ = run_graph("version = 1\n" + text, targets=[target])
    assert not result.ok
    return result.failed[target]


def first(stream: Stream):
    return next(iter(stream)).data


def everything(stream: Stream) -> list:
    return [batch.data for batch in stream]


def saved(model: Model, folder: Path, name: str) -> Path:
    for module in model.net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 1.5)
    return save_model(model, folder / name)


def direct(model_path: Path, x: torch.Tensor) -> torch.Tensor:
    """What running the checkpoint's network by hand gives, for images in [0, 1]."""
    model = load_model(model_path)
    low, high = model.info.value_range
    with torch.inference_mode():
        out = model.net(low + (high - low) * x)
    return ((out - low) / (high - low)).clamp(0, 1)


def test_reference_generator_pth_runs_like_the_plain_network(
    tensor_source: TensorSource, run_graph, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    generator = ResnetGenerator(ngf=4, n_blocks=2, norm="instance")
    torch.save(generator.state_dict(), tmp_path / "latest_net_G.pth")
    images = torch.rand(3, 3, 36, 28)
    text = tensor_source.node("src", images, batch_size=2)
    text += node_text("g", "load_model", checkpoint="latest_net_G.pth")
    text += node_text("gen", "cgan_generate", {"image": "src.image", "model": "g.model"})
    out = torch.cat(everything(run_ok(run_graph, text, ["gen"])["gen"]["image"]))

    with torch.inference_mode():
        expected = (generator.eval()(images * 2 - 1) + 1) / 2
    torch.testing.assert_close(out, expected.clamp(0, 1), atol=1e-5, rtol=0)


def test_save_model_then_load_model_by_shipped_name(
    registry: Registry, run_graph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = new_model("patchgan", {"ndf": 4, "in_channels": 3}, registry, extra={"note": "x"})
    first_path = saved(model, tmp_path, "d.safetensors")
    text = node_text("load", "load_model", checkpoint=first_path.name)
    text += node_text("save", "save_model", {"model": "load.model"}, path="copies/d2")
    run_ok(run_graph, text, ["save"])
    copy = tmp_path / "copies" / "d2.safetensors"
    assert load_model(copy).info == model.info

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    copy.rename(shipped / "tiny_d.safetensors")
    monkeypatch.setattr(checkpoint, "SHIPPED_FOLDER", shipped)
    outputs = run_ok(run_graph, node_text("load", "load_model", checkpoint="tiny_d"), ["load"])
    assert outputs["load"]["model"].info.extra == {"note": "x"}

    message = failure(run_graph, node_text("load", "load_model", checkpoint="nothing"), "load")
    assert "no shipped model named 'nothing'; shipped models: tiny_d" in message


def test_encode_decode_round_trip_through_a_graph(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    model = new_model("autoencoder", {"base": 4, "depth": 2, "latent_channels": 3}, registry)
    path = saved(model, tmp_path, "ae.safetensors")
    images = torch.rand(5, 3, 16, 16)
    text = tensor_source.node("src", images, batch_size=4)
    text += node_text("ae", "load_model", checkpoint=path.name)
    text += node_text("enc", "encode", {"image": "src.image", "model": "ae.model"})
    text += node_text("dec", "decode", {"latent": "enc.latent", "model": "ae.model"})
    outputs = run_ok(run_graph, text, ["enc", "dec"])

    latents = everything(outputs["enc"]["latent"])
    assert [lat.tensor.shape for lat in latents] == [(4, 3, 4, 4), (1, 3, 4, 4)]
    assert all(lat.source == "autoencoder" for lat in latents)
    decoded = torch.cat(everything(outputs["dec"]["image"]))
    torch.testing.assert_close(decoded, direct(path, images), atol=1e-5, rtol=0)

    wrong = tensor_source.node("src", torch.rand(1, 3, 18, 18))
    wrong += node_text("ae", "load_model", checkpoint=path.name)
    wrong += node_text("enc", "encode", {"image": "src.image", "model": "ae.model"})
    assert "multiples of 4, got 18x18" in failure(run_graph, wrong, "enc")


@pytest.mark.parametrize("spherical", [False, True])
def test_latent_interpolate_starts_and_ends_at_its_inputs(
    run_graph, registry: Registry, tmp_path: Path, spherical: bool
) -> None:
    hparams = {"base": 4, "depth": 1, "latent_channels": 2, "image_size": 16}
    path = saved(new_model("autoencoder", hparams, registry), tmp_path, "ae.safetensors")
    text = node_text("ae", "load_model", checkpoint=path.name)
    text += node_text("a", "latent_sample", {"model": "ae.model"}, count=2, seed=1)
    text += node_text("b", "latent_sample", {"model": "ae.model"}, count=2, seed=2)
    text += node_text(
        "walk", "latent_interpolate", {"latent": "a.latent", "other": "b.latent"},
        steps=5, spherical=spherical,
    )  # fmt: skip
    text += node_text("dec", "decode", {"latent": "walk.latent", "model": "ae.model"})
    outputs = run_ok(run_graph, text, ["a", "b", "walk", "dec"])
    start, end = first(outputs["a"]["latent"]).tensor, first(outputs["b"]["latent"]).tensor
    walk = first(outputs["walk"]["latent"])
    assert walk.source == "autoencoder"
    codes = walk.tensor.reshape(2, 5, *start.shape[1:])
    torch.testing.assert_close(codes[:, 0], start, atol=1e-6, rtol=0)
    torch.testing.assert_close(codes[:, -1], end, atol=1e-6, rtol=0)
    middle = (start + end) / 2
    if spherical:
        cosine = torch.nn.functional.cosine_similarity(start.flatten(1), end.flatten(1))
        middle = middle / torch.cos(torch.acos(cosine) / 2).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(codes[:, 2], middle, atol=1e-5, rtol=0)
    assert first(outputs["dec"]["image"]).shape == (10, 3, 16, 16)


def test_latent_sample_uses_recorded_latent_statistics(
    run_graph, registry: Registry, tmp_path: Path
) -> None:
    extra = {"latent_mean": [5.0, -5.0], "latent_std": 0.5}
    hparams = {"base": 4, "depth": 2, "latent_channels": 2, "image_size": 32}
    path = saved(new_model("autoencoder", hparams, registry, extra=extra), tmp_path, "ae")
    text = node_text("ae", "load_model", checkpoint=path.name)
    text += node_text("s", "latent_sample", {"model": "ae.model"}, count=40, seed=3)
    text += node_text("t", "latent_sample", {"model": "ae.model"}, count=40, seed=3)
    text += node_text("dec", "decode", {"latent": "s.latent", "model": "ae.model"})
    outputs = run_ok(run_graph, text, ["s", "t", "dec"])
    codes = torch.cat([lat.tensor for lat in everything(outputs["s"]["latent"])])
    assert codes.shape == (40, 2, 8, 8)
    means = codes.mean(dim=(0, 2, 3))
    torch.testing.assert_close(means, torch.tensor([5.0, -5.0]), atol=0.05, rtol=0)
    assert codes.std(dim=(0, 2, 3)).tolist() == pytest.approx([0.5, 0.5], abs=0.03)
    again = torch.cat([lat.tensor for lat in everything(outputs["t"]["latent"])])
    assert torch.equal(codes, again)
    assert sum(len(x) for x in everything(outputs["dec"]["image"])) == 40


def test_random_image_is_uniform_noise(run_graph) -> None:
    text = node_text("noise", "random_image", count=20, size=[12, 10], channels=1, seed=4)
    images = torch.cat(everything(run_ok(run_graph, text, ["noise"])["noise"]["image"]))
    assert images.shape == (20, 1, 12, 10)
    assert images.min() >= 0 and images.max() < 1
    assert images.mean().item() == pytest.approx(0.5, abs=0.03)


def test_unet_node_pads_odd_sizes_and_converts_gray_to_rgb(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    model = new_model("unet", {"num_downs": 5, "ngf": 4}, registry, task="denoise")
    path = saved(model, tmp_path, "unet.safetensors")
    gray = torch.rand(2, 1, 37, 45)
    text = tensor_source.node("src", gray)
    text += node_text("m", "load_model", checkpoint=path.name)
    text += node_text("u", "unet", {"image": "src.image", "model": "m.model"})
    out = first(run_ok(run_graph, text, ["u"])["u"]["image"])
    assert out.shape == (2, 3, 37, 45)

    padded = torch.nn.functional.pad(gray.expand(-1, 3, -1, -1), (0, 19, 0, 27), mode="reflect")
    torch.testing.assert_close(out, direct(path, padded)[..., :37, :45], atol=1e-5, rtol=0)


def test_unet_node_colorizes_from_lightness(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    """A colorizer predicting ab = 0 returns the input's lightness as gray RGB."""
    hparams = {"in_channels": 1, "out_channels": 2, "num_downs": 3, "ngf": 4}
    model = new_model("unet", hparams, registry, task="colorize")
    outer = model.net.model.model[3]
    nn.init.zeros_(outer.weight)
    nn.init.zeros_(outer.bias)
    path = saved(model, tmp_path, "colorize.safetensors")
    photos = torch.rand(2, 3, 20, 20)
    text = tensor_source.node("src", photos)
    text += node_text("m", "load_model", checkpoint=path.name)
    text += node_text("c", "unet", {"image": "src.image", "model": "m.model"})
    out = first(run_ok(run_graph, text, ["c"])["c"]["image"])
    assert out.shape == (2, 3, 20, 20)
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, 1], out[:, 2], atol=1e-4, rtol=0)
    lightness = kornia.color.rgb_to_lab(out)[:, 0]
    expected = kornia.color.rgb_to_lab(photos)[:, 0]
    torch.testing.assert_close(lightness, expected, atol=0.05, rtol=0)


def test_unet_node_superres_returns_scale_times_larger(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    model = new_model(
        "unet", {"num_downs": 3, "ngf": 4}, registry,
        task="superres", scale=4, extra={"upsample_input": True},
    )  # fmt: skip
    path = saved(model, tmp_path, "sr.safetensors")
    text = tensor_source.node("src", torch.rand(2, 3, 9, 7))
    text += node_text("m", "load_model", checkpoint=path.name)
    text += node_text("sr", "unet", {"image": "src.image", "model": "m.model"})
    assert first(run_ok(run_graph, text, ["sr"])["sr"]["image"]).shape == (2, 3, 36, 28)

    mislabelled = new_model("unet", {"num_downs": 3, "ngf": 4}, registry, task="superres", scale=4)
    save_model(mislabelled, path)
    assert "says scale 4" in failure(run_graph, text, "sr")


def test_unet_node_tiles_large_images(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    """A generator with no residual blocks sees 15 pixels each way; overlap 64 drops 16,
    so the tiled result equals the whole-image one."""
    model = new_model("resnet_generator", {"ngf": 4, "n_blocks": 0, "norm": "batch"}, registry)
    path = saved(model, tmp_path, "g.safetensors")
    images = torch.rand(1, 3, 160, 140)
    text = tensor_source.node("src", images)
    text += node_text("m", "load_model", checkpoint=path.name)
    text += node_text(
        "t", "cgan_generate", {"image": "src.image", "model": "m.model"}, tile=128, overlap=64
    )
    out = first(run_ok(run_graph, text, ["t"])["t"]["image"])
    torch.testing.assert_close(out, direct(path, images), atol=1e-4, rtol=0)


def test_discriminator_score_gives_scores_and_heatmaps(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    model = new_model("patchgan", {"ndf": 4, "n_layers": 2, "in_channels": 4}, registry)
    path = saved(model, tmp_path, "d.safetensors")
    images = torch.rand(3, 3, 40, 48)
    edges = torch.rand(3, 1, 40, 48)
    text = tensor_source.node("src", images)
    text += tensor_source.node("edges", edges)
    text += node_text("d", "load_model", checkpoint=path.name)
    text += node_text(
        "s", "discriminator_score",
        {"image": "src.image", "condition": "edges.image", "model": "d.model"},
    )  # fmt: skip
    outputs = run_ok(run_graph, text, ["s"])
    scores: Scores = first(outputs["s"]["score"])
    heatmap = first(outputs["s"]["heatmap"])
    assert scores.score.shape == (3,)
    assert scores.patch_map.shape == (3, 1, 8, 10)
    assert heatmap.shape == (3, 1, 40, 48)
    assert heatmap.min() >= 0 and heatmap.max() <= 1

    loaded = load_model(path)
    with torch.inference_mode():
        logits = loaded.net(torch.cat([edges, images], dim=1) * 2 - 1)
    torch.testing.assert_close(scores.score, torch.sigmoid(logits).mean(dim=(1, 2, 3)))

    unconditioned = text.replace(', condition = "edges.image"', "")
    message = failure(run_graph, unconditioned, "s")
    assert "node 's'" in message and "conditional discriminator" in message


def test_score_summary_reports_scores_and_writes_a_csv(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    model = new_model("patchgan", {"ndf": 4, "n_layers": 1, "in_channels": 3}, registry)
    path = saved(model, tmp_path, "d.safetensors")
    text = tensor_source.node("src", torch.rand(5, 3, 32, 32), batch_size=2)
    text += node_text("d", "load_model", checkpoint=path.name)
    text += node_text("s", "discriminator_score", {"image": "src.image", "model": "d.model"})
    text += node_text("summary", "score_summary", {"score": "s.score"}, file="scores.csv")
    outputs = run_ok(run_graph, text, ["s", "summary"])
    scores = torch.cat([batch.score for batch in everything(outputs["s"]["score"])])
    summary = outputs["summary"]
    assert summary["mean"] == pytest.approx(scores.mean().item())
    assert (summary["min"], summary["max"]) == pytest.approx((scores.min(), scores.max()))
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert rows[0] == "name,score" and len(rows) == 6
    assert float(rows[3].split(",")[1]) == pytest.approx(scores[2].item(), abs=1e-6)


def test_model_nodes_refuse_the_wrong_kind_of_model(
    tensor_source: TensorSource, run_graph, registry: Registry, tmp_path: Path
) -> None:
    path = saved(new_model("patchgan", {"ndf": 4, "in_channels": 3}, registry), tmp_path, "d")
    text = tensor_source.node("src", torch.rand(1, 3, 32, 32))
    text += node_text("d", "load_model", checkpoint=path.name)
    text += node_text("u", "unet", {"image": "src.image", "model": "d.model"})
    text += node_text("e", "encode", {"image": "src.image", "model": "d.model"})
    assert "unet takes image-to-image or autoencoder models" in failure(run_graph, text, "u")
    assert "needs an autoencoder" in failure(run_graph, text, "e")


def test_decode_refuses_latents_of_another_model(run_graph, registry: Registry) -> None:
    from nodeflow.nodes.models import decode

    model = new_model("autoencoder", {"base": 4, "depth": 1, "latent_channels": 2}, registry)
    with pytest.raises(ValueError, match="this latent comes from 'pca'"):
        decode.fn(Latent(torch.zeros(1, 2, 4, 4), source="pca"), model)
