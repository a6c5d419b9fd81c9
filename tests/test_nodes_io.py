"""Loading and saving images: load_image, load_images, sample_images, save_images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken, NodeContext
from nodeflow.engine.events import Event, ItemError, NodeProgress, NodeStarted
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.types import Batch, Stream

RNG = np.random.default_rng(0)


def write_png(path: Path, pixels: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def ensure_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def random_pixels(height: int, width: int, channels: int = 3) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def batches_of(result, node_id: str) -> list[Batch]:
    return list(result.outputs[node_id]["image"])


def failure(result, node_id: str) -> str:
    assert not result.ok
    return result.failed[node_id]


# -- load_image ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pixels", "expected_channels"),
    [
        (random_pixels(5, 7, channels=1), 1),
        (random_pixels(5, 7, channels=3), 3),
        (random_pixels(5, 7, channels=4), 3),
    ],
    ids=["gray", "rgb", "rgba"],
)
def test_load_image_matches_pillow(run_graph, tmp_path, pixels, expected_channels):
    write_png(tmp_path / "pic.png", pixels)
    result, _ = run_graph(
        'version = 1\n[nodes.img]\ntype = "load_image"\nparams = { path = "pic.png" }\n'
    )
    assert result.ok, result.failed
    batch = result.previews["img"]
    assert batch.names == ["pic"]
    assert batch.data.dtype == torch.float32
    assert tuple(batch.data.shape) == (1, expected_channels, 5, 7)
    reference = pixels[..., None] if pixels.ndim == 2 else pixels[..., :3]
    expected = torch.from_numpy(reference).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(batch.data[0], expected)


def test_load_image_reads_16_bit_gray_as_one_channel(run_graph, tmp_path):
    levels = RNG.integers(0, 65536, (4, 6), dtype=np.uint16)
    write_png(tmp_path / "deep.png", levels)
    result, _ = run_graph(
        'version = 1\n[nodes.img]\ntype = "load_image"\nparams = { path = "deep.png" }\n'
    )
    data = result.previews["img"].data
    assert tuple(data.shape) == (1, 1, 4, 6)
    torch.testing.assert_close(data[0, 0], torch.from_numpy(levels.astype(np.float32) / 65535))


def test_load_image_of_a_missing_file_names_the_path(run_graph, tmp_path):
    result, _ = run_graph(
        'version = 1\n[nodes.img]\ntype = "load_image"\nparams = { path = "nope.png" }\n'
    )
    message = failure(result, "img")
    assert str(tmp_path / "nope.png") in message
    assert "no such file" in message


# -- load_images -----------------------------------------------------------------------------

LOAD_FOLDER = """
version = 1
[nodes.photos]
type = "load_images"
params = {{ path = "{path}", batch_size = {batch_size} }}
"""


def test_load_images_starts_a_new_batch_where_size_or_channels_change(run_graph, tmp_path):
    folder = tmp_path / "imgs"
    images = {
        "a": random_pixels(8, 8),
        "b": random_pixels(8, 8),
        "c": random_pixels(8, 8),
        "d": random_pixels(12, 10),
        "e": random_pixels(12, 10),
        "f": random_pixels(12, 10, channels=1),
    }
    for name, pixels in images.items():
        write_png(folder / f"{name}.png", pixels)
    (folder / "notes.txt").write_text("not an image")

    result, events = run_graph(LOAD_FOLDER.format(path="imgs", batch_size=2))

    assert result.ok, result.failed
    assert not [e for e in events if isinstance(e, ItemError)]
    stream = result.outputs["photos"]["image"]
    batches = list(stream)
    assert [b.names for b in batches] == [["a", "b"], ["c"], ["d", "e"], ["f"]]
    assert stream.total == len(batches)
    assert [tuple(b.data.shape) for b in batches] == [
        (2, 3, 8, 8),
        (1, 3, 8, 8),
        (2, 3, 12, 10),
        (1, 1, 12, 10),
    ]
    for batch in batches:
        for name, image in zip(batch.names, batch.data, strict=True):
            pixels = images[name]
            reference = pixels[..., None] if pixels.ndim == 2 else pixels
            torch.testing.assert_close(
                image, torch.from_numpy(reference).permute(2, 0, 1).float() / 255
            )


def test_a_corrupt_file_is_reported_and_skipped(run_graph, tmp_path):
    folder = tmp_path / "imgs"
    write_png(folder / "a.png", random_pixels(6, 6))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    write_png(folder / "c.png", random_pixels(6, 6))

    result, events = run_graph(LOAD_FOLDER.format(path="imgs", batch_size=8))

    assert result.ok, result.failed
    errors = [e for e in events if isinstance(e, ItemError)]
    assert len(errors) == 1
    assert errors[0].node == "photos"
    assert errors[0].item == str(folder / "b.png")
    assert errors[0].message
    assert [b.names for b in batches_of(result, "photos")] == [["a", "c"]]


def test_load_images_takes_a_glob_pattern(run_graph, tmp_path):
    for name in ("a.png", "c.png", "b.jpg"):
        Image.fromarray(random_pixels(4, 4)).save(ensure_folder(tmp_path / "imgs") / name)

    result, _ = run_graph(LOAD_FOLDER.format(path="imgs/*.png", batch_size=8))

    assert [b.names for b in batches_of(result, "photos")] == [["a", "c"]]


def test_a_pattern_that_matches_nothing_says_so(run_graph, tmp_path):
    write_png(tmp_path / "imgs" / "a.png", random_pixels(4, 4))

    result, _ = run_graph(LOAD_FOLDER.format(path="imgs/*.gif", batch_size=8))

    message = failure(result, "photos")
    assert "matched no files" in message
    assert "imgs/*.gif" in message


def test_a_folder_without_images_says_so(run_graph, tmp_path):
    ensure_folder(tmp_path / "empty")

    result, _ = run_graph(LOAD_FOLDER.format(path="empty", batch_size=8))

    message = failure(result, "photos")
    assert "holds no image files" in message
    assert "empty" in message


# -- sample_images ---------------------------------------------------------------------------


def test_sample_images_default_is_every_colour_photo(run_graph):
    result, _ = run_graph('version = 1\n[nodes.samples]\ntype = "sample_images"\n')

    assert result.ok, result.failed
    batches = batches_of(result, "samples")
    assert [b.names for b in batches] == [
        [
            "astronaut",
            "coffee",
            "chelsea",
            "rocket",
            "motorcycle_left",
            "motorcycle_right",
            "hubble_deep_field",
            "retina",
        ],
        ["immunohistochemistry"],
    ]
    assert [tuple(b.data.shape) for b in batches] == [(8, 3, 128, 128), (1, 3, 128, 128)]
    for batch in batches:
        assert batch.data.dtype == torch.float32
        assert batch.data.min() >= 0 and batch.data.max() <= 1
        assert (batch.data.flatten(1).std(dim=1) > 0.02).all()


def test_sample_images_mixes_gray_and_colour_photos(run_graph):
    graph = """
version = 1
[nodes.samples]
type = "sample_images"
params = {{ names = "camera, astronaut", size = 16, gray = {gray} }}
"""
    result, _ = run_graph(graph.format(gray="false"))
    (batch,) = batches_of(result, "samples")
    assert batch.names == ["camera", "astronaut"]
    assert tuple(batch.data.shape) == (2, 3, 16, 16)
    camera = batch.data[0]
    assert torch.equal(camera[0], camera[1]) and torch.equal(camera[0], camera[2])

    result, _ = run_graph(graph.format(gray="true"))
    (gray_batch,) = batches_of(result, "samples")
    assert tuple(gray_batch.data.shape) == (2, 1, 16, 16)
    torch.testing.assert_close(gray_batch.data[0], camera[:1])


def test_an_unknown_sample_photo_lists_the_available_ones(run_graph):
    result, _ = run_graph(
        'version = 1\n[nodes.samples]\ntype = "sample_images"\nparams = { names = "astronaut, lena" }\n'
    )
    message = failure(result, "samples")
    assert "'lena'" in message
    for name in ("astronaut", "coffee", "camera", "gravel"):
        assert name in message


# -- save_images -----------------------------------------------------------------------------

SAVE = """
version = 1
[nodes.photos]
type = "load_images"
params = {{ path = "imgs", batch_size = 2 }}

[nodes.out]
type = "save_images"
inputs = {{ image = "photos.image" }}
params = {{ folder = "saved", pattern = "{pattern}", format = "{format}" }}
"""


def test_save_images_round_trips_pixels_and_carries_the_graph(run_graph, tmp_path):
    images = {
        "gray": write_png(tmp_path / "imgs" / "gray.png", random_pixels(5, 6, channels=1)),
        "rgb": write_png(tmp_path / "imgs" / "rgb.png", random_pixels(7, 4)),
    }

    result, _ = run_graph(SAVE.format(pattern="{name}", format="png"))

    assert result.ok, result.failed
    assert result.outputs["out"] == {}
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["gray.png", "rgb.png"]
    for name, pixels in images.items():
        with Image.open(tmp_path / "saved" / f"{name}.png") as saved:
            assert saved.mode == ("L" if pixels.ndim == 2 else "RGB")
            np.testing.assert_array_equal(np.asarray(saved), pixels)
            graph = json.loads(saved.text["nodeflow:graph"])
        assert graph["nodes"]["out"]["type"] == "save_images"
        assert graph["nodes"]["photos"]["type"] == "load_images"


def test_save_images_rounds_to_the_nearest_level(registry, tmp_path):
    image = torch.rand(2, 3, 5, 4)
    image[0, 0, 0, 0] = 1.2
    image[0, 0, 0, 1] = -0.3
    ctx = NodeContext(
        "out", "save_images", torch.device("cpu"), torch.float32, lambda _e: None, CancelToken()
    )
    save = registry.nodes["save_images"].fn

    returned = save(
        Stream.of(image, ["x", "y"]),
        folder=str(tmp_path),
        pattern="{name}",
        format="png",
        bit_depth=8,
        quality=95,
        allow_input_folder=False,
        ctx=ctx,
    )

    assert returned is None
    for name, expected in zip(["x", "y"], image.clamp(0, 1), strict=True):
        with Image.open(tmp_path / f"{name}.png") as saved:
            written = torch.from_numpy(np.array(saved)).permute(2, 0, 1).float() / 255
        assert (written - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_save_images_pattern_with_index_and_jpg(run_graph, tmp_path):
    for name in ("p", "q", "r"):
        write_png(tmp_path / "imgs" / f"{name}.png", random_pixels(8, 8))

    result, _ = run_graph(SAVE.format(pattern="{node}-{index:03d}", format="jpg"))

    assert result.ok, result.failed
    saved = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert saved == ["out-000.jpg", "out-001.jpg", "out-002.jpg"]
    with Image.open(tmp_path / "saved" / "out-002.jpg") as jpg:
        assert jpg.format == "JPEG" and jpg.size == (8, 8)


def test_a_broken_pattern_says_which_fields_exist(run_graph, tmp_path):
    write_png(tmp_path / "imgs" / "p.png", random_pixels(4, 4))

    result, _ = run_graph(SAVE.format(pattern="{stem}", format="png"))

    message = failure(result, "out")
    assert "{stem}" in message and "{name}" in message and "{index" in message


def test_a_cancelled_save_leaves_only_whole_files(registry, tmp_path):
    for index in range(6):
        write_png(tmp_path / "imgs" / f"{index}.png", random_pixels(8, 8))
    path = tmp_path / "graph.toml"
    path.write_text(SAVE.format(pattern="{name}", format="png"))
    cancel = CancelToken()

    def on_event(event: Event) -> None:
        if isinstance(event, NodeProgress) and event.node == "out" and event.done == 2:
            cancel.cancel()

    executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu")
    result = executor.run(Graph.load(path), on_event=on_event, cancel=cancel)

    assert result.cancelled
    saved = sorted((tmp_path / "saved").iterdir())
    assert [p.name for p in saved] == ["0.png", "1.png"]
    for file in saved:
        with Image.open(file) as image:
            image.load()


# -- cache -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node_type", "path"), [("load_images", "imgs"), ("load_image", "imgs/a.png")]
)
def test_the_cache_notices_a_changed_file(registry, tmp_path, node_type, path):
    write_png(tmp_path / "imgs" / "a.png", np.full((4, 4), 10, dtype=np.uint8))
    graph_path = tmp_path / "graph.toml"
    graph_path.write_text(
        f"""
version = 1
[nodes.photos]
type = "{node_type}"
params = {{ path = "{path}" }}

[nodes.out]
type = "save_images"
inputs = {{ image = "photos.image" }}
params = {{ folder = "saved" }}
"""
    )
    executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu")

    def run() -> list[str]:
        events: list[Event] = []
        result = executor.run(Graph.load(graph_path), on_event=events.append)
        assert result.ok, result.failed
        return [e.node for e in events if isinstance(e, NodeStarted)]

    def saved_value() -> int:
        with Image.open(tmp_path / "saved" / "a.png") as image:
            return int(np.asarray(image)[0, 0])

    assert run() == ["photos", "out"]
    assert saved_value() == 10
    assert run() == []

    write_png(tmp_path / "imgs" / "a.png", np.full((4, 4), 200, dtype=np.uint8))
    stat = (tmp_path / "imgs" / "a.png").stat()
    os.utime(tmp_path / "imgs" / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    assert run() == ["photos", "out"]
    assert saved_value() == 200
