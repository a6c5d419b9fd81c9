"""Property tests: whatever a graph file holds, reading and validating it either succeeds or
raises `GraphFileError`, and `nodeflow validate` answers 0 or 2 without a traceback."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeflow.cli import main
from nodeflow.graph import Graph, GraphFileError
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

PLUGINS = Path(__file__).parent / "plugins_for_tests"

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ_CLI = settings(FUZZ, max_examples=25)

VALID: dict[str, Any] = {
    "version": 1,
    "nodes": {
        "src": {"type": "toy.numbers", "params": {"count": 2, "fill": 0.5}},
        "s": {
            "type": "toy.scale",
            "params": {"factor": 2.0, "mode": "divide"},
            "inputs": {"image": "src.image"},
        },
        "t": {"type": "toy.total", "inputs": {"image": "s.image"}},
        "o": {"type": "toy.offset", "params": {"amount": 1.0}, "inputs": {"value": "t.value"}},
        "sum": {"type": "toy.add", "inputs": {"a": "o.value", "b": "t.value"}},
    },
    "ui": {"positions": {"src": [0, 0], "s": [10, 0]}},
}

# Integers stay within 64 bits, as TOML defines them: a larger one for a Float param hits
# the OverflowError that test_a_huge_whole_number_for_a_float_param_is_a_problem documents.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """`good` nine times in ten, so that most documents get as far as validation."""
    return st.integers(0, 99).flatmap(lambda k: bad if k % 10 == 3 else good)


good_ids = st.sampled_from(["src", "s", "t", "o", "sum", "ghost"])
node_ids = mostly(good_ids, st.sampled_from(["", "1x", "a.b"]) | st.text(max_size=6))
output_names = mostly(st.sampled_from(["image", "value", "picture"]), st.text(max_size=6))
links = mostly(st.builds(lambda n, o: f"{n}.{o}", node_ids, output_names), st.text(max_size=10))
type_names = st.sampled_from(
    ["toy.numbers", "toy.scale", "toy.total", "toy.offset", "toy.add", "toy.fail", "scale", "x"]
)
param_names = st.sampled_from(["count", "fill", "factor", "mode", "amount", "log", "seed", "z"])
graph_like = st.fixed_dictionaries(
    {
        "version": mostly(st.just(1), st.sampled_from([2, "1", True, 1.0, None])),
        "nodes": st.dictionaries(
            node_ids,
            st.fixed_dictionaries(
                {"type": mostly(type_names, json_values)},
                optional={
                    "params": st.dictionaries(param_names, json_values, max_size=4),
                    "inputs": st.dictionaries(
                        st.sampled_from(["image", "value", "a", "b", "img"]), links, max_size=3
                    ),
                },
            ),
            max_size=5,
        ),
    },
    optional={"ui": st.dictionaries(st.text(max_size=6), json_values, max_size=3)},
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The registry with the test-only plugins (`toy.*`, `toypkg.*`) loaded."""
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(PLUGINS))
    reset_registry()
    yield load_registry()
    reset_registry()


def check_document(text: str, fmt: str, registry: Registry) -> None:
    """Reading and validating `text` gives a graph and a list of problems, or GraphFileError."""
    try:
        graph = Graph.parse(text, fmt=fmt)
    except GraphFileError as exc:
        assert exc.problems
        assert all(problem.message for problem in exc.problems)
        assert str(exc)
        return
    for problem in graph.validate(registry):
        assert problem.message
        assert problem.format("g.toml")
        json.dumps(problem.to_json())


def as_toml(document: Any) -> str | None:
    """The document as TOML, or None where TOML cannot hold it (null, a non-table top)."""
    if not isinstance(document, dict):
        return None
    try:
        return tomli_w.dumps(document)
    except (TypeError, ValueError):
        return None


def check_both_formats(document: Any, registry: Registry) -> None:
    check_document(json.dumps(document), "json", registry)
    text = as_toml(document)
    if text is not None:
        check_document(text, "toml", registry)


# -- mutations of a valid document -----------------------------------------------------------


def paths(document: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path into the nested dicts and lists of `document`."""
    if isinstance(document, dict):
        items = document.items()
    elif isinstance(document, list):
        items = enumerate(document)
    else:
        return
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


def parent_of(document: Any, path: tuple) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        targets = list(paths(document))
        inside_nodes = [p for p in targets if len(p) >= 4 or p[0] == "ui"]
        if inside_nodes and draw(st.integers(0, 3)):
            targets = inside_nodes  # mostly values inside params, inputs and ui
        if not targets:
            break
        path = draw(st.sampled_from(targets))
        parent = parent_of(document, path)
        action = draw(st.sampled_from(["drop", "replace", "garbage", "relink"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "garbage" and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(json_values)
        else:
            parent[path[-1]] = draw(links)
    return document


# -- properties ------------------------------------------------------------------------------


def test_the_valid_document_is_valid(toy: Registry) -> None:
    assert Graph.from_dict(copy.deepcopy(VALID)).validate(toy) == []
    assert Graph.parse(tomli_w.dumps(VALID)).validate(toy) == []


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text(text: str, toy: Registry) -> None:
    check_document(text, "toml", toy)
    check_document(text, "json", toy)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_decoded_leniently(data: bytes, toy: Registry) -> None:
    for text in (data.decode("utf-8", errors="replace"), data.decode("latin-1")):
        check_document(text, "toml", toy)
        check_document(text, "json", toy)


@FUZZ
@given(document=json_values)
def test_random_json_like_structures(document: Any, toy: Registry) -> None:
    check_both_formats(document, toy)


@FUZZ
@given(document=graph_like)
def test_random_graph_shaped_documents(document: Any, toy: Registry) -> None:
    check_both_formats(document, toy)


@FUZZ
@given(document=mutated())
def test_mutations_of_a_valid_document(document: Any, toy: Registry) -> None:
    check_both_formats(document, toy)


@FUZZ
@given(
    cuts=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(["drop", "dup", "junk"])), max_size=4
    ),
    junk=st.text(max_size=20),
)
def test_line_edits_of_a_valid_toml_file(cuts: list, junk: str, toy: Registry) -> None:
    lines = tomli_w.dumps(VALID).splitlines()
    for index, action in cuts:
        at = index % max(len(lines), 1)
        if not lines:
            break
        if action == "drop":
            del lines[at]
        elif action == "dup":
            lines.insert(at, lines[at])
        else:
            lines[at] = lines[at][: len(junk)] + junk
    check_document("\n".join(lines), "toml", toy)


@FUZZ_CLI
@given(document=mutated() | graph_like, fmt=st.sampled_from(["json", "toml"]))
def test_cli_validate_answers_0_or_2_without_a_traceback(
    document: Any, fmt: str, toy: Registry, tmp_path: Path
) -> None:
    text = json.dumps(document) if fmt == "json" else as_toml(document)
    if text is None:
        text = json.dumps(document)
        fmt = "json"
    path = tmp_path / f"fuzz.{fmt}"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert f"{path}: ok" in result.stdout


@FUZZ_CLI
@given(data=st.binary(max_size=200))
def test_cli_validate_random_bytes(data: bytes, toy: Registry, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# -- what fuzzing found ----------------------------------------------------------------------


def test_a_huge_whole_number_for_a_float_param_is_a_problem(toy: Registry) -> None:
    text = (
        'version = 1\n[nodes.src]\ntype = "toy.numbers"\n'
        f'[nodes.s]\ntype = "toy.scale"\nparams = {{ factor = {10**400} }}\n'
        'inputs = { image = "src.image" }\n'
    )
    problems = Graph.parse(text).validate(toy)
    assert [(p.node, p.field) for p in problems] == [("s", "param 'factor'")]
