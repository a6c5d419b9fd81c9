"""Small operations on image tensors that several parts of nodeflow share."""

from __future__ import annotations

import math

import torch


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
