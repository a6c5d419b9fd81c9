"""Encode one image file, and read back the graph a nodeflow output carries.

Formats: PNG (8 or 16 bit), TIFF (8 or 16 bit, zlib-compressed), JPEG and WebP (8 bit,
with a quality). 8-bit PNG, JPEG and WebP are written by Pillow, 16-bit colour PNG by
imagecodecs (libpng), TIFF by tifffile. PNG keeps the graph that made it in a compressed
"nodeflow:graph" text chunk, TIFF in the private tag 65000; JPEG and WebP carry none.
Every file is written atomically.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nodeflow.atomic import atomic_path

GRAPH_METADATA_KEY = "nodeflow:graph"
GRAPH_TIFF_TAG = 65000
FORMATS = ("png", "jpg", "webp", "tiff")
SIXTEEN_BIT_FORMATS = ("png", "tiff")
_PILLOW_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(_PNG_SIGNATURE) + 8 + 13 + 4


def write_image(
    path: Path, pixels: np.ndarray, file_format: str, graph_json: str = "", quality: int = 95
) -> None:
    """Write H x W x C (C = 1 or 3) uint8 or uint16 pixels to `path` in `file_format`.

    uint16 pixels need png or tiff. `graph_json` goes into PNG and TIFF metadata; `quality`
    (1-100) applies to jpg and webp.
    """
    if pixels.dtype == np.uint16 and file_format not in SIXTEEN_BIT_FORMATS:
        raise ValueError(f"{file_format} holds 8-bit images only; write png or tiff for 16 bits")
    with atomic_path(path) as tmp:
        if file_format == "tiff":
            _write_tiff(tmp, pixels, graph_json)
        elif file_format == "png" and pixels.dtype == np.uint16 and pixels.shape[-1] == 3:
            tmp.write_bytes(_with_text_chunk(_png16(pixels), graph_json))
        else:
            _write_pillow(tmp, pixels, file_format, graph_json, quality)


def _write_pillow(
    path: Path, pixels: np.ndarray, file_format: str, graph_json: str, quality: int
) -> None:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options: dict[str, Any] = {"quality": quality}
    if file_format == "png":
        info = PngInfo()
        if graph_json:
            info.add_text(GRAPH_METADATA_KEY, graph_json, zip=True)
        options = {"pnginfo": info}
    image.save(path, format=_PILLOW_FORMATS[file_format], **options)


def _png16(pixels: np.ndarray) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels)))


def _with_text_chunk(png: bytes, graph_json: str) -> bytes:
    """The PNG with a zTXt chunk holding the graph, right after its IHDR chunk."""
    if not graph_json:
        return png
    body = GRAPH_METADATA_KEY.encode("latin-1") + b"\0\0" + zlib.compress(graph_json.encode())
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"zTXt" + body) & 0xFFFFFFFF)
    return png[:_IHDR_END] + chunk + png[_IHDR_END:]


def _write_tiff(path: Path, pixels: np.ndarray, graph_json: str) -> None:
    import tifffile

    gray = pixels.shape[-1] == 1
    tags = []
    if graph_json:
        ascii_json = json.dumps(json.loads(graph_json))  # TIFF text tags hold ASCII only
        tags.append((GRAPH_TIFF_TAG, "s", 0, ascii_json, True))
    tifffile.imwrite(
        path,
        pixels[..., 0] if gray else pixels,
        photometric="minisblack" if gray else "rgb",
        compression="zlib",
        extratags=tags,
        metadata=None,
    )


def graph_in_image(path: Path) -> str | None:
    """The graph JSON a PNG or TIFF written by nodeflow carries; None when it has none.

    Raises OSError when the file cannot be opened as an image.
    """
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get(GRAPH_TIFF_TAG)
                text = None if tag is None else tag.value
        except tifffile.TiffFileError as exc:
            raise OSError(f"{str(path)!r} is not a TIFF file nodeflow can read: {exc}") from None
    else:
        try:
            with Image.open(path) as image:
                text = getattr(image, "text", {}).get(GRAPH_METADATA_KEY)
        except Image.UnidentifiedImageError:
            raise OSError(f"{str(path)!r} is not an image file nodeflow can read") from None
    return text if isinstance(text, str) else None
