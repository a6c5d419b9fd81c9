"""Small operations on image tensors that several parts of nodeflow share."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from nodeflow.files.decode import DecodeOptions, UnreadableImage, decode_file
from nodeflow.files.pixels import OutOfRange, to_unit_float


def contact_sheet(tiles: torch.Tensor, columns: int, padding: int) -> torch.Tensor:
    """Lay N x C x h x w tiles out row by row on a white C x H x W sheet."""
    count, channels, height, width = tiles.shape
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    sheet = tiles.new_ones(
        channels, rows * (height + padding) + padding, columns * (width + padding) + padding
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top = padding + row * (height + padding)
        left = padding + column * (width + padding)
        sheet[:, top : top + height, left : left + width] = tile
    return sheet


def as_float(images: torch.Tensor) -> torch.Tensor:
    """8-bit pixels (0..255) as float32 in [0, 1]; float images as they are."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    return images


def pixels_to_tensor(pixels: np.ndarray, rescale: bool) -> torch.Tensor:
    """H x W x C pixels of any precision as a float32 C x H x W tensor in [0, 1]."""
    unit = to_unit_float(pixels, rescale)
    return torch.from_numpy(np.ascontiguousarray(unit.transpose(2, 0, 1)))


def read_image(
    path: Path, options: DecodeOptions | None = None, rescale: bool = False
) -> torch.Tensor:
    """Decode a file's first frame to a float32 C x H x W tensor; `UnreadableImage` if it fails."""
    options = options or DecodeOptions()
    options = DecodeOptions("first", options.color_management, options.max_pixels)
    (_, pixels), *_ = decode_file(Path(path), options)
    try:
        return pixels_to_tensor(pixels, rescale)
    except OutOfRange as exc:
        raise UnreadableImage(Path(path), str(exc)) from None
