"""Nothing lost, nothing written where it does not belong: the write policy of every writer."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from nodeflow.engine.cache import Cache
from nodeflow.engine.executor import Executor
from nodeflow.files.policy import safe_item_name
from nodeflow.graph import Graph, GraphFileError
from nodeflow.models.checkpoint import new_model, save_model

if TYPE_CHECKING:
    from helpers import TensorSource

pytest_plugins = ["helpers"]

LOAD_SAVE = """
version = 1
[nodes.photos]
type = "load_images"
params = {{ path = "{path}"{load} }}
[nodes.out]
type = "save_images"
inputs = {{ image = "photos.image" }}
params = {{ folder = "{folder}"{save} }}
"""


def photo(path: Path, value: int, size: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)


def value_of(path: Path) -> int:
    with Image.open(path) as image:
        return int(np.asarray(image).flat[0])


def graph_text(path: str = "in", folder: str = "out", load: str = "", save: str = "") -> str:
    return LOAD_SAVE.format(path=path, folder=folder, load=load, save=save)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("../escaped_{name}", "leaves"),
        ("/tmp/absolute_{name}", "leaves"),
        ("", "empty name"),
        (".{name}", "hidden"),
    ],
)
def test_a_pattern_cannot_leave_its_folder_or_hide_a_file(run_graph, tmp_path, pattern, reason):
    photo(tmp_path / "in" / "a.png", 10)

    result, _ = run_graph(graph_text(save=f', pattern = "{pattern}"'))

    assert reason in result.failed["out"]
    assert not list(tmp_path.glob("escaped_*")) and not list(Path("/tmp").glob("absolute_a*"))
    assert files_under(tmp_path / "out") == []


def test_names_from_files_are_sanitized(run_graph, tmp_path):
    photo(tmp_path / "in" / ".hidden.png", 10)

    result, _ = run_graph(graph_text())

    assert result.ok, result.failed
    assert files_under(tmp_path / "out") == ["_hidden.png"]


def test_item_names_cannot_climb_out():
    assert safe_item_name("a/../../b") == "a/_/_/b"
    assert safe_item_name("..\\..\\etc\\passwd") == "_/_/etc/passwd"
    assert safe_item_name("/abs/.x") == "abs/_x"
    assert safe_item_name("") == "_"
    assert safe_item_name("ok name#2") == "ok name#2"


# -- collisions ------------------------------------------------------------------------------


def test_same_names_in_two_sub_folders_are_both_kept(run_graph, tmp_path):
    photo(tmp_path / "in" / "a" / "photo.png", 10)
    photo(tmp_path / "in" / "b" / "photo.png", 20)
    photo(tmp_path / "in" / "photo.png", 30)
    photo(tmp_path / "in" / "photo.jpg", 40)

    result, _ = run_graph(graph_text(path="in/**/*"))

    assert result.ok, result.failed
    out = tmp_path / "out"
    assert files_under(out) == ["a/photo.png", "b/photo.png", "photo.jpg.png", "photo.png.png"]
    assert [value_of(out / f) for f in files_under(out)] == [10, 20, 40, 30]


def test_a_constant_pattern_makes_unique_names(run_graph, tmp_path):
    for index, name in enumerate("abc"):
        photo(tmp_path / "in" / f"{name}.png", 10 * index)

    result, _ = run_graph(graph_text(save=', pattern = "result"'))

    assert result.ok, result.failed
    out = tmp_path / "out"
    assert files_under(out) == ["result-2.png", "result-3.png", "result.png"]
    assert [value_of(out / n) for n in ("result.png", "result-2.png", "result-3.png")] == [
        0,
        10,
        20,
    ]


def test_two_writers_on_one_folder_are_refused_naming_both(registry, tmp_path):
    def graph(pattern: str) -> Graph:
        text = graph_text(save=', format = "jpg"') + (
            '[nodes.again]\ntype = "save_images"\ninputs = { image = "photos.image" }\n'
            f'params = {{ folder = "out", format = "jpg", pattern = "{pattern}" }}\n'
        )
        return Graph.parse(text, path=tmp_path / "g.toml")

    (problem,) = graph("{name}").validate(registry)
    assert problem.node == "again" and "'out'" in problem.message
    assert "same folder" in problem.message and str(tmp_path / "out") in problem.message

    for pattern in ("kept-{name}", "{node}-{name}"):
        assert graph(pattern).validate(registry) == []


def test_writing_where_the_run_reads_is_refused_unless_asked_for(run_graph, registry, tmp_path):
    photo(tmp_path / "in" / "a.png", 10)

    with pytest.raises(GraphFileError) as refused:
        run_graph(graph_text(folder="in"))
    (problem,) = refused.value.problems
    assert problem.node == "out" and "'photos'" in problem.message
    assert "allow_input_folder" in problem.message
    assert value_of(tmp_path / "in" / "a.png") == 10

    with pytest.raises(GraphFileError):
        run_graph(graph_text(path="in/*.png", folder="in"))
    with pytest.raises(GraphFileError):
        run_graph(graph_text(path=".", folder="./in", load=", recursive = true"))

    result, _ = run_graph(graph_text(folder="in", save=", allow_input_folder = true"))
    assert result.ok, result.failed


# -- existing files --------------------------------------------------------------------------


def test_a_read_only_file_is_an_error_not_replaced(run_graph, tmp_path):
    photo(tmp_path / "in" / "a.png", 10)
    photo(tmp_path / "out" / "a.png", 99)
    (tmp_path / "out" / "a.png").chmod(stat.S_IRUSR)
    photo(tmp_path / "out" / "mine.png", 77)

    try:
        result, _ = run_graph(graph_text())
    finally:
        (tmp_path / "out" / "a.png").chmod(stat.S_IRUSR | stat.S_IWUSR)

    assert "read-only" in result.failed["out"] and "a.png" in result.failed["out"]
    assert value_of(tmp_path / "out" / "a.png") == 99
    assert value_of(tmp_path / "out" / "mine.png") == 77


def test_output_root_confines_every_write(registry, tmp_path):
    photo(tmp_path / "in" / "a.png", 10)
    graph_path = tmp_path / "g.toml"
    graph_path.write_text(graph_text(folder="elsewhere"))
    executor = Executor(
        registry, Cache(tmp_path / "cache"), device="cpu", output_root=tmp_path / "root"
    )

    result = executor.run(Graph.load(graph_path))

    assert "outside the output root" in result.failed["out"]
    assert not (tmp_path / "elsewhere").exists()


# -- other writers ---------------------------------------------------------------------------


def scores_graph(tensor_source: TensorSource, registry, tmp_path: Path, file: str) -> str:
    model = new_model("patchgan", {"ndf": 4, "n_layers": 1, "in_channels": 3}, registry)
    save_model(model, tmp_path / "d.safetensors")
    text = "version = 1\n" + tensor_source.node("src", torch.rand(3, 3, 32, 32))
    text += '[nodes.d]\ntype = "load_model"\nparams = { checkpoint = "d.safetensors" }\n'
    text += '[nodes.s]\ntype = "discriminator_score"\n'
    text += 'inputs = { image = "src.image", model = "d.model" }\n'
    text += '[nodes.report]\ntype = "score_summary"\ninputs = { score = "s.score" }\n'
    return text + f'params = {{ file = "{file}" }}\n'


def test_score_summary_writes_csv_files_only(tensor_source: TensorSource, registry, tmp_path):
    for file in ("~/.bashrc", "notes.txt", ".csv"):
        result = _run(registry, tmp_path, scores_graph(tensor_source, registry, tmp_path, file))
        assert not result.ok
        assert ".csv" in result.failed["report"]

    result = _run(registry, tmp_path, scores_graph(tensor_source, registry, tmp_path, "scores"))
    assert result.ok, result.failed
    assert (tmp_path / "scores.csv").read_text().startswith("name,score\n")


def _run(registry, tmp_path: Path, text: str):
    path = tmp_path / "graph.toml"
    path.write_text(text)
    executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu")
    return executor.run(Graph.load(path))
