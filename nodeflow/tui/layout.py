"""Layered layout of a graph for a character grid: sources on top, edges in box-drawing lines.

The steps are the classic ones (Sugiyama): nodes go into layers by topological generation
(networkx); an edge that skips layers passes through one placeholder per layer, shared by
the edges of the same source; a few barycentre sweeps order each layer to cut crossings;
each layer's x positions are the least-squares fit to the centres of its neighbours
that keeps boxes apart (pool-adjacent-violators); then the edges between two layers are
routed on horizontal tracks, one per source, tracks allotted so no two overlap.

Pure: it takes a graph and returns coordinates and line characters. `render_text` draws a
layout as plain text (tests, debugging); the TUI's graph view draws it with styles.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx

from nodeflow.graph import Graph

BOX_HEIGHT = 4
STATUS_WIDTH = 7
"""Room kept on a box's second line for its status (` 62%`, ` 0.12s`, ` failed`), so it
never grows."""
MAX_INNER = 24
GAP = 2

_UP, _DOWN, _LEFT, _RIGHT = 1, 2, 4, 8
_LINES = {
    _UP | _DOWN: "│",
    _UP: "│",
    _DOWN: "│",
    _LEFT | _RIGHT: "─",
    _LEFT: "─",
    _RIGHT: "─",
    _DOWN | _RIGHT: "┌",
    _DOWN | _LEFT: "┐",
    _UP | _RIGHT: "└",
    _UP | _LEFT: "┘",
    _UP | _DOWN | _RIGHT: "├",
    _UP | _DOWN | _LEFT: "┤",
    _DOWN | _LEFT | _RIGHT: "┬",
    _UP | _LEFT | _RIGHT: "┴",
    _UP | _DOWN | _LEFT | _RIGHT: "┼",
}


@dataclass(frozen=True)
class Box:
    """Where a node is drawn: its rectangle, the column its edges leave from (one for all)
    and the columns where they arrive (one per node it reads from)."""

    node: str
    x: int
    y: int
    width: int
    height: int = BOX_HEIGHT
    exit_x: int | None = None
    entries: tuple[int, ...] = ()

    @property
    def center(self) -> int:
        return self.x + self.width // 2

    def contains(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height


@dataclass
class GraphLayout:
    """Boxes by node id, edge characters by (x, y) (and where lines cross), output labels,
    the nodes of each layer, and the whole size."""

    boxes: dict[str, Box] = field(default_factory=dict)
    lines: dict[tuple[int, int], str] = field(default_factory=dict)
    crossings: set[tuple[int, int]] = field(default_factory=set)
    labels: list[tuple[int, int, str]] = field(default_factory=list)
    layers: list[list[str]] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def box_at(self, x: int, y: int) -> Box | None:
        return next((box for box in self.boxes.values() if box.contains(x, y)), None)


@dataclass(eq=False)
class _Slot:
    """A node, or a placeholder a long edge passes through."""

    key: str
    width: int
    source: str | None = None  # set for placeholders: the node whose edges pass
    x: int = 0
    up: list[_Slot] = field(default_factory=list)
    down: list[_Slot] = field(default_factory=list)

    @property
    def center(self) -> int:
        return self.x + self.width // 2


def box_width(node_id: str, type_id: str) -> int:
    """A box's width: room for `◆ id` on one line and the type plus a status on the next."""
    inner = max(len(node_id) + 2, len(type_id) + STATUS_WIDTH)
    return min(inner, MAX_INNER) + 4


def layout_graph(graph: Graph) -> GraphLayout:
    """Lay `graph` out in layers, sources on top, with routed edges."""
    g = _acyclic(graph)
    layers = _layers(graph, g)
    for _ in range(2):
        _sweep(layers, downward=True)
        _sweep(layers, downward=False)
    _sweep(layers, downward=True)
    _pack(layers)
    for downward in (True, False, True):
        _place(layers, downward)
    shift = 1 - min((slot.x for layer in layers for slot in layer), default=1)
    for layer in layers:
        for slot in layer:
            slot.x += shift
    return _route(graph, layers)


def _acyclic(graph: Graph) -> nx.DiGraph:
    """The links as a DAG; on a cycle, links that point back in file order are left out."""
    g = graph.digraph()
    if nx.is_directed_acyclic_graph(g):
        return g
    index = {node_id: i for i, node_id in enumerate(graph.nodes)}
    back = [(u, v) for u, v in g.edges if index[u] >= index[v]]
    g.remove_edges_from(back)
    return g


def _layers(graph: Graph, g: nx.DiGraph) -> list[list[_Slot]]:
    index = {node_id: i for i, node_id in enumerate(graph.nodes)}
    generations = [sorted(gen, key=index.__getitem__) for gen in nx.topological_generations(g)]
    layer_of = {node_id: n for n, gen in enumerate(generations) for node_id in gen}
    slots = {
        node_id: _Slot(node_id, box_width(node_id, graph.nodes[node_id].type))
        for node_id in graph.nodes
    }
    layers = [[slots[node_id] for node_id in gen] for gen in generations]
    placeholders: dict[tuple[str, int], _Slot] = {}
    for source, target in sorted(g.edges, key=lambda e: (index[e[0]], index[e[1]])):
        upper = slots[source]
        for layer in range(layer_of[source] + 1, layer_of[target]):
            key = (source, layer)
            if key not in placeholders:
                placeholders[key] = _Slot(f"{source}@{layer}", 1, source=source)
                layers[layer].append(placeholders[key])
            _link(upper, placeholders[key])
            upper = placeholders[key]
        _link(upper, slots[target])
    return layers


def _link(upper: _Slot, lower: _Slot) -> None:
    if lower not in upper.down:
        upper.down.append(lower)
        lower.up.append(upper)


def _sweep(layers: list[list[_Slot]], downward: bool) -> None:
    """Order each layer by the mean position of its neighbours in the layer before."""
    sequence = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
    for n in sequence:
        reference = layers[n - 1] if downward else layers[n + 1]
        position = {id(slot): i for i, slot in enumerate(reference)}
        current = {id(slot): i for i, slot in enumerate(layers[n])}
        layers[n].sort(key=lambda slot: _barycentre(slot, downward, position, current))


def _barycentre(
    slot: _Slot, downward: bool, position: dict[int, int], current: dict[int, int]
) -> tuple[float, int]:
    neighbours = slot.up if downward else slot.down
    if not neighbours:
        return current[id(slot)], current[id(slot)]
    mean = sum(position[id(other)] for other in neighbours) / len(neighbours)
    return mean, current[id(slot)]


def _pack(layers: list[list[_Slot]]) -> None:
    for layer in layers:
        x = 0
        for slot in layer:
            slot.x = x
            x += slot.width + GAP


def _place(layers: list[list[_Slot]], downward: bool) -> None:
    """Move each layer's slots toward their neighbours' centres, keeping order and gaps.

    Minimises the squared distances of the slots' centres to their targets subject to the
    gaps: with offsets taken out, that is isotonic regression, solved by pooling adjacent
    violators.
    """
    sequence = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
    for n in sequence:
        layer = layers[n]
        offsets, offset = [], 0
        for slot in layer:
            offsets.append(offset)
            offset += slot.width + GAP
        wanted = []
        for slot, base in zip(layer, offsets, strict=True):
            neighbours = slot.up if downward else slot.down
            if neighbours:
                centre = sum(other.center for other in neighbours) / len(neighbours)
                wanted.append(centre - slot.width // 2 - base)
            else:
                wanted.append(slot.x - base)
        for slot, base, value in zip(layer, offsets, _isotonic(wanted), strict=True):
            slot.x = round(value) + base


def _isotonic(values: list[float]) -> list[float]:
    """The non-decreasing sequence nearest `values` in least squares."""
    blocks: list[list[float]] = []  # [mean, count]
    for value in values:
        blocks.append([value, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            last = blocks[-1]
            last[0] = (last[0] * last[1] + mean * count) / (last[1] + count)
            last[1] += count
    result: list[float] = []
    for mean, count in blocks:
        result += [mean] * int(count)
    return result


# -- routing ---------------------------------------------------------------------------------

_Entries = dict[tuple[int, int], int]
"""The column where the edge from one slot (by id) arrives at another."""


def _route(graph: Graph, layers: list[list[_Slot]]) -> GraphLayout:
    layout = GraphLayout(layers=[[s.key for s in layer if s.source is None] for layer in layers])
    exits = {id(slot): slot.center for layer in layers for slot in layer}
    entries: _Entries = {}
    y = 0
    tops: list[int] = []
    for n, layer in enumerate(layers):
        tops.append(y)
        y += BOX_HEIGHT
        if n + 1 < len(layers):
            _place_ends(layer, layers[n + 1], exits, entries)
            y += _gap_height(layer, exits, entries)
    cells: dict[tuple[int, int], list[tuple[frozenset, int]]] = defaultdict(list)
    for n, layer in enumerate(layers):
        top = tops[n]
        for slot in layer:
            if slot.source is not None:
                for row in range(top, top + BOX_HEIGHT):
                    cells[(slot.x, row)].append((frozenset({("from", id(slot))}), _UP | _DOWN))
        if n + 1 < len(layers):
            _route_gap(layer, top + BOX_HEIGHT, tops[n + 1] - 1, exits, entries, cells)
    for (x, row), parts in cells.items():
        layout.lines[(x, row)], crossing = _junction(parts)
        if crossing:
            layout.crossings.add((x, row))
    for n, layer in enumerate(layers):
        for slot in layer:
            if slot.source is None:
                layout.boxes[slot.key] = Box(
                    slot.key,
                    slot.x,
                    tops[n],
                    slot.width,
                    exit_x=exits[id(slot)] if slot.down else None,
                    entries=tuple(sorted(entries[(id(up), id(slot))] for up in slot.up)),
                )
    _label_outputs(graph, layers, tops, exits, layout)
    right = [s.x + s.width for layer in layers for s in layer]
    right += [x + len(text) for x, _y, text in layout.labels]
    layout.width = max(right, default=0) + 1
    layout.height = y
    return layout


def _place_ends(
    upper: list[_Slot], lower: list[_Slot], exits: dict[int, int], entries: _Entries
) -> None:
    """Choose where each edge between two layers arrives: every edge at its own column of the
    target's top, in the order of the sources, never under the exit of a node that does not
    feed it (the two vertical lines would merge)."""
    for target in lower:
        sources = sorted(target.up, key=lambda s: exits[id(s)])
        if target.source is not None:
            entries[(id(sources[0]), id(target))] = target.x
            continue
        inner = range(target.x + 1, target.x + target.width - 1)
        unrelated = {exits[id(s)] for s in upper if s not in target.up}
        taken: set[int] = set()
        for i, source in enumerate(sources):
            ideal = target.x + (i + 1) * target.width // (len(sources) + 1)
            if len(sources) == 1:
                ideal = exits[id(source)] if exits[id(source)] in inner else target.center
            column = next(
                (
                    ideal + step
                    for step in (0, 1, -1, 2, -2, 3, -3, 4, -4)
                    if ideal + step in inner
                    and ideal + step not in unrelated
                    and ideal + step not in taken
                ),
                ideal,
            )
            entries[(id(source), id(target))] = column
            taken.add(column)


def _buses(
    upper: list[_Slot], exits: dict[int, int], entries: _Entries
) -> list[tuple[_Slot, int, int]]:
    """Each source that needs a horizontal run: (slot, leftmost column, rightmost column)."""
    buses = []
    for source in upper:
        columns = [exits[id(source)]] + [entries[(id(source), id(t))] for t in source.down]
        if len(set(columns)) > 1:
            buses.append((source, min(columns), max(columns)))
    return buses


def _tracks(buses: list[tuple[_Slot, int, int]]) -> dict[int, int]:
    """A track (row) for each bus; buses on one track leave a blank column between them."""
    ends: list[int] = []
    track_of = {}
    for source, left, right in sorted(buses, key=lambda b: (b[1], b[2])):
        track = next((t for t, end in enumerate(ends) if end + 1 < left), len(ends))
        if track == len(ends):
            ends.append(right)
        else:
            ends[track] = right
        track_of[id(source)] = track
    return track_of


def _gap_height(upper: list[_Slot], exits: dict[int, int], entries: _Entries) -> int:
    tracks = _tracks(_buses(upper, exits, entries))
    count = max(tracks.values(), default=-1) + 1
    return 1 + count + (1 if count else 0)


def _route_gap(
    upper: list[_Slot],
    first: int,
    last: int,
    exits: dict[int, int],
    entries: _Entries,
    cells: dict[tuple[int, int], list[tuple[frozenset, int]]],
) -> None:
    """Draw the edges from one layer down to the next, over rows `first`..`last`.

    Each piece of line carries the nets it belongs to: a source's drop and bus are the
    source's, an edge's last leg into its target is the edge's own, and the corner where
    the bus turns down is both. Pieces join where their nets meet and cross elsewhere.
    """
    tracks = _tracks(_buses(upper, exits, entries))
    for source in upper:
        out = ("from", id(source))
        for target in source.down:
            into = ("into", id(source), id(target))
            x0, x1 = exits[id(source)], entries[(id(source), id(target))]
            if id(source) not in tracks or x0 == x1:
                _vertical(cells, frozenset({out, into}), x0, first, last, enter=True, leave=True)
                continue
            row = first + 1 + tracks[id(source)]
            _vertical(cells, frozenset({out}), x0, first, row, enter=True, leave=False)
            _horizontal(cells, frozenset({out}), x0, x1, row)
            cells[(x1, row)].append((frozenset({out, into}), 0))
            _vertical(cells, frozenset({into}), x1, row, last, enter=False, leave=True)


def _vertical(
    cells: dict, nets: frozenset, x: int, top: int, bottom: int, enter: bool, leave: bool
) -> None:
    """A vertical run over rows `top`..`bottom`; `enter`/`leave`: it goes on above/below."""
    for row in range(top, bottom + 1):
        dirs = (_UP if row > top or enter else 0) | (_DOWN if row < bottom or leave else 0)
        cells[(x, row)].append((nets, dirs))


def _horizontal(cells: dict, nets: frozenset, x0: int, x1: int, row: int) -> None:
    left, right = min(x0, x1), max(x0, x1)
    for x in range(left, right + 1):
        dirs = (_LEFT if x > left else 0) | (_RIGHT if x < right else 0)
        cells[(x, row)].append((nets, dirs))


def _junction(parts: list[tuple[frozenset, int]]) -> tuple[str, bool]:
    """The character for one cell, and whether lines cross there. Pieces whose nets meet
    join; others cross, drawn as the horizontal line passing over the vertical one (a
    vertical line over a bus next to its corner read as `┌│───`, the bus cut off)."""
    groups: list[tuple[set, int]] = []  # nets, directions
    for nets, dirs in parts:
        joined = [group for group in groups if group[0] & nets]
        merged_nets, merged_dirs = set(nets), dirs
        for group in joined:
            groups.remove(group)
            merged_nets |= group[0]
            merged_dirs |= group[1]
        groups.append((merged_nets, merged_dirs))
    if len(groups) == 1:
        return _LINES.get(groups[0][1], " "), False
    horizontal = any(dirs & (_LEFT | _RIGHT) for _nets, dirs in groups)
    return ("─" if horizontal else "│"), True


def _label_outputs(
    graph: Graph,
    layers: list[list[_Slot]],
    tops: list[int],
    exits: dict[int, int],
    layout: GraphLayout,
) -> None:
    """Name the outputs a node's edges carry, beside its exit, where the row has room."""
    used: dict[str, set[str]] = defaultdict(set)
    for spec in graph.nodes.values():
        for link in spec.inputs.values():
            used[link.node].add(link.output)
    for n, layer in enumerate(layers[:-1]):
        row = tops[n] + BOX_HEIGHT
        taken = {x for (x, r) in layout.lines if r == row}
        for slot in sorted(layer, key=lambda s: s.x):
            if slot.source is not None or not slot.down or not used.get(slot.key):
                continue
            text = ", ".join(sorted(used[slot.key]))
            start = exits[id(slot)] + 2
            span = range(start - 1, start + len(text) + 1)
            if any(x in taken for x in span):
                continue
            layout.labels.append((start, row, text))
            taken.update(span)


def render_text(layout: GraphLayout, types: dict[str, str] | None = None) -> list[str]:
    """The layout as plain text lines: light boxes with id (and type), edges and labels."""
    grid = [[" "] * layout.width for _ in range(layout.height)]
    for (x, y), char in layout.lines.items():
        grid[y][x] = char
    for x, y, text in layout.labels:
        for i, char in enumerate(text):
            if x + i < layout.width:
                grid[y][x + i] = char
    for box in layout.boxes.values():
        for y, row in enumerate(box_lines(box, heavy=False)):
            for i, char in enumerate(row):
                grid[box.y + y][box.x + i] = char
        inner = box.width - 4
        grid[box.y + 1][box.x + 2 : box.x + 2 + inner] = list(box.node[:inner].ljust(inner))
        type_id = (types or {}).get(box.node, "")
        grid[box.y + 2][box.x + 2 : box.x + 2 + inner] = list(type_id[:inner].ljust(inner))
    return ["".join(row).rstrip() for row in grid]


def box_lines(box: Box, heavy: bool) -> list[str]:
    """The border of a box as four strings, with the marks where edges join it."""
    tl, tr, bl, br, h, v, up, down = "┏┓┗┛━┃┷┯" if heavy else "┌┐└┘─│┴┬"
    inner = box.width - 2
    top = [h] * inner
    bottom = [h] * inner
    for column in box.entries:
        top[column - box.x - 1] = up
    if box.exit_x is not None:
        bottom[box.exit_x - box.x - 1] = down
    middle = v + " " * inner + v
    return [tl + "".join(top) + tr, middle, middle, bl + "".join(bottom) + br]
