"""Sliced Wasserstein distance between Laplacian-pyramid patches (Karras et al. 2018, ProGAN).

How far a set of generated images is from real ones, with no pretrained network (FID
needs Inception weights): the statistics of small patches compared at every scale.

- Each image is split into a Laplacian pyramid (5-tap binomial filter), from full size
  down to `min_size` (the coarsest level is the Gaussian low-pass itself).
- From each level, `patches` random 7x7 neighbourhoods per image become descriptors of
  7 x 7 x C numbers.
- Descriptors are normalised per channel with the reference set's mean and spread (the
  ProGAN code normalises each set by its own, which hides a global shift in brightness
  or contrast; with the reference's statistics a shift counts).
- The distance between the two clouds of descriptors is the sliced Wasserstein distance:
  project both on random unit directions, sort, and average the absolute differences of
  matching quantiles. The larger set is subsampled to the smaller's size first.
- Both sets draw their patch positions from generators seeded alike, so a set compared
  with itself gives exactly 0.

Reported like the paper: x 1000, per level and averaged over levels. Identical sets give 0;
two random draws of one distribution give a small positive floor that shrinks as more
patches are drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from nodeflow.api import FLOAT, IMAGE, Input, Int, NodeContext, Output, Stream, hookimpl, node

PATCH = 7
DIRECTIONS_PER_REPEAT = 128
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(images: torch.Tensor) -> torch.Tensor:
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(images)
    channels = images.shape[1]
    weight = kernel.expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(images, [2, 2, 2, 2], mode="reflect"), weight, groups=channels)


def laplacian_pyramid(images: torch.Tensor, min_size: int) -> list[torch.Tensor]:
    """Band-pass levels, finest first; the last level is the low-pass at about min_size."""
    levels = []
    current = images
    while min(current.shape[-2:]) // 2 >= min_size:
        smaller = _blur(current)[..., ::2, ::2]
        enlarged = F.interpolate(smaller, size=current.shape[-2:], mode="bilinear",
                                 align_corners=False)  # fmt: skip
        levels.append(current - enlarged)
        current = smaller
    levels.append(current)
    return levels


def patch_descriptors(level: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random 7x7 patches per image of `level`, as rows of 7 * 7 * C numbers."""
    batch, _, height, width = level.shape
    if min(height, width) < PATCH:
        raise ValueError(f"a pyramid level of {height}x{width} is smaller than the 7x7 patches")
    tops = torch.randint(0, height - PATCH + 1, (batch * count,), generator=generator)
    lefts = torch.randint(0, width - PATCH + 1, (batch * count,), generator=generator)
    owners = torch.arange(batch).repeat_interleave(count)
    offsets = torch.arange(PATCH)
    rows = (tops[:, None] + offsets)[:, :, None].expand(-1, PATCH, PATCH)
    cols = (lefts[:, None] + offsets)[:, None, :].expand(-1, PATCH, PATCH)
    pixels = level.permute(0, 2, 3, 1)[owners[:, None, None], rows, cols]  # N x 7 x 7 x C
    return pixels.permute(0, 3, 1, 2).reshape(batch * count, -1)


def _collect(
    images: Stream, patches: int, min_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Per pyramid level, the descriptors of every image of the stream."""
    per_level: list[list[torch.Tensor]] = []
    for batch in images:
        levels = laplacian_pyramid(batch.data.detach().float().cpu(), min_size)
        if not per_level:
            per_level = [[] for _ in levels]
        if len(levels) != len(per_level):
            raise ValueError(
                "swd: the images of one stream must all have the same size; resize them first"
            )
        for store, level in zip(per_level, levels, strict=True):
            store.append(patch_descriptors(level, patches, generator))
    return [torch.cat(store) for store in per_level]


def sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, directions: int, generator: torch.Generator
) -> float:
    """The mean over random unit directions of the 1-D Wasserstein distance of projections."""
    count = min(len(a), len(b))
    if len(a) > count:
        a = a[torch.randperm(len(a), generator=generator)[:count]]
    if len(b) > count:
        b = b[torch.randperm(len(b), generator=generator)[:count]]
    total = 0.0
    repeats = max(1, directions // DIRECTIONS_PER_REPEAT)
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], DIRECTIONS_PER_REPEAT, generator=generator)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        projected_a = torch.sort(a @ dirs, dim=0).values
        projected_b = torch.sort(b @ dirs, dim=0).values
        total += float((projected_a - projected_b).abs().mean())
    return total / repeats


def swd_levels(
    image: Stream, reference: Stream, *, patches: int, directions: int, min_size: int, seed: int
) -> list[float]:
    """SWD x 1000 per pyramid level (finest first) between two streams of images."""
    ours = _collect(image, patches, min_size, torch.Generator().manual_seed(seed))
    theirs = _collect(reference, patches, min_size, torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    if not ours or not theirs:
        raise ValueError("swd: both `image` and `reference` must give images")
    if len(ours) != len(theirs):
        raise ValueError(
            f"swd: image gives {len(ours)} pyramid levels but reference {len(theirs)}: compare "
            "images of the same size"
        )
    result = []
    for mine, real in zip(ours, theirs, strict=True):
        if mine.shape[1] != real.shape[1]:
            raise ValueError("swd: image and reference differ in channels (gray and colour?)")
        shaped = real.reshape(len(real), -1, PATCH * PATCH)
        mean = shaped.mean(dim=(0, 2))[:, None]
        std = shaped.std(dim=(0, 2)).clamp_min(1e-8)[:, None]

        def normalise(d: torch.Tensor, mean=mean, std=std) -> torch.Tensor:
            return ((d.reshape(len(d), -1, PATCH * PATCH) - mean) / std).reshape(len(d), -1)

        distance = sliced_wasserstein(normalise(mine), normalise(real), directions, generator)
        result.append(distance * 1000)
    return result


@node(
    "swd",
    inputs={
        "image": Input(IMAGE, help="the images to judge, e.g. a generator's samples"),
        "reference": Input(IMAGE, help="real images of the same size (any count)"),
    },
    outputs={
        "swd": Output(FLOAT, help="mean over pyramid levels of the SWD x 1000; 0 is identical"),
        "finest": Output(FLOAT, help="SWD x 1000 of the finest level (pixel-level detail)"),
        "coarsest": Output(FLOAT, help="SWD x 1000 of the coarsest level (colour, layout)"),
    },
    params={
        "patches": Int(128, min=1, max=100000, help="random 7x7 patches per image and level"),
        "directions": Int(512, min=1, max=100000, help="random projection directions"),
        "min_size": Int(16, min=8, max=4096, help="side of the coarsest pyramid level"),
        "seed": Int(0, help="seed of the patch positions and directions"),
    },
    mode="collect",
    output_node=True,
)
def swd(
    image: Stream,
    reference: Stream,
    *,
    patches: int,
    directions: int,
    min_size: int,
    seed: int,
    ctx: NodeContext,
) -> dict[str, Any]:
    """Sliced Wasserstein distance between Laplacian-pyramid patches of two image sets.

    The GAN quality measure of Karras et al. 2018 (ProGAN), needing no pretrained
    network: random 7x7 patches from every level of each image's Laplacian pyramid are
    compared as distributions. Lower is closer; identical sets give 0, and two samples of
    one distribution a small floor that more `patches` lower. The finest level speaks
    of sharpness and texture, the coarsest of colour and layout. Descriptors are
    normalised with the reference's statistics (not each set's own, as the ProGAN code
    does), so a global shift of brightness counts too.
    """
    levels = swd_levels(
        image, reference, patches=patches, directions=directions, min_size=min_size, seed=seed
    )
    return {"swd": sum(levels) / len(levels), "finest": levels[0], "coarsest": levels[-1]}


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(swd)
