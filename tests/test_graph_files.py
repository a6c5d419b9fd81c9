"""Graph files: TOML and JSON, saving and reloading, `--set` overrides, relative paths."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nodeflow.cli import main
from nodeflow.engine.cache import Cache
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph, GraphFileError, Link, NodeSpec, parse_literal
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

PLUGINS = Path(__file__).parent / "plugins_for_tests"

GRAPH_TOML = """version = 1

[nodes.src]
type = "toy.numbers"
params = { count = 2, batch_size = 2, fill = 0.5 }

[nodes.half]
type = "toy.scale"
params = { factor = 2.0, mode = "divide" }
inputs = { image = "src.image" }

[nodes.sum]
type = "toy.total"
inputs = { image = "half.image" }

[ui]
collapsed = ["half"]

[ui.positions]
src = [0, 0]
half = [20, 4]
sum = [40, 8]
"""

GRAPH_DICT: dict[str, Any] = {
    "version": 1,
    "nodes": {
        "src": {"type": "toy.numbers", "params": {"count": 2, "batch_size": 2, "fill": 0.5}},
        "half": {
            "type": "toy.scale",
            "params": {"factor": 2.0, "mode": "divide"},
            "inputs": {"image": "src.image"},
        },
        "sum": {"type": "toy.total", "inputs": {"image": "half.image"}},
    },
    "ui": {"collapsed": ["half"], "positions": {"src": [0, 0], "half": [20, 4], "sum": [40, 8]}},
}

# 2 batches x 2 items x 16 values of 0.5, halved
SUM = 2 * 2 * 16 * 0.5 / 2


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The registry with the test-only plugins (`toy.*`, `toypkg.*`) loaded."""
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(PLUGINS))
    reset_registry()
    yield load_registry()
    reset_registry()


def same_graph(a: Graph, b: Graph) -> bool:
    return a.nodes == b.nodes and a.ui == b.ui


def run_value(graph: Graph, registry: Registry, node: str = "sum") -> float:
    result = Executor(registry, Cache(enabled=False), device="cpu").run(graph)
    assert result.ok, result.failed
    return result.outputs[node]["value"]


# -- reading ---------------------------------------------------------------------------------


def test_toml_and_json_with_the_same_structure_load_to_equal_graphs(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(GRAPH_TOML)
    (tmp_path / "g.json").write_text(json.dumps(GRAPH_DICT, indent=2))
    from_toml = Graph.load(tmp_path / "g.toml")
    from_json = Graph.load(tmp_path / "g.json")
    assert same_graph(from_toml, from_json)
    assert from_toml.to_dict() == from_json.to_dict() == GRAPH_DICT
    assert from_toml.nodes["half"] == NodeSpec(
        "half", "toy.scale", {"factor": 2.0, "mode": "divide"}, {"image": Link("src", "image")}
    )


def test_the_format_follows_the_suffix_or_the_fmt_argument(tmp_path: Path) -> None:
    text = json.dumps(GRAPH_DICT)
    assert same_graph(Graph.parse(text, fmt="json"), Graph.parse(GRAPH_TOML))
    with pytest.raises(GraphFileError, match="not valid TOML"):
        Graph.parse(text, path=tmp_path / "g.toml")
    with pytest.raises(GraphFileError, match="not valid JSON"):
        Graph.parse(GRAPH_TOML, path=tmp_path / "g.JSON")


def test_both_formats_run_to_the_same_result(toy: Registry, tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(GRAPH_TOML)
    (tmp_path / "g.json").write_text(json.dumps(GRAPH_DICT))
    assert run_value(Graph.load(tmp_path / "g.toml"), toy) == SUM
    assert run_value(Graph.load(tmp_path / "g.json"), toy) == SUM


def test_a_file_that_is_not_utf8_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_bytes(b"version = 1\n# \xff\xfe\n")
    with pytest.raises(GraphFileError, match="cannot read the file"):
        Graph.load(path)


# -- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["g.toml", "g.json"])
@pytest.mark.parametrize("second", ["copy.toml", "copy.json"])
def test_save_and_load_round_trip(first: str, second: str, tmp_path: Path) -> None:
    original = Graph.from_dict(GRAPH_DICT)
    saved = original.save(tmp_path / first)
    reread = Graph.load(saved)
    assert same_graph(reread, original)
    assert reread.ui == GRAPH_DICT["ui"]
    again = Graph.load(reread.save(tmp_path / second))
    assert same_graph(again, original)
    assert again.path == tmp_path / second


def test_save_writes_json_to_a_json_file_and_toml_otherwise(tmp_path: Path) -> None:
    graph = Graph.parse(GRAPH_TOML)
    graph.save(tmp_path / "g.json")
    graph.save(tmp_path / "g.toml")
    assert json.loads((tmp_path / "g.json").read_text()) == GRAPH_DICT
    assert tomllib.loads((tmp_path / "g.toml").read_text()) == GRAPH_DICT


def test_save_without_a_path_needs_one() -> None:
    with pytest.raises(ValueError, match="give a path"):
        Graph.parse(GRAPH_TOML).save()


def test_save_to_its_own_file_again(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text(GRAPH_TOML)
    graph = Graph.load(path)
    graph.nodes["half"].params["factor"] = 4.0
    assert graph.save() == path
    assert Graph.load(path).nodes["half"].params == {"factor": 4.0, "mode": "divide"}
    assert [p.name for p in tmp_path.iterdir()] == ["g.toml"]


def test_to_toml_reads_like_a_hand_written_file() -> None:
    text = Graph.from_dict(GRAPH_DICT).to_toml()
    lines = text.splitlines()
    assert lines[0] == "version = 1"
    for node in ("src", "half", "sum"):
        assert lines.count(f"[nodes.{node}]") == 1
    assert 'type = "toy.scale"' in lines
    assert "params = { count = 2, batch_size = 2, fill = 0.5 }" in lines
    assert 'params = { factor = 2.0, mode = "divide" }' in lines
    assert 'inputs = { image = "half.image" }' in lines
    assert not any(".params]" in line or ".inputs]" in line for line in lines)
    # nodes keep their order, and the editor's table comes last
    headers = [line for line in lines if line.startswith("[")]
    assert headers[:3] == ["[nodes.src]", "[nodes.half]", "[nodes.sum]"]
    assert all(h.startswith("[ui") for h in headers[3:]) and len(headers) > 3
    assert tomllib.loads(text) == GRAPH_DICT


def test_a_graph_without_ui_writes_no_ui_table() -> None:
    document = {k: v for k, v in GRAPH_DICT.items() if k != "ui"}
    graph = Graph.from_dict(document)
    assert "[ui" not in graph.to_toml()
    assert "ui" not in json.loads(graph.to_json())


def test_a_json_graph_with_a_null_param_saves_as_toml(tmp_path: Path) -> None:
    document = {"version": 1, "nodes": {"src": {"type": "toy.numbers", "params": {"fill": None}}}}
    graph = Graph.from_dict(document)
    reread = Graph.load(graph.save(tmp_path / "g.toml"))
    assert reread.nodes["src"].params.get("fill") is None


def test_a_param_name_outside_the_basic_plane_round_trips(tmp_path: Path) -> None:
    document = {"version": 1, "nodes": {"src": {"type": "toy.numbers", "params": {"🎨": 1}}}}
    reread = Graph.load(Graph.from_dict(document).save(tmp_path / "g.toml"))
    assert reread.nodes["src"].params == {"🎨": 1}


# -- --set overrides -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("3", 3),
        (" 7 ", 7),
        ("-2", -2),
        ("2.5", 2.5),
        ("1e-3", 0.001),
        ("true", True),
        ("false", False),
        ("[64, 32]", [64, 32]),
        ('["a", "b"]', ["a", "b"]),
        ("divide", "divide"),
        ('"quoted text"', "quoted text"),
        ("photos/*.jpg", "photos/*.jpg"),
        ("two words", "two words"),
        ("[1, 2", "[1, 2"),
    ],
)
def test_parse_literal_reads_toml_literals_and_falls_back_to_bare_text(
    raw: str, value: Any
) -> None:
    parsed = parse_literal(raw)
    assert parsed == value
    assert type(parsed) is type(value)


def test_apply_overrides_sets_params_as_toml_literals() -> None:
    graph = Graph.parse(GRAPH_TOML)
    graph.apply_overrides(
        ["src.count=5", "src.fill=0.25", "half.mode=multiply", "sum.flags=[1, 2]", "sum.on=true"]
    )
    assert graph.nodes["src"].params == {"count": 5, "batch_size": 2, "fill": 0.25}
    assert type(graph.nodes["src"].params["count"]) is int
    assert graph.nodes["half"].params["mode"] == "multiply"
    assert graph.nodes["sum"].params == {"flags": [1, 2], "on": True}


def test_overrides_change_what_runs(toy: Registry) -> None:
    graph = Graph.parse(GRAPH_TOML)
    graph.apply_overrides(["src.count=5", "half.mode=multiply", "half.factor=3"])
    assert run_value(graph, toy) == 5 * 2 * 16 * 0.5 * 3


def test_bad_override_forms_are_all_reported_at_once() -> None:
    graph = Graph.parse(GRAPH_TOML)
    bad = ["nodot=1", "src.count", "src.=3", "=3", "ghost.count=3"]
    with pytest.raises(GraphFileError) as caught:
        graph.apply_overrides(["src.count=4", *bad])
    messages = [p.message for p in caught.value.problems]
    assert len(messages) == len(bad)
    for assignment, message in zip(bad, messages, strict=True):
        assert f"--set {assignment!r}" in message
    assert "write it as node.param=value" in messages[0]
    assert "the graph has no node 'ghost'" in messages[-1]


def test_an_override_is_validated_like_the_file(toy: Registry) -> None:
    graph = Graph.parse(GRAPH_TOML)
    graph.apply_overrides(["half.factr=3", "src.count=abc"])
    problems = {(p.node, p.field): p.message for p in graph.validate(toy)}
    assert "did you mean 'factor'" in problems[("half", "param 'factr'")]
    assert "expected a whole number, got 'abc'" in problems[("src", "param 'count'")]


def test_cli_run_with_set(toy: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "g.toml"
    path.write_text(GRAPH_TOML)
    args = ["run", str(path), "--set", "src.count=3", "--set", "half.mode=multiply"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"sum.value = {3 * 2 * 16 * 0.5 * 2:.4f}" in result.stdout
    assert path.read_text() == GRAPH_TOML


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("src", "write it as node.param=value"),
        ("ghost.count=2", "the graph has no node 'ghost'"),
        ("src.cuont=2", "did you mean 'count'?"),
        ("src.count=lots", "expected a whole number, got 'lots'"),
        ("half.factor=11", "11 is above the maximum 10"),
    ],
)
def test_cli_run_with_a_bad_set_exits_2(
    assignment: str, message: str, toy: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "g.toml"
    path.write_text(GRAPH_TOML)
    result = CliRunner().invoke(main, ["run", str(path), "--set", assignment])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


# -- relative paths --------------------------------------------------------------------------

READER = """version = 1

[nodes.reader]
type = "toy.read_number"
params = { file = "data/number.txt" }

[nodes.out]
type = "toy.add"
inputs = { a = "reader.value" }
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A graph in project/ reading project/data/number.txt, run from another folder."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "number.txt").write_text("4.5")
    (folder / "data" / "other.txt").write_text("-1.5")
    (folder / "g.toml").write_text(READER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return folder


def test_relative_paths_resolve_against_the_graph_files_folder(
    toy: Registry, project: Path
) -> None:
    graph = Graph.load(project / "g.toml")
    assert graph.base_dir == project
    assert run_value(graph, toy, "out") == 4.5


def test_a_relative_path_given_with_set_resolves_there_too(toy: Registry, project: Path) -> None:
    graph = Graph.load(project / "g.toml")
    graph.apply_overrides(["reader.file=data/other.txt"])
    assert run_value(graph, toy, "out") == -1.5


def test_an_absolute_path_stays_as_it_is(toy: Registry, project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("8")
    graph = Graph.load(project / "g.toml")
    graph.apply_overrides([f'reader.file="{outside.as_posix()}"'])
    assert run_value(graph, toy, "out") == 8.0


def test_a_graph_without_a_file_resolves_against_the_working_folder(
    toy: Registry, project: Path
) -> None:
    (Path.cwd() / "data").mkdir()
    (Path.cwd() / "data" / "number.txt").write_text("2.0")
    graph = Graph.parse(READER)
    assert graph.base_dir == Path.cwd()
    assert run_value(graph, toy, "out") == 2.0


def test_cli_run_resolves_paths_against_the_graph_file(
    toy: Registry, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(main, ["run", str(project / "g.toml")])
    assert result.exit_code == 0, result.output
    assert "out.value = 4.5000" in result.stdout
