"""The plugin author's path: `nodeflow plugin new`, pip install, discovery in a fresh process,
broken and clashing distributions, NODEFLOW_DISABLE_PLUGINS, the public API and fixtures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import nodeflow.api as api
from nodeflow.cli import main
from nodeflow.plugins import build_registry, reset_registry
from nodeflow.testing import run_graph_text

BIN = Path(sys.executable).parent


def make_dist(site: Path, dist: str, version: str, entry: str, module: str, source: str) -> None:
    """A distribution installed by hand: a module and a dist-info with one entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[nodeflow]\n{entry} = {module}\n")


FORK = '''
from nodeflow.api import IMAGE, Input, Output, hookimpl, node


@node("invert", inputs={"image": Input(IMAGE)}, outputs={"image": Output(IMAGE)})
def invert(image):
    """A second plugin's idea of demo.invert."""
    return image


@hookimpl
def register_nodes(register):
    register(invert)
'''


def test_a_generated_plugin_installs_passes_its_test_and_is_found_beside_broken_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "nodeflow-demo"
    made = CliRunner().invoke(main, ["plugin", "new", "demo", "--dir", str(plugin)])
    assert made.exit_code == 0, made.output
    site, later_site = tmp_path / "site", tmp_path / "later_site"
    pip = [str(BIN / "pip"), "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(site), str(plugin)], check=True, capture_output=True)
    assert (site / "nodeflow_demo" / "__init__.py").is_file()
    make_dist(site, "needs-missing", "1.0", "needsmissing", "needs_missing",
              "import nodeflow_no_such_dependency\n")  # fmt: skip
    make_dist(later_site, "demo-fork", "2.0", "demo", "demo_fork", FORK)

    this_nodeflow = Path(api.__file__).parents[1]  # the checkout under test, not another
    paths = [str(site), str(later_site), str(this_nodeflow)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    commands = {
        "pytest": ([str(BIN / "pytest"), "-q", "-p", "no:cacheprovider"], plugin),
        "nodes": ([str(BIN / "nodeflow"), "nodes", "--json"], tmp_path),
        "plugins": ([str(BIN / "nodeflow"), "plugins", "--json"], tmp_path),
    }
    running = {
        name: subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (command, cwd) in commands.items()
    }
    out = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}:\n{stdout}\n{stderr}"
        out[name] = stdout
    assert "5 passed" in out["pytest"]

    nodes = {n["id"]: n for n in json.loads(out["nodes"])}
    assert nodes["demo.invert"]["plugin"] == "demo"
    assert nodes["demo.invert"]["params"]["amount"]["default"] == 1.0
    assert "load_images" in nodes and "pca_fit" in nodes

    records = json.loads(out["plugins"])
    demo = [r for r in records if r["name"] == "demo"]
    assert [r["source"] for r in demo] == [
        "entry point nodeflow_demo in nodeflow-demo",
        "entry point demo_fork in demo-fork",
    ]
    assert (demo[0]["version"], demo[0]["errors"]) == ("0.1.0", [])
    assert (demo[0]["nodes"], demo[0]["architectures"]) == (["demo.invert"], ["demo.tiny"])
    assert demo[1]["nodes"] == []
    assert demo[1]["errors"] == [
        "a plugin named 'demo' is already loaded from entry point nodeflow_demo in nodeflow-demo"
    ]
    missing = next(r for r in records if r["name"] == "needsmissing")
    assert missing["nodes"] == [] and missing["version"] == "1.0"
    assert missing["errors"] == [
        "failed to load: ModuleNotFoundError: No module named 'nodeflow_no_such_dependency' "
        "(needs_missing.py:1)"
    ]
    assert all(r["errors"] == [] for r in records if r["builtin"])

    # The same distributions, seen in this process with two of them disabled by name.
    monkeypatch.syspath_prepend(str(later_site))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("NODEFLOW_DISABLE_PLUGINS", "demo, needsmissing")
    registry = build_registry()
    assert registry.plugins["demo"].disabled and registry.plugins["needsmissing"].disabled
    assert registry.plugins["needsmissing"].errors == []  # disabled: not even imported
    assert not any(node_id.startswith("demo.") for node_id in registry.nodes)
    assert "nodeflow_demo" not in sys.modules and "load_images" in registry.nodes


def test_plugin_new_writes_nodeflow_name_by_default_and_refuses_bad_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(main, ["plugin", "new", "sketch_tools"])
    assert made.exit_code == 0, made.output
    folder = tmp_path / "nodeflow-sketch-tools"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "README.md",
        "nodeflow_sketch_tools/__init__.py",
        "pyproject.toml",
        "tests/conftest.py",
        "tests/test_sketch_tools.py",
    ]
    pyproject = (folder / "pyproject.toml").read_text()
    assert '[project.entry-points.nodeflow]\nsketch_tools = "nodeflow_sketch_tools"' in pyproject
    assert (
        'ARCH_ID = "sketch_tools.tiny"'
        in (folder / "nodeflow_sketch_tools/__init__.py").read_text()
    )

    again = CliRunner().invoke(main, ["plugin", "new", "sketch_tools"])
    assert again.exit_code == 2
    assert "already exists and is not empty" in again.output
    for bad in ("Sketch", "2d_tools", "sketch-tools", "class"):
        refused = CliRunner().invoke(main, ["plugin", "new", bad, "--dir", str(tmp_path / bad)])
        assert refused.exit_code == 2, bad
        assert "cannot name a plugin" in refused.output
        assert not (tmp_path / bad).exists()


def test_the_api_module_exports_everything_it_lists() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None, name
        assert name in api.__doc__, f"{name} is exported but not listed as stable"
    from nodeflow.images import read_image
    from nodeflow.models.inference import match_channels

    assert api.read_image is read_image and api.match_channels is match_channels
    with pytest.raises(AttributeError, match="has no attribute 'engine_internals'"):
        _ = api.engine_internals


DOCS = Path(__file__).resolve().parents[1] / "docs"

INKWELL = '''
from nodeflow.api import IMAGE, Input, Output, hookimpl, node


@node("invert", inputs={"image": Input(IMAGE)}, outputs={"image": Output(IMAGE)})
def invert(image):
    """The negative of the images."""
    return 1 - image


@hookimpl
def register_nodes(register):
    register(invert)
'''

FOLDER_PLUGIN_TEST = '''
import torch

NEGATIVE = """version = 1
[nodes.photos]
type = "sample_images"
params = { names = "camera", size = 16 }
[nodes.negative]
type = "inkwell.invert"
inputs = { image = "photos.image" }
"""


def test_the_node_is_reached_through_the_registry(nodeflow_registry):
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(nodeflow_registry.nodes["inkwell.invert"](x), 1 - x)


def test_the_node_runs_in_a_graph(run_graph):
    result, _events = run_graph(NEGATIVE, targets=["photos", "negative"])
    assert result.ok, result.failed
    photos = torch.cat(list(result.outputs["photos"]["image"].tensors()))
    negative = torch.cat(list(result.outputs["negative"]["image"].tensors()))
    torch.testing.assert_close(negative, 1 - photos)
'''


def test_a_folder_plugin_is_tested_with_the_conftest_the_docs_give(tmp_path: Path) -> None:
    docs = (DOCS / "plugins.md").read_text()
    conftest = re.search(r"```python\n(# tests/conftest.py\n.*?)```", docs, re.S)
    assert conftest, "docs/plugins.md shows a folder plugin's tests/conftest.py"
    project = tmp_path / "inkwell"
    (project / "plugins").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "plugins" / "inkwell.py").write_text(INKWELL)
    (project / "tests" / "conftest.py").write_text(conftest.group(1))
    (project / "tests" / "test_inkwell.py").write_text(FOLDER_PLUGIN_TEST)
    env = {k: v for k, v in os.environ.items() if k != "NODEFLOW_PLUGIN_PATH"}
    env["PYTHONPATH"] = str(Path(api.__file__).parents[1])  # the checkout under test
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "2 passed" in ran.stdout, ran.stdout + ran.stderr


def test_the_testing_helper_names_broken_plugins_when_a_node_type_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "shaky.py").write_text("import nodeflow_no_such_dependency\n")
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(plugins))
    reset_registry()
    text = 'version = 1\n[nodes.a]\ntype = "shaky.wobble"\n'
    with pytest.raises(AssertionError) as caught:
        run_graph_text(text, tmp_path)
    message = str(caught.value)
    assert "unknown node type 'shaky.wobble'" in message
    assert "plugin 'shaky'" in message
    assert "No module named 'nodeflow_no_such_dependency'" in message
    reset_registry()
