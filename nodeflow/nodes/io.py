"""Image files in and out: load one file, stream a folder, the bundled sample photos, save.

Everything read becomes float32 B x C x H x W in [0, 1] with C = 1 (gray files) or 3 (all
others, alpha dropped). Folders stream in mini-batches that never mix sizes, so memory stays
flat however many files a folder holds. Saved files are written atomically.
"""

from __future__ import annotations

import functools
import glob
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from nodeflow.api import (
    IMAGE,
    Batch,
    Bool,
    Choice,
    Input,
    Int,
    NodeContext,
    Output,
    Str,
    Stream,
    atomic_path,
    hookimpl,
    node,
)
from nodeflow.api import Path as PathParam

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")
_SAVE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
GRAPH_METADATA_KEY = "nodeflow:graph"

# Photo name -> file inside skimage.data's folder; read from there so nothing is downloaded.
COLOUR_SAMPLES = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "immunohistochemistry": "ihc.png",
}
GRAY_SAMPLES = {
    name: f"{name}.png"
    for name in ("camera", "moon", "coins", "page", "text", "brick", "grass", "gravel")
}

T = TypeVar("T")


# -- reading ---------------------------------------------------------------------------------


class UnreadableImage(ValueError):
    """A file that Pillow cannot open or decode; `reason` is the short cause."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read the image {str(path)!r}: {reason}")


def _channels(mode: str) -> int:
    """How many channels a file in this Pillow mode loads as: 1 for gray, else 3."""
    return 1 if mode in _GRAY_MODES or mode.startswith("I;16") else 3


def _pixels(image: Image.Image) -> np.ndarray:
    """The image as float32 H x W x C in [0, 1]: gray stays 1 channel, the rest become RGB."""
    mode = image.mode
    if mode.startswith("I"):
        array = np.asarray(image).astype(np.float32) / 65535.0
    elif mode == "F":
        array = np.asarray(image, dtype=np.float32)
    else:
        converted = image.convert("L" if _channels(mode) == 1 else "RGB")
        array = np.asarray(converted, dtype=np.float32) / 255.0
    array = np.clip(array, 0.0, 1.0)
    return array[..., None] if array.ndim == 2 else array


def read_image(path: Path) -> torch.Tensor:
    """Decode one file to a float32 C x H x W tensor on the CPU; `UnreadableImage` if it fails."""
    try:
        with Image.open(path) as image:
            image.load()
            array = _pixels(image)
    except FileNotFoundError:
        raise UnreadableImage(path, "no such file") from None
    except Exception as exc:  # Pillow's decoders raise many kinds; all mean "unreadable".
        raise UnreadableImage(path, str(exc) or type(exc).__name__) from exc
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _header_shape(path: Path) -> tuple[int, int, int] | None:
    """C, H, W from the file's header alone (no decoding); None when the header is unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return _channels(image.mode), height, width
    except Exception:
        return None


def _file_state(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def _group(
    items: Iterable[T], shape_of: Callable[[T], tuple[int, ...]], batch_size: int
) -> Iterator[list[T]]:
    """Consecutive items of one shape, at most `batch_size` at a time; a new shape starts a group."""
    group: list[T] = []
    for item in items:
        if group and (len(group) == batch_size or shape_of(item) != shape_of(group[0])):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def list_images(path: str) -> list[Path]:
    """The files `path` names: a folder's image files sorted by name, or a glob's matches.

    Raises ValueError when nothing matches, saying what was looked for.
    """
    folder = Path(path)
    if folder.is_dir():
        files = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.name,
        )
        if not files:
            raise ValueError(
                f"the folder {path!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                "point `path` at a folder of images or a pattern like 'photos/*.jpg'"
            )
        return files
    files = sorted(Path(p) for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    if not files:
        what = "pattern" if any(c in path for c in "*?[") else "file or folder"
        raise ValueError(
            f"the {what} {path!r} matched no files; check the path "
            "(relative paths start at the graph file's folder)"
        )
    return files


# -- fingerprints: what the cache must see change ---------------------------------------------


def _image_fingerprint(params: dict[str, Any]) -> str:
    path = Path(params["path"])
    try:
        return repr(_file_state(path))
    except OSError:
        return "missing"


def _images_fingerprint(params: dict[str, Any]) -> str:
    try:
        files = list_images(params["path"])
    except (ValueError, OSError):
        return "no files"
    states = []
    for path in files:
        try:
            states.append(_file_state(path))
        except OSError:
            states.append((str(path), -1, -1))
    return repr(sorted(states))


# -- nodes -------------------------------------------------------------------------------------


@node(
    "load_image",
    outputs={"image": Output(IMAGE, help="the image, a batch of one")},
    params={"path": PathParam(help="an image file (png, jpg, bmp, tif, webp, ...)")},
    mode="source",
    fingerprint=_image_fingerprint,
)
def load_image(*, path: str, ctx: NodeContext) -> Stream:
    """Load one image file as a batch of one.

    Gray files (8 or 16 bit, 1 bit) load as 1 channel; everything else (RGB, palette, CMYK,
    with or without alpha) as RGB, alpha dropped. The item's name is the file's stem.
    """
    file = Path(path)
    image = read_image(file)[None].to(ctx.device)
    return Stream.of(image, [file.stem])


@node(
    "load_images",
    outputs={"image": Output(IMAGE, help="the images, streamed in batches")},
    params={
        "path": PathParam(
            help="a folder (its png/jpg/jpeg/bmp/tif/tiff/webp files, sorted by name) "
            "or a glob pattern like 'photos/*.jpg'"
        ),
        "batch_size": Int(
            8, min=1, max=1024, help="most images per batch; a change of size starts a new one"
        ),
    },
    mode="source",
    fingerprint=_images_fingerprint,
)
def load_images(*, path: str, batch_size: int, ctx: NodeContext) -> Stream:
    """Stream the images of a folder or a glob pattern in mini-batches.

    A folder means its image files (not its subfolders), sorted by name. Files are decoded
    only as the stream is read, one batch at a time, so memory stays flat. Images of
    different sizes or channel counts cannot share a tensor: a batch ends where they change.
    An unreadable file is reported as an item error and skipped. Item names are file stems.
    """
    files = list_images(path)
    groups = file_batches(files, header_shapes(files), batch_size, ctx)

    def produce() -> Iterator[Batch]:
        for group in groups:
            batch = decode_batch(group, ctx)
            if batch is not None:
                yield batch

    return Stream(produce, total=len(groups))


def file_batches(
    files: list[Path],
    shapes: list[tuple[int, int, int] | None],
    batch_size: int,
    ctx: NodeContext,
) -> list[list[Path]]:
    """The files of each batch: consecutive files of one header shape, `batch_size` at most.

    Batches are made from the headers alone, so they are known before anything is decoded
    (the Ray engine decodes them on its workers). A file whose header is unreadable is
    reported as an item error and left out.
    """
    readable = []
    for file, shape in zip(files, shapes, strict=True):
        if shape is None:
            _report_unreadable(file, ctx)
        else:
            readable.append((file, shape))
    return [
        [file for file, _ in group] for group in _group(readable, lambda item: item[1], batch_size)
    ]


def header_shapes(files: list[Path]) -> list[tuple[int, int, int] | None]:
    """The C x H x W each file's header announces, None where it is unreadable."""
    return [_header_shape(file) for file in files]


def decode_batch(files: list[Path], ctx: NodeContext) -> Batch | None:
    """One batch of files decoded on ctx.device; unreadable files are reported and skipped
    (None when none of them could be read)."""
    decoded = list(_decode_all(files, ctx))
    if not decoded:
        return None
    data = torch.stack([image for _, image in decoded]).to(ctx.device)
    return Batch(data, [name for name, _ in decoded])


def _report_unreadable(file: Path, ctx: NodeContext) -> None:
    try:
        read_image(file)
    except UnreadableImage as exc:
        ctx.item_error(str(file), exc.reason)


def _decode_all(files: list[Path], ctx: NodeContext) -> Iterator[tuple[str, torch.Tensor]]:
    """(stem, C x H x W) for each readable file; unreadable ones are reported and skipped."""
    for path in files:
        ctx.check_cancelled()
        try:
            image = read_image(path)
        except UnreadableImage as exc:
            ctx.item_error(str(path), exc.reason)
            continue
        yield path.stem, image


def _sample_folder() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def sample_photos() -> dict[str, Path]:
    """The sample photos this scikit-image install holds, by name (colour ones first)."""
    folder = _sample_folder()
    files = {**COLOUR_SAMPLES, **GRAY_SAMPLES}
    return {name: folder / file for name, file in files.items() if (folder / file).is_file()}


def _chosen_photos(names: str) -> list[tuple[str, Path]]:
    available = sample_photos()
    if names.strip().lower() == "all":
        return [(name, path) for name, path in available.items() if name in COLOUR_SAMPLES]
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in available]
    if unknown or not wanted:
        what = f"unknown sample photo {', '.join(map(repr, unknown))}" if unknown else "no names"
        raise ValueError(
            f"{what}; `names` is 'all' (the colour photos) or a comma-separated list of: "
            f"{', '.join(available)}"
        )
    return [(name, available[name]) for name in wanted]


def _read_sample(path: Path, size: int, gray: bool) -> torch.Tensor:
    """One bundled photo, size x size; decoded once per process for sides up to 1024.

    A trainer reads its dataset once per pass, and decoding and resizing the larger
    photos (retina is 1411 x 1411) cost a tenth of a small model's training time. The
    cache holds 8-bit pixels: at most 64 photos of 3 MB.
    """
    pixels = _sample_pixels(path, size, gray) if size <= 1024 else _decode_sample(path, size, gray)
    return torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)


def _decode_sample(path: Path, size: int, gray: bool) -> np.ndarray:
    with Image.open(path) as image:
        converted = image.convert("L" if gray else "RGB")
    square = ImageOps.fit(converted, (size, size), Image.Resampling.LANCZOS)
    array = np.asarray(square, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


_sample_pixels = functools.lru_cache(maxsize=64)(_decode_sample)


@node(
    "sample_images",
    outputs={"image": Output(IMAGE, help="the photos, size x size, streamed in batches")},
    params={
        "names": Str(
            "all",
            help="'all' (the colour photos) or comma-separated names, e.g. 'astronaut, camera'",
        ),
        "size": Int(128, min=8, max=2048, help="side of the square each photo is cropped to"),
        "gray": Bool(False, help="load every photo as 1-channel gray"),
        "batch_size": Int(8, min=1, max=1024, help="photos per batch"),
    },
    mode="source",
)
def sample_images(
    *, names: str, size: int, gray: bool, batch_size: int, ctx: NodeContext
) -> Stream:
    """The sample photos bundled with scikit-image: images to try a graph on, no set-up needed.

    'all' gives the colour photos: astronaut, coffee, chelsea, rocket, motorcycle_left,
    motorcycle_right, hubble_deep_field, retina, immunohistochemistry. The gray ones
    (camera, moon, coins, page, text, brick, grass, gravel) can be named too. Each photo is
    resized (antialiased) so its shorter side is `size`, then center-cropped to a square,
    so they all batch together; gray photos become RGB unless `gray` turns everything gray.
    """
    photos = _chosen_photos(names)

    def produce() -> Iterator[Batch]:
        for start in range(0, len(photos), batch_size):
            chunk = photos[start : start + batch_size]
            images = [_read_sample(path, size, gray) for _, path in chunk]
            yield Batch(torch.stack(images).to(ctx.device), [name for name, _ in chunk])

    return Stream(produce, total=math.ceil(len(photos) / batch_size))


# -- writing ---------------------------------------------------------------------------------


def _check_pattern(pattern: str) -> None:
    try:
        pattern.format(name="photo", index=0, node="node")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"the file name pattern {pattern!r} does not work ({type(exc).__name__}: {exc}); "
            "it may use the fields {name}, {index} (with a format like {index:04d}) and {node}"
        ) from None


def _as_uint8(batch: torch.Tensor) -> np.ndarray:
    """B x C x H x W in [0, 1] -> B x H x W x C uint8, rounding to the nearest level."""
    if batch.dim() != 4 or batch.shape[1] not in (1, 3):
        raise ValueError(
            f"save_images writes 1- or 3-channel image batches (B x C x H x W), "
            f"got shape {tuple(batch.shape)}"
        )
    levels = (batch.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)
    return levels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def write_image(path: Path, pixels: np.ndarray, file_format: str, graph_json: str = "") -> None:
    """Write H x W x C uint8 pixels atomically; a PNG carries `graph_json` in its metadata."""
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options: dict[str, Any] = {"quality": 95}
    if file_format == "png":
        info = PngInfo()
        if graph_json:
            info.add_text(GRAPH_METADATA_KEY, graph_json, zip=True)
        options = {"pnginfo": info}
    with atomic_path(path) as tmp:
        image.save(tmp, format=_SAVE_FORMATS[file_format], **options)


@node(
    "save_images",
    inputs={"image": Input(IMAGE, help="the images to write")},
    params={
        "folder": PathParam("out", help="where the files go; created if missing"),
        "pattern": Str(
            "{name}",
            help="file name without extension; fields {name}, {index} (0-based, e.g. "
            "{index:04d}) and {node}",
        ),
        "format": Choice(tuple(_SAVE_FORMATS), "png", help="file format"),
    },
    mode="collect",
    output_node=True,
)
def save_images(image: Stream, *, folder: str, pattern: str, format: str, ctx: NodeContext) -> None:
    """Write every image of a stream to files in a folder.

    Files are named by `pattern` plus the format's extension: {name} is the item's name
    (a loaded file's stem, a sample photo's name), {index} counts images from 0 across
    the whole stream, {node} is this node's id. Each file is written atomically, so a
    cancelled run leaves no half-written file. PNGs carry the graph that made them in a
    "nodeflow:graph" text chunk. Values are rounded to 8 bits.
    """
    _check_pattern(pattern)
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    index = 0
    for batch in image:
        for name, pixels in zip(batch.names, _as_uint8(batch.data), strict=True):
            ctx.check_cancelled()
            stem = pattern.format(name=name, index=index, node=ctx.node_id)
            path = target / f"{stem}.{format}"
            write_image(path, pixels, format, ctx.graph_json)
            ctx.wrote(path)
            index += 1


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in (load_image, load_images, sample_images, save_images):
        register(node_type)
