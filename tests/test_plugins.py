"""Plugins: folders and packages, entry points, namespacing, broken and clashing plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeflow.cli import main
from nodeflow.engine.cache import Cache
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph
from nodeflow.node import Output, node
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import PluginRecord, RegistrationError, Registry
from nodeflow.types import FLOAT

PLUGINS = Path(__file__).parent / "plugins_for_tests"

CONSTANT_PLUGIN = '''
from nodeflow.node import Float, Output, node
from nodeflow.plugins import hookimpl
from nodeflow.types import FLOAT


@node("{name}", outputs={{"value": Output(FLOAT)}}, params={{"value": Float({value})}})
def constant(*, value):
    """Give a fixed number."""
    return value


@hookimpl
def register_nodes(register):
    register(constant)
'''

TOY_GRAPH = """version = 1

[nodes.src]
type = "toy.numbers"
params = { count = 2, batch_size = 1, fill = 1.0 }

[nodes.sum]
type = "toy.total"
inputs = { image = "src.image" }
"""


def write_plugin(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def use_plugin_path(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> Registry:
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", os.pathsep.join(str(f) for f in folders))
    reset_registry()
    return load_registry()


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test loads plugins anew, and leaves no registry behind; rich tables stay wide."""
    monkeypatch.setenv("COLUMNS", "250")
    reset_registry()
    yield
    reset_registry()


def run_sum(registry: Registry) -> float:
    result = Executor(registry, Cache(enabled=False), device="cpu").run(Graph.parse(TOY_GRAPH))
    assert result.ok, result.failed
    return result.outputs["sum"]["value"]


# -- plugin folders --------------------------------------------------------------------------


def test_a_module_file_and_a_package_folder_load_with_namespaced_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = use_plugin_path(monkeypatch, PLUGINS)
    toy, package = registry.plugins["toy"], registry.plugins["toypkg"]
    assert toy.errors == [] and package.errors == []
    assert toy.source == f"file {PLUGINS / 'toy.py'}"
    assert package.source == f"file {PLUGINS / 'toypkg'}"
    assert {"toy.numbers", "toy.scale", "toy.total"} <= set(toy.nodes)
    assert all(type_id.startswith("toy.") for type_id in toy.nodes)
    assert package.nodes == ["toypkg.constant"]
    assert registry.nodes["toy.scale"].plugin == "toy"
    assert registry.nodes["toypkg.constant"].id == "toypkg.constant"
    assert "scale" not in registry.nodes and "constant" not in registry.nodes
    assert not toy.builtin


def test_plugin_nodes_run_in_a_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = use_plugin_path(monkeypatch, PLUGINS)
    assert run_sum(registry) == 2 * 16
    graph = Graph.parse(
        'version = 1\n[nodes.c]\ntype = "toypkg.constant"\nparams = { value = 2.5 }\n'
        '[nodes.out]\ntype = "toy.add"\ninputs = { a = "c.value", b = "c.value" }\n'
    )
    result = Executor(registry, Cache(enabled=False), device="cpu").run(graph)
    assert result.outputs["out"]["value"] == 5.0


def test_an_already_namespaced_id_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_plugin(tmp_path, "spaced.py", CONSTANT_PLUGIN.format(name="spaced.one", value=1.0))
    registry = use_plugin_path(monkeypatch, tmp_path)
    assert registry.plugins["spaced"].nodes == ["spaced.one"]


def test_files_starting_with_underscore_or_dot_are_not_plugins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_plugin(tmp_path, "_helper.py", "raise RuntimeError('must not be imported')\n")
    write_plugin(tmp_path, ".hidden.py", "raise RuntimeError('must not be imported')\n")
    write_plugin(tmp_path, "notes.txt", "not python\n")
    write_plugin(tmp_path, "real.py", CONSTANT_PLUGIN.format(name="one", value=1.0))
    registry = use_plugin_path(monkeypatch, tmp_path)
    local = [r.name for r in registry.plugins.values() if r.source.startswith("file ")]
    assert local == ["real"]


def test_a_plugin_path_that_is_not_a_folder_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    registry = use_plugin_path(monkeypatch, tmp_path / "missing", PLUGINS)
    record = registry.plugins["missing"]
    assert record.errors == [
        f"NODEFLOW_PLUGIN_PATH names {tmp_path / 'missing'}, which is not a folder"
    ]
    assert run_sum(registry) == 32


def test_a_plugin_may_register_types_and_architectures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_plugin(
        tmp_path,
        "extras.py",
        """
        from nodeflow.plugins import hookimpl
        from nodeflow.registry import Architecture
        from nodeflow.types import SocketType

        @hookimpl
        def register_types(register):
            register(SocketType("Histogram", "counts per bin"))

        @hookimpl
        def register_architectures(register):
            register(Architecture("tiny", detect=lambda sd: "w" in sd, build=lambda sd, meta: None))
        """,
    )
    registry = use_plugin_path(monkeypatch, tmp_path)
    record = registry.plugins["extras"]
    assert record.errors == []
    assert record.types == ["Histogram"] and "Histogram" in registry.types
    assert record.architectures == ["extras.tiny"]
    assert registry.architectures["extras.tiny"].plugin == "extras"
    assert registry.architectures["extras.tiny"].detect({"w": 1})


# -- broken plugins --------------------------------------------------------------------------


@pytest.fixture
def broken_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "broken_plugins"
    write_plugin(folder, "broken.py", "import math\n\nraise RuntimeError('broken on purpose')\n")
    write_plugin(
        folder,
        "halfway.py",
        """
        from nodeflow.node import Output, node
        from nodeflow.plugins import hookimpl
        from nodeflow.types import FLOAT

        @node("fine", outputs={"value": Output(FLOAT)})
        def fine():
            "A node registered before the hook fails."
            return 1.0

        @hookimpl
        def register_nodes(register):
            register(fine)
            raise KeyError("no more nodes")
        """,
    )
    return folder


def test_a_plugin_that_fails_to_import_is_recorded_and_the_rest_work(
    monkeypatch: pytest.MonkeyPatch, broken_folder: Path
) -> None:
    registry = use_plugin_path(monkeypatch, broken_folder, PLUGINS)
    record = registry.plugins["broken"]
    assert record.nodes == []
    assert record.errors == ["failed to load: RuntimeError: broken on purpose (broken.py:3)"]
    assert "nodeflow_local_plugins.broken" not in sys.modules
    assert registry.plugins["toy"].errors == []
    assert run_sum(registry) == 32


def test_a_plugin_whose_hook_raises_registers_nothing(
    monkeypatch: pytest.MonkeyPatch, broken_folder: Path
) -> None:
    registry = use_plugin_path(monkeypatch, broken_folder)
    record = registry.plugins["halfway"]
    assert record.nodes == []
    assert "halfway.fine" not in registry.nodes
    assert len(record.errors) == 1
    assert record.errors[0].startswith("register_nodes failed: KeyError: 'no more nodes'")


def test_cli_plugins_lists_broken_plugins_with_their_errors(
    monkeypatch: pytest.MonkeyPatch, broken_folder: Path
) -> None:
    use_plugin_path(monkeypatch, broken_folder, PLUGINS)
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "RuntimeError: broken on purpose" in rows["broken"]
    assert "register_nodes failed" in rows["halfway"]
    assert "ok" in rows["toy"] and "9 nodes" in rows["toy"]

    listed = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).stdout)
    by_name = {p["name"]: p for p in listed}
    assert by_name["broken"]["errors"] == [
        "failed to load: RuntimeError: broken on purpose (broken.py:3)"
    ]
    assert by_name["toy"]["errors"] == [] and "toy.scale" in by_name["toy"]["nodes"]
    assert by_name["nodeflow.nodes.builtin_types"]["builtin"] is True


def test_cli_runs_a_graph_while_another_plugin_is_broken(
    monkeypatch: pytest.MonkeyPatch, broken_folder: Path, tmp_path: Path
) -> None:
    use_plugin_path(monkeypatch, broken_folder, PLUGINS)
    path = tmp_path / "g.toml"
    path.write_text(TOY_GRAPH)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "sum.value = 32.0000" in result.stdout


# -- clashes ---------------------------------------------------------------------------------


def test_a_second_registration_of_an_id_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_plugin(
        tmp_path,
        "dupe.py",
        """
        from nodeflow.node import Output, node
        from nodeflow.plugins import hookimpl
        from nodeflow.types import FLOAT

        def make(doc):
            def one():
                return 1.0
            one.__doc__ = doc
            return node("one", outputs={"value": Output(FLOAT)})(one)

        @hookimpl
        def register_nodes(register):
            register(make("The first one."))
            register(make("The second one."))
        """,
    )
    registry = use_plugin_path(monkeypatch, tmp_path)
    record = registry.plugins["dupe"]
    assert record.nodes == ["dupe.one"]
    assert registry.nodes["dupe.one"].doc == "The first one."
    assert record.errors == [
        "node id 'dupe.one' is already registered by plugin 'dupe'; "
        "plugin 'dupe' cannot register it again"
    ]


def test_a_plugin_cannot_register_under_another_plugins_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_plugin(tmp_path, "intruder.py", CONSTANT_PLUGIN.format(name="toy.scale", value=1.0))
    registry = use_plugin_path(monkeypatch, PLUGINS, tmp_path)
    assert registry.nodes["toy.scale"].plugin == "toy"
    record = registry.plugins["intruder"]
    assert record.nodes == []
    assert record.errors == [
        "node 'toy.scale': plugin 'intruder' may only register ids under 'intruder.'"
    ]


def test_two_plugins_with_the_same_name_are_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = write_plugin(tmp_path / "one", "twin.py", CONSTANT_PLUGIN.format(name="n", value=1.0))
    second = write_plugin(tmp_path / "two", "twin.py", CONSTANT_PLUGIN.format(name="n", value=2.0))
    registry = use_plugin_path(monkeypatch, tmp_path / "one", tmp_path / "two")
    assert registry.plugins["twin"].source == f"file {first}"
    assert registry.plugins["twin"].errors == []
    assert registry.nodes["twin.n"].params["value"].default == 1.0
    refused = next(r for r in registry.plugins.values() if r.source == f"file {second}")
    assert refused.nodes == []
    assert refused.errors == [f"a plugin named 'twin' is already loaded from file {first}"]

    listed = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).stdout)
    twins = [p for p in listed if p["name"] == "twin"]
    assert [p["source"] for p in twins] == [f"file {first}", f"file {second}"]


def test_a_socket_type_clash_names_both_plugins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_plugin(
        tmp_path,
        "retype.py",
        """
        from nodeflow.plugins import hookimpl
        from nodeflow.types import SocketType

        @hookimpl
        def register_types(register):
            register(SocketType("Image", "not the real image type"))
        """,
    )
    registry = use_plugin_path(monkeypatch, tmp_path)
    assert registry.types["Image"].doc != "not the real image type"
    assert registry.plugins["retype"].errors == [
        "type 'Image' is already registered by plugin 'nodeflow.nodes.builtin_types'; "
        "plugin 'retype' cannot register it again"
    ]


def test_the_registry_refuses_a_clash_between_built_ins_naming_both() -> None:
    @node("clash", outputs={"value": Output(FLOAT)})
    def clash() -> float:
        """A node two modules both claim."""
        return 0.0

    registry = Registry()
    first = PluginRecord("pkg.first", "built in", builtin=True)
    second = PluginRecord("pkg.second", "built in", builtin=True)
    registry.add_node(first, clash)
    with pytest.raises(RegistrationError) as caught:
        registry.add_node(second, clash)
    assert str(caught.value) == (
        "node id 'clash' is already registered by plugin 'pkg.first'; "
        "plugin 'pkg.second' cannot register it again"
    )
    assert registry.nodes["clash"].plugin == "pkg.first"


def test_register_takes_only_declared_nodes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_plugin(
        tmp_path,
        "sloppy.py",
        """
        from nodeflow.plugins import hookimpl

        def not_a_node():
            return 1

        @hookimpl
        def register_nodes(register):
            register(not_a_node)
        """,
    )
    registry = use_plugin_path(monkeypatch, tmp_path)
    assert registry.plugins["sloppy"].errors == [
        "register() takes a node declared with @node, got function"
    ]


# -- disabling -------------------------------------------------------------------------------


def test_disable_plugins_skips_the_named_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEFLOW_DISABLE_PLUGINS", " toypkg , nothing-such")
    registry = use_plugin_path(monkeypatch, PLUGINS)
    assert registry.plugins["toypkg"].disabled
    assert registry.plugins["toypkg"].errors == []
    assert not any(type_id.startswith("toypkg.") for type_id in registry.nodes)
    assert registry.plugins["toy"].errors == []
    assert run_sum(registry) == 32


def test_built_in_plugins_cannot_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEFLOW_DISABLE_PLUGINS", "nodeflow.nodes.builtin_types")
    registry = use_plugin_path(monkeypatch)
    assert "Image" in registry.types


# -- entry points ----------------------------------------------------------------------------


def test_an_entry_point_plugin_is_found_in_a_fresh_process(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_plugin(site, "epdemo_plugin.py", CONSTANT_PLUGIN.format(name="hello", value=4.0))
    info = site / "epdemo_dist-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epdemo-dist\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[nodeflow]\nepdemo = epdemo_plugin\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    nodeflow = Path(sys.executable).with_name("nodeflow")
    commands = {name: [str(nodeflow), name, "--json"] for name in ("nodes", "plugins")}
    running = {
        name: subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for name, command in commands.items()
    }
    outputs = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
        outputs[name] = json.loads(stdout)

    nodes = {n["id"]: n for n in outputs["nodes"]}
    assert nodes["epdemo.hello"]["plugin"] == "epdemo"
    assert nodes["epdemo.hello"]["params"]["value"]["default"] == 4.0
    plugins = {p["name"]: p for p in outputs["plugins"]}
    record = plugins["epdemo"]
    assert record["version"] == "0.3.1"
    assert record["source"] == "entry point epdemo_plugin in epdemo-dist"
    assert record["nodes"] == ["epdemo.hello"] and record["errors"] == []


def test_a_refused_duplicate_does_not_cost_the_plugin_its_other_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "claimer.py").write_text(
        "from nodeflow.api import Architecture, hookimpl, node, Output, IMAGE\n"
        "import torch\n"
        "@node('claimer.make', outputs={'image': Output(IMAGE)})\n"
        "def make():\n"
        "    '''One black image.'''\n"
        "    return torch.zeros(1, 1, 4, 4)\n"
        "@hookimpl\n"
        "def register_nodes(register):\n"
        "    register(make)\n"
        "    register(make)\n"
        "@hookimpl\n"
        "def register_architectures(register):\n"
        "    register(Architecture('tiny', lambda sd: False, lambda sd, meta: None))\n"
    )
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(folder))
    reset_registry()
    registry = load_registry()
    record = registry.plugins["claimer"]
    assert record.nodes == ["claimer.make"]
    assert any("already registered by plugin 'claimer'" in e for e in record.errors)
    assert record.architectures == ["claimer.tiny"]
