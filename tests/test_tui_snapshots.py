"""Snapshots of `nodeflow edit` (pytest-textual-snapshot): the main screen at 80x24 (the
graph folded away), the add-node palette, and a finished run on a wide screen. Times are
masked and the registry is fixed, so the pictures are stable.

Update them after a deliberate change of the UI with `pytest tests/test_tui_snapshots.py
--snapshot-update`, and look at the report it writes before committing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import nodeflow.tui.status as run_status
from nodeflow.engine import Cache, Executor
from nodeflow.registry import Registry
from nodeflow.tui.app import NodeflowApp

GRAPH = """\
version = 1

[nodes.photos]
type = "sample_images"
params = { size = 32, names = "astronaut, coffee", batch_size = 1 }

[nodes.noisy]
type = "add_noise"
params = { sigma = 25.0, seed = 1 }
inputs = { image = "photos.image" }

[nodes.blurred]
type = "blur"
params = { sigma = 1.0 }
inputs = { image = "photos.image" }

[nodes.quality]
type = "metrics"
inputs = { image = "noisy.image", reference = "photos.image" }

[nodes.sheet]
type = "concat"
inputs = { image = "noisy.image", other = "blurred.image" }
"""


NODE_TYPES = ("sample_images", "add_noise", "blur", "metrics", "concat", "grid", "save_images")
"""The node types the snapshots know, so new node types elsewhere leave the pictures alone."""


@pytest.fixture
def app(tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> NodeflowApp:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_status, "format_seconds", lambda _seconds: "1.0s")
    Path("graph.toml").write_text(GRAPH)
    known = Registry(
        nodes={name: registry.nodes[name] for name in NODE_TYPES}, types=registry.types
    )
    executor = Executor(known, Cache(tmp_path / "cache"), device="cpu")
    return NodeflowApp("graph.toml", registry=known, executor=executor)


def test_main_screen_at_80_by_24(snap_compare, app: NodeflowApp) -> None:
    assert snap_compare(app, terminal_size=(80, 24))


def test_add_node_palette(snap_compare, app: NodeflowApp) -> None:
    async def search(pilot) -> None:
        await pilot.press("a", *"nois")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(120, 36), run_before=search)


def test_finished_run(snap_compare, app: NodeflowApp) -> None:
    async def run(pilot) -> None:
        await pilot.press("down")  # noisy: its preview shows after the run
        await pilot.press("r")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.2)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=run)


def test_main_screen_at_120_by_40_shows_the_whole_graph(snap_compare, app: NodeflowApp) -> None:
    assert snap_compare(app, terminal_size=(120, 40))


def test_quitting_during_a_run_says_so(snap_compare, app: NodeflowApp) -> None:
    from nodeflow.tui.screens.confirm_quit import ConfirmQuitScreen

    async def ask(pilot) -> None:
        pilot.app.push_screen(ConfirmQuitScreen("graph.toml", unsaved=True, running=True))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=ask)
