"""`nodeflow edit` driven through the real app with Textual's Pilot: open, edit, run, save."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import TabbedContent
from textual.widgets._footer import FooterKey

from nodeflow.engine import Cache, Executor
from nodeflow.graph import Graph, Link
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry
from nodeflow.tui.app import MainScreen, NodeflowApp
from nodeflow.tui.screens.choice import ChoiceScreen
from nodeflow.tui.screens.confirm_quit import ConfirmQuitScreen
from nodeflow.tui.status import State
from nodeflow.tui.widgets.footer import KeyFooter
from nodeflow.tui.widgets.graph_view import GraphView
from nodeflow.tui.widgets.inspector import ParamField
from nodeflow.tui.widgets.node_list import NodeList
from nodeflow.tui.widgets.problems import ProblemList

SMALL = """\
version = 1

[nodes.photos]
type = "sample_images"
params = { size = 32, names = "astronaut, coffee", batch_size = 1 }

[nodes.noisy]
type = "add_noise"
params = { sigma = 25.0, seed = 1 }
inputs = { image = "photos.image" }

[nodes.quality]
type = "metrics"
inputs = { image = "noisy.image", reference = "photos.image" }
"""

SLOW_PLUGIN = '''
"""Slow test nodes: a stream of frames that takes its time, and a pretend trainer."""

import time

import numpy as np
import torch
from PIL import Image

from nodeflow.node import Float, Input, Int, Output, node
from nodeflow.plugins import hookimpl
from nodeflow.types import FLOAT, IMAGE, Batch, Stream


@node(
    "frames",
    outputs={"image": Output(IMAGE)},
    params={"count": Int(200, min=1), "delay": Float(0.02, min=0)},
)
def frames(*, count, delay, ctx):
    """Stream small frames, one per batch, slowly."""

    def produce():
        for index in range(count):
            time.sleep(delay)
            yield Batch(torch.full((1, 3, 8, 8), index / count, device=ctx.device), [str(index)])

    return Stream(produce, total=count)


@node(
    "train",
    inputs={"image": Input(IMAGE)},
    outputs={"loss": Output(FLOAT)},
    params={"steps": Int(3, min=1)},
    inference=False,
)
def train(image, *, steps, ctx):
    """Pretend to train: a loss and a sample grid at every step."""
    for step in range(1, steps + 1):
        for _batch in image:
            pass
        pixels = np.zeros((16, 16, 3), np.uint8)
        pixels[:, :, 0] = 255 * step // steps
        sample = ctx.work_dir / f"sample{step}.png"
        Image.fromarray(pixels).save(sample)
        ctx.progress(step, steps, loss=1.0 / step, sample=str(sample))
    return 1.0 / steps


@hookimpl
def register_nodes(register):
    register(frames)
    register(train)
'''


def drive(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test with asyncio, as a plain pytest test."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def make_app(tmp_path: Path, registry: Registry, text: str = SMALL) -> NodeflowApp:
    path = tmp_path / "graph.toml"
    path.write_text(text)
    executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu")
    return NodeflowApp(path, registry=registry, executor=executor)


@pytest.fixture
def slow_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "slow.py").write_text(SLOW_PLUGIN)
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(folder))
    reset_registry()
    yield load_registry()
    reset_registry()


def main(app: NodeflowApp) -> MainScreen:
    return app.main


def node_rows(app: NodeflowApp) -> list[tuple[str, str]]:
    table = app.screen.query_one(NodeList)
    rows = []
    for key in table.rows:
        name, type_id, _status = table.get_row(key)
        rows.append((str(name), str(type_id)))
    return rows


async def wait_for(pilot, condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    """Let the app work until `condition()` holds (at most `seconds`)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def palette_offers(app: NodeflowApp, text: str) -> Callable[[], bool]:
    """Whether the command palette's first suggestion is `text`."""

    def offers() -> bool:
        lists = app.screen.query(CommandList)
        return (
            bool(lists)
            and lists.first().option_count > 0
            and (str(lists.first().get_option_at_index(0).prompt).startswith(text))
        )

    return offers


async def run_and_wait(pilot, key: str = "r") -> None:
    await pilot.press(key)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@drive
async def test_opens_a_graph_in_execution_order(tmp_path: Path, registry: Registry) -> None:
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert node_rows(app) == [
            ("· photos", "sample_images"),
            ("· noisy", "add_noise"),
            ("· quality", "metrics"),
        ]
        assert main(app).selected == "photos"
        graph = app.screen.query_one(GraphView)
        assert set(graph.graph_layout.boxes) == {"photos", "noisy", "quality"}
        assert graph.display
        assert app.screen.query_one(ProblemList).problems == []

        # the mouse works too: a click on a box selects its node everywhere
        box = graph.graph_layout.boxes["noisy"]
        scroll_x, scroll_y = graph.scroll_offset
        offset = (box.x + graph.margin_x - scroll_x + 3, box.y - scroll_y + 2)
        await pilot.click(GraphView, offset=offset)
        await pilot.pause()
        assert main(app).selected == "noisy"
        assert app.screen.query_one(NodeList).cursor_row == 1


@drive
async def test_a_new_file_starts_an_empty_graph(tmp_path: Path, registry: Registry) -> None:
    app = NodeflowApp(tmp_path / "new.toml", registry=registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.doc.graph.nodes == {}
        await pilot.press("a", *"sampl")
        await wait_for(pilot, palette_offers(app, "add sample_images"), "the palette")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert Graph.load(tmp_path / "new.toml").nodes["sample_images"].type == "sample_images"


@drive
async def test_add_from_the_palette_connect_then_undo_and_redo(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        original = app.doc.graph.to_dict()
        await pilot.press("a", *"ble")
        await wait_for(pilot, palette_offers(app, "add blend"), "the palette")
        await pilot.press("enter")
        await pilot.pause()
        blend = app.doc.graph.nodes["blend"]
        # added after the selected node: its first input linked to it, the other left open
        assert blend.inputs == {"image": Link("photos", "image")}
        assert main(app).selected == "blend"
        assert ("· blend", "blend") in node_rows(app)
        assert "blend" in app.screen.query_one(GraphView).graph_layout.boxes
        assert any(p.node == "blend" for p in app.screen.query_one(ProblemList).problems)

        await pilot.press("c")
        await pilot.pause()
        choice = app.screen
        assert isinstance(choice, ChoiceScreen)
        assert [value for _label, value in choice.options] == [
            Link("photos", "image"),
            Link("noisy", "image"),
        ]
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.doc.graph.nodes["blend"].inputs["other"] == Link("noisy", "image")
        assert app.screen.query_one(ProblemList).problems == []
        edited = app.doc.graph.to_dict()

        await pilot.press("u", "u")
        await pilot.pause()
        assert app.doc.graph.to_dict() == original
        assert not app.doc.dirty
        assert ("· blend", "blend") not in node_rows(app)
        await pilot.press("ctrl+r", "ctrl+r")
        await pilot.pause()
        assert app.doc.graph.to_dict() == edited
        assert app.doc.dirty

        await pilot.press("D")  # duplicate the selected node, links and all
        await pilot.pause()
        assert app.doc.graph.nodes["blend_2"].inputs == app.doc.graph.nodes["blend"].inputs
        await pilot.press("d")  # and delete it again
        await pilot.pause()
        assert app.doc.graph.to_dict() == edited


@drive
async def test_an_invalid_param_value_is_refused_with_its_reason(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("down")  # noisy
        await pilot.pause()
        sigma = next(f for f in app.screen.query(ParamField) if f.param_name == "sigma")
        field = sigma.query_one("Input")
        field.focus()
        await pilot.pause()
        await pilot.press("-", "5")  # the field's text is selected on focus: typing replaces it
        await pilot.pause()
        assert sigma.has_class("-invalid")
        error = str(sigma.query_one(".field-error").render())
        assert "-5 is below the minimum 0" in error
        assert app.doc.graph.nodes["noisy"].params["sigma"] == 25.0  # refused: not applied
        await pilot.press("end", "backspace", "backspace", "1", "2")
        await pilot.pause()
        assert not sigma.has_class("-invalid")
        assert app.doc.graph.nodes["noisy"].params["sigma"] == 12.0
        assert len(app.doc.undo_stack) == 1  # typing 1, 12 is one edit


@drive
async def test_rename_save_reload_and_the_guard_against_quitting_unsaved(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"pics", "enter")
        await pilot.pause()
        assert app.doc.graph.nodes["quality"].inputs["reference"] == Link("pics", "image")
        assert main(app).selected == "pics"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not app.doc.dirty
        saved = app.doc.graph.to_dict()
        await pilot.press("S")
        await pilot.pause()
        await pilot.press(*"copy.json", "enter")
        await pilot.pause()
        assert app.doc.path == Path("copy.json")

        await pilot.press("d")
        await pilot.pause()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuitScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen) and app.is_running
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
    assert Graph.load(tmp_path / "graph.toml").to_dict() == saved
    assert "pics" not in Graph.load(tmp_path / "copy.json").nodes


@drive
async def test_run_to_completion_marks_every_node_done_and_previews(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("down")  # noisy: run up to here first
        await run_and_wait(pilot, "R")
        board = main(app).board
        assert board.get("noisy").state == State.DONE
        assert board.get("quality").state == State.IDLE
        await pilot.press("up")
        await run_and_wait(pilot)
        assert {n: board.get(n).state for n in app.doc.graph.nodes} == {
            "photos": State.DONE,
            "noisy": State.DONE,
            "quality": State.DONE,
        }
        assert [name[0] for name, _type in node_rows(app)] == ["✓", "✓", "✓"]
        assert set(board.get("quality").summary) == {"psnr", "ssim"}
        preview = app.screen.query_one("#preview")
        await wait_for(pilot, lambda: preview.pixels is not None, "the preview")
        assert preview.display and preview.pixels.shape == (32, 32, 3)

        # a re-run reuses the session's memory cache: the collecting node is cached
        await run_and_wait(pilot)
        assert board.get("quality").state == State.CACHED

        # an edit forgets what it made stale, and only that
        await pilot.press("down")
        await pilot.pause()
        sigma = next(f for f in app.screen.query(ParamField) if f.param_name == "sigma")
        sigma.query_one("Input").focus()
        await pilot.pause()
        await pilot.press("5")
        await pilot.pause()
        assert board.get("noisy").state == State.IDLE
        assert board.get("quality").state == State.IDLE
        assert board.get("photos").state == State.CACHED


@drive
async def test_a_graph_with_problems_does_not_run_and_a_problem_selects_its_node(
    tmp_path: Path, registry: Registry
) -> None:
    broken = SMALL.replace('inputs = { image = "noisy.image", reference = "photos.image" }', "")
    app = make_app(tmp_path, registry, broken)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        assert main(app).board.running is False
        problems = app.screen.query_one(ProblemList)
        assert {p.node for p in problems.problems} == {"quality"}
        problems.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert main(app).selected == "quality"
        assert app.screen.query_one(NodeList).cursor_row == 2


@drive
async def test_cancel_a_run(tmp_path: Path, slow_registry: Registry) -> None:
    text = """\
version = 1

[nodes.frames]
type = "slow.frames"

[nodes.save]
type = "save_images"
params = { folder = "out" }
inputs = { image = "frames.image" }
"""
    app = make_app(tmp_path, slow_registry, text)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        board = main(app).board
        await wait_for(pilot, lambda: board.get("save").done > 2, "a few batches")
        assert board.running
        await pilot.press("x")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert board.cancelled and not board.running
        assert board.get("save").state == State.CANCELLED
        assert board.get("save").done < 200
        app.screen.query_one(TabbedContent).active = "tab-log"
        await pilot.pause()
        log = "\n".join(line.text for line in app.screen.query_one("#log").lines)
        assert "run cancelled" in log
        assert not list((tmp_path / "out").glob(".*.part"))  # nothing half-written


@drive
async def test_a_training_node_shows_step_losses_and_its_latest_sample(
    tmp_path: Path, slow_registry: Registry
) -> None:
    text = """\
version = 1

[nodes.frames]
type = "slow.frames"
params = { count = 2, delay = 0.0 }

[nodes.fit]
type = "slow.train"
params = { steps = 3 }
inputs = { image = "frames.image" }
"""
    app = make_app(tmp_path, slow_registry, text)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("down")  # fit
        await run_and_wait(pilot)
        preview = app.screen.query_one("#preview")
        await wait_for(pilot, lambda: preview.pixels is not None, "the sample")
        status = main(app).board.get("fit")
        assert status.state == State.DONE
        assert status.info["loss"] == pytest.approx(1 / 3)
        assert "loss 0.3333" in status.detail()
        assert preview.display
        assert preview.pixels[0, 0].tolist() == [255, 0, 0]  # the last step's sample
        run_text = str(app.screen.query_one("#run-lines").render())
        assert "fit" in run_text and "loss 0.3333" in run_text


@drive
async def test_narrow_terminal_folds_the_graph_away_and_help_lists_every_key(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        graph, nodes = screen.query_one(GraphView), screen.query_one(NodeList)
        inspector = screen.query_one("#inspector")
        assert not graph.display and nodes.display and inspector.display
        assert nodes.region.right <= inspector.region.x
        assert inspector.region.right <= 80
        await pilot.press("g")
        await pilot.pause()
        assert graph.display and not nodes.display and graph.has_focus
        await pilot.press("down")
        await pilot.pause()
        assert main(app).selected == "noisy"
        await pilot.press("g")
        await pilot.pause()
        assert nodes.display and nodes.cursor_row == 1

        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        described = {row[1] for row in dict(app.help_sections())["Editing and running"]}
        assert {binding.tooltip for binding in MainScreen.BINDINGS} <= described
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


def footer_keys(app: NodeflowApp) -> list[str]:
    return [key.key_display for key in app.screen.query_one(KeyFooter).query(FooterKey)]


@drive
async def test_the_footer_is_one_row_of_the_most_wanted_keys_at_every_width(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(KeyFooter)
        shown = {}
        for width, height in [(80, 24), (120, 40), (200, 50)]:
            await pilot.resize_terminal(width, height)
            await pilot.pause()
            keys = footer.query(FooterKey)
            assert footer.region.height == 1 and footer.region.y == height - 1
            assert all(key.region.right <= width and key.region.y == height - 1 for key in keys)
            shown[width] = [key.action for key in keys]
            if width == 80:
                assert footer_keys(app) == ["a", "d", "c", "r", "u", "^s", "g", "?", "^q", "^p"]
        assert set(shown[80]) < set(shown[120]) < set(shown[200])
        every = {binding.action for binding in MainScreen.BINDINGS if binding.show}
        assert every < set(shown[200])  # the rest, as every key, is in the help screen


def test_edit_command_is_wired(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nodeflow import cli

    opened = []

    class FakeApp:
        def __init__(self, path, device, precision):
            opened.append((path, device, precision))

        def run(self) -> None:
            opened.append("ran")

    monkeypatch.setattr("nodeflow.tui.app.NodeflowApp", FakeApp)
    result = CliRunner().invoke(cli.main, ["edit", str(tmp_path / "g.toml")])
    assert result.exit_code == 0, result.output
    assert opened == [(tmp_path / "g.toml", "auto", "fp32"), "ran"]
    opened.clear()
    result = CliRunner().invoke(
        cli.main, ["edit", "--device", "cpu", "--precision", "bf16", str(tmp_path / "g.toml")]
    )
    assert opened == [(tmp_path / "g.toml", "cpu", "bf16"), "ran"]
    result = CliRunner().invoke(cli.main, ["edit", "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.output
    assert len(opened) == 2


def test_the_app_makes_its_executor_with_the_device_and_precision_asked_for(
    tmp_path: Path, registry: Registry
) -> None:
    app = NodeflowApp(tmp_path / "new.toml", registry=registry, device="cpu", precision="bf16")
    executor = app.executor()
    assert (str(executor.device), executor.precision) == ("cpu", "bf16")
    assert app.device_name == "cpu"


TRAINING = """\
version = 1

[nodes.photos]
type = "sample_images"
params = { names = "astronaut, coffee", size = 32 }

[nodes.pairs]
type = "pairs"
params = { task = "denoise", crop = 16 }
inputs = { image = "photos.image" }

[nodes.train]
type = "train_unet"
params = { num_downs = 2, ngf = 4, steps = 1000000, batch_size = 2, sample_every = 0 }
inputs = { dataset = "pairs.dataset" }
"""


@drive
async def test_quit_during_training_stops_the_run_and_keeps_a_checkpoint(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry, TRAINING)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        board = main(app).board
        await wait_for(pilot, lambda: board.get("train").done >= 3, "a few training steps")
        await pilot.press("ctrl+q")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmQuitScreen)
        assert "A run is in progress" in str(dialog.query_one("#quit-running").render())
        await pilot.press("q")
        asked = time.perf_counter()
        await pilot.pause()
        assert "stopping the run" in str(app.screen.query_one("#topbar-run").render())
        await wait_for(pilot, lambda: not app.is_running, "the app to quit", seconds=10)
    assert time.perf_counter() - asked < 10
    assert list((tmp_path / "cache").glob("work/*/training.pt"))


@drive
async def test_ctrl_c_stops_a_run_and_quits(tmp_path: Path, slow_registry: Registry) -> None:
    text = """\
version = 1

[nodes.frames]
type = "slow.frames"
params = { count = 100000 }

[nodes.save]
type = "save_images"
params = { folder = "out" }
inputs = { image = "frames.image" }
"""
    app = make_app(tmp_path, slow_registry, text)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        board = main(app).board
        await wait_for(pilot, lambda: board.get("save").done > 1, "a few batches")
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.is_running, "the app to quit", seconds=10)
    assert board.get("save").done < 1000


COMMENTED = """\
# Noise and how much it costs.
version = 1

# the clean photos
[nodes.photos]
type = "sample_images"
params = { size = 32, names = "astronaut, coffee", batch_size = 1 }  # small and quick

[nodes.noisy]
type = "add_noise"
params = { sigma = 25.0, seed = 1 }
inputs = { image = "photos.image" }

# PSNR and SSIM against the clean photos
[nodes.quality]
type = "metrics"
inputs = { image = "noisy.image", reference = "photos.image" }
"""


@drive
async def test_saving_keeps_the_files_comments_and_asks_when_it_changed_on_disk(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry, COMMENTED)
    path = tmp_path / "graph.toml"
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("down")  # noisy
        await pilot.pause()
        sigma = next(f for f in app.screen.query(ParamField) if f.param_name == "sigma")
        sigma.query_one("Input").focus()
        await pilot.pause()
        await pilot.press("1", "0")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert path.read_text() == COMMENTED.replace("sigma = 25.0", "sigma = 10.0")

        # another program changes the file: saving asks before overwriting it
        path.write_text(COMMENTED.replace("seed = 1", "seed = 2"))
        await pilot.press("escape", "down")  # quality
        await pilot.press("n", *"psnr", "enter")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        assert "changed on disk" in app.screen.title_text
        assert "seed = 2" in path.read_text()
        await pilot.press("enter")  # overwrite
        await pilot.pause()
    text = path.read_text()
    assert "# PSNR and SSIM against the clean photos\n[nodes.psnr]" in text
    assert text.startswith("# Noise and how much it costs.\n")
    assert "batch_size = 1 }  # small and quick" in text
    assert "sigma = 10.0, seed = 1" in text


SIX_NODES = (
    SMALL
    + """
[nodes.blurred]
type = "blur"
params = { sigma = 1.0 }
inputs = { image = "photos.image" }

[nodes.sheet]
type = "concat"
inputs = { image = "noisy.image", other = "blurred.image" }

[nodes.save]
type = "save_images"
params = { folder = "out" }
inputs = { image = "sheet.image" }
"""
)


def visible_boxes(graph: GraphView) -> set[str]:
    """The boxes drawn whole inside the graph panel as it is scrolled now."""
    region = graph.scrollable_content_region
    scroll_x, scroll_y = graph.scroll_offset
    shown = set()
    for node_id, box in graph.graph_layout.boxes.items():
        left = box.x + graph.margin_x - scroll_x
        top = box.y - scroll_y
        across = left >= 0 and left + box.width <= region.width
        if across and top >= 0 and top + box.height <= region.height:
            shown.add(node_id)
    return shown


@drive
async def test_the_graph_gets_the_room_and_keys_jump_between_panels(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry, SIX_NODES)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        graph, nodes = screen.query_one(GraphView), screen.query_one(NodeList)
        inspector = screen.query_one("#inspector")
        assert visible_boxes(graph) == set(app.doc.graph.nodes)
        assert graph.size.width > max(nodes.size.width, inspector.size.width)
        assert nodes.region.right <= graph.region.x and graph.region.right <= inspector.region.x

        await pilot.press("end")  # home and end in the list
        assert main(app).selected == "save"
        await pilot.press("home")
        assert main(app).selected == "photos"

        await pilot.press("2")
        assert graph.has_focus
        await pilot.press("end")
        await pilot.pause()
        assert main(app).selected == "save"
        await pilot.press("3")
        assert inspector.has_focus_within
        await pilot.press("6")
        await pilot.pause()
        assert screen.query_one(TabbedContent).active == "tab-run"
        await pilot.press("4")
        await pilot.pause()
        assert screen.query_one(TabbedContent).active == "tab-problems"
        assert screen.query_one(ProblemList).has_focus
        await pilot.press("1")
        assert nodes.has_focus

        # g means one thing at every width: the graph in place of the list, and back
        await pilot.press("g")
        await pilot.pause()
        assert graph.display and not nodes.display and graph.has_focus
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert graph.display and not nodes.display
        await pilot.press("g")
        await pilot.pause()
        assert nodes.display and not graph.display and nodes.has_focus
        await pilot.resize_terminal(200, 50)
        await pilot.pause()
        assert nodes.display and graph.display
        preview = screen.query_one("#preview")  # as tall as a square image as wide as the panel
        assert preview.styles.height.value == min((inspector.outer_size.width - 4) // 2, 24)

        # the help starts with the keys of the focused panel
        await pilot.press("2", "question_mark")
        await pilot.pause()
        assert app.screen.sections[0][0] == "Here: the graph"


def notes(app: NodeflowApp) -> list[str]:
    return [notification.message for notification in app._notifications]


@drive
async def test_previews_follow_the_selection_page_and_compare(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry, SMALL.replace("batch_size = 1", "batch_size = 2"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = main(app)
        caption = app.screen.query_one("#preview-caption")
        await pilot.press("v")  # nothing ran yet: v says so, and how to run
        assert "photos has not run yet: r runs the graph" in notes(app)[-1]
        await pilot.press("end", "v")  # metrics: numbers, no image
        assert "quality (metrics) has no image output to view" in notes(app)[-1]
        await pilot.press("home")
        await run_and_wait(pilot)
        await wait_for(pilot, lambda: "photos" in screen.fetched, "the photos preview")
        assert str(caption.render()).startswith("photos.image: image 1 of 2 in the first batch")
        first = app.screen.query_one("#preview").pixels
        await pilot.press("right_square_bracket")
        assert str(caption.render()).startswith("photos.image: image 2 of 2")
        assert not (app.screen.query_one("#preview").pixels == first).all()

        await pilot.press("b", "down")  # pin photos as A; noisy's preview is never photos'
        assert str(caption.render()).startswith("noisy.image")
        await wait_for(pilot, lambda: "noisy" in screen.fetched, "the noisy preview")
        await pilot.press("v")
        await pilot.pause()
        view = app.screen
        assert [c.split("  ")[0] for _pixels, c in view.panes] == ["A", "B"]
        assert "photos.image" in view.panes[0][1] and "noisy.image" in view.panes[1][1]


@drive
async def test_checkpoint_completes_and_a_bad_choice_from_the_file_is_named(
    tmp_path: Path, registry: Registry
) -> None:
    text = """\
version = 1

[nodes.zoo]
type = "load_model"
params = { checkpoint = "denoise" }

[nodes.photos]
type = "sample_images"
params = { size = 32 }

[nodes.train]
type = "train_unet"
params = { norm = "group" }
"""
    app = make_app(tmp_path, registry, text)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        field = next(f for f in app.screen.query(ParamField) if f.param_name == "checkpoint")
        assert "shipped: autoencoder, colorize" in str(field.query(".field-help").last().render())
        box = field.query_one("Input")
        box.focus()
        await pilot.press(*"col")
        await wait_for(pilot, lambda: box._suggestion == "colorize", "the suggestion")
        await pilot.press("right")
        await pilot.pause()
        assert app.doc.graph.nodes["zoo"].params["checkpoint"] == "colorize"

        await pilot.press("escape", "end")  # train: its norm "group" is not a choice
        await pilot.pause()
        norm = next(f for f in app.screen.query(ParamField) if f.param_name == "norm")
        shown = norm.query_one("Select").query_one("SelectCurrent #label")
        assert str(shown.render()) == "group: not a choice"
        assert "not one of" in str(norm.query_one(".field-error").render())


@drive
async def test_a_new_metrics_node_measures_against_the_source_photos_and_says_so(
    tmp_path: Path, registry: Registry
) -> None:
    two_nodes = SMALL.split("[nodes.quality]")[0]
    app = make_app(tmp_path, registry, two_nodes)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("down", "a", *"metri")  # after noisy, whose upstream is photos
        await wait_for(pilot, palette_offers(app, "add metrics"), "the palette")
        await pilot.press("enter")
        await pilot.pause()
        assert app.doc.graph.nodes["metrics"].inputs == {
            "image": Link("noisy", "image"),
            "reference": Link("photos", "image"),
        }
        assert notes(app)[-1] == (
            "Added metrics (metrics); linked image ← noisy.image, reference ← photos.image"
        )


@drive
async def test_change_a_nodes_type_in_place_and_comment_on_it(
    tmp_path: Path, registry: Registry
) -> None:
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("down", "t", *"blur")
        await wait_for(pilot, palette_offers(app, "change to blur"), "the palette")
        await pilot.press("enter")
        await pilot.pause()
        noisy = app.doc.graph.nodes["noisy"]
        assert (noisy.type, noisy.params, noisy.inputs) == (
            "blur",
            {"sigma": 25.0},
            {"image": Link("photos", "image")},
        )
        assert "noisy is now a blur; kept sigma, image; dropped seed" in notes(app)[-1]
        assert ("· noisy", "blur") in node_rows(app)

        await pilot.press("number_sign", *"less | blur", "enter")
        await pilot.pause()
        comment = str(app.screen.query_one("#inspector-comment").render())
        assert comment == "# less\n# blur"
        await pilot.press("ctrl+s")
        await pilot.pause()
    text = (tmp_path / "graph.toml").read_text()
    assert '# less\n# blur\n[nodes.noisy]\ntype = "blur"\nparams = { sigma = 25.0 }\n' in text


@drive
async def test_the_chosen_theme_is_remembered(tmp_path: Path, registry: Registry) -> None:
    settings = tmp_path / "config" / "nodeflow" / "tui.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text('# chosen in the editor\ntheme = "textual-light"\n')
    app = make_app(tmp_path, registry)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.theme == "textual-light"
        app.theme = "nord"
        await pilot.pause()
    assert settings.read_text() == '# chosen in the editor\ntheme = "nord"\n'
