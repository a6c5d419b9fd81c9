"""Paired datasets: (input, target) training pairs made from image streams, with augmentation.

A dataset travels on `Dataset` links as a stream whose batches hold a `PairBatch`: the
input and target tensors (B x C x H x W in [0, 1], on the run's device), the task the
pairs teach ("colorize", "denoise", "superres", "edges2photo", "inpaint", "autoencode",
"translate") and a small dict of task facts (the super-resolution scale, the noise level)
that trainers copy into the model they make. Plain `(input, target)` tuples are accepted
wherever a `PairBatch` is.

Randomness (crop positions, flips, noise, holes) comes from a CPU generator seeded from
(seed, pass, batch index), so pairs are the same on every device and every run, yet
differ from one pass over the data (epoch) to the next. A consumer that makes several
passes says which one it is reading with `with reading_pass(n):` around each pull from the
stream; without it, a stream is read as pass 0.

How each task builds its pairs from a random crop (after an optional horizontal flip):

- colorize: input the CIE Lab lightness L / 100 (1 channel); target ab as
  `nodeflow.models.inference.lab_to_network` scales it into [0, 1], (ab / 110 + 1) / 2,
  clamped (2 channels). This is the scaling the `unet` node decodes with; it differs from
  the `to_lab` node's (ab + 128) / 255, which is a display format.
- denoise: input the crop plus Gaussian noise of `sigma` / 255, clamped to [0, 1] like
  the `add_noise` node; target the clean crop.
- superres: input the crop shrunk `scale` times (bicubic, antialiased, like the
  `downsample` node); target the crop. Trainers of same-size networks (the U-Net) enlarge
  the input back with bicubic interpolation before the network, as the `unet` node does
  at inference (ArchInfo.extra["upsample_input"]).
- edges2photo: input Canny edges (1 channel, thresholds 0.1 and 0.2 like the `edges`
  node), found on the whole image before cropping so crop borders make no false edges;
  target the crop.
- inpaint: input the crop with one to three random rectangles (sides crop/8 to crop/2)
  set to 0.5 gray; target the crop. No mask channel is added: the `unet` node feeds a
  model the image alone, so the network learns to find the flat gray holes itself.
- autoencode: input and target are the same crop.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import kornia
import torch
import torch.nn.functional as F

from nodeflow.models.inference import lab_to_network, network_to_rgb
from nodeflow.training.dead_leaves import colour_pool, dead_leaves

TASKS = ("colorize", "denoise", "superres", "edges2photo", "inpaint", "autoencode")
CANNY_LOW, CANNY_HIGH = 0.1, 0.2
GRAY_FILL = 0.5
SYNTHETIC_COLOURS = 4096  # pixel colours drawn from a batch's photos for its dead-leaves crops

_PASS: contextvars.ContextVar[int] = contextvars.ContextVar("nodeflow_dataset_pass", default=0)


@dataclass
class PairBatch:
    """A mini-batch of training pairs: input and target tensors, the task, task facts."""

    input: torch.Tensor
    target: torch.Tensor
    task: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input)

    def __getitem__(self, items: slice) -> PairBatch:
        return PairBatch(self.input[items], self.target[items], self.task, self.info)

    @property
    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per-item shapes of input and target: pairs of equal shapes can share a batch."""
        return tuple(self.input.shape[1:]), tuple(self.target.shape[1:])

    @classmethod
    def cat(cls, parts: list[PairBatch]) -> PairBatch:
        """One batch from several of equal shapes (new tensors, never inference tensors)."""
        first = parts[0]
        inputs = torch.cat([part.input for part in parts])
        targets = torch.cat([part.target for part in parts])
        return cls(inputs, targets, first.task, first.info)


def as_pairs(data: Any) -> PairBatch:
    """A stream batch's data as a PairBatch; a plain (input, target) tuple is accepted."""
    if isinstance(data, PairBatch):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        inputs, targets = data
        if isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor):
            if len(inputs) != len(targets):
                raise ValueError(
                    f"a dataset batch pairs {len(inputs)} inputs with {len(targets)} targets"
                )
            return PairBatch(inputs, targets, "translate")
    raise ValueError(
        f"a dataset batch must hold (input, target) image tensors, got {type(data).__name__}; "
        "make datasets with the pairs, aligned_pairs or folder_pairs nodes"
    )


# -- passes and randomness -----------------------------------------------------------------------


def current_pass() -> int:
    """Which pass over the data (epoch) the consumer is reading; 0 unless it said otherwise."""
    return _PASS.get()


@contextlib.contextmanager
def reading_pass(index: int) -> Iterator[None]:
    """Mark pulls from a dataset stream inside this block as belonging to pass `index`."""
    token = _PASS.set(index)
    try:
        yield
    finally:
        _PASS.reset(token)


def pair_generator(seed: int, pass_index: int, batch_index: int) -> torch.Generator:
    """A CPU generator for one batch of one pass, the same on every device."""
    digest = hashlib.sha256(f"pairs:{seed}:{pass_index}:{batch_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _randint(high: int, generator: torch.Generator, low: int = 0) -> int:
    """A whole number in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


# -- cropping ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Where one item is cut: which source image, top and left corner, and whether flipped."""

    source: int
    top: int
    left: int
    flip: bool


def draw_windows(
    count: int,
    per_source: int,
    size: tuple[int, int],
    crop: int,
    flip: bool,
    generator: torch.Generator,
) -> list[Window]:
    """`per_source` random crop windows for each of `count` sources of `size` (height, width)."""
    height, width = size
    windows = []
    for source in range(count):
        for _ in range(per_source):
            top = _randint(height - crop, generator)
            left = _randint(width - crop, generator)
            flipped = flip and bool(torch.rand(1, generator=generator) < 0.5)
            windows.append(Window(source, top, left, flipped))
    return windows


def cut(images: torch.Tensor, windows: list[Window], crop: int, factor: int = 1) -> torch.Tensor:
    """The windows cut from `images`; `factor` scales them for an image `factor` times larger."""
    side = crop * factor
    pieces = []
    for w in windows:
        top, left = w.top * factor, w.left * factor
        piece = images[w.source, :, top : top + side, left : left + side]
        pieces.append(piece.flip(-1) if w.flip else piece)
    return torch.stack(pieces)


def zoomed(
    images: torch.Tensor, windows: list[Window], crop: int, zoom: float, generator: torch.Generator
) -> torch.Tensor:
    """Crops cut from squares of side crop x z, z log-uniform in [1, zoom] (at most the
    image), each placed at random and shrunk to crop x crop; `windows` give sources, flips."""
    height, width = images.shape[-2:]
    pieces = []
    for w in windows:
        factor = zoom ** float(torch.rand(1, generator=generator))
        side = min(round(crop * factor), height, width)
        top, left = _randint(height - side, generator), _randint(width - side, generator)
        piece = images[w.source : w.source + 1, :, top : top + side, left : left + side]
        if side != crop:
            piece = F.interpolate(piece.float(), size=(crop, crop), mode="bicubic", antialias=True)
        piece = piece[0].clamp(0.0, 1.0)
        pieces.append(piece.flip(-1) if w.flip else piece)
    return torch.stack(pieces)


def with_synthetic(
    clean: torch.Tensor, images: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """`clean` with round(share x its length) crops, chosen at random, replaced by
    dead-leaves images whose colours are drawn from the pixels of `images`."""
    count = round(share * len(clean))
    if not count:
        return clean
    chosen = torch.randperm(len(clean), generator=generator)[:count].to(clean.device)
    colours = colour_pool(images, SYNTHETIC_COLOURS, generator)
    leaves = dead_leaves(count, clean.shape[-1], colours, generator).to(clean.device, clean.dtype)
    clean = clean.clone()
    clean[chosen] = leaves
    return clean


def jittered(clean: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Each crop's brightness, contrast and (colour crops) saturation scaled by a factor
    drawn from [1 - amount, 1 + amount]."""
    factors = 1 + amount * (2 * torch.rand(3, len(clean), 1, 1, 1, generator=generator) - 1)
    brightness, contrast, saturation = factors.to(clean.device, clean.dtype)
    clean = clean * brightness
    mean = clean.mean(dim=(1, 2, 3), keepdim=True)
    clean = (clean - mean) * contrast + mean
    if clean.shape[1] == 3:
        gray = clean.mean(dim=1, keepdim=True)
        clean = (clean - gray) * saturation + gray
    return clean.clamp(0.0, 1.0)


# -- the tasks --------------------------------------------------------------------------------------


def make_pairs(
    images: torch.Tensor,
    task: str,
    generator: torch.Generator,
    *,
    crop: int,
    crops_per_image: int,
    flip: bool,
    sigma: float,
    scale: int,
    zoom: float = 1.0,
    jitter: float = 0.0,
    synthetic: float = 0.0,
) -> PairBatch:
    """Training pairs for `task` from a batch of images at least crop x crop.

    Three ways to widen what a few photos teach (each off at its default, and then drawing
    nothing from `generator`, so pairs stay as they were): `zoom` cuts each crop from a
    square up to `zoom` times the crop side (log-uniform) and shrinks it to the crop, the
    photos seen at several scales; `synthetic` replaces that share of the crops with
    dead-leaves images in the batch's colours (`nodeflow.training.dead_leaves`); `jitter`
    changes each crop's brightness, contrast and saturation by up to that fraction. All
    act on the clean crop, before the task derives its input, so input and target agree.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if task == "edges2photo" and (zoom > 1 or jitter or synthetic):
        raise ValueError("zoom, jitter and synthetic do not apply to edges2photo pairs")
    windows = draw_windows(len(images), crops_per_image, images.shape[-2:], crop, flip, generator)
    if task == "edges2photo":
        gray = kornia.color.rgb_to_grayscale(images) if images.shape[1] == 3 else images
        _magnitude, edges = kornia.filters.canny(
            gray, low_threshold=CANNY_LOW, high_threshold=CANNY_HIGH
        )
        return PairBatch(
            cut(edges.clamp(0.0, 1.0), windows, crop), cut(images, windows, crop), task
        )
    clean = (
        cut(images, windows, crop) if zoom <= 1 else zoomed(images, windows, crop, zoom, generator)
    )
    if synthetic:
        clean = with_synthetic(clean, images, synthetic, generator)
    if jitter:
        clean = jittered(clean, jitter, generator)
    if task == "colorize":
        lightness, ab = lab_to_network(clean, (0.0, 1.0))
        return PairBatch(lightness.clamp(0.0, 1.0), ab, task)
    if task == "denoise":
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        noisy = (clean + noise * (sigma / 255.0)).clamp(0.0, 1.0)
        return PairBatch(noisy, clean, task, {"sigma": sigma})
    if task == "superres":
        small = F.interpolate(
            clean, size=(crop // scale, crop // scale), mode="bicubic", antialias=True
        )
        return PairBatch(small.clamp(0.0, 1.0), clean, task, {"scale": scale})
    if task == "inpaint":
        holes = draw_holes(len(clean), crop, generator).to(clean.device)
        return PairBatch(clean * (1 - holes) + GRAY_FILL * holes, clean, task)
    return PairBatch(clean, clean, task)


def draw_holes(count: int, crop: int, generator: torch.Generator) -> torch.Tensor:
    """count x 1 x crop x crop masks, each of one to three random rectangles (1 inside)."""
    masks = torch.zeros(count, 1, crop, crop)
    low, high = max(1, crop // 8), max(1, crop // 2)
    for mask in masks:
        for _ in range(_randint(3, generator, low=1)):
            height, width = _randint(high, generator, low), _randint(high, generator, low)
            top, left = _randint(crop - height, generator), _randint(crop - width, generator)
            mask[:, top : top + height, left : left + width] = 1.0
    return masks


def split_aligned(images: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Side-by-side A|B images -> (input, target) halves; BtoA swaps them."""
    half = images.shape[-1] // 2
    left, right = images[..., :half], images[..., half : 2 * half]
    return (left, right) if direction == "AtoB" else (right, left)


def size_factor(small: torch.Tensor, large: torch.Tensor) -> int:
    """How many times larger `large` is than `small` on both sides (a whole number), or 0."""
    (h, w), (big_h, big_w) = small.shape[-2:], large.shape[-2:]
    if big_h % h or big_w % w or big_h // h != big_w // w:
        return 0
    return big_h // h


# -- showing pairs -------------------------------------------------------------------------------------


def pair_images(pair: PairBatch, output: torch.Tensor) -> list[torch.Tensor]:
    """Input, model output and target of each item as RGB images in [0, 1], for sample grids.

    `output` is in the target's form (for colorize: ab scaled into [0, 1]). Colorize
    outputs and targets are shown with the input's lightness; small super-resolution
    inputs are enlarged (nearest) to the target's size.
    """
    inputs, targets = pair.input, pair.target
    if pair.task == "colorize":
        lightness = inputs
        output = network_to_rgb(lightness, output, (0.0, 1.0))
        targets = network_to_rgb(lightness, targets, (0.0, 1.0))
    if inputs.shape[-2:] != targets.shape[-2:]:
        inputs = F.interpolate(inputs, size=targets.shape[-2:], mode="nearest-exact")
    return [_rgb(inputs), _rgb(output), _rgb(targets)]


def _rgb(images: torch.Tensor) -> torch.Tensor:
    images = images.float().clamp(0.0, 1.0)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
