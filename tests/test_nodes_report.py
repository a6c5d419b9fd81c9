"""Report nodes: contact sheets and image-quality metrics."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
import torch
from skimage.metrics import structural_similarity

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]


def grid_graph(source: TensorSource, images: torch.Tensor, params: str, batch_size: int = 4) -> str:
    return (
        "version = 1\n"
        + source.node("src", images, batch_size)
        + f'[nodes.sheet]\ntype = "grid"\nparams = {{ {params} }}\ninputs = {{ image = "src.image" }}\n'
    )


def test_grid_lays_tiles_out_row_by_row_on_white(tensor_source, run_graph):
    images = torch.rand(10, 3, 6, 5) * 0.9
    text = grid_graph(tensor_source, images, "columns = 3, padding = 2")
    result, _ = run_graph(text, targets=["sheet"])
    assert result.ok, result.failed
    sheet = next(iter(result.outputs["sheet"]["image"])).data
    assert sheet.shape == (1, 3, 4 * (6 + 2) + 2, 3 * (5 + 2) + 2)
    for index in (0, 4, 9):
        row, column = divmod(index, 3)
        top, left = 2 + row * 8, 2 + column * 7
        torch.testing.assert_close(sheet[0, :, top : top + 6, left : left + 5], images[index])
    assert (sheet[0, :, :2] == 1).all()
    assert (sheet[0, :, 26:, 9:] == 1).all()


def test_grid_stops_at_max_images_and_keeps_gray(tensor_source, run_graph):
    images = torch.rand(10, 1, 6, 6)
    text = grid_graph(tensor_source, images, "max_images = 4, padding = 0", batch_size=3)
    result, _ = run_graph(text, targets=["sheet"])
    assert result.ok, result.failed
    sheet = next(iter(result.outputs["sheet"]["image"])).data
    assert sheet.shape == (1, 1, 6, 4 * 6)
    torch.testing.assert_close(sheet[0, :, :, 18:], images[3])


def test_grid_resizes_tiles_to_size(tensor_source, run_graph):
    images = torch.full((3, 3, 8, 8), 0.25)
    text = grid_graph(tensor_source, images, "size = 4, padding = 1")
    result, _ = run_graph(text, targets=["sheet"])
    assert result.ok, result.failed
    sheet = next(iter(result.outputs["sheet"]["image"])).data
    assert sheet.shape == (1, 3, 4 + 2, 3 * 5 + 1)
    torch.testing.assert_close(sheet[0, :, 1:5, 1:5], torch.full((3, 4, 4), 0.25))


def metrics_graph(source: TensorSource, images: torch.Tensor, references: torch.Tensor) -> str:
    return (
        "version = 1\n"
        + source.node("images", images, batch_size=2)
        + source.node("truth", references, batch_size=2)
        + '[nodes.score]\ntype = "metrics"\n'
        + 'inputs = { image = "images.image", reference = "truth.image" }\n'
    )


def test_metrics_of_noisy_images(tensor_source, run_graph):
    clean = torch.rand(4, 3, 16, 16)
    noisy = (clean + 0.05 * torch.randn(clean.shape)).clamp(0, 1)
    result, _ = run_graph(metrics_graph(tensor_source, noisy, clean))
    assert result.ok, result.failed
    errors = (noisy.double() - clean.double()).square().flatten(1).mean(1)
    expected_psnr = torch.mean(10 * torch.log10(1 / errors)).item()
    assert result.outputs["score"]["psnr"] == pytest.approx(expected_psnr, abs=1e-3)
    expected_ssim = sum(
        structural_similarity(
            a.numpy(),
            b.numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        for a, b in zip(noisy, clean, strict=True)
    ) / len(clean)
    assert result.outputs["score"]["ssim"] == pytest.approx(expected_ssim, abs=1e-4)
    assert result.outputs["score"]["ssim"] < 0.99


def test_metrics_of_identical_images(tensor_source, run_graph):
    images = torch.rand(3, 1, 12, 12)
    result, _ = run_graph(metrics_graph(tensor_source, images, images))
    assert result.ok, result.failed
    assert result.outputs["score"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert result.outputs["score"]["psnr"] == 100.0
    assert math.isfinite(result.outputs["score"]["psnr"])


def test_metrics_refuses_mismatched_shapes(tensor_source, run_graph):
    text = metrics_graph(tensor_source, torch.rand(2, 1, 16, 16), torch.rand(2, 1, 24, 24))
    result, _ = run_graph(text)
    assert not result.ok
    message = result.failed["score"]
    assert "'00000' is 2x1x16x16" in message and "'00000' is 2x1x24x24" in message


def test_metrics_refuses_streams_of_different_lengths(tensor_source, run_graph):
    text = metrics_graph(tensor_source, torch.rand(4, 1, 16, 16), torch.rand(2, 1, 16, 16))
    result, _ = run_graph(text)
    assert not result.ok
    assert "reference stream ended before the image stream" in result.failed["score"]
