"""Dead-leaves images: procedural training data with the statistics of natural images.

A dead-leaves image is a stack of opaque discs dropped on top of one another, their radii
drawn with density proportional to r^-3 between one pixel and the image side. That law
makes the picture look alike at every scale, as photos do, and gives it occlusions, sharp
edges and flat regions; a texture on some discs (a sinusoidal grating between two colours)
adds the fine structure photos have. Denoisers and upscalers trained on such images come
close to the same networks trained on photos (Achddou et al. 2021, "Synthetic images as a
regularity prior for image restoration neural networks"; Baradad et al. 2021, "Learning
to see by looking at noise").

Discs are laid front to back: each pixel takes the first disc that covers it (a last
disc the size of the picture covers what none did). Each picture is then blurred a little
(a Gaussian of 0.3 to 1.2 pixels), so its edges are soft as a lens makes them. Colours come from a
pool the caller gives (`colour_pool`: half the pixels of the photos a `pairs` node reads,
half uniform random colours).
"""

from __future__ import annotations

import math

import kornia
import torch

DISCS = 500  # per image: enough that about 90 % of the picture is covered by drawn discs
TEXTURED = 0.5  # share of discs that carry a grating
BLUR = (0.3, 1.2)  # range of the softening Gaussian's sigma, in pixels


def radii(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """`count` radii with density proportional to r^-3 on [low, high] (inverse CDF)."""
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    return (low**-2 - u * (low**-2 - high**-2)).pow(-0.5).float()


def dead_leaves(
    count: int, size: int, colours: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """`count` dead-leaves images, count x C x size x size in [0, 1], C = colours' columns.

    `colours` is an N x C pool the discs' colours are drawn from (with replacement).
    """
    images = torch.stack([_one(size, colours, generator) for _ in range(count)])
    low, high = BLUR
    sigma = (low + (high - low) * torch.rand(count, 1, generator=generator)).expand(-1, 2)
    kernel = 2 * math.ceil(3 * high) + 1
    return kornia.filters.gaussian_blur2d(images, (kernel, kernel), sigma, "reflect").clamp(0, 1)


def _one(size: int, colours: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r = torch.cat([radii(DISCS, 1.0, size, generator), torch.tensor([math.inf])])
    centre_y, centre_x = (torch.rand(2, DISCS + 1, generator=generator) * size).unbind(0)
    coordinates = torch.arange(size, dtype=torch.float32) + 0.5
    dy = coordinates[None, :, None] - centre_y[:, None, None]
    dx = coordinates[None, None, :] - centre_x[:, None, None]
    covers = dy.square() + dx.square() <= r[:, None, None].square()
    front = covers.to(torch.uint8).argmax(0)  # the first (front-most) disc over each pixel

    picks = torch.randint(len(colours), (2, DISCS + 1), generator=generator)
    first, second = colours[picks[0]], colours[picks[1]]  # (discs, C) each
    textured = torch.rand(DISCS + 1, generator=generator) < TEXTURED
    period = 2 + 14 * torch.rand(DISCS + 1, generator=generator)
    angle = math.pi * torch.rand(DISCS + 1, generator=generator)
    phase = 2 * math.pi * torch.rand(DISCS + 1, generator=generator)

    rows = coordinates[:, None].expand(size, size)
    cols = coordinates[None, :].expand(size, size)
    along = cols * angle[front].cos() + rows * angle[front].sin()
    grating = 0.5 + 0.5 * torch.sin(2 * math.pi * along / period[front] + phase[front])
    mix = (grating * textured[front]).unsqueeze(-1)  # size x size x 1
    pixels = first[front] + (second[front] - first[front]) * mix  # size x size x C
    return pixels.permute(2, 0, 1)


def colour_pool(images: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """A count x C pool of colours on the CPU for a B x C x H x W batch: half are pixels of
    the batch, half uniform over the colour cube, so that the saturated colours few photos
    hold are seen too (a denoiser that never saw them pulls them towards gray)."""
    flat = images.detach().float().cpu().permute(0, 2, 3, 1).reshape(-1, images.shape[1])
    pixels = flat[torch.randint(len(flat), (count - count // 2,), generator=generator)]
    uniform = torch.rand(count // 2, images.shape[1], generator=generator)
    return torch.cat([pixels, uniform])
