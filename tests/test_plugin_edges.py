"""The plugin author's rough edges (issue 16), each through the CLI, the engine or nodeflow.*.

The test plugin `srcnn` (tests/plugins_for_tests/srcnn.py) is written from nodeflow.api
alone: its own architecture trained by the built-in train_unet, a node whose sockets name
their types as text, a path param.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import nodeflow
from nodeflow.api import load_model, new_model, save_model
from nodeflow.cli import main
from nodeflow.engine.events import NodeProgress
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

PLUGINS = Path(__file__).parent / "plugins_for_tests"

BROKEN = "import sharpness_library_that_is_not_installed\n"

WRONG_TYPE = '''
from nodeflow.api import Input, Output, hookimpl, node

@node("blur", inputs={"image": Input("Imagee")}, outputs={"image": Output("Image")})
def blur(image):
    """Blur."""
    return image

@hookimpl
def register_nodes(register):
    register(blur)
'''


def plugins_from(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> Registry:
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", os.pathsep.join(map(str, folders)))
    reset_registry()
    return load_registry()


@pytest.fixture(autouse=True)
def _fresh_registry():
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def authored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The srcnn plugin beside a plugin that fails to import and one naming a wrong type."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(PLUGINS / "srcnn.py", folder / "srcnn.py")
    (folder / "sharp.py").write_text(BROKEN)
    (folder / "wrongtype.py").write_text(WRONG_TYPE)
    return plugins_from(monkeypatch, folder)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "graph.toml"
    path.write_text("version = 1\n" + text)
    return str(path)


# -- path params --------------------------------------------------------------------------


def test_path_params_arrive_as_pathlib_paths_resolved_against_the_graph(
    authored: Registry, tmp_path: Path
) -> None:
    g = nodeflow.Graph(registry=authored, path=tmp_path / "g.toml")
    photos = g.add("sample_images", names="camera", size=16)
    g.add("srcnn.mark", image=photos.image, log="seen.txt")
    assert nodeflow.run(g, cache=False).ok
    assert (tmp_path / "seen.txt").read_text() == "PosixPath True"


# -- a plugin that failed to import -------------------------------------------------------


def test_validate_and_run_name_the_failed_plugin_of_an_unknown_type(
    authored: Registry, tmp_path: Path
) -> None:
    graph = write(tmp_path, '[nodes.s]\ntype = "sharp.unsharp_mask"\n')
    for command in (["validate", graph], ["run", graph]):
        out = CliRunner().invoke(main, command)
        assert out.exit_code == 2
        assert "unknown node type 'sharp.unsharp_mask': its plugin 'sharp'" in out.output
        assert "failed to load: ModuleNotFoundError: No module named" in out.output
        assert "sharpness_library_that_is_not_installed" in out.output


UNDOCUMENTED = """
from nodeflow.api import IMAGE, Input, Output, hookimpl, node


@node("invert", inputs={"image": Input(IMAGE)}, outputs={"image": Output(IMAGE)})
def invert(image):
    return 1 - image


@hookimpl
def register_nodes(register):
    register(invert)
"""


def test_a_node_without_a_docstring_is_named_at_the_plugins_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "plugins"
    (folder / "inkwell").mkdir(parents=True)  # a file plugin, and a package whose module errs
    (folder / "bare.py").write_text(UNDOCUMENTED)
    (folder / "inkwell" / "__init__.py").write_text("from .nodes import register_nodes\n")
    blank = UNDOCUMENTED.replace("    return 1 - image", '    """ """\n    return 1 - image')
    (folder / "inkwell" / "nodes.py").write_text(blank)
    plugins_from(monkeypatch, folder)
    for plugin in ("bare", "inkwell"):
        graph = write(tmp_path, f'[nodes.i]\ntype = "{plugin}.invert"\n')
        out = CliRunner().invoke(main, ["validate", graph])
        assert out.exit_code == 2
        assert "give the function a docstring; it is the node's help" in out.output
        where = "bare.py:5" if plugin == "bare" else "nodes.py:5"  # the line of @node(...)
        assert f"help ({where})" in out.output and "node.py" not in out.output


def test_a_type_of_a_plugin_that_is_not_loaded_says_so(tmp_path: Path) -> None:
    graph = write(tmp_path, '[nodes.s]\ntype = "sharp.unsharp_mask"\n')
    out = CliRunner().invoke(main, ["validate", graph])
    assert "unknown node type 'sharp.unsharp_mask': no plugin 'sharp' is loaded" in out.output
    assert "NODEFLOW_PLUGIN_PATH" in out.output


def test_a_disabled_plugin_is_listed_as_disabled_and_named_for_its_types(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NODEFLOW_DISABLE_PLUGINS", "srcnn")
    monkeypatch.setenv("COLUMNS", "250")
    plugins_from(monkeypatch, PLUGINS)
    listed = CliRunner().invoke(main, ["plugins"])
    line = next(row for row in listed.output.splitlines() if row.startswith(" srcnn "))
    assert "disabled by NODEFLOW_DISABLE_PLUGINS" in line
    graph = write(tmp_path, '[nodes.m]\ntype = "srcnn.mark"\n')
    checked = CliRunner().invoke(main, ["validate", graph])
    assert "its plugin 'srcnn' is disabled by NODEFLOW_DISABLE_PLUGINS" in checked.output


# -- socket types by name ------------------------------------------------------------------


def test_socket_types_named_as_text_resolve_at_registration(authored: Registry) -> None:
    mark = authored.nodes["srcnn.mark"]
    assert mark.inputs["image"].type is authored.types["Image"]
    assert mark.mode == "map"


def test_an_unknown_type_name_is_refused_naming_plugin_file_and_node(authored: Registry) -> None:
    record = authored.plugins["wrongtype"]
    assert record.nodes == []
    [error] = record.errors
    assert error.startswith("plugin 'wrongtype': node 'wrongtype.blur' (wrongtype.py:4)")
    assert "'Imagee', which no plugin registers" in error


def test_a_socket_type_of_the_wrong_kind_fails_at_the_declaration() -> None:
    with pytest.raises(TypeError, match=r"Input\(\) takes a socket type .* got 3"):
        nodeflow.api.Input(3)


# -- nodes are callable --------------------------------------------------------------------


def test_a_decorated_node_is_callable_like_its_function(tmp_path: Path) -> None:
    from nodeflow.nodes.transforms import grayscale

    images = torch.rand(2, 3, 8, 8)
    assert grayscale(images).shape == (2, 1, 8, 8)
    torch.testing.assert_close(grayscale(images), grayscale.fn(images))


# -- training a plugin's architecture -------------------------------------------------------

TRAIN = """
[nodes.photos]
type = "sample_images"
params = { names = "astronaut, coffee", size = 48 }

[nodes.pairs]
type = "pairs"
params = { task = "denoise", sigma = 40.0, crop = 16, crops_per_image = 8 }
inputs = { image = "photos.image" }

[nodes.train]
type = "train_unet"
params = { architecture = "srcnn.net", steps = 40, batch_size = 8, lr = 3e-3, sample_every = 0 }
inputs = { dataset = "pairs.dataset" }
"""


def losses(events: list) -> list[float]:
    return [e.info["loss"] for e in events if isinstance(e, NodeProgress) and "loss" in e.info]


def test_train_unet_trains_a_plugin_architecture_and_it_learns(
    authored: Registry, tmp_path: Path
) -> None:
    events: list = []
    g = nodeflow.load(write(tmp_path, TRAIN))
    result = nodeflow.run(g, cache=False, on_event=events.append)
    assert result.ok, result.failed
    model = result["train"]["model"]
    assert model.info.arch == "srcnn.net" and model.info.task == "denoise"
    seen = losses(events)
    assert len(seen) == 40
    assert sum(seen[-10:]) < 0.75 * sum(seen[:10])  # measured 0.61

    save_model(model, tmp_path / "srcnn.safetensors")
    assert load_model(tmp_path / "srcnn.safetensors").info.arch == "srcnn.net"


def test_train_unet_fine_tunes_a_linked_model_and_leaves_it_as_it_was(
    authored: Registry, tmp_path: Path
) -> None:
    start = new_model("srcnn.net", {"width": 8}, task="denoise")
    save_model(start, tmp_path / "start.safetensors")
    before = {k: v.clone() for k, v in start.net.state_dict().items()}
    g = nodeflow.load(write(tmp_path, TRAIN))
    g.nodes["train"].params.update(architecture="unet", steps=4)
    g.add("load_model", id="start", checkpoint="start.safetensors")
    g.nodes["train"].inputs["model"] = g["start"].model
    result = nodeflow.run(g, cache=False)
    assert result.ok, result.failed
    tuned = result["train"]["model"]
    assert tuned.info.hparams == {"channels": 3, "width": 8}  # its own network, not a U-Net
    given = result["start"]["model"].net.state_dict()
    assert all(torch.equal(given[k], before[k]) for k in before)
    assert any(not torch.equal(tuned.net.state_dict()[k], before[k]) for k in before)


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        ("srcnn.nett", "no architecture 'srcnn.nett' is registered; the registered ones:"),
        ("patchgan", "architecture 'patchgan' builds a discriminator, not an image-to-image"),
    ],
)
def test_train_unet_refuses_an_architecture_it_cannot_train(
    authored: Registry, tmp_path: Path, architecture: str, message: str
) -> None:
    g = nodeflow.load(write(tmp_path, TRAIN))
    g.nodes["train"].params.update(architecture=architecture, steps=1)
    result = nodeflow.run(g, cache=False)
    assert message in result.failed["train"]


# -- the CLI -------------------------------------------------------------------------------


def test_node_ids_with_spaces_are_refused(tmp_path: Path) -> None:
    graph = write(tmp_path, '[nodes."my photos"]\ntype = "sample_images"\n')
    out = CliRunner().invoke(main, ["validate", graph])
    assert out.exit_code == 2
    assert "node 'my photos': a node id starts with a letter or _" in out.output


def test_nodes_piped_keeps_each_node_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    out = CliRunner().invoke(main, ["nodes"]).output
    row = next(line for line in out.splitlines() if line.lstrip().startswith("aligned_pairs "))
    assert row.endswith(
        "Training pairs from side-by-side A|B images, as pix2pix datasets ship them."
    )
    assert len(row) > 80


def test_the_verdict_counts_skipped_nodes_apart_from_failed_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plugins_from(monkeypatch, PLUGINS)
    graph = write(
        tmp_path,
        '[nodes.n]\ntype = "toy.numbers"\n'
        '[nodes.f]\ntype = "toy.fail"\ninputs = { image = "n.image" }\n'
        '[nodes.o]\ntype = "toy.offset"\ninputs = { value = "f.value" }\n'
        '[nodes.t]\ntype = "toy.add"\ninputs = { a = "o.value" }\n',
    )
    out = CliRunner().invoke(main, ["run", graph, "--device", "cpu"])
    assert out.exit_code == 1
    assert "1 node(s) failed: f; 2 skipped after them: o, t" in out.output
