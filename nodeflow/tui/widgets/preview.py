"""The image preview: a picture drawn with coloured half-block cells.

Each terminal cell shows two pixels stacked: `▀` with the upper pixel as its foreground
colour and the lower one as its background. The image is shrunk (box filter) to fit the
widget, keeping its aspect ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from rich.align import Align
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.widget import Widget


class HalfBlocks:
    """A rich renderable of RGB pixels (height x width x 3, uint8), two pixel rows per line."""

    def __init__(self, pixels: np.ndarray):
        if len(pixels) % 2:
            pixels = np.concatenate([pixels, pixels[-1:]], axis=0)
        self.pixels = pixels

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for upper, lower in zip(self.pixels[0::2], self.pixels[1::2], strict=True):
            for top, bottom in zip(upper.tolist(), lower.tolist(), strict=True):
                style = Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))
                yield Segment("▀", style)
            yield Segment.line()


def fit(pixels: np.ndarray, columns: int, rows: int) -> np.ndarray:
    """Shrink an RGB image to fit `columns` x `rows` cells (2 pixels a cell), aspect kept."""
    height, width = pixels.shape[:2]
    scale = min(columns / width, 2 * rows / height, 1.0)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))


def to_pixels(image: Any) -> np.ndarray:
    """An image tensor (C x H x W or B x C x H x W, values in [0, 1]) as RGB uint8 pixels."""
    if image.dim() == 4:
        image = image[0]
    image = image.detach().float().cpu().clamp(0, 1)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return (image[:3].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


class ImagePreview(Widget):
    """Shows `pixels` (RGB uint8) as half blocks, shrunk to fit."""

    DEFAULT_CSS = """
    ImagePreview {
        height: 14;
        width: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pixels: np.ndarray | None = None

    def show(self, pixels: np.ndarray | None) -> None:
        self.pixels = pixels
        self.refresh()

    def render(self) -> Any:
        if self.pixels is None:
            return ""
        width, height = self.content_region.size
        if width < 2 or height < 1:
            return ""
        return Align.center(HalfBlocks(fit(self.pixels, width, height)))
