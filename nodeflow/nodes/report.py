"""Nodes that sum a stream up for people: a contact sheet, quality metrics, score summaries."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kornia
import torch
import torch.nn.functional as F

from nodeflow.api import (
    FLOAT,
    IMAGE,
    SCORES,
    Input,
    Int,
    NodeContext,
    Output,
    Stream,
    hookimpl,
    node,
)
from nodeflow.api import Path as PathParam
from nodeflow.atomic import write_text_atomic
from nodeflow.files.policy import check_replaceable, output_file
from nodeflow.images import contact_sheet

PSNR_CAP = 100.0
"""PSNR of identical images is infinite; it is reported as this many dB instead."""
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp(0, 1)


@node(
    "grid",
    inputs={"image": Input(IMAGE, help="the images to lay out")},
    outputs={"image": Output(IMAGE, help="one contact sheet, a batch of one")},
    params={
        "columns": Int(8, min=1, max=256, help="tiles per row"),
        "padding": Int(2, min=0, help="white pixels between and around tiles"),
        "max_images": Int(256, min=1, help="stop after this many images"),
        "size": Int(None, min=1, help="resize every tile to size x size"),
    },
    mode="collect",
)
def grid(image: Stream, *, columns: int, padding: int, max_images: int, size: int | None) -> Stream:
    """Lay images out on one contact sheet, row by row, on a white background.

    Reading stops after max_images, so the sheet (and memory) stays bounded however long
    the stream is. With size set every tile is resized to size x size; otherwise tiles of
    another size than the first image are resized to it. When any tile is RGB, gray tiles
    are shown as RGB too.
    """
    target = (size, size) if size is not None else None
    tiles: list[torch.Tensor] = []
    taken = 0
    for batch in image:
        images = batch.data[: max_images - taken]
        target = target or tuple(images.shape[-2:])
        if tuple(images.shape[-2:]) != target:
            images = _resize(images, target)
        tiles.append(images)
        taken += len(images)
        if taken >= max_images:
            break
    if not tiles:
        raise ValueError("grid received no images")
    channels = max(tile.shape[1] for tile in tiles)
    stacked = torch.cat([tile.expand(-1, channels, -1, -1) for tile in tiles])
    return Stream.of(contact_sheet(stacked, columns, padding)[None], ["grid"])


def _psnr(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for values in [0, 1], capped at PSNR_CAP."""
    error = (images.double() - references.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(1 / error)).clamp(max=PSNR_CAP)


def _ssim(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM: Gaussian window 11, sigma 1.5, valid region, channels averaged."""
    height, width = images.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {height}x{width}"
        )
    scores = kornia.metrics.ssim(
        images.float(), references.float(), SSIM_WINDOW, max_val=1.0, eps=0.0, padding="valid"
    )
    return scores.flatten(1).mean(1)


def _shape_text(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape))


@node(
    "metrics",
    inputs={
        "image": Input(IMAGE, help="the images to score"),
        "reference": Input(IMAGE, help="the ground truth, in the same order and batches"),
    },
    outputs={
        "psnr": Output(FLOAT, help="mean PSNR in dB (at most 100)"),
        "ssim": Output(FLOAT, help="mean SSIM, 1 for identical images"),
    },
    mode="collect",
    output_node=True,
)
def metrics(image: Stream, reference: Stream) -> dict[str, float]:
    """Score images against references: mean PSNR (dB) and mean SSIM.

    The two streams are paired batch by batch and must match in shape. PSNR is computed
    per image for values in [0, 1] and averaged; identical images would score infinity, so
    each image's PSNR is capped at 100 dB. SSIM uses the standard Gaussian window (11
    pixels, sigma 1.5) over the valid region, per channel, averaged over channels and
    images; images must be at least 11 x 11.
    """
    psnr_scores: list[torch.Tensor] = []
    ssim_scores: list[torch.Tensor] = []
    references = iter(reference)
    for batch in image:
        truth = next(references, None)
        if truth is None:
            raise ValueError(
                "the reference stream ended before the image stream: give both the same images"
            )
        if batch.data.shape != truth.data.shape:
            raise ValueError(
                f"image batch starting at {batch.names[0]!r} is {_shape_text(batch.data)} but "
                f"reference batch starting at {truth.names[0]!r} is {_shape_text(truth.data)}; "
                "both streams need the same image sizes, channels and batch sizes"
            )
        psnr_scores.append(_psnr(batch.data, truth.data))
        ssim_scores.append(_ssim(batch.data, truth.data))
    if next(references, None) is not None:
        raise ValueError(
            "the image stream ended before the reference stream: give both the same images"
        )
    if not psnr_scores:
        raise ValueError("metrics received no images")
    return {
        "psnr": torch.cat(psnr_scores).mean().item(),
        "ssim": torch.cat(ssim_scores).mean().item(),
    }


@node(
    "score_summary",
    inputs={"score": Input(SCORES, help="per-image scores, e.g. from discriminator_score")},
    outputs={
        "mean": Output(FLOAT, help="mean score over all images"),
        "min": Output(FLOAT, help="lowest score"),
        "max": Output(FLOAT, help="highest score"),
    },
    params={
        "file": PathParam(
            None, help="also write every image's score to this .csv file (suffix added if missing)"
        )
    },
    mode="collect",
    output_node=True,
    writes={"file": "file"},
)
def score_summary(score: Stream, *, file: Path | None, ctx: NodeContext) -> dict[str, float]:
    """Sum per-image scores up: mean, lowest and highest, optionally a CSV of each.

    The CSV has one row per image (`name,score`) in stream order and is written
    atomically. The node writes `.csv` files only: a name without a suffix gets `.csv`,
    another suffix is refused, and so is a read-only file in the way.
    """
    names: list[str] = []
    values: list[torch.Tensor] = []
    for batch in score:
        names += batch.names
        values.append(batch.data.score.detach().float().cpu())
    if not values:
        raise ValueError("score_summary received no scores")
    scores = torch.cat(values)
    if file is not None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["name", "score"])
        writer.writerows(
            (name, f"{value:.6f}") for name, value in zip(names, scores.tolist(), strict=True)
        )
        path = output_file(file, ".csv", ctx.output_root)
        check_replaceable(path)
        write_text_atomic(path, text.getvalue())
        ctx.wrote(path)
    return {"mean": scores.mean().item(), "min": scores.min().item(), "max": scores.max().item()}


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in (grid, metrics, score_summary):
        register(node_type)
