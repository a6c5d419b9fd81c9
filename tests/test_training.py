"""Training inside graphs: paired datasets, losses, the three trainers, resume and caching.

Everything runs through graph text on the CPU with tiny networks and 16-32 pixel crops of
the bundled sample photos, so each test takes a few seconds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kornia
import pytest
import torch
import torch.nn.functional as F

from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken
from nodeflow.engine.events import Event, ItemError, NodeFailed, NodeProgress, NodeStarted
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.models.inference import network_to_rgb
from nodeflow.registry import Registry
from nodeflow.training import loop
from nodeflow.training.datasets import PairBatch, reading_pass
from nodeflow.training.loop import CHECKPOINT_FILE
from nodeflow.training.losses import ColorBins, GANLoss, gamut_bins
from nodeflow.training.negatives import degrade

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]

TRAIN_PHOTOS = "astronaut, coffee, chelsea, rocket, motorcycle_left, retina"
HELD_OUT = "motorcycle_right, immunohistochemistry, hubble_deep_field"


@pytest.fixture
def run(run_graph):
    """Run graph text (without its version line) on the CPU: (RunResult, events)."""
    return lambda text, **kwargs: run_graph("version = 1\n" + text, **kwargs)


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


def photos(node_id: str = "photos", names: str = TRAIN_PHOTOS, size: int = 48) -> str:
    return node_text(node_id, "sample_images", names=names, size=size)


def dataset(task: str, crop: int = 32, **params) -> str:
    return photos() + node_text(
        "data", "pairs", {"image": "photos.image"}, task=task, crop=crop, **params
    )


def first_pairs(run, text: str) -> PairBatch:
    result, _events = run(text, targets=["data"])
    assert result.ok, result.failed
    return result.previews["data"].data


def run_ok(run, text: str, targets: list[str]) -> tuple[Any, list[Event]]:
    result, events = run(text, targets=targets)
    assert result.ok, result.failed
    return result, events


def losses(events: list[Event], node: str = "train", key: str = "loss") -> list[float]:
    return [
        e.info[key]
        for e in events
        if isinstance(e, NodeProgress) and e.node == node and key in e.info
    ]


def falls(values: list[float]) -> bool:
    return sum(values[-5:]) / 5 < sum(values[:5]) / 5


# -- datasets ---------------------------------------------------------------------------------------


def test_denoise_pairs_differ_by_noise_of_sigma(run) -> None:
    pair = first_pairs(run, dataset("denoise", sigma=25.0, crops_per_image=4))
    assert pair.task == "denoise"
    assert pair.input.shape == pair.target.shape == (len(pair), 3, 32, 32)
    assert len(pair) == 6 * 4
    noise = pair.input - pair.target
    # Clamping to [0, 1] trims a little noise at saturated pixels.
    assert 0.88 * 25 / 255 < noise.std() < 1.02 * 25 / 255
    assert abs(noise.mean()) < 0.01


def test_superres_pairs_are_bicubic_shrunk_crops(run) -> None:
    pair = first_pairs(run, dataset("superres", scale=4))
    assert pair.input.shape[-2:] == (8, 8) and pair.target.shape[-2:] == (32, 32)
    assert pair.info == {"scale": 4}
    expected = F.interpolate(pair.target, size=(8, 8), mode="bicubic", antialias=True)
    torch.testing.assert_close(pair.input, expected.clamp(0, 1))


def test_colorize_pairs_hold_lightness_and_ab(tensor_source: TensorSource, run) -> None:
    red = torch.zeros(1, 3, 40, 40)
    red[:, 0] = 1.0
    text = tensor_source.node("src", red) + node_text(
        "data", "pairs", {"image": "src.image"}, task="colorize", crop=16
    )
    pair = first_pairs(run, text)
    assert pair.input.shape[1] == 1 and pair.target.shape[1] == 2
    lightness, a, b = 53.24, 80.09, 67.20  # pure sRGB red in CIE Lab
    assert torch.allclose(pair.input, torch.tensor(lightness / 100), atol=2e-3)
    assert torch.allclose(pair.target[:, 0], torch.tensor((a / 110 + 1) / 2), atol=2e-3)
    assert torch.allclose(pair.target[:, 1], torch.tensor((b / 110 + 1) / 2), atol=2e-3)
    rgb = network_to_rgb(pair.input, pair.target, (0.0, 1.0))
    torch.testing.assert_close(rgb, red[:, :, :16, :16].expand_as(rgb), atol=5e-3, rtol=0)


def test_edges_inpaint_and_autoencode_pairs(run) -> None:
    edges = first_pairs(run, dataset("edges2photo"))
    assert edges.input.shape[1] == 1 and edges.target.shape[1] == 3
    assert set(edges.input.unique().tolist()) <= {0.0, 1.0}
    assert 0.02 < edges.input.mean() < 0.5

    inpaint = first_pairs(run, dataset("inpaint"))
    holes = (inpaint.input != inpaint.target).any(dim=1)
    assert torch.all(inpaint.input.permute(1, 0, 2, 3)[:, holes] == 0.5)
    assert 0.02 < holes.float().mean() < 0.8

    same = first_pairs(run, dataset("autoencode"))
    assert torch.equal(same.input, same.target)


def test_pairs_are_reproducible_and_differ_between_passes(run) -> None:
    result, _ = run(dataset("denoise", crop=16, seed=3), targets=["data"])
    stream = result.outputs["data"]["dataset"]
    first = [batch.data.input for batch in stream]
    again = [batch.data.input for batch in stream]
    with reading_pass(1):
        later = [batch.data.input for batch in stream]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(first, later, strict=True))


def test_synthetic_pairs_are_dead_leaves_in_the_photos_colours(
    tensor_source: TensorSource, run
) -> None:
    two_colours = torch.zeros(1, 3, 64, 64)
    two_colours[:, 0, :, :32] = 1.0  # left half red, right half blue
    two_colours[:, 2, :, 32:] = 1.0
    data = {"image": "src.image"}
    plain = tensor_source.node("src", two_colours) + node_text(
        "data", "pairs", data, task="autoencode", crop=32, crops_per_image=8, flip=False
    )
    photo_crops = first_pairs(run, plain).target
    synthetic = first_pairs(run, plain.replace("flip = false", "flip = false, synthetic = 1.0"))
    # Every crop of the photo is one colour on the left, one on the right; dead leaves
    # are discs anywhere in the crop, half of them in the photo's colours.
    assert torch.equal(photo_crops[..., :, :1], photo_crops[..., :1, :1].expand(-1, -1, 32, 1))
    leaves = synthetic.target
    assert not torch.equal(leaves[..., :, :1], leaves[..., :1, :1].expand(-1, -1, 32, 1))
    red, blue = torch.tensor([1.0, 0, 0])[:, None, None], torch.tensor([0, 0, 1.0])[:, None, None]
    photo_coloured = ((leaves - red).abs().amax(dim=1) < 0.1) | (
        (leaves - blue).abs().amax(dim=1) < 0.1
    )
    assert 0.1 < photo_coloured.float().mean() < 0.9
    half = first_pairs(run, plain.replace("flip = false", "flip = false, synthetic = 0.5"))
    from_photo = [
        torch.equal(crop[:, :, :1], crop[:, :1, :1].expand(-1, 32, 1)) for crop in half.target
    ]
    assert sum(from_photo) == 4  # the rest are dead leaves


def test_zoom_shows_the_photo_at_several_scales_and_jitter_varies_brightness(
    tensor_source: TensorSource, run
) -> None:
    stripes = torch.zeros(1, 3, 256, 256)
    stripes[..., ::16, :] = 1.0  # a bright line every 16 rows
    data = {"image": "src.image"}
    text = tensor_source.node("src", stripes) + node_text(
        "data", "pairs", data, task="autoencode", crop=32, crops_per_image=16
    )
    plain = first_pairs(run, text).target
    zoomed = first_pairs(
        run, text.replace("crops_per_image = 16", "crops_per_image = 16, zoom = 4.0")
    ).target
    assert torch.allclose(plain.mean(dim=(1, 2, 3)), torch.tensor(2 / 32), atol=1 / 32)
    # Shrunk crops hold more, thinner lines: the same mean, spread over more rows.
    lit_rows = (zoomed[:, 0].mean(dim=-1) > 0.01).sum(dim=-1)
    assert lit_rows.max() > 2 * (plain[:, 0].mean(dim=-1) > 0.01).sum(dim=-1).max()
    jittered = first_pairs(
        run, text.replace("crops_per_image = 16", "crops_per_image = 16, jitter = 0.3")
    ).target
    brightness = jittered.mean(dim=(1, 2, 3)) / plain.mean(dim=(1, 2, 3))
    assert brightness.std() > 0.05


def test_the_variety_params_refuse_edges2photo(run) -> None:
    result, events = run(dataset("edges2photo", zoom=2.0), targets=["data"])
    assert not result.ok
    assert any(isinstance(e, NodeFailed) and "edges2photo" in e.message for e in events)


def test_images_smaller_than_the_crop_are_skipped_and_reported(run) -> None:
    text = photos(size=24) + node_text("data", "pairs", {"image": "photos.image"}, crop=32)
    result, events = run(text, targets=["data"])
    assert result.ok
    assert len(result.previews["data"].data) == 0
    assert any(isinstance(e, ItemError) and "smaller than the crop" in e.message for e in events)


def test_aligned_pairs_split_a_and_b(tensor_source: TensorSource, run) -> None:
    a = torch.rand(3, 3, 24, 24)
    side_by_side = torch.cat([a, 1 - a], dim=-1)
    source = tensor_source.node("src", side_by_side)
    halves = {"AtoB": a, "BtoA": 1 - a}
    for direction, half in halves.items():
        text = source + node_text(
            "data", "aligned_pairs", {"image": "src.image"}, direction=direction, crop=16,
            flip=False,
        )  # fmt: skip
        pair = first_pairs(run, text)
        assert pair.input.shape == pair.target.shape == (3, 3, 16, 16)
        torch.testing.assert_close(pair.target, 1 - pair.input)
        for i in range(3):  # each input is a true 16x16 window of its half
            windows = half[i].unfold(1, 16, 1).unfold(2, 16, 1)
            distance = (windows - pair.input[i][:, None, None]).abs().amax(dim=(0, 3, 4))
            assert distance.min() < 1e-6


def test_folder_pairs_crop_both_alike_and_detect_a_scale(run) -> None:
    text = (
        photos("small", size=24)
        + photos("large", size=48)
        + node_text(
            "data", "folder_pairs", {"image": "small.image", "target": "large.image"}, crop=16
        )
    )
    pair = first_pairs(run, text)
    assert pair.task == "superres" and pair.info == {"scale": 2}
    assert pair.input.shape[-2:] == (16, 16) and pair.target.shape[-2:] == (32, 32)
    shrunk = F.avg_pool2d(pair.target, 2)
    assert (shrunk - pair.input).abs().mean() < 0.03

    same = photos("a", size=32) + photos("b", size=32)
    text = same + node_text(
        "data", "folder_pairs", {"image": "a.image", "target": "b.image"}, crop=16
    )
    pair = first_pairs(run, text)
    assert pair.task == "translate"
    torch.testing.assert_close(pair.input, pair.target)


# -- losses -----------------------------------------------------------------------------------------


def test_gan_losses() -> None:
    logits = torch.tensor([[2.0, -1.0]])
    vanilla, lsgan = GANLoss("vanilla"), GANLoss("lsgan")
    assert vanilla(logits, True) == pytest.approx(float(-F.logsigmoid(logits).mean()))
    assert vanilla(logits, False) == pytest.approx(float(-F.logsigmoid(-logits).mean()))
    assert lsgan(logits, True) == pytest.approx((1 + 4) / 2)
    assert lsgan(logits, False) == pytest.approx((4 + 1) / 2)


def test_color_bins_encode_weight_and_decode() -> None:
    bins = ColorBins.in_gamut(torch.device("cpu"))
    assert 250 <= len(bins) <= 313
    assert len(gamut_bins()) == len(bins)
    centres = bins.centres
    # Rebalancing: frequent bins weigh less, and the weights average 1 under the data.
    counts = torch.ones(len(bins))
    grey = int(centres.norm(dim=1).argmin())
    counts[grey] = 1000.0
    bins.fit_weights(counts)
    assert bins.weights[grey] < bins.weights.median()
    bins.fit_weights(counts, lam=1.0)  # train_unet's rebalance = 0: every colour alike
    assert torch.allclose(bins.weights, torch.ones(len(bins)))
    # A pixel's true colour: the loss is lowest for logits that peak at its bin.
    ab = centres[7].reshape(1, 2, 1, 1) + 1.0
    peaked = torch.full((1, len(bins), 1, 1), -1.0)
    peaked[0, 7] = 1.0
    elsewhere = torch.full((1, len(bins), 1, 1), -1.0)
    elsewhere[0, 200] = 1.0
    assert bins.loss(bins.logits(peaked), ab) < bins.loss(bins.logits(elsewhere), ab)
    decoded = bins.decode(peaked)
    assert (decoded.flatten() - centres[7]).abs().max() < 1.0  # annealed mean near the peak


# -- trainers ---------------------------------------------------------------------------------------

SMALL_UNET = {"num_downs": 4, "ngf": 8, "batch_size": 8, "sample_every": 0}


def test_train_unet_denoiser_beats_the_noisy_input(run) -> None:
    text = (
        dataset("denoise", crops_per_image=8)
        + node_text("train", "train_unet", {"dataset": "data.dataset"},
                    num_downs=5, ngf=16, steps=150, lr=1e-3, batch_size=8, sample_every=0)
        + photos("test", names=HELD_OUT, size=64)
        + node_text("noisy", "add_noise", {"image": "test.image"}, sigma=25.0, seed=7)
        + node_text("clean", "unet", {"image": "noisy.image", "model": "train.model"})
        + node_text("before", "metrics", {"image": "noisy.image", "reference": "test.image"})
        + node_text("after", "metrics", {"image": "clean.image", "reference": "test.image"})
    )  # fmt: skip
    result, events = run_ok(run, text, ["before", "after"])
    outputs = result.outputs
    assert falls(losses(events))
    assert outputs["after"]["psnr"] > outputs["before"]["psnr"] + 0.3
    model = outputs["train"]["model"]
    assert model.info.task == "denoise" and model.info.value_range == (-1.0, 1.0)
    assert model.info.extra["training"]["steps"] == 150
    assert not model.net.training


def test_train_unet_superres_records_scale_and_enlarges(run) -> None:
    text = (
        dataset("superres", scale=2)
        + node_text("train", "train_unet", {"dataset": "data.dataset"}, steps=40, lr=1e-3, **SMALL_UNET)
        + photos("test", names=HELD_OUT, size=24)
        + node_text("big", "unet", {"image": "test.image", "model": "train.model"})
    )  # fmt: skip
    result, events = run_ok(run, text, ["big"])
    assert falls(losses(events))
    model = result.outputs["train"]["model"]
    assert (model.info.task, model.info.scale, model.info.extra["upsample_input"]) == (
        "superres", 2, True
    )  # fmt: skip
    assert result.previews["big"].data.shape[-2:] == (48, 48)


def test_lr_decay_holds_then_falls_linearly_to_zero(run) -> None:
    train = node_text("train", "train_unet", {"dataset": "data.dataset"}, steps=10, lr=1e-3,
                      **SMALL_UNET)  # fmt: skip
    _result, events = run_ok(run, dataset("denoise", crop=16, crops_per_image=1) + train, ["train"])
    rates = losses(events, key="lr")
    assert rates == pytest.approx([1e-3] * 5 + [1e-3 * (10 - step) / 5 for step in range(5, 10)])
    constant = train.replace("steps = 10", "steps = 10, lr_decay = false")
    _result, events = run_ok(
        run, dataset("denoise", crop=16, crops_per_image=1) + constant, ["train"]
    )
    assert losses(events, key="lr") == pytest.approx([1e-3] * 10)


def test_residual_superres_beats_bicubic_on_held_out_photos(run) -> None:
    text = (
        dataset("superres", scale=2, crops_per_image=8)
        + node_text("train", "train_unet", {"dataset": "data.dataset"}, residual=True,
                    steps=80, lr=1e-3, **SMALL_UNET)
        + photos("test", names=HELD_OUT, size=64)
        + node_text("small", "downsample", {"image": "test.image"}, scale=2)
        + node_text("model", "unet", {"image": "small.image", "model": "train.model"})
        + node_text("bicubic", "resize", {"image": "small.image"}, scale=2.0,
                    mode="bicubic")
        + node_text("ours", "metrics", {"image": "model.image", "reference": "test.image"})
        + node_text("theirs", "metrics", {"image": "bicubic.image", "reference": "test.image"})
    )  # fmt: skip
    result, _events = run_ok(run, text, ["ours", "theirs"])
    assert result.outputs["train"]["model"].info.extra["residual"] is True
    assert result.outputs["ours"]["psnr"] > result.outputs["theirs"]["psnr"]


def test_residual_is_refused_for_the_classification_loss(run) -> None:
    text = dataset("colorize", crop=16, crops_per_image=1) + node_text(
        "train", "train_unet", {"dataset": "data.dataset"}, loss="classification",
        residual=True, steps=2, **SMALL_UNET,
    )  # fmt: skip
    result, _events = run(text, targets=["train"])
    assert "residual needs targets like the inputs" in str(result.failed["train"])


def test_train_unet_classification_colorizer_decodes_ab(run) -> None:
    text = (
        dataset("colorize", crop=16, crops_per_image=2)
        + node_text("train", "train_unet", {"dataset": "data.dataset"}, loss="classification",
                    steps=30, lr=1e-3, **SMALL_UNET)
        + photos("test", names=HELD_OUT, size=24)
        + node_text("gray", "grayscale", {"image": "test.image"})
        + node_text("coloured", "unet", {"image": "gray.image", "model": "train.model"})
    )  # fmt: skip
    result, events = run_ok(run, text, ["coloured"])
    coloured = result.previews["coloured"].data
    assert coloured.shape[1] == 3 and coloured.min() >= 0 and coloured.max() <= 1
    assert falls(losses(events))
    model = result.outputs["train"]["model"]
    bins = ColorBins.from_extra(model.info.extra, torch.device("cpu"))
    assert bins is not None and model.info.out_channels == len(bins)
    assert model.info.task == "colorize" and model.info.extra["temperature"] == 1.0
    gray = kornia.color.rgb_to_lab(torch.rand(2, 3, 32, 32))[:, :1] / 50 - 1
    with torch.no_grad():
        ab = bins.decode(model.net(gray))
    assert ab.shape == (2, 2, 32, 32)
    assert ab.abs().max() <= 110 and ab.std() > 0


def test_train_autoencoder_records_latent_statistics(run) -> None:
    text = (
        dataset("autoencode", crop=16, crops_per_image=2)
        + node_text("train", "train_autoencoder", {"dataset": "data.dataset"},
                    latent_channels=4, depth=2, width=8, steps=40, batch_size=8, sample_every=0)
        + node_text("codes", "latent_sample", {"model": "train.model"}, count=3)
        + node_text("made", "decode", {"latent": "codes.latent", "model": "train.model"})
    )  # fmt: skip
    result, events = run_ok(run, text, ["made"])
    assert falls(losses(events))
    info = result.outputs["train"]["model"].info
    assert info.latent_shape == (4, 4, 4) and info.task == "autoencode"
    assert len(info.extra["latent_mean"]) == 4 and min(info.extra["latent_std"]) > 0
    assert result.previews["made"].data.shape == (3, 3, 16, 16)


def test_train_pix2pix_discriminator_tells_photos_from_noise(run) -> None:
    held_out = "motorcycle_right, hubble_deep_field, immunohistochemistry, camera, coins, moon, "
    held_out += "brick, grass"
    text = (
        dataset("edges2photo", crop=32, crops_per_image=2)
        + node_text("train", "train_pix2pix", {"dataset": "data.dataset"},
                    num_downs=5, ngf=8, ndf=8, n_layers=1, steps=40, batch_size=4, sample_every=0)
        + photos("test", names=held_out, size=32)
        + node_text("edges", "edges", {"image": "test.image"})
        + node_text("noise", "random_image", count=8, size=32, seed=1)
        + node_text("real", "discriminator_score",
                    {"image": "test.image", "condition": "edges.image", "model": "train.discriminator"})
        + node_text("fake", "discriminator_score",
                    {"image": "noise.image", "condition": "edges.image", "model": "train.discriminator"})
    )  # fmt: skip
    result, events = run(text, targets=["real", "fake"])
    assert result.ok, result.failed
    assert falls(losses(events, key="g_l1"))
    real = result.previews["real"].data.score
    noise = result.previews["fake"].data.score
    auc = (real[:, None] > noise[None, :]).float().mean()
    assert auc >= 0.75 and real.mean() > noise.mean() + 0.03
    generator = result.outputs["train"]["model"]
    discriminator = result.outputs["train"]["discriminator"]
    assert generator.info.task == "edges2photo"
    assert discriminator.info.conditional and discriminator.info.in_channels == 4
    assert discriminator.info.extra["condition_channels"] == 1


def test_negatives_are_blurred_noisy_or_both_at_bounded_strengths() -> None:
    torch.manual_seed(0)
    flat = torch.zeros(300, 3, 32, 32)  # blur leaves a flat image as it is; noise does not
    worse = degrade(flat, (-1.0, 1.0))
    assert worse.shape == flat.shape and worse.abs().max() <= 1.0
    spread = worse.flatten(1).std(dim=1) * 255 / 2  # noise sigma on the 0-255 scale
    untouched = (spread == 0).float().mean()
    assert 0.25 < untouched < 0.42  # blur alone: a third of them
    noisy = spread[spread > 0]
    assert noisy.min() > 9 and noisy.max() < 51

    edge = torch.zeros(6, 1, 32, 32)
    edge[..., 16:] = 1.0
    softened = degrade(edge, (0.0, 1.0))[..., 16, 12:20]
    assert (softened - edge[..., 16, 12:20]).abs().amax(dim=-1).min() > 0.01  # all changed


# -- the loop: samples, budgets, epochs, resume, caching ------------------------------------------


def test_sample_grids_are_written_and_announced(run, tmp_path: Path) -> None:
    folder = tmp_path / "samples"
    text = dataset("denoise", crop=16, crops_per_image=1) + node_text(
        "train", "train_unet", {"dataset": "data.dataset"}, num_downs=4, ngf=8, steps=6,
        batch_size=4, sample_every=3, samples=str(folder),
    )  # fmt: skip
    _result, events = run_ok(run, text, ["train"])
    announced = losses(events, key="sample")
    assert [Path(p).name for p in announced] == ["train-step000003.png", "train-step000006.png"]
    assert all(Path(p).is_file() for p in announced)
    from PIL import Image

    with Image.open(announced[0]) as grid:
        assert grid.size == (3 * 16 + 4 * 2, 4 * 16 + 5 * 2)  # 4 rows of input|output|target


def test_time_budget_stops_cleanly_and_says_so(run) -> None:
    text = dataset("denoise", crop=16, crops_per_image=1) + node_text(
        "train",
        "train_unet",
        {"dataset": "data.dataset"},
        steps=1000,
        time_budget=0.0,
        **SMALL_UNET,
    )
    result, events = run_ok(run, text, ["train"])
    record = result.outputs["train"]["model"].info.extra["training"]
    assert record["steps"] == 0 and "time budget" in record["stopped"]
    assert any(
        "time budget" in str(e.info.get("stopped", ""))
        for e in events
        if isinstance(e, NodeProgress)
    )


def test_epochs_count_whole_passes(run) -> None:
    # 6 photos x 3 crops = 18 pairs a pass: batches of 8, 8 and 2, so 3 steps per pass.
    text = dataset("denoise", crop=16, crops_per_image=3) + node_text(
        "train", "train_unet", {"dataset": "data.dataset"}, epochs=2, **SMALL_UNET
    )
    result, events = run_ok(run, text, ["train"])
    record = result.outputs["train"]["model"].info.extra["training"]
    assert record["steps"] == 6 and record["epochs"] == 2
    epochs = losses(events, key="epoch")
    assert epochs == [1, 1, 1, 2, 2, 2]


def test_unusable_crop_sizes_are_explained(run) -> None:
    text = dataset("denoise", crop=24) + node_text(
        "train", "train_unet", {"dataset": "data.dataset"}, steps=2, **SMALL_UNET
    )
    result, events = run(text, targets=["train"])
    assert not result.ok
    failure = next(e for e in events if isinstance(e, NodeFailed) and e.node == "train")
    assert "multiples of 16" in failure.message and "crop" in failure.message

    text = dataset("denoise", crop=32) + node_text(
        "train", "train_unet", {"dataset": "data.dataset"}, loss="classification", steps=2,
        **SMALL_UNET,
    )  # fmt: skip
    result, events = run(text, targets=["train"])
    assert not result.ok and "colorization" in result.failed["train"]


PIX2PIX_RESUME = {
    "generator": "resnet",
    "negatives": True,  # its random degradations must resume exactly too
    "n_blocks": 1,
    "ngf": 4,
    "ndf": 4,
    "n_layers": 1,
    "dropout": True,
    "steps": 9,
    "batch_size": 4,
    "sample_every": 0,
}


def _train(registry: Registry, graph: Path, cache: Path, cancel_at: int | None = None):
    """Run the graph's trainer with a fresh executor; cancel after step `cancel_at`."""
    token = CancelToken()
    events: list[Event] = []

    def handle(event: Event) -> None:
        events.append(event)
        if isinstance(event, NodeProgress) and event.node == "train" and event.done == cancel_at:
            token.cancel()

    executor = Executor(registry, Cache(cache), device="cpu")
    result = executor.run(Graph.load(graph), targets=["train"], on_event=handle, cancel=token)
    return result, events


def _weights(result: Any) -> dict[str, torch.Tensor]:
    models = result.outputs["train"]
    return {
        f"{name}.{key}": value
        for name, model in models.items()
        for key, value in model.net.state_dict().items()
    }


def test_interrupted_training_resumes_to_the_same_weights(
    registry: Registry, tmp_path: Path
) -> None:
    # 6 photos x 1 crop: batches of 4 and 2; the cut at step 3 falls inside the second pass.
    graph = tmp_path / "train.toml"
    graph.write_text(
        "version = 1\n"
        + dataset("edges2photo", crop=16, crops_per_image=1)
        + node_text("train", "train_pix2pix", {"dataset": "data.dataset"}, **PIX2PIX_RESUME)
    )
    whole, _ = _train(registry, graph, tmp_path / "whole")
    assert whole.ok

    cut, events = _train(registry, graph, tmp_path / "cache", cancel_at=3)
    assert cut.cancelled
    assert max(e.done for e in events if isinstance(e, NodeProgress) and e.node == "train") == 3
    checkpoints = list((tmp_path / "cache" / "work").glob(f"*/{CHECKPOINT_FILE}"))
    assert len(checkpoints) == 1
    saved = torch.load(checkpoints[0], weights_only=True)
    assert saved["position"]["step"] == 3

    resumed, events = _train(registry, graph, tmp_path / "cache")
    assert resumed.ok
    progress = [e for e in events if isinstance(e, NodeProgress) and e.node == "train"]
    assert progress[0].info.get("resumed") == 3
    assert [e.done for e in progress if "loss" in e.info] == list(range(4, 10))
    assert resumed.outputs["train"]["model"].info.extra["training"]["steps"] == 9
    assert not checkpoints[0].exists()
    expected, found = _weights(whole), _weights(resumed)
    assert expected.keys() == found.keys()
    for key, value in expected.items():
        torch.testing.assert_close(found[key], value, atol=1e-5, rtol=0, msg=key)


def test_rerun_of_an_unchanged_graph_does_not_retrain(registry: Registry, tmp_path: Path) -> None:
    graph = tmp_path / "train.toml"
    graph.write_text(
        "version = 1\n"
        + dataset("denoise", crop=16, crops_per_image=1)
        + node_text("train", "train_unet", {"dataset": "data.dataset"}, steps=3, **SMALL_UNET)
    )
    first, events = _train(registry, graph, tmp_path / "cache")
    assert first.ok and any(isinstance(e, NodeStarted) and e.node == "train" for e in events)
    again, events = _train(registry, graph, tmp_path / "cache")
    assert again.ok
    assert not any(isinstance(e, NodeStarted) and e.node in ("train", "data") for e in events)
    for key, value in _weights(first).items():
        assert torch.equal(_weights(again)[key].cpu(), value.cpu()), key
    assert math.isclose(
        again.outputs["train"]["model"].info.extra["training"]["losses"]["loss"],
        first.outputs["train"]["model"].info.extra["training"]["losses"]["loss"],
    )


def test_checkpoints_are_written_while_training_and_removed_after(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "CHECKPOINT_SECONDS", 0.0)
    graph = tmp_path / "train.toml"
    graph.write_text(
        "version = 1\n"
        + dataset("denoise", crop=16, crops_per_image=1)
        + node_text("train", "train_unet", {"dataset": "data.dataset"}, steps=4, **SMALL_UNET)
    )
    seen: list[int] = []

    def look(event: Event) -> None:
        if isinstance(event, NodeProgress) and event.node == "train" and event.done == 3:
            found = list((tmp_path / "cache" / "work").glob(f"*/{CHECKPOINT_FILE}"))
            seen.extend(torch.load(f, weights_only=True)["position"]["step"] for f in found)

    executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu")
    assert executor.run(Graph.load(graph), targets=["train"], on_event=look).ok
    assert seen == [2]  # saved after step 2, before step 3 reported
    assert not list((tmp_path / "cache" / "work").glob(f"*/{CHECKPOINT_FILE}"))
