"""Image files in and out: load one file, stream a folder, the bundled sample photos, save.

Everything read becomes float32 B x C x H x W in [0, 1] with C = 1 (gray files) or 3 (all
others, alpha dropped). Decoding one file (`nodeflow.files.decode`) gives pixels in the
file's own precision; they become floats here, one file at a time. Folders stream in
mini-batches that never mix sizes, so memory stays flat however many files a folder holds.
Saving follows the write policy of `nodeflow.files.policy`; files are written atomically.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps

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
    hookimpl,
    node,
)
from nodeflow.api import Path as PathParam
from nodeflow.files.decode import (
    DEFAULT_MAX_PIXELS,
    FRAME_CHOICES,
    DecodeOptions,
    UnreadableImage,
    decode_file,
    probe_file,
)
from nodeflow.files.encode import FORMATS, SIXTEEN_BIT_FORMATS, write_image
from nodeflow.files.listing import image_root, item_names, list_images
from nodeflow.files.pixels import OutOfRange, to_levels
from nodeflow.files.policy import (
    NameClaims,
    check_replaceable,
    file_in_folder,
    output_folder,
    safe_item_name,
)
from nodeflow.images import as_float, pixels_to_tensor
from nodeflow.prefetch import Writer, ordered_map

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


def _as_frame(pixels: np.ndarray, rescale: bool) -> np.ndarray | torch.Tensor:
    """Decoded pixels as a frame to batch: 8-bit files stay H x W x C uint8 arrays (the
    engine converts them for the nodes that want floats), the rest become float32
    C x H x W tensors in [0, 1]."""
    return pixels if pixels.dtype == np.uint8 else pixels_to_tensor(pixels, rescale)


def _read_frames(
    path: Path, name: str, options: DecodeOptions, rescale: bool, ctx: NodeContext
) -> list[tuple[str, np.ndarray | torch.Tensor]]:
    """(item name, C x H x W) per frame of one file; a file that fails is reported and skipped."""
    try:
        frames = decode_file(path, options, name)
    except UnreadableImage as exc:
        ctx.item_error(str(path), exc.reason)
        return []
    read = []
    for item, pixels in frames:
        try:
            read.append((item, _as_frame(pixels, rescale)))
        except OutOfRange as exc:
            ctx.item_error(f"{path}{item[len(name) :]}", str(exc))
    return read


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


def _batches(
    frames: Iterable[tuple[str, np.ndarray | torch.Tensor]], batch_size: int, ctx: NodeContext
) -> Iterator[Batch]:
    """Frames of one shape and kind stacked into batches; 8-bit ones as B x C x H x W uint8
    (laid out channels-last, as decoded, which is what resampling uint8 is fastest on)."""
    for group in _group(frames, lambda item: (*item[1].shape, item[1].dtype), batch_size):
        names = [name for name, _ in group]
        if isinstance(group[0][1], np.ndarray):
            stacked = np.stack([pixels for _, pixels in group])
            data = torch.from_numpy(stacked).permute(0, 3, 1, 2)
        else:
            data = torch.stack([image for _, image in group])
        group.clear()  # drop the single images before the batch travels on
        yield Batch(data.to(ctx.device), names)


# -- fingerprints: what the cache must see change ---------------------------------------------


def _image_fingerprint(params: dict[str, Any]) -> str:
    path = Path(params["path"])
    try:
        return repr(_file_state(path))
    except OSError:
        return "missing"


def _images_fingerprint(params: dict[str, Any]) -> str:
    try:
        files = list_images(params["path"], bool(params.get("recursive")))
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

_READ_PARAMS = {
    "frames": Choice(
        FRAME_CHOICES,
        "first",
        help="first: one image per file; all: every frame or page, named <name>#1, #2, ...",
    ),
    "color_management": Bool(
        True, help="convert images with an embedded ICC colour profile to sRGB"
    ),
    "max_pixels": Int(
        DEFAULT_MAX_PIXELS,
        min=1,
        help="refuse frames of more pixels (decompression bombs); raise it for huge scans",
    ),
    "rescale": Bool(
        False,
        help="scale float and 32-bit integer images outside 0..1 by their own min..max "
        "(off: such files are skipped, saying their range)",
    ),
}


@node(
    "load_image",
    outputs={"image": Output(IMAGE, help="the image, a batch of one (or one per frame)")},
    params={
        "path": PathParam(help="an image file (png, jpg, tif, webp, gif, bmp)"),
        **_READ_PARAMS,
    },
    mode="source",
    fingerprint=_image_fingerprint,
    reads=("path",),
)
def load_image(
    *,
    path: str,
    frames: str,
    color_management: bool,
    max_pixels: int,
    rescale: bool,
    ctx: NodeContext,
) -> Stream:
    """Load one image file as a batch of one; with frames = all, each frame is an image.

    Gray files (1, 8 or 16 bit) load as 1 channel; everything else (RGB, palette, CMYK,
    with or without alpha) as RGB, alpha dropped. 16-bit files keep their 16 bits; float
    TIFFs are read as they are. The EXIF orientation is applied and an embedded colour
    profile converted to sRGB. The item's name is the file's stem.
    """
    file = Path(path)
    options = DecodeOptions(frames, color_management, max_pixels)
    decoded = decode_file(file, options)
    try:
        images = [(name, pixels_to_tensor(pixels, rescale)) for name, pixels in decoded]
    except OutOfRange as exc:
        raise UnreadableImage(file, str(exc)) from None
    batches = list(_batches(images, len(images), ctx))
    return Stream(lambda: iter(batches), total=len(batches), single=len(images) == 1)


@node(
    "load_images",
    outputs={"image": Output(IMAGE, help="the images, streamed in batches")},
    params={
        "path": PathParam(
            help="a folder (its png/jpg/tif/webp/gif/bmp files, in natural order) "
            "or a glob pattern like 'photos/*.jpg' ('**' reaches into sub-folders)"
        ),
        "recursive": Bool(False, help="take a folder's sub-folders too"),
        **_READ_PARAMS,
        "batch_size": Int(
            8, min=1, max=1024, help="most images per batch; a change of size starts a new one"
        ),
    },
    mode="source",
    fingerprint=_images_fingerprint,
    reads=("path",),
)
def load_images(
    *,
    path: str,
    recursive: bool,
    frames: str,
    color_management: bool,
    max_pixels: int,
    rescale: bool,
    batch_size: int,
    ctx: NodeContext,
) -> Stream:
    """Stream the images of a folder or a glob pattern in mini-batches.

    Files come in natural order (frame_2 before frame_10). An item's name is the file's
    path under the folder (or the pattern's leading folders) without its extension:
    `a/photo`, `b/photo`; files that differ only in extension keep it (`photo.png`,
    `photo.jpg`). Files are decoded only as the stream is read, so memory stays flat.
    Images of different sizes or channel counts cannot share a tensor: a batch ends where
    they change. Files are decoded on worker threads ahead of the graph
    (`NODEFLOW_IO_THREADS`, default: the cores), and 8-bit files stay 8-bit until a node
    needs floats. A file that cannot be read, or is refused (too many pixels, values out of
    range), is reported as an item error with the reason and skipped.
    """
    files = list_images(path, recursive)
    names = item_names(files, image_root(path))
    options = DecodeOptions(frames, color_management, max_pixels)
    shapes = [shape for file in files for shape in probe_file(file, options)]
    total = sum(1 for _ in _group(shapes, lambda shape: shape, batch_size))

    def produce() -> Iterator[Batch]:
        def read(item: tuple[Path, str]) -> list[tuple[str, np.ndarray | torch.Tensor]]:
            ctx.check_cancelled()
            return _read_frames(*item, options, rescale, ctx)

        decoded = ordered_map(read, zip(files, names, strict=True), ahead=2 * batch_size)
        yield from _batches((frame for frames in decoded for frame in frames), batch_size, ctx)

    return Stream(produce, total=total)


# -- a folder's batches planned from headers (the Ray engine decodes them on its workers) ------

FileFrames = tuple[str, str, tuple[str, ...] | None, bool]
"""One file's part of a planned batch: path, item name, the frames it gives to this batch
(None: whatever it decodes to) and whether this part reports the file's errors."""


def folder_options(params: dict[str, Any]) -> tuple[list[Path], list[str], DecodeOptions]:
    """The files of a `load_images` node, their item names and how to decode them."""
    files = list_images(params["path"], bool(params.get("recursive")))
    return files, item_names(files, image_root(params["path"])), decode_options(params)


def decode_options(params: dict[str, Any]) -> DecodeOptions:
    """How a `load_images` node's params say to decode its files."""
    return DecodeOptions(params["frames"], params["color_management"], params["max_pixels"])


def planned_batches(
    files: list[Path],
    names: list[str],
    probes: list[list[tuple[int, int, int]]],
    batch_size: int,
) -> list[list[FileFrames]]:
    """The batches `load_images` makes, planned from the files' probed frame shapes.

    Frames are grouped exactly as `_batches` groups them once decoded (consecutive, one shape,
    `batch_size` at most), so both engines make the same batches whenever the headers tell
    the truth. A file whose header is unreadable joins the batch before it (the first, if
    none): decoding it there reports it as locally, or adds its frames if it does decode.
    """
    frames = [
        (index, _frame_name(names[index], n, len(shapes)), shape)
        for index, shapes in enumerate(probes)
        for n, shape in enumerate(shapes, start=1)
    ]
    groups = list(_group(frames, lambda frame: frame[2], batch_size))
    batches: list[list[FileFrames]] = [[] for _ in groups] or [[]]
    batch_of: dict[int, int] = {}
    for number, group in enumerate(groups):
        for index, frame_name, _ in group:
            batch_of.setdefault(index, number)
            part = batches[number]
            if part and part[-1][0] == str(files[index]):
                path, name, taken, reports = part[-1]
                part[-1] = (path, name, (*(taken or ()), frame_name), reports)
            else:
                first = batch_of[index] == number
                part.append((str(files[index]), names[index], (frame_name,), first))
    current = 0
    for index, shapes in enumerate(probes):
        if shapes:
            current = batch_of[index]
        else:
            batches[current].append((str(files[index]), names[index], None, True))
    return batches if frames or any(batches) else []


def _frame_name(name: str, number: int, count: int) -> str:
    """The item name `decode_file` gives frame `number` of `count`."""
    return name if count == 1 else f"{name}#{number}"


class _Unreported:
    """A stand-in context for the second part of a file split over two batches: the
    file's errors are reported once, by its first part."""

    def item_error(self, item: str, message: str) -> None:
        pass


def read_planned(
    parts: list[FileFrames], options: DecodeOptions, rescale: bool, ctx: NodeContext
) -> Batch | None:
    """Decode one planned batch as `load_images` would (uint8 stays uint8); None if nothing
    in it could be read. Frames that decode to different shapes or kinds than their headers
    promised become floats so the batch still stacks, or fail the batch if sizes differ."""
    frames: list[tuple[str, np.ndarray | torch.Tensor]] = []
    for path, name, taken, reports in parts:
        read = _read_frames(Path(path), name, options, rescale, ctx if reports else _Unreported())
        frames.extend(item for item in read if taken is None or item[0] in taken)
    if not frames:
        return None
    batches = list(_batches(frames, len(frames), ctx))
    if len(batches) == 1:
        return batches[0]
    data = torch.cat([as_float(batch.data) for batch in batches])
    return Batch(data, [name for batch in batches for name in batch.names])


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


def _as_pixels(batch: torch.Tensor) -> np.ndarray:
    """B x C x H x W in [0, 1] (or uint8 levels) -> B x H x W x C on the CPU, as it came."""
    if batch.dim() != 4 or batch.shape[1] not in (1, 3):
        raise ValueError(
            f"save_images writes 1- or 3-channel image batches (B x C x H x W), "
            f"got shape {tuple(batch.shape)}"
        )
    pixels = batch.detach() if batch.dtype == torch.uint8 else batch.detach().float()
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


@node(
    "save_images",
    inputs={"image": Input(IMAGE, help="the images to write", uint8=True)},
    params={
        "folder": PathParam("out", help="where the files go; created if missing"),
        "pattern": Str(
            "{name}",
            help="file name without extension; fields {name}, {index} (0-based, e.g. "
            "{index:04d}) and {node}; '/' makes sub-folders",
            fields=("name", "node", "index"),
        ),
        "format": Choice(FORMATS, "png", help="file format"),
        "bit_depth": Int(8, min=8, max=16, help="8 or 16 bits per channel (16: png, tiff)"),
        "quality": Int(95, min=1, max=100, help="jpg and webp quality"),
        "allow_input_folder": Bool(
            False, help="write into a folder this run reads images from (originals may be replaced)"
        ),
    },
    mode="collect",
    output_node=True,
    writes={"folder": "folder"},
    names=("pattern", "format"),
)
def save_images(
    image: Stream,
    *,
    folder: str,
    pattern: str,
    format: str,
    bit_depth: int,
    quality: int,
    allow_input_folder: bool,
    ctx: NodeContext,
) -> None:
    """Write every image of a stream to files in a folder.

    Files are named by `pattern` plus the format's extension: {name} is the item's name
    (a loaded file's path under its folder, so sub-folders are kept; a sample photo's
    name), {index} counts images from 0 across the whole stream, {node} is this node's id.
    Two images that would get the same file name are made unique (`photo-2.png`, ...).
    A file already in the folder is replaced only when this node writes that same name,
    never when it is read-only; other files are left alone. Validation refuses another
    save_images writing the same names (pattern and format) into the folder, and a folder
    the run reads images from unless allow_input_folder is true. Each file is written
    atomically. PNG and TIFF files keep the graph that made them (`nodeflow graph-of
    FILE`, `nodeflow run FILE`). 16-bit colour PNG is written by imagecodecs, TIFF by
    tifffile, the rest by Pillow.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth is 8 or 16, not {bit_depth}")
    if bit_depth == 16 and format not in SIXTEEN_BIT_FORMATS:
        raise ValueError(f"{format} holds 8 bits per channel; write png or tiff for 16")
    target = output_folder(folder, ctx.output_root)
    graph_json = ctx.graph_json if format in ("png", "tiff") else ""
    claims = NameClaims()
    index = 0

    def write(path: Path, pixels: np.ndarray) -> None:
        write_image(path, to_levels(pixels, bit_depth), format, graph_json, quality)

    with Writer() as writer:  # encoding runs on threads while the next batch is read
        for batch in image:
            for name, pixels in zip(batch.names, _as_pixels(batch.data), strict=True):
                ctx.check_cancelled()
                stem = pattern.format(name=safe_item_name(name), index=index, node=ctx.node_id)
                path = claims.claim(file_in_folder(target, stem, f".{format}", ctx.output_root))
                check_replaceable(path)
                writer.submit(functools.partial(write, path, pixels))
                ctx.wrote(path)
                index += 1


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    for node_type in (load_image, load_images, sample_images, save_images):
        register(node_type)
