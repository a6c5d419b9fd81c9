"""Built-in per-image transforms: colour, geometry, noise, blur, edges, Lab and blending.

Every node here is a `map` node: it takes one mini-batch of images (float32 B x C x H x W
in [0, 1]) and returns one, on the same device. Random nodes draw from a CPU generator
seeded from (seed, batch index), so a run gives the same images on any device.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import kornia
import torch
import torch.nn.functional as F

from nodeflow.api import (
    IMAGE,
    Bool,
    Choice,
    Float,
    Footprint,
    Input,
    Int,
    NodeContext,
    Output,
    Size,
    hookimpl,
    node,
)
from nodeflow.images import as_float

IMAGE_IN = {"image": Input(IMAGE)}
IMAGE_OUT = {"image": Output(IMAGE)}

# torch's "nearest" picks the wrong source pixel when scaling; "nearest-exact" matches PIL.
_INTERPOLATE_MODES = {
    "bilinear": "bilinear",
    "bicubic": "bicubic",
    "nearest": "nearest-exact",
    "area": "area",
}
_LAB_OFFSET = (0.0, 128.0, 128.0)
_LAB_RANGE = (100.0, 255.0, 255.0)


def _size_text(image: torch.Tensor) -> str:
    height, width = image.shape[-2:]
    return f"{height}x{width} (height x width)"


def _as_hw(size: int | list[int]) -> tuple[int, int]:
    """A Size param as (height, width): one number means a square."""
    if isinstance(size, int):
        return size, size
    return size[0], size[1]


def _require_rgb(image: torch.Tensor, what: str) -> None:
    if image.shape[1] != 3:
        raise ValueError(
            f"{what} needs an RGB image (3 channels), got {image.shape[1]} channel(s); "
            "convert gray images to RGB first"
        )


def _luma(image: torch.Tensor) -> torch.Tensor:
    if image.shape[1] == 1:
        return image
    _require_rgb(image, "grayscale")
    return kornia.color.rgb_to_grayscale(image)


def _generator(seed: int, batch_index: int) -> torch.Generator:
    """A CPU generator for one batch, seeded from (seed, batch index) and stable everywhere."""
    digest = hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _interpolate(image: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """Resample to height x width, antialiased when shrinking, clamped to [0, 1].

    8-bit images stay 8-bit for bilinear and nearest on the CPU, where torch resamples
    uint8 directly (within one level of the float result, and about twice as fast).
    """
    torch_mode = _INTERPOLATE_MODES[mode]
    antialias = torch_mode in ("bilinear", "bicubic")
    if image.dtype == torch.uint8:
        if image.device.type == "cpu" and torch_mode in ("bilinear", "nearest"):
            return F.interpolate(image, size=(height, width), mode=torch_mode, antialias=antialias)
        image = as_float(image)
    resized = F.interpolate(image, size=(height, width), mode=torch_mode, antialias=antialias)
    return resized.clamp(0.0, 1.0)


@node("grayscale", inputs=IMAGE_IN, outputs=IMAGE_OUT)
def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Convert RGB images to one channel of luma.

    Uses the ITU-R 601 weights (0.299 R + 0.587 G + 0.114 B), as kornia does. A
    one-channel image passes through unchanged.
    """
    return _luma(image)


@node(
    "resize",
    inputs={"image": Input(IMAGE, help="the images", uint8=True)},
    outputs=IMAGE_OUT,
    params={
        "size": Size(None, help="output size: one number for a square, or [height, width]"),
        "scale": Float(None, min=0.01, max=64, help="scale factor for both sides"),
        "mode": Choice(
            ("bilinear", "bicubic", "nearest", "area"), "bilinear", help="interpolation"
        ),
    },
    one_of=[("size", "scale")],
    footprint=Footprint("size"),
)
def resize(
    image: torch.Tensor, *, size: int | list[int] | None, scale: float | None, mode: str
) -> torch.Tensor:
    """Resize images to a given size or by a scale factor.

    Give exactly one of `size` and `scale`. With `scale`, each side becomes
    round(side x scale), at least 1 pixel. Bilinear and bicubic are antialiased when
    shrinking; `area` averages source pixels; `nearest` picks the nearest source pixel.
    Results are clamped to [0, 1] (bicubic overshoots at sharp edges).
    """
    if (size is None) == (scale is None):
        given = "neither" if size is None else "both"
        raise ValueError(f"resize takes exactly one of `size` and `scale`, got {given}; set one")
    if size is not None:
        height, width = _as_hw(size)
    else:
        height = max(1, round(image.shape[-2] * scale))
        width = max(1, round(image.shape[-1] * scale))
    return _interpolate(image, height, width, mode)


@node(
    "crop",
    inputs=IMAGE_IN,
    outputs=IMAGE_OUT,
    params={
        "top": Int(0, min=0, help="first row kept"),
        "left": Int(0, min=0, help="first column kept"),
        "height": Int(min=1, help="rows kept"),
        "width": Int(min=1, help="columns kept"),
    },
)
def crop(image: torch.Tensor, *, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """Cut the same rectangle out of every image.

    The rectangle starts at row `top`, column `left` and must lie inside the image.
    """
    image_height, image_width = image.shape[-2:]
    if top + height > image_height or left + width > image_width:
        raise ValueError(
            f"the crop rows {top}..{top + height}, columns {left}..{left + width} fall outside "
            f"the image of {_size_text(image)}; make the crop smaller or move it"
        )
    return image[..., top : top + height, left : left + width]


@node(
    "random_crop",
    inputs=IMAGE_IN,
    outputs=IMAGE_OUT,
    params={
        "size": Size(help="crop size: one number for a square, or [height, width]"),
        "seed": Int(0, min=0, help="random seed; the same seed gives the same crops"),
    },
)
def random_crop(
    image: torch.Tensor, *, size: int | list[int], seed: int, ctx: NodeContext
) -> torch.Tensor:
    """Cut a rectangle of a given size at a random place in each image.

    Each image of a batch gets its own place. The places depend only on `seed` and the
    batch's position in the stream, so a re-run crops the same way.
    """
    height, width = _as_hw(size)
    image_height, image_width = image.shape[-2:]
    if height > image_height or width > image_width:
        raise ValueError(
            f"the crop of {height}x{width} is larger than the image of {_size_text(image)}; "
            "choose a smaller size or resize the images first"
        )
    generator = _generator(seed, ctx.batch_index)
    count = image.shape[0]
    tops = torch.randint(0, image_height - height + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(0, image_width - width + 1, (count,), generator=generator).tolist()
    crops = [
        item[:, top : top + height, left : left + width]
        for item, top, left in zip(image, tops, lefts, strict=True)
    ]
    return torch.stack(crops)


@node(
    "flip",
    inputs=IMAGE_IN,
    outputs=IMAGE_OUT,
    params={"direction": Choice(("horizontal", "vertical", "both"), "horizontal")},
)
def flip(image: torch.Tensor, *, direction: str) -> torch.Tensor:
    """Mirror images left-right (horizontal), top-bottom (vertical) or both."""
    dims = {"horizontal": [-1], "vertical": [-2], "both": [-2, -1]}[direction]
    return torch.flip(image, dims)


@node(
    "add_noise",
    inputs=IMAGE_IN,
    outputs=IMAGE_OUT,
    params={
        "sigma": Float(25.0, min=0, max=255, help="noise standard deviation on the 0-255 scale"),
        "seed": Int(0, help="random seed; the same seed gives the same noise"),
        "clip": Bool(True, help="clamp the result to [0, 1]"),
    },
)
def add_noise(
    image: torch.Tensor, *, sigma: float, seed: int, clip: bool, ctx: NodeContext
) -> torch.Tensor:
    """Add Gaussian noise, as for training a denoiser.

    `sigma` is on the 0-255 scale (25 is the usual denoising benchmark level). The noise
    depends only on `seed` and the batch's position in the stream, and is the same on
    every device. With `clip` off, values may leave [0, 1].
    """
    generator = _generator(seed, ctx.batch_index)
    noise = torch.randn(image.shape, generator=generator, dtype=torch.float32)
    noisy = image + noise.to(image.device) * (sigma / 255.0)
    return noisy.clamp(0.0, 1.0) if clip else noisy


@node(
    "blur",
    inputs=IMAGE_IN,
    outputs=IMAGE_OUT,
    params={"sigma": Float(1.5, min=0.1, max=50, help="Gaussian standard deviation in pixels")},
)
def blur(image: torch.Tensor, *, sigma: float) -> torch.Tensor:
    """Blur images with a Gaussian kernel.

    The kernel spans 3 sigma on each side (odd size), cut to the image's size when the
    image is smaller; borders are reflected.
    """
    half = math.ceil(3 * sigma)
    kernel = tuple(2 * min(half, side - 1) + 1 for side in image.shape[-2:])
    return kornia.filters.gaussian_blur2d(image, kernel, (sigma, sigma), border_type="reflect")


@node(
    "edges",
    inputs=IMAGE_IN,
    outputs=IMAGE_OUT,
    params={
        "method": Choice(("canny", "sobel"), "canny", help="edge detector"),
        "low": Float(0.1, min=0, max=1, help="canny: weak-edge threshold"),
        "high": Float(0.2, min=0, max=1, help="canny: strong-edge threshold"),
    },
)
def edges(image: torch.Tensor, *, method: str, low: float, high: float) -> torch.Tensor:
    """Find edges; the result is a one-channel map in [0, 1].

    `canny` gives thin edges of 1 on 0, keeping weak edges (above `low`) that touch
    strong ones (above `high`). `sobel` gives the gradient magnitude divided by each
    image's largest, so its strongest edge is 1. RGB images are converted to luma first.
    """
    gray = _luma(image)
    if method == "sobel":
        magnitude = kornia.filters.sobel(gray)
        peak = magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        return magnitude / peak
    if not 0 < low <= high:
        raise ValueError(f"canny needs 0 < low <= high, got low={low}, high={high}")
    _magnitude, found = kornia.filters.canny(gray, low_threshold=low, high_threshold=high)
    return found.clamp(0.0, 1.0)


@node(
    "downsample",
    inputs=IMAGE_IN,
    outputs=IMAGE_OUT,
    params={"scale": Int(4, min=2, max=16, help="shrink factor for both sides")},
)
def downsample(image: torch.Tensor, *, scale: int) -> torch.Tensor:
    """Shrink images by a whole factor, as the low-resolution side of super-resolution pairs.

    The bottom rows and right columns that do not fill a whole `scale` block are cut
    first, so the result is exactly (H // scale) x (W // scale). Bicubic, antialiased,
    clamped to [0, 1].
    """
    height, width = (side // scale for side in image.shape[-2:])
    if height == 0 or width == 0:
        raise ValueError(
            f"the image of {_size_text(image)} is smaller than the factor {scale}; "
            "use a smaller scale"
        )
    cropped = image[..., : height * scale, : width * scale]
    return _interpolate(cropped, height, width, "bicubic")


def _lab_scale(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, 3, 1, 1)
    offset = torch.tensor(_LAB_OFFSET, device=image.device, dtype=image.dtype).view(shape)
    extent = torch.tensor(_LAB_RANGE, device=image.device, dtype=image.dtype).view(shape)
    return offset, extent


@node("to_lab", inputs=IMAGE_IN, outputs=IMAGE_OUT)
def to_lab(image: torch.Tensor) -> torch.Tensor:
    """Convert RGB images to CIE Lab, scaled to [0, 1] per channel.

    The conversion is kornia's `rgb_to_lab` (sRGB, D65). So the result travels as an
    ordinary image, the channels are stored as L / 100, (a + 128) / 255 and
    (b + 128) / 255; `from_lab` undoes this. Channel 0 alone is the lightness a
    colorization model takes as input.
    """
    _require_rgb(image, "to_lab")
    offset, extent = _lab_scale(image)
    return (kornia.color.rgb_to_lab(image) + offset) / extent


@node("from_lab", inputs=IMAGE_IN, outputs=IMAGE_OUT)
def from_lab(image: torch.Tensor) -> torch.Tensor:
    """Convert Lab images, scaled as `to_lab` gives them, back to RGB.

    Channels are read as L / 100, (a + 128) / 255 and (b + 128) / 255, converted with
    kornia's `lab_to_rgb`, and clamped to [0, 1].
    """
    _require_rgb(image, "from_lab (Lab, as to_lab gives it)")
    offset, extent = _lab_scale(image)
    lab = image * extent - offset
    return kornia.color.lab_to_rgb(lab, clip=True).clamp(0.0, 1.0)


_BLEND_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mix": lambda _image, other: other,
    "multiply": lambda image, other: image * other,
    "screen": lambda image, other: 1 - (1 - image) * (1 - other),
    "difference": lambda image, other: (image - other).abs(),
}


@node(
    "blend",
    inputs={"image": Input(IMAGE), "other": Input(IMAGE)},
    outputs=IMAGE_OUT,
    params={
        "alpha": Float(0.5, min=0, max=1, help="weight of the blended layer"),
        "mode": Choice(tuple(_BLEND_MODES), "mix", help="how the two images combine"),
    },
)
def blend(image: torch.Tensor, other: torch.Tensor, *, alpha: float, mode: str) -> torch.Tensor:
    """Combine two images: (1 - alpha) x image + alpha x layer.

    The layer is `other` itself for `mix`, image x other for `multiply`,
    1 - (1 - image)(1 - other) for `screen` and |image - other| for `difference`. A gray
    image blended with an RGB one is repeated over the three channels; a one-image batch
    is blended with every image of the other batch. Both must have the same size.
    """
    if image.shape[-2:] != other.shape[-2:]:
        raise ValueError(
            f"image is {_size_text(image)} but other is {_size_text(other)}; "
            "resize or crop one so both have the same size"
        )
    batches = {image.shape[0], other.shape[0]}
    if len(batches) > 1 and 1 not in batches:
        raise ValueError(
            f"image has {image.shape[0]} images per batch but other has {other.shape[0]}; "
            "stream both with the same batch size"
        )
    channels = max(image.shape[1], other.shape[1])
    image, other = (_with_channels(x, channels) for x in (image, other))
    layer = _BLEND_MODES[mode](image, other)
    return (1 - alpha) * image + alpha * layer


@node(
    "concat",
    inputs={"image": Input(IMAGE), "other": Input(IMAGE)},
    outputs=IMAGE_OUT,
    params={
        "direction": Choice(("horizontal", "vertical"), "horizontal", help="where other goes"),
        "gap": Int(0, min=0, max=256, help="white pixels between the two"),
    },
)
def concat(image: torch.Tensor, other: torch.Tensor, *, direction: str, gap: int) -> torch.Tensor:
    """Put each image and its counterpart side by side (or one above the other).

    Useful for before/after comparisons: chain several to line up a photo and its
    reconstructions. Gray is repeated to RGB when the other is colour; the side where the
    two meet must have the same length.
    """
    axis = -1 if direction == "horizontal" else -2
    along = -2 if axis == -1 else -1
    if image.shape[along] != other.shape[along]:
        raise ValueError(
            f"image is {_size_text(image)} but other is {_size_text(other)}; to join them "
            f"{direction}ly their {'heights' if axis == -1 else 'widths'} must match"
        )
    if image.shape[0] != other.shape[0]:
        if 1 not in (image.shape[0], other.shape[0]):
            raise ValueError(
                f"image has {image.shape[0]} images per batch but other has "
                f"{other.shape[0]}; stream both with the same batch size"
            )
        count = max(image.shape[0], other.shape[0])
        image, other = image.expand(count, -1, -1, -1), other.expand(count, -1, -1, -1)
    channels = max(image.shape[1], other.shape[1])
    image, other = (_with_channels(x, channels) for x in (image, other))
    gap_shape = list(image.shape)
    gap_shape[axis] = gap
    spacer = image.new_ones(gap_shape)
    return torch.cat([image, spacer, other], dim=axis)


@node(
    "image_interpolate",
    inputs={
        "image": Input(IMAGE, help="start images"),
        "other": Input(IMAGE, help="end images, paired item by item with `image`"),
    },
    outputs={"image": Output(IMAGE, help="for each pair, `steps` images from start to end")},
    params={"steps": Int(8, min=2, max=1024, help="images per pair, both ends included")},
)
def image_interpolate(image: torch.Tensor, other: torch.Tensor, *, steps: int) -> torch.Tensor:
    """Walk from each image to its partner in pixel space: `steps` cross-fades.

    The pixel-space counterpart of latent_interpolate: the frames between two photos are
    double exposures, not images of anything, which is what a latent walk is compared
    with. Item i of `image` pairs with item i of `other` (a one-image batch pairs with
    every image); both must have the same size; gray is repeated to RGB when the other is
    colour. The output holds, pair after pair, the start, the fades between, and the end.
    """
    mix = blend.fn
    frames = [mix(image, other, alpha=a, mode="mix") for a in torch.linspace(0, 1, steps).tolist()]
    return torch.stack(frames, dim=1).flatten(0, 1)


def _with_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    if image.shape[1] == channels:
        return image
    return image.expand(-1, channels, -1, -1)


TRANSFORM_NODES = (
    grayscale,
    resize,
    crop,
    random_crop,
    flip,
    add_noise,
    blur,
    edges,
    downsample,
    to_lab,
    from_lab,
    blend,
    concat,
    image_interpolate,
)


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in TRANSFORM_NODES:
        register(node_type)
