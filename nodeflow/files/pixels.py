"""Decoded pixels to the [0, 1] floats an Image carries, and back to 8- or 16-bit levels.

8- and 16-bit levels divide by 255 or 65535. Float and 32-bit integer files have no fixed
scale: values already in [0, 1] are kept as they are; others are refused with the range
found, unless the caller asks for them to be scaled by their own minimum and maximum.
"""

from __future__ import annotations

import numpy as np

_LEVELS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.bool_): 1.0}


class OutOfRange(ValueError):
    """Float or 32-bit integer pixels outside [0, 1] that the caller did not ask to scale."""


def to_unit_float(pixels: np.ndarray, rescale: bool = False) -> np.ndarray:
    """H x W x C pixels of any dtype as float32 in [0, 1]; raises `OutOfRange` (see module)."""
    levels = _LEVELS.get(pixels.dtype)
    if levels is not None:
        return pixels.astype(np.float32) / np.float32(levels)
    values = pixels.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        raise OutOfRange(f"{np.count_nonzero(~finite)} of its values are NaN or infinite")
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return values.astype(np.float32)
    if not rescale:
        raise OutOfRange(
            f"its {pixels.dtype} values span {low:g} .. {high:g}, not 0 .. 1; set "
            "rescale = true to scale each such image by its own minimum and maximum"
        )
    span = high - low
    scaled = (values - low) / span if span > 0 else np.zeros_like(values)
    return scaled.astype(np.float32)


def to_levels(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float pixels in [0, 1] (or uint8 levels) as uint8 or uint16 levels, rounded to the
    nearest."""
    if pixels.dtype == np.uint8:
        return pixels if bit_depth == 8 else pixels.astype(np.uint16) * np.uint16(257)
    top = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.clip(np.rint(pixels.astype(np.float64) * top), 0, top).astype(dtype)
