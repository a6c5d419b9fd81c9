"""Decode one image file into frames: numpy arrays H x W x C (C = 1 or 3) in the file's dtype.

Which library reads what:
- TIFF: tifffile (with imagecodecs for LZW, JPEG and other compressions): 8- and 16-bit gray
  and RGB, float and 32-bit integer samples, every page. Photometric kinds tifffile does
  not turn into gray or RGB (palette, CMYK, ...) go through Pillow.
- PNG with 16-bit colour: imagecodecs (libpng); Pillow would cut it to 8 bits.
- Everything else: Pillow (8-bit, 16-bit gray, GIF and APNG frames, JPEG, WebP, BMP).

On the way: the EXIF/TIFF orientation is applied (`probe_file` reports the size after it),
an embedded ICC profile converts 8-bit colour to sRGB unless colour management is off,
alpha is dropped, and a frame larger than `max_pixels` is refused before it is decoded.
Conversion to float is `nodeflow.files.pixels`' job, not this module's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms

# Pillow's process-wide bomb check refuses files by size before anyone may raise a limit;
# `max_pixels` below replaces it with a per-file limit a graph can set.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 120_000_000
"""More than any camera's photo, fewer than a decompression bomb's 144 megapixels."""
FRAME_CHOICES = ("first", "all")
_ORIENTATION_TAG = 274
_ICC_TAG = 34675
_TIFF_SUFFIXES = (".tif", ".tiff")
_GRAY_MODES = ("1", "L", "LA", "La")
_SIXTEEN_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N")


class UnreadableImage(ValueError):
    """A file that cannot be decoded, or is refused; `reason` is the short cause."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read the image {str(path)!r}: {reason}")


@dataclass(frozen=True)
class DecodeOptions:
    """How to read a file: which frames, whether to apply its colour profile, the size limit."""

    frames: str = "first"
    color_management: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS


def decode_file(
    path: Path, options: DecodeOptions = DecodeOptions(), name: str | None = None
) -> list[tuple[str, np.ndarray]]:
    """(item name, H x W x C pixels) for the frames `options` asks for.

    The name is `name` (default: the file's stem); a file with several frames read with
    frames = "all" gives `<name>#1`, `<name>#2`, ... Raises `UnreadableImage`.
    """
    name = name if name is not None else path.stem
    try:
        arrays = _decode(path, options)
    except UnreadableImage:
        raise
    except FileNotFoundError:
        raise UnreadableImage(path, "no such file") from None
    except Exception as exc:  # decoders raise many kinds; all mean "unreadable".
        raise UnreadableImage(path, str(exc) or type(exc).__name__) from exc
    if len(arrays) == 1:
        return [(name, arrays[0])]
    return [(f"{name}#{n}", array) for n, array in enumerate(arrays, start=1)]


def probe_file(path: Path, options: DecodeOptions = DecodeOptions()) -> list[tuple[int, int, int]]:
    """C, H, W of each frame `decode_file` would give, from the header alone; [] if unreadable."""
    try:
        if path.suffix.lower() in _TIFF_SUFFIXES and (shapes := _probe_tiff(path, options)):
            return shapes
        with Image.open(path) as image:
            count = _frame_count(image, options)
            channels = 1 if image.mode in _GRAY_MODES + _SIXTEEN_BIT_GRAY + ("I", "F") else 3
            width, height = image.size
            if _orientation(image.getexif().get(_ORIENTATION_TAG)) in (5, 6, 7, 8):
                width, height = height, width
            return [(channels, height, width)] * count
    except Exception:
        return []


# -- size limit and orientation --------------------------------------------------------------


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise UnreadableImage(
            path,
            f"it is {width} x {height} = {width * height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.1f} (max_pixels); raise max_pixels to read it if "
            "you trust the file (a small file that decodes this large is a decompression bomb)",
        )


def _orientation(value: Any) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """H x W x C pixels turned upright as the EXIF/TIFF orientation value 1-8 says."""
    match orientation:
        case 2:
            return pixels[:, ::-1]
        case 3:
            return pixels[::-1, ::-1]
        case 4:
            return pixels[::-1]
        case 5:
            return pixels.transpose(1, 0, 2)
        case 6:
            return np.rot90(pixels, -1)
        case 7:
            return pixels.transpose(1, 0, 2)[::-1, ::-1]
        case 8:
            return np.rot90(pixels, 1)
    return pixels


def _frame_count(image: Image.Image, options: DecodeOptions) -> int:
    return getattr(image, "n_frames", 1) if options.frames == "all" else 1


def _decode(path: Path, options: DecodeOptions) -> list[np.ndarray]:
    if path.suffix.lower() in _TIFF_SUFFIXES:
        arrays = _decode_tiff(path, options)
        if arrays is not None:
            return arrays
    with Image.open(path) as image:
        _check_size(path, *image.size, options.max_pixels)
        orientation = _orientation(image.getexif().get(_ORIENTATION_TAG))
        if image.format == "PNG" and _png_is_16_bit_colour(path):
            return [orient(_decode_png16(path), orientation)]
        profile = image.info.get("icc_profile") if options.color_management else None
        frames = []
        for index in range(_frame_count(image, options)):
            image.seek(index)
            frame = _to_srgb(image, profile, path) if profile else image
            frames.append(orient(_pillow_pixels(frame), orientation))
        return frames


def _pillow_pixels(image: Image.Image) -> np.ndarray:
    """H x W x C in the image's own precision: uint8, uint16, int32 or float32."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_GRAY:
        array = np.asarray(image).astype(np.uint16)
    elif mode in ("I", "F"):
        array = np.asarray(image)
    else:
        array = np.asarray(image.convert("L" if mode in _GRAY_MODES else "RGB"))
    return array[..., None] if array.ndim == 2 else array


# -- colour profiles ---------------------------------------------------------------------------


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(image: Image.Image, profile: bytes, path: Path) -> Image.Image:
    """The image converted from its embedded profile to sRGB (colour images; gray is kept)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        space = source.profile.xcolor_space.strip()
        if space not in ("RGB", "CMYK") or image.mode in _GRAY_MODES + _SIXTEEN_BIT_GRAY:
            return image
        wanted = "CMYK" if space == "CMYK" else "RGB"
        ready = image if image.mode == wanted else image.convert(wanted)
        return ImageCms.profileToProfile(ready, source, _srgb(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        raise UnreadableImage(
            path,
            f"its colour profile cannot be applied ({exc}); set color_management = false "
            "to read its values as they are",
        ) from None


def _array_to_srgb(pixels: np.ndarray, profile: bytes, path: Path) -> np.ndarray:
    if pixels.dtype != np.uint8 or pixels.shape[-1] != 3:
        return pixels
    return np.asarray(_to_srgb(Image.fromarray(pixels), profile, path))


# -- 16-bit colour PNG -----------------------------------------------------------------------


def _png_is_16_bit_colour(path: Path) -> bool:
    """From the IHDR chunk: bit depth 16 and colour type RGB (2) or RGBA (6)."""
    with open(path, "rb") as file:
        header = file.read(26)
    return len(header) == 26 and header[24] == 16 and header[25] in (2, 6)


def _decode_png16(path: Path) -> np.ndarray:
    import imagecodecs

    pixels = imagecodecs.png_decode(path.read_bytes())
    return pixels[..., :3]


# -- TIFF --------------------------------------------------------------------------------------


def _tiff_pages(tif: Any, options: DecodeOptions) -> list[Any]:
    pages = list(tif.pages)
    return pages if options.frames == "all" else pages[:1]


def _tiff_readable(page: Any) -> bool:
    import tifffile

    photometric = getattr(page, "photometric", None)
    return photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)


def _page_shape(page: Any) -> tuple[int, int, int]:
    height, width = page.imagelength, page.imagewidth
    channels = 1 if page.samplesperpixel - len(page.extrasamples) <= 1 else 3
    if _orientation(_tag(page, _ORIENTATION_TAG)) in (5, 6, 7, 8):
        height, width = width, height
    return channels, height, width


def _tag(page: Any, code: int) -> Any:
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def _probe_tiff(path: Path, options: DecodeOptions) -> list[tuple[int, int, int]]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        pages = _tiff_pages(tif, options)
        if not all(_tiff_readable(page) for page in pages):
            return []
        return [_page_shape(page) for page in pages]


def _decode_tiff(path: Path, options: DecodeOptions) -> list[np.ndarray] | None:
    """The pages as arrays, or None when tifffile cannot read this TIFF (Pillow then tries)."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError:
        return None
    with tif:
        pages = _tiff_pages(tif, options)
        if not pages or not all(_tiff_readable(page) for page in pages):
            return None
        frames = []
        for page in pages:
            _check_size(path, page.imagewidth, page.imagelength, options.max_pixels)
            pixels = _page_pixels(page)
            profile = _tag(page, _ICC_TAG) if options.color_management else None
            if isinstance(profile, bytes | bytearray):
                pixels = _array_to_srgb(pixels, bytes(profile), path)
            frames.append(orient(pixels, _orientation(_tag(page, _ORIENTATION_TAG))))
        return frames


def _page_pixels(page: Any) -> np.ndarray:
    """One page as H x W x C: samples last, extra samples (alpha) dropped."""
    pixels = page.asarray()
    axes = page.axes
    if "S" in axes and axes.index("S") < axes.index("Y"):
        pixels = np.moveaxis(pixels, axes.index("S"), -1)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    colour = page.samplesperpixel - len(page.extrasamples)
    return pixels[..., : 3 if colour >= 3 else 1]
