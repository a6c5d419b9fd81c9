"""Graphs that travel with their images, and skipped files, through the `nodeflow` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from nodeflow.cli import main

MADE_FROM_SAMPLES = """
version = 1
[nodes.photos]
type = "sample_images"
params = { names = "astronaut, camera", size = 24 }
[nodes.soft]
type = "blur"
params = { sigma = 1.5 }
inputs = { image = "photos.image" }
[nodes.out]
type = "save_images"
params = { folder = "out", format = "FORMAT" }
inputs = { image = "soft.image" }
"""


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("file_format", ["png", "tiff"])
def test_a_graph_read_back_from_an_output_runs_again_with_the_same_result(workdir, file_format):
    (workdir / "make.toml").write_text(MADE_FROM_SAMPLES.replace("FORMAT", file_format))
    runner = CliRunner()
    first = runner.invoke(main, ["run", "make.toml", "--quiet"])
    assert first.exit_code == 0, first.output
    output = workdir / "out" / f"astronaut.{file_format}"

    shown = runner.invoke(main, ["graph-of", str(output)])
    assert shown.exit_code == 0, shown.output
    assert 'type = "save_images"' in shown.output and "sigma = 1.5" in shown.output
    written = runner.invoke(main, ["graph-of", str(output), "-o", "again.toml"])
    assert written.exit_code == 0, written.output
    assert "[nodes.soft]" in (workdir / "again.toml").read_text()

    again = runner.invoke(main, ["run", str(output), "--set", "out.folder=again", "--quiet"])
    assert again.exit_code == 0, again.output
    for name in ("astronaut", "camera"):
        np.testing.assert_array_equal(
            pixels(workdir / "again" / f"{name}.{file_format}"),
            pixels(workdir / "out" / f"{name}.{file_format}"),
        )


def test_a_graph_taken_from_an_image_writes_only_under_the_current_folder(workdir):
    (workdir / "make.toml").write_text(
        MADE_FROM_SAMPLES.replace("FORMAT", "png").replace('"out"', f'"{workdir / "out"}"')
    )
    runner = CliRunner()
    assert runner.invoke(main, ["run", "make.toml", "--quiet"]).exit_code == 0
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    image = elsewhere / "astronaut.png"
    image.write_bytes((workdir / "out" / "astronaut.png").read_bytes())

    refused = runner.invoke(main, ["run", str(image), "--output-root", str(elsewhere)])

    assert refused.exit_code == 1
    assert "outside the output root" in " ".join(refused.output.split())
    allowed = runner.invoke(main, ["run", str(image), "--quiet"])
    assert allowed.exit_code == 0, allowed.output


def test_an_image_without_a_graph_says_so(workdir):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(workdir / "plain.jpg")
    runner = CliRunner()

    for command in (["graph-of", "plain.jpg"], ["run", "plain.jpg"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2
        assert "carries no nodeflow graph" in result.output


def test_edit_opens_the_graph_an_image_carries(workdir):
    from nodeflow.tui.app import NodeflowApp

    (workdir / "make.toml").write_text(MADE_FROM_SAMPLES.replace("FORMAT", "png"))
    assert CliRunner().invoke(main, ["run", "make.toml", "--quiet"]).exit_code == 0

    app = NodeflowApp(workdir / "out" / "camera.png")

    assert list(app.doc.graph.nodes) == ["photos", "soft", "out"]
    assert app.doc.graph.path is None  # saving asks for a graph file, never over the image


LOAD_FOLDER = """
version = 1
[nodes.photos]
type = "load_images"
params = { path = "in" }
[nodes.out]
type = "save_images"
params = { folder = "out" }
inputs = { image = "photos.image" }
"""


def test_skipped_files_are_named_counted_and_listed_as_events(workdir):
    (workdir / "in").mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(workdir / "in" / "good.png")
    (workdir / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (workdir / "in" / "cut.jpg").write_bytes(b"\xff\xd8\xff")
    (workdir / "skips.toml").write_text(LOAD_FOLDER)
    runner = CliRunner()

    shown = runner.invoke(main, ["run", "skips.toml", "--no-cache"])
    assert shown.exit_code == 0, shown.output
    assert "photos: skipped 2 items" in shown.output
    assert "broken.png" in shown.output and "cut.jpg" in shown.output

    listed = runner.invoke(main, ["run", "skips.toml", "--no-cache", "--events", "jsonl"])
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    skipped = [e for e in events if e["event"] == "ItemError"]
    assert sorted(Path(e["item"]).name for e in skipped) == ["broken.png", "cut.jpg"]
    assert all(e["node"] == "photos" and e["message"] for e in skipped)
