"""Graph validation: every kind of problem, each naming its node, field and line, all at once."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodeflow.cli import main
from nodeflow.graph import Graph, GraphFileError, Problem
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

PLUGINS = Path(__file__).parent / "plugins_for_tests"

SOURCE = """version = 1

[nodes.src]
type = "toy.numbers"
params = { count = 3, seed = 1 }
"""


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The registry with the test-only plugins (`toy.*`, `toypkg.*`) loaded."""
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(PLUGINS))
    reset_registry()
    yield load_registry()
    reset_registry()


def line_of(text: str, snippet: str) -> int:
    """The 1-based line of the one line of `text` holding `snippet`."""
    found = [i + 1 for i, line in enumerate(text.splitlines()) if snippet in line]
    assert len(found) == 1, f"{snippet!r} is on lines {found}"
    return found[0]


def problems_of(text: str, registry: Registry) -> list[Problem]:
    return Graph.parse(text).validate(registry)


def parse_problems(text: str) -> list[Problem]:
    with pytest.raises(GraphFileError) as caught:
        Graph.parse(text)
    return caught.value.problems


# -- each kind on its own ------------------------------------------------------------------


NODE_CASES = {
    "unknown type, close names suggested": (
        '[nodes.x]\ntype = "toy.scal"\ninputs = { image = "src.image" }\n',
        "type",
        ["unknown node type 'toy.scal'", "did you mean", "'toy.scale'"],
    ),
    "unknown bare type, plugin id suggested": (
        '[nodes.x]\ntype = "scale"\ninputs = { image = "src.image" }\n',
        "type",
        ["unknown node type 'scale'", "'toy.scale'"],
    ),
    "unknown param": (
        '[nodes.x]\ntype = "toy.scale"\nparams = { factr = 2.0 }\ninputs = { image = "src.image" }\n',
        "param 'factr'",
        ["unknown param", "did you mean 'factor'?", "factor, mode, log"],
    ),
    "missing required param": (
        '[nodes.x]\ntype = "toy.read_number"\n',
        "param 'file'",
        ["missing required param", "path"],
    ),
    "wrong value type": (
        '[nodes.x]\ntype = "toy.scale"\nparams = { factor = "big" }\ninputs = { image = "src.image" }\n',
        "param 'factor'",
        ["expected a number", "'big'"],
    ),
    "bool is not a whole number": (
        '[nodes.x]\ntype = "toy.numbers"\nparams = { count = true }\n',
        "param 'count'",
        ["expected a whole number", "True"],
    ),
    "above the maximum": (
        '[nodes.x]\ntype = "toy.scale"\nparams = { factor = 20.0 }\ninputs = { image = "src.image" }\n',
        "param 'factor'",
        ["20.0 is above the maximum 10"],
    ),
    "below the minimum": (
        '[nodes.x]\ntype = "toy.numbers"\nparams = { count = 0 }\n',
        "param 'count'",
        ["0 is below the minimum 1"],
    ),
    "not among the choices": (
        '[nodes.x]\ntype = "toy.scale"\nparams = { mode = "add" }\ninputs = { image = "src.image" }\n',
        "param 'mode'",
        ["'add' is not one of multiply, divide"],
    ),
    "missing required input": (
        '[nodes.x]\ntype = "toy.scale"\n',
        "input 'image'",
        ["missing required input (Image)", "inputs = { image ="],
    ),
    "unknown input name": (
        '[nodes.x]\ntype = "toy.scale"\ninputs = { image = "src.image", img = "src.image" }\n',
        "input 'img'",
        ["unknown input", "did you mean 'image'?"],
    ),
    "link to a missing node": (
        '[nodes.x]\ntype = "toy.scale"\ninputs = { image = "sorc.image" }\n',
        "input 'image'",
        ["links to 'sorc.image'", "there is no node 'sorc'", "did you mean 'src'?"],
    ),
    "link to a missing output": (
        '[nodes.x]\ntype = "toy.scale"\ninputs = { image = "src.picture" }\n',
        "input 'image'",
        ["'toy.numbers' has no output 'picture'", "(its outputs: image)"],
    ),
    "type mismatch across a link": (
        '[nodes.t]\ntype = "toy.total"\ninputs = { image = "src.image" }\n\n'
        '[nodes.x]\ntype = "toy.scale"\ninputs = { image = "t.value" }\n',
        "input 'image'",
        ["type mismatch", "'t.value' gives Float", "this input takes Image"],
    ),
}


@pytest.mark.parametrize("case", list(NODE_CASES))
def test_each_problem_kind_names_node_field_and_line(case: str, toy: Registry) -> None:
    body, field, fragments = NODE_CASES[case]
    text = SOURCE + "\n" + body
    problems = problems_of(text, toy)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.node, problem.field) == ("x", field)
    for fragment in fragments:
        assert fragment in problem.message
    assert problem.format("g.toml").startswith(f"g.toml:{problem.line}: node 'x' {field}: ")


def test_an_optional_input_may_stay_unlinked(toy: Registry) -> None:
    text = SOURCE + '\n[nodes.t]\ntype = "toy.total"\ninputs = { image = "src.image" }\n'
    text += '\n[nodes.x]\ntype = "toy.add"\ninputs = { a = "t.value" }\n'
    assert problems_of(text, toy) == []


def test_a_cycle_is_reported_with_its_path(toy: Registry) -> None:
    text = SOURCE + (
        '\n[nodes.loop_a]\ntype = "toy.scale"\ninputs = { image = "loop_b.image" }\n'
        '\n[nodes.loop_b]\ntype = "toy.scale"\ninputs = { image = "loop_a.image" }\n'
    )
    problems = problems_of(text, toy)
    assert len(problems) == 1, problems
    problem = problems[0]
    path = re.search(r"cycle: (.+?);", problem.message)
    assert path, problem.message
    steps = path[1].split(" -> ")
    assert steps[0] == steps[-1] == problem.node
    assert set(steps) == {"loop_a", "loop_b"} and len(steps) == 3
    assert problem.line == line_of(text, f"[nodes.{problem.node}]")


def test_a_node_linked_to_itself_is_a_cycle(toy: Registry) -> None:
    text = SOURCE + '\n[nodes.me]\ntype = "toy.scale"\ninputs = { image = "me.image" }\n'
    problems = problems_of(text, toy)
    assert [p.node for p in problems] == ["me"]
    assert "me -> me" in problems[0].message


FILE_CASES = {
    "missing format version": (
        '[nodes.a]\ntype = "toy.numbers"\n',
        ["missing format version", "version = 1"],
    ),
    "wrong format version": (
        'version = 2\n[nodes.a]\ntype = "toy.numbers"\n',
        ["format version 2 is not one this nodeflow reads", "reads version 1"],
    ),
    "version as text": (
        'version = "1"\n[nodes.a]\ntype = "toy.numbers"\n',
        ["format version '1' is not one this nodeflow reads"],
    ),
    "version as a bool": (
        'version = true\n[nodes.a]\ntype = "toy.numbers"\n',
        ["format version True is not one this nodeflow reads"],
    ),
    "unknown top-level key": (
        'version = 1\nnode = 3\n[nodes.a]\ntype = "toy.numbers"\n',
        ["unknown top-level key 'node'", "expected version, nodes, ui"],
    ),
    "nodes is not a table": ("version = 1\nnodes = 3\n", ["`nodes` must be a table"]),
    "ui is not a table": ("version = 1\nui = [1]\n", ["`ui` must be a table"]),
    "not TOML at all": ("version = = 1\n", ["not valid TOML", "column"]),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_file_level_problems(case: str) -> None:
    text, fragments = FILE_CASES[case]
    problems = parse_problems(text)
    assert len(problems) == 1, problems
    for fragment in fragments:
        assert fragment in problems[0].message


# body, node, field, a fragment of the message, a snippet of the line it points at
NODE_SHAPE_CASES = {
    "id with a dot": ('[nodes."a.b"]\ntype = "toy.numbers"\n', "a.b", None, "a node id starts",
                      '[nodes."a.b"]'),
    "id starting with a digit": ('[nodes.1a]\ntype = "toy.numbers"\n', "1a", None,
                                 "a node id starts", "[nodes.1a]"),
    "unknown node key": ('[nodes.a]\ntype = "toy.numbers"\nparam = {}\n', "a", "param",
                         "unknown key 'param'", "param = {}"),
    "missing type": ("[nodes.a]\nparams = {}\n", "a", "type", "missing `type`", "[nodes.a]"),
    "params not a table": ('[nodes.a]\ntype = "toy.numbers"\nparams = 3\n', "a", "params",
                           "`params` must be a table", "params = 3"),
    "link without an output": ('[nodes.a]\ntype = "toy.scale"\ninputs = { image = "src" }\n',
                               "a", "input 'image'", 'a link is written "<node id>.<output>"',
                               'inputs = { image = "src" }'),
    # a node written as a plain value has no [nodes.x] header to point at
    "node not a table": ("[nodes]\na = 3\n", "a", None, "a node must be a table", None),
}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [case for case in NODE_SHAPE_CASES],
)
def test_badly_shaped_nodes(case: str) -> None:
    body, node, field, fragment, snippet = NODE_SHAPE_CASES[case]
    text = "version = 1\n\n" + body
    problems = parse_problems(text)
    assert len(problems) == 1, problems
    assert (problems[0].node, problems[0].field) == (node, field)
    assert fragment in problems[0].message
    assert problems[0].line == (line_of(text, snippet) if snippet else None)


# -- all at once -----------------------------------------------------------------------------

EVERYTHING = """version = 1

[nodes.src]
type = "toy.numbers"
params = { count = 3, seed = 1 }

[nodes.typo]
type = "toy.scal"

[nodes.s1]
type = "toy.scale"
params = { factr = 2.0 }
inputs = { image = "src.image" }

[nodes.s2]
type = "toy.scale"
params = { factor = "big", mode = "add" }
inputs = { image = "src.image" }

[nodes.s3]
type = "toy.scale"
params = { factor = 20.0 }

[nodes.s4]
type = "toy.scale"
inputs = { image = "src.image", img = "src.image" }

[nodes.s5]
type = "toy.scale"
inputs = { image = "nowhere.image" }

[nodes.s6]
type = "toy.scale"
inputs = { image = "src.picture" }

[nodes.sum]
type = "toy.total"
inputs = { image = "src.image" }

[nodes.s7]
type = "toy.scale"
inputs = { image = "sum.value" }

[nodes.reader]
type = "toy.read_number"

[nodes.loop_a]
type = "toy.scale"
inputs = { image = "loop_b.image" }

[nodes.loop_b]
type = "toy.scale"
inputs = { image = "loop_a.image" }
"""

# node, field, a fragment of the message, a snippet of the line the problem points at
EXPECTED = [
    ("typo", "type", "did you mean 'toy.scale'", 'type = "toy.scal"'),
    ("s1", "param 'factr'", "did you mean 'factor'", "factr = 2.0"),
    ("s2", "param 'factor'", "expected a number", 'factor = "big"'),
    ("s2", "param 'mode'", "not one of multiply, divide", 'mode = "add"'),
    ("s3", "param 'factor'", "above the maximum", "factor = 20.0"),
    ("s3", "input 'image'", "missing required input", "[nodes.s3]"),
    ("s4", "input 'img'", "unknown input", "img ="),
    ("s5", "input 'image'", "no node 'nowhere'", '"nowhere.image"'),
    ("s6", "input 'image'", "its outputs: image", '"src.picture"'),
    ("s7", "input 'image'", "type mismatch", '"sum.value"'),
    ("reader", "param 'file'", "missing required param", "[nodes.reader]"),
    ("loop_a", None, "cycle: loop_a -> loop_b -> loop_a", "[nodes.loop_a]"),
]


def test_every_problem_is_reported_at_once_at_its_line(toy: Registry) -> None:
    problems = problems_of(EVERYTHING, toy)
    found = {(p.node, p.field): p for p in problems}
    assert len(found) == len(problems) == len(EXPECTED)
    for node, field, fragment, snippet in EXPECTED:
        problem = found[(node, field)]
        assert fragment in problem.message
        assert problem.line == line_of(EVERYTHING, snippet), (node, field)


def test_file_level_problems_are_reported_at_once_at_their_lines() -> None:
    text = (
        "nodez = 1\n\n"
        '[nodes."bad.id"]\ntype = "toy.numbers"\n\n'
        '[nodes.fine]\ntype = "toy.numbers"\nextra = 3\n\n'
        "[nodes.untyped]\nparams = { count = 1 }\n"
    )
    problems = parse_problems(text)
    by_message = {p.message.split(":")[0].split(";")[0]: p for p in problems}
    assert set(by_message) == {
        "missing format version",
        "unknown top-level key 'nodez'",
        "a node id starts with a letter or _ and holds only letters, digits, _ and -",
        "unknown key 'extra'",
        "missing `type`",
    }
    assert (
        by_message[
            "a node id starts with a letter or _ and holds only letters, digits, _ and -"
        ].node
        == "bad.id"
    )
    assert by_message["unknown key 'extra'"].line == line_of(text, "extra = 3")
    assert by_message["unknown key 'extra'"].node == "fine"
    assert by_message["missing `type`"].node == "untyped"
    assert by_message["missing `type`"].line == line_of(text, "[nodes.untyped]")


def test_a_wrong_version_points_at_its_line() -> None:
    text = '# a comment\n\nversion = 7\n[nodes.a]\ntype = "toy.numbers"\n'
    (problem,) = parse_problems(text)
    assert problem.line == 3


def test_a_toml_syntax_error_points_at_its_line() -> None:
    text = 'version = 1\n\n[nodes.a]\ntype = "toy.numbers\n'
    (problem,) = parse_problems(text)
    assert problem.line == 4 and "not valid TOML" in problem.message


def test_json_problems_point_at_the_node(toy: Registry) -> None:
    document = {
        "version": 1,
        "nodes": {
            "src": {"type": "toy.numbers"},
            "s": {"type": "toy.scale", "params": {"factor": 99}, "inputs": {"image": "src.image"}},
        },
    }
    text = json.dumps(document, indent=2)
    problems = Graph.parse(text, fmt="json").validate(toy)
    assert [(p.node, p.field) for p in problems] == [("s", "param 'factor'")]
    assert problems[0].line is not None
    assert problems[0].line >= line_of(text, '"s": {')


def test_problems_in_a_params_subtable_point_at_the_param_line(toy: Registry) -> None:
    text = SOURCE + (
        '\n[nodes.s]\ntype = "toy.scale"\ninputs = { image = "src.image" }\n'
        '\n[nodes.s.params]\nfactor = 99\nmode = "multiply"\n'
    )
    (problem,) = problems_of(text, toy)
    assert problem.line == line_of(text, "factor = 99")


def test_file_and_node_problems_are_reported_together(toy: Registry, tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[nodes.x]\ntype = "toy.scal"\n')
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "missing format version" in result.stderr
    assert "unknown node type 'toy.scal'" in result.stderr


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_validate_prints_every_problem_and_exits_2(toy: Registry, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(EVERYTHING)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}: {len(EXPECTED)} problems" in result.stderr
    for problem in Graph.load(path).validate(toy):
        assert problem.format(str(path)) in result.stderr
    for node, field, fragment, snippet in EXPECTED:
        line = line_of(EVERYTHING, snippet)
        where = f"node {node!r} {field}" if field else f"node {node!r}"
        assert f"{path}:{line}: {where}: " in result.stderr
        assert fragment in result.stderr


def test_cli_validate_json_lists_problems(toy: Registry, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(EVERYTHING)
    result = CliRunner().invoke(main, ["validate", "--json", str(path)])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    listed = {(p["node"], p["field"], p["line"]) for p in report[str(path)]}
    expected = {(n, f, line_of(EVERYTHING, s)) for n, f, _m, s in EXPECTED}
    assert listed == expected


def test_cli_validate_reports_file_level_problems(toy: Registry, tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text('version = 3\nextra = 1\n[nodes.a]\ntype = "toy.numbers"\n')
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1: format version 3" in result.stderr
    assert "unknown top-level key 'extra'" in result.stderr
    assert "Traceback" not in result.output


def test_cli_validate_a_missing_file(toy: Registry, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_cli_validate_a_valid_file_says_ok(toy: Registry, tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(SOURCE + '\n[nodes.t]\ntype = "toy.total"\ninputs = { image = "src.image" }\n')
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: ok" in result.stdout


def test_cli_validate_several_files(toy: Registry, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(SOURCE)
    bad.write_text(SOURCE + '\n[nodes.x]\ntype = "toy.scale"\n')
    result = CliRunner().invoke(main, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{good}: ok" in result.stdout
    assert f"{bad}: 1 problem" in result.stderr
    assert "missing required input" in result.stderr


def test_every_cycle_and_self_link_is_reported(toy: Registry) -> None:
    text = (
        SOURCE
        + '\n[nodes.a1]\ntype = "toy.scale"\ninputs = { image = "a2.image" }\n'
        + '[nodes.a2]\ntype = "toy.scale"\ninputs = { image = "a1.image" }\n'
        + '[nodes.b1]\ntype = "toy.scale"\ninputs = { image = "b2.image" }\n'
        + '[nodes.b2]\ntype = "toy.scale"\ninputs = { image = "b1.image" }\n'
        + '[nodes.me]\ntype = "toy.scale"\ninputs = { image = "me.image" }\n'
    )
    problems = problems_of(text, toy)
    assert [p.node for p in problems] == ["a1", "b1", "me"]
    assert "a1 -> a2 -> a1" in problems[0].message and "b1 -> b2 -> b1" in problems[1].message


def test_cross_param_rules_patterns_and_duplicate_json_ids_are_refused(
    registry: Registry, tmp_path: Path
) -> None:
    text = (
        'version = 1\n[nodes.photos]\ntype = "sample_images"\n'
        '[nodes.small]\ntype = "resize"\nparams = { size = 64, scale = 0.5 }\n'
        'inputs = { image = "photos.image" }\n'
        '[nodes.none]\ntype = "resize"\ninputs = { image = "photos.image" }\n'
        '[nodes.save]\ntype = "save_images"\nparams = { folder = "o", pattern = "{nme}" }\n'
        'inputs = { image = "small.image" }\n'
    )
    messages = {p.node: p.message for p in Graph.parse(text).validate(registry)}
    assert messages["small"] == "give exactly one of `size` or `scale`, got both"
    assert messages["none"] == "give exactly one of `size` or `scale`, got neither"
    assert "the pattern '{nme}' does not work (KeyError: 'nme')" in messages["save"]

    duplicated = (
        '{"version": 1, "nodes": {\n"a": {"type": "sample_images"},\n"a": {"type": "grid"}}}'
    )
    path = tmp_path / "g.json"
    path.write_text(duplicated)
    with pytest.raises(GraphFileError) as caught:
        Graph.load(path)
    problem = caught.value.problems[0]
    assert "the key 'a' appears twice" in problem.message and problem.line == 3


def test_sizes_beyond_the_memory_budget_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        'version = 1\n[nodes.noise]\ntype = "random_image"\nparams = { count = 16, size = 8192 }\n'
        '[nodes.huge]\ntype = "resize"\nparams = { size = [31623, 31623] }\n'
        'inputs = { image = "noise.image" }\n'
        '[nodes.fine]\ntype = "random_image"\nparams = { count = 1, size = 8192 }\n'
    )
    graph_file = tmp_path / "big.toml"
    graph_file.write_text(text)
    monkeypatch.setenv("NODEFLOW_MEMORY_BUDGET", "8GB")
    result = CliRunner().invoke(main, ["validate", str(graph_file)])
    assert result.exit_code == 2
    assert f"big.toml:{line_of(text, 'count = 16')}: node 'noise' param 'size'" in result.output
    assert "12.9 GB of memory, more than the budget of 8 GB" in result.output
    assert "make `size` or `count` smaller" in result.output
    assert "node 'huge' param 'size': one batch of these images would take 12 GB" in result.output
    assert "'fine'" not in result.output  # 805 MB fits
    monkeypatch.setenv("NODEFLOW_MEMORY_BUDGET", "16GB")
    assert CliRunner().invoke(main, ["validate", str(graph_file)]).exit_code == 0
