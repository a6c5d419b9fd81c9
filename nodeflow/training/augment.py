"""Differentiable augmentation for GANs trained on few images (Zhao et al. 2020, DiffAugment).

A discriminator trained on a few hundred crops memorises them and stops teaching the
generator. DiffAugment shows it every image, real and generated alike, through random
transformations that gradients pass through, so it cannot memorise exact pixels and the
generator is still steered towards the un-augmented distribution (the same transforms
apply to both sides). The three policies, as in the paper's reference code:

- colour: brightness +-0.5, saturation x [0, 2], contrast x [0.5, 1.5], per image;
- translation: shift by up to 1/8 of the side, per image, zeros coming in;
- cutout: one square of half the side per image set to zero, anywhere.

Images are in the networks' range [-1, 1]. Randomness comes from the global RNG, which
the training loop seeds, forks and saves with its checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

POLICIES = ("colour", "translation", "cutout")


def _uniform(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(len(images), 1, 1, 1, device=images.device)


def colour(images: torch.Tensor) -> torch.Tensor:
    images = images + _uniform(images, -0.5, 0.5)
    mean = images.mean(dim=1, keepdim=True)
    images = (images - mean) * _uniform(images, 0.0, 2.0) + mean
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * _uniform(images, 0.5, 1.5) + mean


def translation(images: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    batch, _, height, width = images.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-shift_y, shift_y + 1, (batch, 1, 1), device=images.device)
    dx = torch.randint(-shift_x, shift_x + 1, (batch, 1, 1), device=images.device)
    rows = torch.arange(height, device=images.device)[None, :, None]
    cols = torch.arange(width, device=images.device)[None, None, :]
    source_y = (rows + dy + 1).clamp(0, height + 1)
    source_x = (cols + dx + 1).clamp(0, width + 1)
    padded = F.pad(images, [1, 1, 1, 1])
    index = torch.arange(batch, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, source_y, source_x].permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = images.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height + (1 - cut_h % 2), (batch, 1, 1), device=images.device)
    left = torch.randint(0, width + (1 - cut_w % 2), (batch, 1, 1), device=images.device)
    rows = torch.arange(height, device=images.device)[None, :, None]
    cols = torch.arange(width, device=images.device)[None, None, :]
    inside_y = (rows - top + cut_h // 2 >= 0) & (rows - top - cut_h // 2 < 0)
    inside_x = (cols - left + cut_w // 2 >= 0) & (cols - left - cut_w // 2 < 0)
    keep = ~(inside_y & inside_x)
    return images * keep[:, None].to(images.dtype)


_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "colour": colour,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(text: str) -> tuple[str, ...]:
    """'colour,translation,cutout' -> its policies; '' or 'none' -> none; unknown: an error."""
    names = tuple(
        name.strip() for name in text.replace("color", "colour").split(",") if name.strip()
    )
    if names == ("none",):
        return ()
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(map(repr, unknown))}; use a comma-separated "
            f"list of {', '.join(POLICIES)}, or 'none'"
        )
    return names


def diff_augment(images: torch.Tensor, policy: Sequence[str]) -> torch.Tensor:
    """`images` through each transform of `policy` in turn, with fresh randomness per image."""
    for name in policy:
        images = _TRANSFORMS[name](images)
    return images.contiguous()
