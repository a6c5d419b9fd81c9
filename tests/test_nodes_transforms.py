"""The built-in transform nodes, run through graph files on small tensors.

Input images come from a test-only source node, `tensors.load`, that reads a tensor saved
with `torch.save`; it lives in a plugin folder named by NODEFLOW_PLUGIN_PATH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import torch

from nodeflow.engine.executor import RunResult
from nodeflow.graph import Graph, GraphFileError
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

SOURCE_PLUGIN = '''
import torch

from nodeflow.node import Int, Output, Path, node
from nodeflow.plugins import hookimpl
from nodeflow.types import IMAGE, Batch, Stream


@node(
    "load",
    outputs={"image": Output(IMAGE)},
    params={"path": Path(), "batch_size": Int(0, min=0)},
)
def load(*, path, batch_size, ctx):
    """Stream a tensor saved with torch.save, in batches of batch_size (0: one batch)."""
    images = torch.load(path, weights_only=True).to(ctx.device)
    chunks = images.split(batch_size or len(images))
    return Stream(lambda: (Batch(c, [str(i)] * len(c)) for i, c in enumerate(chunks)),
                  total=len(chunks))


@hookimpl
def register_nodes(register):
    register(load)
'''

Apply = Callable[..., torch.Tensor]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The registry with the built-ins and the test-only `tensors.load` source."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "tensors.py").write_text(SOURCE_PLUGIN)
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(folder))
    reset_registry()
    yield load_registry()
    reset_registry()


def graph_text(
    node_type: str,
    params: dict[str, Any],
    inputs: dict[str, torch.Tensor],
    folder: Path,
    batch_size: int = 0,
) -> str:
    """A graph that loads each input tensor and feeds it to one node `t` of `node_type`."""
    nodes: dict[str, Any] = {}
    for name, tensor in inputs.items():
        torch.save(tensor, folder / f"{name}.pt")
        nodes[f"load_{name}"] = {
            "type": "tensors.load",
            "params": {"path": f"{name}.pt", "batch_size": batch_size},
        }
    links = {name: f"load_{name}.image" for name in inputs}
    nodes["t"] = {"type": node_type, "params": params, "inputs": links}
    return tomli_w.dumps({"version": 1, "nodes": nodes})


def output(result: RunResult, node_id: str = "t") -> torch.Tensor:
    """Every batch the node produced, concatenated."""
    assert result.ok, result.failed
    return torch.cat(list(result.outputs[node_id]["image"].tensors()))


@pytest.fixture
def run_node(run_graph, tmp_path: Path) -> Callable[..., RunResult]:
    def run(
        node_type: str,
        params: dict[str, Any] | None = None,
        batch_size: int = 0,
        **inputs: torch.Tensor,
    ) -> RunResult:
        text = graph_text(node_type, params or {}, inputs, tmp_path, batch_size)
        result, _events = run_graph(text)
        return result

    return run


@pytest.fixture
def apply(run_node) -> Apply:
    """Run one node on the given input tensors and return its output."""

    def run(
        node_type: str,
        params: dict[str, Any] | None = None,
        batch_size: int = 0,
        **inputs: torch.Tensor,
    ) -> torch.Tensor:
        return output(run_node(node_type, params, batch_size, **inputs))

    return run


def solid(*colour: float, size: tuple[int, int] = (8, 8)) -> torch.Tensor:
    """A 1 x C x H x W image of one colour."""
    return torch.tensor(colour).view(1, -1, 1, 1).expand(1, len(colour), *size).clone()


def ramp(channels: int = 3, height: int = 16, width: int = 16, batch: int = 1) -> torch.Tensor:
    """An image whose every pixel value is distinct, scaled into [0, 1]."""
    count = batch * channels * height * width
    return (torch.arange(count, dtype=torch.float32) / count).view(batch, channels, height, width)


def step_edge(column: int = 8, size: int = 16) -> torch.Tensor:
    """A gray image, 0 left of `column` and 1 from it on."""
    image = torch.zeros(1, 1, size, size)
    image[..., column:] = 1.0
    return image


def failure(result: RunResult, node_id: str = "t") -> str:
    assert not result.ok
    return result.failed[node_id]


# -- grayscale -----------------------------------------------------------------------------


def test_grayscale_uses_itu_601_luma(apply: Apply) -> None:
    gray = apply("grayscale", image=solid(0.2, 0.4, 0.6))
    assert gray.shape == (1, 1, 8, 8)
    expected = 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6
    assert torch.allclose(gray, torch.full_like(gray, expected), atol=1e-6)


def test_grayscale_passes_gray_through(apply: Apply) -> None:
    image = ramp(channels=1)
    assert torch.equal(apply("grayscale", image=image), image)


# -- resize --------------------------------------------------------------------------------


def test_resize_to_a_size_or_by_a_scale(apply: Apply) -> None:
    image = ramp(height=16, width=12)
    assert apply("resize", {"size": [5, 7]}, image=image).shape == (1, 3, 5, 7)
    assert apply("resize", {"size": 6}, image=image).shape == (1, 3, 6, 6)
    assert apply("resize", {"scale": 0.5}, image=image).shape == (1, 3, 8, 6)
    assert apply("resize", {"scale": 2.5, "mode": "nearest"}, image=image).shape == (1, 3, 40, 30)


def test_resize_keeps_a_constant_image_constant_and_in_range(apply: Apply) -> None:
    for mode in ("bilinear", "bicubic", "nearest", "area"):
        shrunk = apply("resize", {"size": [3, 5], "mode": mode}, image=solid(0.25, 0.5, 1.0))
        assert torch.allclose(shrunk, solid(0.25, 0.5, 1.0, size=(3, 5)), atol=1e-5), mode
    edge = step_edge()
    grown = apply("resize", {"scale": 3.0, "mode": "bicubic"}, image=edge)
    assert grown.min() >= 0 and grown.max() <= 1


def test_resize_nearest_picks_the_pixel_under_each_centre(apply: Apply) -> None:
    row = torch.tensor([0.0, 0.25, 0.5, 0.75]).view(1, 1, 1, 4)
    picked = apply("resize", {"size": [1, 2], "mode": "nearest"}, image=row)
    assert picked.flatten().tolist() == [0.25, 0.75]


@pytest.mark.parametrize("params", [{}, {"size": 4, "scale": 0.5}])
def test_resize_wants_exactly_one_of_size_and_scale(run_node, params) -> None:
    with pytest.raises(GraphFileError, match="give exactly one of `size` or `scale`"):
        run_node("resize", params, image=ramp())


# -- crop ----------------------------------------------------------------------------------


def test_crop_equals_slicing(apply: Apply) -> None:
    image = ramp(height=10, width=12)
    cropped = apply("crop", {"top": 2, "left": 3, "height": 5, "width": 4}, image=image)
    assert torch.equal(cropped, image[..., 2:7, 3:7])


def test_crop_outside_the_image_names_its_size(run_node) -> None:
    params = {"top": 6, "height": 4, "width": 4}
    message = failure(run_node("crop", params, image=ramp(height=8, width=10)))
    assert "outside the image of 8x10" in message


# -- random_crop ---------------------------------------------------------------------------


def test_random_crop_is_deterministic_per_seed(apply: Apply) -> None:
    image = ramp(batch=4, height=32, width=32)
    first = apply("random_crop", {"size": [8, 12], "seed": 1}, image=image)
    again = apply("random_crop", {"size": [8, 12], "seed": 1}, image=image)
    other = apply("random_crop", {"size": [8, 12], "seed": 2}, image=image)
    assert first.shape == (4, 3, 8, 12)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_random_crop_takes_a_window_of_each_image_at_its_own_place(apply: Apply) -> None:
    image = ramp(batch=4, channels=1, height=32, width=32)
    crops = apply("random_crop", {"size": 8}, image=image)
    places = []
    for item, crop in zip(image, crops, strict=True):
        top, left = torch.nonzero(item[0] == crop[0, 0, 0])[0].tolist()
        assert torch.equal(crop, item[:, top : top + 8, left : left + 8])
        places.append((top, left))
    assert len(set(places)) > 1


def test_random_crop_differs_between_batches_of_a_stream(apply: Apply) -> None:
    same_twice = ramp(channels=1, height=32, width=32).repeat(2, 1, 1, 1)
    crops = apply("random_crop", {"size": 8, "seed": 3}, batch_size=1, image=same_twice)
    assert not torch.equal(crops[0], crops[1])


def test_random_crop_larger_than_the_image_fails(run_node) -> None:
    message = failure(run_node("random_crop", {"size": [4, 20]}, image=ramp(height=8, width=8)))
    assert "4x20 is larger than the image of 8x8" in message


# -- flip ----------------------------------------------------------------------------------


def test_flip_mirrors_and_twice_is_identity(apply: Apply) -> None:
    image = ramp(height=4, width=5)
    assert torch.equal(apply("flip", image=image), image.flip(-1))
    assert torch.equal(apply("flip", {"direction": "vertical"}, image=image), image.flip(-2))
    both = apply("flip", {"direction": "both"}, image=image)
    assert torch.equal(both, torch.rot90(image, 2, dims=(-2, -1)))
    assert torch.equal(apply("flip", {"direction": "both"}, image=both), image)


# -- add_noise -----------------------------------------------------------------------------


def test_add_noise_has_the_asked_standard_deviation(apply: Apply) -> None:
    grey = torch.full((1, 1, 128, 128), 0.5)
    noisy = apply("add_noise", {"sigma": 25.0, "clip": False}, image=grey)
    noise = noisy - grey
    assert noise.std().item() == pytest.approx(25 / 255, rel=0.05)
    assert abs(noise.mean().item()) < 0.01


def test_add_noise_is_deterministic_per_seed_and_clipped(apply: Apply) -> None:
    image = ramp(height=16, width=16)
    first = apply("add_noise", {"sigma": 50.0, "seed": 7}, image=image)
    assert torch.equal(first, apply("add_noise", {"sigma": 50.0, "seed": 7}, image=image))
    assert not torch.equal(first, apply("add_noise", {"sigma": 50.0, "seed": 8}, image=image))
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(apply("add_noise", {"sigma": 0.0}, image=image), image)


def test_add_noise_differs_between_batches_of_a_stream(apply: Apply) -> None:
    same_twice = torch.full((2, 1, 8, 8), 0.5)
    noisy = apply("add_noise", {"clip": False}, batch_size=1, image=same_twice)
    assert not torch.equal(noisy[0], noisy[1])


# -- blur ----------------------------------------------------------------------------------


def test_blur_smooths_noise_and_keeps_the_mean(apply: Apply) -> None:
    noise = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    blurred = apply("blur", {"sigma": 2.0}, image=noise)
    assert blurred.var() < noise.var() / 10
    assert blurred.mean().item() == pytest.approx(noise.mean().item(), abs=0.01)


def test_blur_with_a_kernel_wider_than_the_image(apply: Apply) -> None:
    blurred = apply("blur", {"sigma": 50.0}, image=solid(0.3, 0.6, 0.9, size=(4, 5)))
    assert torch.allclose(blurred, solid(0.3, 0.6, 0.9, size=(4, 5)), atol=1e-5)


# -- edges ---------------------------------------------------------------------------------


def test_canny_finds_a_vertical_step_at_its_column(apply: Apply) -> None:
    found = apply("edges", image=step_edge(column=8).expand(1, 3, 16, 16))
    assert found.shape == (1, 1, 16, 16)
    columns = torch.nonzero(found[0, 0].sum(dim=0)).flatten().tolist()
    assert columns == [7]
    assert torch.equal(found[0, 0, :, 7], torch.ones(16))


def test_sobel_peaks_at_the_step_and_is_normalized(apply: Apply) -> None:
    found = apply("edges", {"method": "sobel"}, image=0.5 * step_edge(column=5))
    profile = found[0, 0, 8]
    assert profile.max().item() == pytest.approx(1.0)
    assert set(torch.nonzero(profile > 0.5).flatten().tolist()) == {4, 5}
    assert profile[:3].max() < 0.01 and profile[7:].max() < 0.01


def test_canny_with_low_above_high_fails(run_node) -> None:
    message = failure(run_node("edges", {"low": 0.5, "high": 0.2}, image=step_edge()))
    assert "low <= high" in message


# -- downsample ----------------------------------------------------------------------------


def test_downsample_floors_the_size_and_keeps_constants(apply: Apply) -> None:
    small = apply("downsample", {"scale": 4}, image=solid(0.1, 0.5, 0.9, size=(17, 18)))
    assert small.shape == (1, 3, 4, 4)
    assert torch.allclose(small, solid(0.1, 0.5, 0.9, size=(4, 4)), atol=1e-5)


def test_downsample_averages_blocks_of_the_cropped_image(apply: Apply) -> None:
    image = torch.zeros(1, 1, 9, 8)
    image[..., :4, :] = 1.0
    small = apply("downsample", {"scale": 4}, image=image)
    assert small.shape == (1, 1, 2, 2)
    assert small[0, 0, 0].min() > 0.9 and small[0, 0, 1].max() < 0.1


def test_downsample_of_an_image_smaller_than_the_factor_fails(run_node) -> None:
    message = failure(run_node("downsample", {"scale": 8}, image=ramp(height=4, width=16)))
    assert "smaller than the factor 8" in message


# -- Lab -----------------------------------------------------------------------------------


def test_to_lab_scales_channels_into_unit_range(apply: Apply) -> None:
    white = apply("to_lab", image=solid(1.0, 1.0, 1.0, size=(2, 2)))
    assert torch.allclose(white[0, :, 0, 0], torch.tensor([1.0, 128 / 255, 128 / 255]), atol=1e-3)
    red = apply("to_lab", image=solid(1.0, 0.0, 0.0, size=(2, 2)))
    # sRGB red is L 53.24, a 80.09, b 67.20
    expected = torch.tensor([53.24 / 100, (80.09 + 128) / 255, (67.20 + 128) / 255])
    assert torch.allclose(red[0, :, 0, 0], expected, atol=2e-3)


def test_lab_round_trip(run_graph, tmp_path: Path) -> None:
    torch.save(
        torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), tmp_path / "x.pt"
    )
    result, _events = run_graph(
        """
        version = 1

        [nodes.photos]
        type = "tensors.load"
        params = { path = "x.pt" }

        [nodes.lab]
        type = "to_lab"
        inputs = { image = "photos.image" }

        [nodes.back]
        type = "from_lab"
        inputs = { image = "lab.image" }
        """
    )
    original = output(result, "photos")
    lab = output(result, "lab")
    assert lab.min() >= 0 and lab.max() <= 1
    assert (output(result, "back") - original).abs().max() < 1e-3


def test_to_lab_of_a_gray_image_fails(run_node) -> None:
    message = failure(run_node("to_lab", image=ramp(channels=1)))
    assert "to_lab needs an RGB image" in message


# -- blend ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "alpha", "expected"),
    [
        ("mix", 0.25, 0.75 * 0.2 + 0.25 * 0.6),
        ("multiply", 1.0, 0.2 * 0.6),
        ("screen", 1.0, 1 - 0.8 * 0.4),
        ("difference", 1.0, 0.4),
        ("difference", 0.5, 0.5 * 0.2 + 0.5 * 0.4),
    ],
)
def test_blend_modes(apply: Apply, mode: str, alpha: float, expected: float) -> None:
    blended = apply(
        "blend",
        {"mode": mode, "alpha": alpha},
        image=solid(0.2, 0.2, 0.2),
        other=solid(0.6, 0.6, 0.6),
    )
    assert torch.allclose(blended, torch.full_like(blended, expected), atol=1e-6)


def test_blend_repeats_a_gray_image_over_rgb(apply: Apply) -> None:
    blended = apply("blend", {"alpha": 0.5}, image=solid(0.2), other=solid(0.0, 0.4, 1.0))
    assert blended.shape == (1, 3, 8, 8)
    assert torch.allclose(blended[0, :, 0, 0], torch.tensor([0.1, 0.3, 0.6]), atol=1e-6)


def test_blend_of_different_sizes_names_both(run_node) -> None:
    result = run_node("blend", image=ramp(height=8, width=8), other=ramp(height=8, width=6))
    message = failure(result)
    assert "image is 8x8" in message and "other is 8x6" in message


def test_image_interpolate_cross_fades_each_pair(apply: Apply) -> None:
    frames = apply("image_interpolate", {"steps": 3}, image=solid(0.2), other=solid(0.0, 0.4, 1.0))
    assert frames.shape == (3, 3, 8, 8)
    expected = torch.tensor([[0.2, 0.2, 0.2], [0.1, 0.3, 0.6], [0.0, 0.4, 1.0]])
    assert torch.allclose(frames[:, :, 0, 0], expected, atol=1e-6)


def test_image_interpolate_of_different_sizes_names_both(run_node) -> None:
    result = run_node("image_interpolate", image=ramp(height=8), other=ramp(height=8, width=6))
    assert "other is 8x6" in failure(result)


# -- validation ----------------------------------------------------------------------------

BAD_PARAMS = """
version = 1

[nodes.photos]
type = "tensors.load"
params = { path = "x.pt" }

[nodes.mirror]
type = "flip"
params = { direction = "diagonal" }
inputs = { image = "photos.image" }

[nodes.noisy]
type = "add_noise"
params = { sigma = 300.0 }
inputs = { image = "mirror.image" }

[nodes.soft]
type = "blur"
params = { sigma = 0.0 }
inputs = { image = "noisy.image" }

[nodes.cut]
type = "crop"
params = { width = 4 }
inputs = { image = "soft.image" }

[nodes.big]
type = "resize"
params = { size = [0, 8], mode = "lanczos" }
inputs = { image = "cut.image" }
"""


def test_validation_reports_bad_params_with_node_and_field(registry: Registry) -> None:
    problems = Graph.parse(BAD_PARAMS).validate(registry)
    found = {(p.node, p.field): p.message for p in problems}
    assert (
        "'diagonal' is not one of horizontal, vertical, both"
        in found["mirror", "param 'direction'"]
    )
    assert "above the maximum 255" in found["noisy", "param 'sigma'"]
    assert "below the minimum 0.1" in found["soft", "param 'sigma'"]
    assert "missing required param" in found["cut", "param 'height'"]
    assert "below the minimum 1" in found["big", "param 'size'"]
    assert "not one of bilinear, bicubic, nearest, area" in found["big", "param 'mode'"]
    assert len(problems) == 6


def test_running_a_graph_with_bad_params_is_refused(run_graph, tmp_path: Path) -> None:
    torch.save(ramp(), tmp_path / "x.pt")
    with pytest.raises(GraphFileError) as error:
        run_graph(BAD_PARAMS)
    assert "node 'mirror' param 'direction'" in str(error.value)


def test_concat_joins_side_by_side_with_a_gap(registry) -> None:
    concat = registry.nodes["concat"].fn
    left = torch.zeros(2, 1, 4, 3)
    right = torch.full((2, 3, 4, 5), 0.5)
    joined = concat(left, right, direction="horizontal", gap=2)
    assert joined.shape == (2, 3, 4, 10)
    assert torch.equal(joined[..., :3], torch.zeros(2, 3, 4, 3))
    assert torch.equal(joined[..., 3:5], torch.ones(2, 3, 4, 2))
    assert torch.equal(joined[..., 5:], right)
    stacked = concat(left, torch.ones(1, 1, 6, 3), direction="vertical", gap=0)
    assert stacked.shape == (2, 1, 10, 3)
    with pytest.raises(ValueError, match="heights must match"):
        concat(left, torch.zeros(2, 1, 5, 3), direction="horizontal", gap=0)
