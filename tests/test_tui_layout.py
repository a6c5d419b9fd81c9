"""The graph view's layered layout: sources on top, boxes apart, every edge drawn and no other."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeflow.graph import Graph
from nodeflow.tui.layout import BOX_HEIGHT, GraphLayout, layout_graph, render_text

GRAPHS = Path(__file__).parent.parent / "graphs"

_MOVES = {"│": "ud", "─": "lr", "┌": "dr", "┐": "dl", "└": "ur", "┘": "ul", "├": "udr",
          "┤": "udl", "┬": "dlr", "┴": "ulr", "┼": "udlr"}  # fmt: skip
_STEP = {"d": (0, 1), "l": (-1, 0), "r": (1, 0), "u": (0, -1)}
_OPPOSITE = {"d": "u", "u": "d", "l": "r", "r": "l"}


def fan_in_and_out() -> Graph:
    """photos feeds four nodes at three depths; quality reads two of them."""
    return Graph.parse(
        """
        version = 1
        [nodes.photos]
        type = "sample_images"
        [nodes.noisy]
        type = "add_noise"
        inputs = { image = "photos.image" }
        [nodes.blurred]
        type = "blur"
        inputs = { image = "noisy.image" }
        [nodes.quality]
        type = "metrics"
        inputs = { image = "blurred.image", reference = "photos.image" }
        [nodes.side]
        type = "flip"
        inputs = { image = "photos.image" }
        [nodes.pair]
        type = "concat"
        inputs = { image = "side.image", other = "noisy.image" }
        """
    )


def reached(layout: GraphLayout, source: str) -> set[str]:
    """The boxes a line from `source`'s exit leads into, following lines downward and
    sideways, turning only at junctions (a crossing is passed straight through)."""
    box = layout.boxes[source]
    start = (box.exit_x, box.y + BOX_HEIGHT)
    found: set[str] = set()
    seen = set()
    pending = [(start, "d")]
    while pending:
        (x, y), heading = pending.pop()
        if ((x, y), heading) in seen:
            continue
        seen.add(((x, y), heading))
        target = next((b for b in layout.boxes.values() if b.contains(x, y)), None)
        if target is not None:
            assert x in target.entries and y == target.y, f"line ends off an entry at {x},{y}"
            found.add(target.node)
            continue
        char = layout.lines.get((x, y))
        assert char is not None, f"line from {source} breaks off at {x},{y}"
        came_from = _OPPOSITE[heading]
        if (x, y) in layout.crossings:
            ways = [heading]
        else:
            assert came_from in _MOVES[char], f"{char!r} at {x},{y} does not join {came_from}"
            ways = [d for d in _MOVES[char] if d != came_from and d != "u"]
        for way in ways:
            dx, dy = _STEP[way]
            pending.append(((x + dx, y + dy), way))
    return found


@pytest.mark.parametrize(
    "graph",
    [
        fan_in_and_out(),
        Graph.load(GRAPHS / "degrade_measure.toml"),
        Graph.load(GRAPHS / "pca_eigenimages.toml"),
    ],
    ids=["fan", "degrade", "pca"],
)
def test_every_edge_is_drawn_and_leads_only_where_it_should(graph: Graph) -> None:
    layout = layout_graph(graph)
    readers: dict[str, set[str]] = {node_id: set() for node_id in graph.nodes}
    for spec in graph.nodes.values():
        for link in spec.inputs.values():
            readers[link.node].add(spec.id)
    for node_id, expected in readers.items():
        if expected:
            assert reached(layout, node_id) == expected, node_id
        else:
            assert layout.boxes[node_id].exit_x is None


@pytest.mark.parametrize("graph", [fan_in_and_out(), Graph.load(GRAPHS / "pca_eigenimages.toml")])
def test_sources_on_top_and_boxes_apart(graph: Graph) -> None:
    layout = layout_graph(graph)
    boxes = layout.boxes
    assert set(boxes) == set(graph.nodes)
    for spec in graph.nodes.values():
        for link in spec.inputs.values():
            assert boxes[link.node].y + BOX_HEIGHT <= boxes[spec.id].y
    placed = list(boxes.values())
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            apart_x = a.x + a.width <= b.x or b.x + b.width <= a.x
            apart_y = a.y + a.height <= b.y or b.y + b.height <= a.y
            assert apart_x or apart_y, (a.node, b.node)
        assert a.x >= 0 and a.x + a.width <= layout.width and a.y + a.height <= layout.height
    # each input arrives at its own column of the box
    for spec in graph.nodes.values():
        assert len(boxes[spec.id].entries) == len({link.node for link in spec.inputs.values()})
    assert set(layout.layers[0]) == {n for n, spec in graph.nodes.items() if not spec.inputs}


def test_a_chain_is_drawn_straight_with_its_output_named() -> None:
    graph = Graph.parse(
        """
        version = 1
        [nodes.photos]
        type = "sample_images"
        [nodes.gray]
        type = "grayscale"
        inputs = { image = "photos.image" }
        """
    )
    text = render_text(layout_graph(graph), {"photos": "sample_images", "gray": "grayscale"})
    assert text == [
        " ┌──────────────────────┐",
        " │ photos               │",
        " │ sample_images        │",
        " └───────────┬──────────┘",
        "             │ image",
        "   ┌─────────┴────────┐",
        "   │ gray             │",
        "   │ grayscale        │",
        "   └──────────────────┘",
    ]


def test_a_cycle_still_lays_out_and_an_empty_graph_is_empty() -> None:
    graph = Graph.parse(
        """
        version = 1
        [nodes.a]
        type = "blur"
        inputs = { image = "b.image" }
        [nodes.b]
        type = "blur"
        inputs = { image = "a.image" }
        """
    )
    layout = layout_graph(graph)
    assert set(layout.boxes) == {"a", "b"}
    empty = layout_graph(Graph())
    assert (empty.boxes, empty.width, empty.height) == ({}, 1, 0)


def test_crossings_are_drawn_as_the_bus_passing_over() -> None:
    layout = layout_graph(Graph.load(GRAPHS / "degrade_measure.toml"))
    assert layout.crossings
    assert {layout.lines[cell] for cell in layout.crossings} == {"─"}
    rows = render_text(layout)
    assert not any("┌│" in row or "│┐" in row for row in rows)
