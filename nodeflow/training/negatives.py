"""Negative data augmentation: real images made worse, shown to a discriminator as fakes.

A GAN discriminator only ever learns to tell real images from its generator's, so
anything unlike both (a blurred or noisy photo) gets an arbitrary score. Showing it
degraded real images as extra fakes (Sinha et al. 2021, "Negative Data Augmentation")
teaches it that realness excludes blur and noise, which makes it a usable realness
scorer on new images, and pushes the generator towards sharper output.

Each image gets, with equal chance, a Gaussian blur, Gaussian noise, or a blur then
noise, at a strength drawn uniformly from BLUR_SIGMA (pixels) and NOISE_SIGMA (on the
0-255 scale). Randomness comes from the global torch generator, which the training loop
seeds and saves in its checkpoints, so a resumed run draws the same degradations.
"""

from __future__ import annotations

import math

import kornia
import torch

BLUR_SIGMA = (1.0, 3.0)
NOISE_SIGMA = (10.0, 50.0)


def _uniform(count: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(count)


def degrade(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Blurred, noisy, or blurred and noisy copies of `images` (B x C x H x W in value_range)."""
    count = len(images)
    kind = torch.randint(0, 3, (count,))  # 0 blur, 1 noise, 2 both
    blur_sigma = _uniform(count, BLUR_SIGMA)
    noise_sigma = _uniform(count, NOISE_SIGMA) / 255.0 * (value_range[1] - value_range[0])
    noise = torch.randn(images.shape)

    half = math.ceil(3 * BLUR_SIGMA[1])
    kernel = tuple(2 * min(half, side - 1) + 1 for side in images.shape[-2:])
    sigmas = blur_sigma[:, None].expand(count, 2).to(images)
    blurred = kornia.filters.gaussian_blur2d(images, kernel, sigmas, border_type="reflect")

    blur_them = (kind != 1).view(-1, 1, 1, 1).to(images.device)
    noise_them = (kind != 0).view(-1, 1, 1, 1).to(images)
    worse = torch.where(blur_them, blurred, images)
    worse = worse + noise_them * noise_sigma.view(-1, 1, 1, 1).to(images) * noise.to(images)
    return worse.clamp(*value_range)
