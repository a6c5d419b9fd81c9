"""Real photos in: orientation, frames, 16 bits, float TIFF, colour profiles, names, limits.

Every file is made in the test. Graphs are run through the engine like a user's would be.
"""

from __future__ import annotations

import struct
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

from nodeflow.engine.events import ItemError

RNG = np.random.default_rng(1)


def load_graph(node_type: str, path: str, **params) -> str:
    extra = "".join(f", {key} = {value}" for key, value in params.items())
    return (
        f'version = 1\n[nodes.img]\ntype = "{node_type}"\nparams = {{ path = "{path}"{extra} }}\n'
    )


def loaded(result) -> list:
    assert result.ok, result.failed
    return list(result.outputs["img"]["image"])


def names_of(batches) -> list[str]:
    return [name for batch in batches for name in batch.names]


# -- orientation -----------------------------------------------------------------------------


def test_a_portrait_phone_jpeg_comes_out_upright(run_graph, tmp_path):
    stored = np.zeros((16, 32, 3), dtype=np.uint8)  # as the sensor saw it: wide
    stored[:, :16] = 255  # left half white
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "portrait.jpg", exif=exif, quality=100)
    upright = np.zeros((32, 16, 3), dtype=np.uint8)
    Image.fromarray(upright).save(tmp_path / "tall.png")

    result, _ = run_graph(load_graph("load_images", ".", batch_size=4))

    (batch,) = loaded(result)  # the header size agrees with the pixels: one batch, as planned
    assert result.outputs["img"]["image"].total == 1
    assert batch.names == ["portrait", "tall"]
    image = batch.data[0]
    assert tuple(image.shape) == (3, 32, 16)
    assert image[:, :14].mean() > 0.95  # the white left half is now the top half
    assert image[:, 18:].mean() < 0.05


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_like_pillows_exif_transpose(run_graph, tmp_path, orientation):
    stored = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[274] = orientation
    Image.fromarray(stored).save(tmp_path / "turned.png", exif=exif)
    with Image.open(tmp_path / "turned.png") as image:
        expected = np.asarray(ImageOps.exif_transpose(image))

    result, _ = run_graph(load_graph("load_image", "turned.png"))

    image = loaded(result)[0].data[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(np.rint(image * 255).astype(np.uint8), expected)


# -- frames ----------------------------------------------------------------------------------


def three_frames() -> list[np.ndarray]:
    return [np.full((6, 5), 40 * (n + 1), dtype=np.uint8) for n in range(3)]


def write_gif(path: Path) -> None:
    first, *rest = [Image.fromarray(f).convert("P") for f in three_frames()]
    first.save(path, save_all=True, append_images=rest, duration=100)


def write_multipage_tiff(path: Path) -> None:
    with tifffile.TiffWriter(path) as tif:
        for frame in three_frames():
            tif.write(frame, photometric="minisblack")


@pytest.mark.parametrize("write", [write_gif, write_multipage_tiff], ids=["gif", "tiff"])
def test_every_frame_of_a_multi_frame_file_is_an_item(run_graph, tmp_path, write):
    suffix = ".gif" if write is write_gif else ".tif"
    write(tmp_path / f"clip{suffix}")

    result, _ = run_graph(load_graph("load_images", ".", frames='"all"'))
    batches = loaded(result)
    assert names_of(batches) == ["clip#1", "clip#2", "clip#3"]
    levels = torch.cat([b.data for b in batches]).mean(dim=(1, 2, 3)) * 255
    torch.testing.assert_close(levels, torch.tensor([40.0, 80.0, 120.0]), atol=1.0, rtol=0)

    result, _ = run_graph(load_graph("load_image", f"clip{suffix}"))
    assert names_of(loaded(result)) == ["clip"]


# -- precision -------------------------------------------------------------------------------


def sixteen_bit(shape: tuple[int, ...]) -> np.ndarray:
    """16-bit levels whose low byte matters: no two differ only above the 8th bit."""
    return RNG.integers(0, 65536, shape, dtype=np.uint16) | 1


@pytest.mark.parametrize("kind", ["rgb_tiff", "gray_png", "rgb_png"])
def test_16_bit_files_keep_every_level(run_graph, tmp_path, kind):
    levels = sixteen_bit((5, 7) if kind == "gray_png" else (5, 7, 3))
    if kind == "rgb_tiff":
        tifffile.imwrite(tmp_path / "deep.tif", levels, photometric="rgb", compression="zlib")
    elif kind == "gray_png":
        Image.fromarray(levels).save(tmp_path / "deep.png")
    else:
        (tmp_path / "deep.png").write_bytes(imagecodecs.png_encode(levels))
    name = "deep.tif" if kind == "rgb_tiff" else "deep.png"

    result, _ = run_graph(load_graph("load_image", name))

    image = loaded(result)[0].data[0]
    expected = levels[..., None] if levels.ndim == 2 else levels
    back = (image.permute(1, 2, 0).double() * 65535).round().numpy()
    np.testing.assert_array_equal(back, expected)


def test_a_16_bit_file_survives_load_and_save_as_16_bit_tiff(run_graph, tmp_path):
    levels = sixteen_bit((9, 11, 3))
    (tmp_path / "imgs").mkdir()
    tifffile.imwrite(tmp_path / "imgs" / "deep.tif", levels, photometric="rgb")

    result, _ = run_graph(
        'version = 1\n[nodes.photos]\ntype = "load_images"\nparams = { path = "imgs" }\n'
        '[nodes.out]\ntype = "save_images"\ninputs = { image = "photos.image" }\n'
        'params = { folder = "out", format = "tiff", bit_depth = 16 }\n'
    )

    assert result.ok, result.failed
    written = tifffile.imread(tmp_path / "out" / "deep.tiff")
    assert written.dtype == np.uint16
    assert np.abs(written.astype(np.int64) - levels).max() <= 1


def test_float_tiffs_are_read_as_they_are_or_refused_with_their_range(run_graph, tmp_path):
    unit = RNG.random((4, 5), dtype=np.float32)
    tifffile.imwrite(tmp_path / "unit.tif", unit)
    tifffile.imwrite(tmp_path / "wide.tif", unit * 255)

    result, events = run_graph(load_graph("load_images", "."))
    (skip,) = [e for e in events if isinstance(e, ItemError)]
    (batch,) = loaded(result)
    assert batch.names == ["unit"]
    torch.testing.assert_close(batch.data[0, 0], torch.from_numpy(unit))
    assert skip.item.endswith("wide.tif") and "rescale" in skip.message and "0 .. 1" in skip.message

    result, _ = run_graph(load_graph("load_image", "wide.tif", rescale="true"))
    image = loaded(result)[0].data[0, 0]
    expected = (unit - unit.min()) / (unit.max() - unit.min())
    torch.testing.assert_close(image, torch.from_numpy(expected), atol=1e-5, rtol=0)


# -- colour profiles -------------------------------------------------------------------------

# Adobe RGB (1998): D50-adapted colorants as its ICC profile states them, gamma 563/256.
ADOBE_COLORANTS = [(0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087),
                   (0.14919, 0.06322, 0.74457)]  # fmt: skip
ADOBE_TO_XYZ = np.array([[0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741],
                         [0.0270343, 0.0706872, 0.9911085]])  # fmt: skip
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])  # fmt: skip


def adobe_rgb_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC display profile of Adobe RGB (1998)."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(values) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(v) for v in values)

    text = b"Adobe RGB test"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text) + 1) + text + b"\0" + bytes(12 + 67)
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 563) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"cprt", b"text\0\0\0\0x\0")]
    tags += [
        (sig, xyz(c)) for sig, c in zip((b"rXYZ", b"gXYZ", b"bXYZ"), ADOBE_COLORANTS, strict=True)
    ]
    tags += [(sig, curve) for sig in (b"rTRC", b"gTRC", b"bTRC")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack(">II", size, 0) + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12)
    header += b"acsp" + bytes(24) + struct.pack(">I", 0) + xyz((0.9642, 1.0, 0.8249))[8:]
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + data


def adobe_to_srgb(levels: np.ndarray) -> np.ndarray:
    linear = (levels / 255.0) ** (563 / 256)
    srgb = np.clip(linear @ (XYZ_TO_SRGB @ ADOBE_TO_XYZ).T, 0, 1)
    encoded = np.where(srgb <= 0.0031308, 12.92 * srgb, 1.055 * srgb ** (1 / 2.4) - 0.055)
    return encoded * 255


def test_an_adobe_rgb_photo_is_converted_to_srgb(run_graph, tmp_path):
    levels = np.array([[[150, 100, 60], [60, 160, 90], [200, 200, 200]]], dtype=np.uint8)
    Image.fromarray(levels).save(tmp_path / "adobe.png", icc_profile=adobe_rgb_profile())

    result, _ = run_graph(load_graph("load_image", "adobe.png"))
    converted = loaded(result)[0].data[0].permute(1, 2, 0).numpy() * 255
    expected = adobe_to_srgb(levels.astype(np.float64))
    assert np.abs(expected - levels).max() > 15  # the conversion matters for these colours
    np.testing.assert_allclose(converted, expected, atol=3)

    result, _ = run_graph(load_graph("load_image", "adobe.png", color_management="false"))
    as_stored = loaded(result)[0].data[0].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(as_stored, levels, atol=1e-3)


# -- names and order -------------------------------------------------------------------------


def write_png(path: Path, value: int = 0, size: tuple[int, int] = (4, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def test_files_come_in_natural_order(run_graph, tmp_path):
    for n in (10, 2, 1, 11, 3):
        write_png(tmp_path / "frames" / f"frame_{n}.png")

    result, _ = run_graph(load_graph("load_images", "frames"))

    assert names_of(loaded(result)) == [f"frame_{n}" for n in (1, 2, 3, 10, 11)]


def test_sub_folders_keep_their_relative_paths_as_names(run_graph, tmp_path):
    write_png(tmp_path / "photos" / "a" / "photo.png", 10)
    write_png(tmp_path / "photos" / "b" / "photo.png", 20)
    write_png(tmp_path / "photos" / "b" / "shot.png", 30)
    Image.fromarray(np.full((4, 4), 40, dtype=np.uint8)).save(
        tmp_path / "photos" / "b" / "shot.jpg"
    )

    result, _ = run_graph(load_graph("load_images", "photos", recursive="true"))
    assert names_of(loaded(result)) == ["a/photo", "b/photo", "b/shot.jpg", "b/shot.png"]

    result, _ = run_graph(load_graph("load_images", "photos/**/*.png"))
    assert names_of(loaded(result)) == ["a/photo", "b/photo", "b/shot"]


# -- decompression bombs ---------------------------------------------------------------------


def test_a_file_over_max_pixels_is_skipped_naming_its_size(run_graph, tmp_path):
    write_png(tmp_path / "imgs" / "small.png", size=(10, 10))
    write_png(tmp_path / "imgs" / "huge.png", size=(300, 200))

    result, events = run_graph(load_graph("load_images", "imgs", max_pixels=5000))

    (skip,) = [e for e in events if isinstance(e, ItemError)]
    assert names_of(loaded(result)) == ["small"]
    assert skip.item == str(tmp_path / "imgs" / "huge.png")
    assert "200 x 300" in skip.message and "max_pixels" in skip.message

    result, _ = run_graph(load_graph("load_images", "imgs", max_pixels=100_000))
    assert names_of(loaded(result)) == ["huge", "small"]
