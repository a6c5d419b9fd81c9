"""The editing model behind `nodeflow edit`: edits, undo and redo, and the editor's questions."""

from __future__ import annotations

import pytest

from nodeflow.graph import Graph, Link
from nodeflow.registry import Registry
from nodeflow.tui.document import (
    UNSET,
    AddNode,
    DeleteNode,
    Document,
    RenameNode,
    SetInput,
    SetParam,
)

GRAPH = """
version = 1

[nodes.photos]
type = "sample_images"
params = { size = 32 }

[nodes.noisy]
type = "add_noise"
params = { sigma = 25.0 }
inputs = { image = "photos.image" }

[nodes.blurred]
type = "blur"
inputs = { image = "noisy.image" }

[nodes.quality]
type = "metrics"
inputs = { image = "blurred.image", reference = "photos.image" }
"""


@pytest.fixture
def doc(registry: Registry) -> Document:
    return Document(Graph.parse(GRAPH), registry)


def snapshot(doc: Document) -> dict:
    return doc.graph.to_dict()


def test_every_edit_undoes_to_the_exact_graph_and_redoes(doc: Document) -> None:
    before = snapshot(doc)
    edits = [
        SetParam("noisy", "sigma", 10.0),
        SetParam("photos", "size", UNSET),
        SetInput("quality", "reference", Link("noisy", "image")),
        RenameNode("noisy", "grainy"),
        AddNode(doc.new_node("grid", after="blurred")),
        DeleteNode("grainy"),
    ]
    states = []
    for edit in edits:
        doc.apply(edit)
        states.append(snapshot(doc))
    assert "grainy" not in doc.graph.nodes
    assert "image" not in doc.graph.nodes["blurred"].inputs  # the link to the deleted node went
    for expected in reversed([before, *states[:-1]]):
        doc.undo()
        assert snapshot(doc) == expected
    assert list(snapshot(doc)["nodes"]) == ["photos", "noisy", "blurred", "quality"]
    for expected in states:
        doc.redo()
        assert snapshot(doc) == expected
    assert doc.undo_stack and not doc.redo_stack


def test_rename_carries_the_links_and_keeps_the_order(doc: Document) -> None:
    doc.apply(RenameNode("photos", "pics"))
    assert list(doc.graph.nodes) == ["pics", "noisy", "blurred", "quality"]
    assert doc.graph.nodes["noisy"].inputs["image"] == Link("pics", "image")
    assert doc.graph.nodes["quality"].inputs["reference"] == Link("pics", "image")
    assert doc.problems() == []


def test_dirty_follows_undo_back_to_the_saved_state(doc: Document, tmp_path) -> None:
    assert not doc.dirty
    doc.apply(SetParam("noisy", "sigma", 5.0))
    assert doc.dirty
    doc.undo()
    assert not doc.dirty
    doc.redo()
    doc.save(tmp_path / "g.toml")
    assert not doc.dirty
    doc.undo()
    assert doc.dirty
    doc.redo()
    assert not doc.dirty
    assert Graph.load(tmp_path / "g.toml").to_dict() == snapshot(doc)


def test_typing_a_number_is_one_undo_step_but_not_across_a_save(doc: Document, tmp_path) -> None:
    for value in (1.0, 12.0, 12.5):
        doc.apply(SetParam("noisy", "sigma", value), merge=True)
    assert len(doc.undo_stack) == 1
    doc.undo()
    assert doc.graph.nodes["noisy"].params["sigma"] == 25.0
    doc.redo()
    doc.save(tmp_path / "g.toml")
    doc.apply(SetParam("noisy", "sigma", 3.0), merge=True)
    assert len(doc.undo_stack) == 2 and doc.dirty


def test_candidates_fit_the_type_avoid_cycles_and_come_nearest_first(doc: Document) -> None:
    # blurred reads noisy, which reads photos: nearest upstream first; quality is downstream.
    assert doc.candidates("blurred", "image") == [Link("noisy", "image"), Link("photos", "image")]
    assert doc.candidates("photos", "image") == []  # sample_images has no input named image
    assert doc.candidates("noisy", "image") == [Link("photos", "image")]
    # metrics outputs are floats, never offered for an image input
    assert all(link.node != "quality" for link in doc.candidates("blurred", "image"))
    # nodes neither upstream nor downstream come after, those just before in the run first
    doc.apply(AddNode(doc.new_node("flip", after="photos")))
    doc.apply(AddNode(doc.new_node("grayscale", after="noisy")))
    assert doc.execution_order() == ["photos", "noisy", "blurred", "quality", "flip", "grayscale"]
    assert doc.candidates("flip", "image") == [
        Link("photos", "image"),  # upstream
        Link("blurred", "image"),  # just before flip in the run
        Link("noisy", "image"),
        Link("grayscale", "image"),  # after it
    ]


def test_a_new_node_links_its_inputs_to_the_nearest_distinct_outputs(doc: Document) -> None:
    spec = doc.new_node("metrics", after="blurred")
    assert spec.id == "metrics"
    # the reference is the source photos the chain started from, not the noisy image next door
    assert spec.inputs == {"image": Link("blurred", "image"), "reference": Link("photos", "image")}
    assert doc.new_node("blur").id == "blur"
    doc.apply(AddNode(doc.new_node("blur", after="photos")))
    assert doc.graph.nodes["blur"].inputs == {"image": Link("photos", "image")}
    assert doc.new_node("blur").id == "blur_2"
    assert doc.problems() == []


def test_duplicate_and_id_rules(doc: Document) -> None:
    copy = doc.duplicate("noisy")
    assert (copy.id, copy.type, copy.params, copy.inputs) == (
        "noisy_2",
        "add_noise",
        {"sigma": 25.0},
        {"image": Link("photos", "image")},
    )
    assert doc.id_problem("noisy") == "there is already a node 'noisy'"
    assert doc.id_problem("noisy", current="noisy") is None
    assert "starts with a letter" in doc.id_problem("2fast")
    assert doc.id_problem("fast-2") is None


def test_execution_order_and_downstream(doc: Document) -> None:
    assert doc.execution_order() == ["photos", "noisy", "blurred", "quality"]
    assert doc.downstream({"noisy"}) == {"noisy", "blurred", "quality"}
    doc.apply(SetInput("noisy", "image", Link("blurred", "image")))  # a cycle
    assert doc.execution_order() == ["photos", "noisy", "blurred", "quality"]
    assert any("cycle" in problem.message for problem in doc.problems())


def test_change_type_keeps_fitting_params_and_links_and_undoes(doc: Document) -> None:
    before = snapshot(doc)
    doc.graph.nodes["noisy"].params["seed"] = 3
    # add_noise -> blur: sigma is a blur param too (kept), seed is not (dropped)
    edit = doc.apply(doc.change_type("noisy", "blur"))
    noisy = doc.graph.nodes["noisy"]
    assert (noisy.type, noisy.params, noisy.inputs) == (
        "blur",
        {"sigma": 25.0},
        {"image": Link("photos", "image")},
    )
    assert doc.graph.nodes["blurred"].inputs == {"image": Link("noisy", "image")}  # still fits
    assert edit.touched() == {"noisy"}
    doc.undo()
    doc.graph.nodes["noisy"].params.pop("seed")
    assert snapshot(doc) == before
    # metrics gives numbers, no image: what read the image is unlinked, and comes back on undo
    doc.apply(doc.change_type("noisy", "metrics"))
    assert "image" not in doc.graph.nodes["blurred"].inputs
    assert doc.graph.nodes["noisy"].inputs == {"image": Link("photos", "image")}
    assert list(doc.graph.nodes) == ["photos", "noisy", "blurred", "quality"]
    doc.undo()
    assert snapshot(doc) == before
