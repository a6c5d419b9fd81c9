"""The graph view: the layered layout drawn with box-drawing characters, scrollable.

Each node is a box with its id, type and run status; the selected box is drawn heavy.
Arrow keys move the selection through the layout (up to a node's inputs, down to what
reads it, left and right within a layer); a click selects the box under the pointer.
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from nodeflow.tui.layout import STATUS_WIDTH, Box, GraphLayout, box_lines
from nodeflow.tui.messages import NodeSelected
from nodeflow.tui.status import RunBoard
from nodeflow.tui.widgets.node_list import STATE_CLASSES


class GraphView(ScrollView, can_focus=True):
    """Draws a `GraphLayout` and keeps the selected box in view."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "graph-view--edge",
        "graph-view--label",
        "graph-view--box",
        "graph-view--selected",
        "graph-view--type",
        *STATE_CLASSES.values(),
    }

    DEFAULT_CSS = """
    GraphView {
        background: $surface;
        & > .graph-view--edge { color: $text-muted; }
        & > .graph-view--label { color: $text-muted; text-style: italic; }
        & > .graph-view--box { color: $foreground; }
        & > .graph-view--selected { color: $text-accent; text-style: bold; }
        & > .graph-view--type { color: $text-muted; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "up", "move('up')", tooltip="select the nearest node in the layer above", show=False
        ),
        Binding(
            "down", "move('down')", tooltip="select the nearest node in the layer below", show=False
        ),
        Binding("left", "move('left')", tooltip="select the node to the left", show=False),
        Binding("right", "move('right')", tooltip="select the node to the right", show=False),
        Binding("home", "move('first')", tooltip="select the first source", show=False),
        Binding(
            "end", "move('last')", tooltip="select the last node of the bottom layer", show=False
        ),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Graph"
        self.graph_layout = GraphLayout()
        self.types: dict[str, str] = {}
        self.board = RunBoard()
        self.selected: str | None = None
        self._strips: list[Strip] | None = None

    # -- what the app tells it -------------------------------------------------------------

    def show_graph(self, layout: GraphLayout, types: dict[str, str], board: RunBoard) -> None:
        self.graph_layout, self.types, self.board = layout, types, board
        self.virtual_size = Size(layout.width, layout.height)
        self._invalidate()
        self._scroll_to_selected()

    def show_selection(self, node_id: str | None) -> None:
        self.selected = node_id
        self._invalidate()
        self._scroll_to_selected()

    def show_status(self, board: RunBoard) -> None:
        self.board = board
        self._invalidate()

    def _invalidate(self) -> None:
        self._strips = None
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None

    def _scroll_to_selected(self) -> None:
        box = self.graph_layout.boxes.get(self.selected or "")
        if box is not None:
            region = Region(box.x, box.y, box.width, box.height)
            self.call_after_refresh(
                self.scroll_to_region, region, animate=False, force=True, center=True
            )

    # -- drawing ----------------------------------------------------------------------------

    @property
    def margin_x(self) -> int:
        """Columns left blank before the drawing, so a graph narrower than the view is centred."""
        return max(0, (self.scrollable_content_region.width - self.graph_layout.width) // 2)

    def render_line(self, y: int) -> Strip:
        if self._strips is None:
            self._strips = self._draw()
        scroll_x, scroll_y = self.scroll_offset
        row = y + scroll_y
        width = self.scrollable_content_region.width
        if row >= len(self._strips):
            return Strip.blank(width, self.rich_style)
        start = scroll_x - self.margin_x
        strip = self._strips[row]
        if start >= 0:
            return strip.crop_extend(start, start + width, self.rich_style)
        margin = Strip.blank(-start, self.rich_style)
        return Strip.join([margin, strip.crop_extend(0, width + start, self.rich_style)])

    def _draw(self) -> list[Strip]:
        layout = self.graph_layout
        base = self.rich_style
        style = self._component_style
        chars = [[" "] * layout.width for _ in range(layout.height)]
        styles = [[base] * layout.width for _ in range(layout.height)]

        def put(x: int, y: int, text: str, cell_style: Style) -> None:
            for i, char in enumerate(text):
                if 0 <= x + i < layout.width and 0 <= y < layout.height:
                    chars[y][x + i] = char
                    styles[y][x + i] = cell_style

        edge = style("graph-view--edge")
        for (x, y), char in layout.lines.items():
            put(x, y, char, edge)
        label = style("graph-view--label")
        for x, y, text in layout.labels:
            put(x, y, text, label)
        for box in layout.boxes.values():
            self._draw_box(box, put)
        return [
            _strip(row_chars, row_styles)
            for row_chars, row_styles in zip(chars, styles, strict=True)
        ]

    def _draw_box(self, box: Box, put) -> None:
        selected = box.node == self.selected
        status = self.board.get(box.node)
        state_style = self._component_style(STATE_CLASSES[status.state])
        border = self._component_style("graph-view--selected" if selected else "graph-view--box")
        for row, text in enumerate(box_lines(box, heavy=selected)):
            put(box.x, box.y + row, text, border)
        inner = box.width - 4
        name = box.node if len(box.node) <= inner - 2 else box.node[: inner - 3] + "…"
        put(box.x + 2, box.y + 1, status.glyph, state_style)
        put(
            box.x + 4,
            box.y + 1,
            name,
            border if selected else self._component_style("graph-view--box"),
        )
        short = status.short()[: STATUS_WIDTH - 1]
        room = inner - (len(short) + 1 if short else 0)
        type_id = self.types.get(box.node, "")
        type_text = type_id if len(type_id) <= room else type_id[: room - 1] + "…"
        put(box.x + 2, box.y + 2, type_text, self._component_style("graph-view--type"))
        if short:
            put(box.x + 2 + inner - len(short), box.y + 2, short, state_style)

    def _component_style(self, name: str) -> Style:
        return self.get_component_rich_style(name)

    # -- selection by keys and pointer ---------------------------------------------------------

    def action_move(self, direction: str) -> None:
        target = _neighbour(self.graph_layout, self.selected, direction)
        if target is not None and target != self.selected:
            self.post_message(NodeSelected(target))

    def on_click(self, event: events.Click) -> None:
        scroll_x, scroll_y = self.scroll_offset
        box = self.graph_layout.box_at(event.x + scroll_x - self.margin_x, event.y + scroll_y)
        if box is not None:
            self.post_message(NodeSelected(box.node))


def _strip(chars: list[str], styles: list[Style]) -> Strip:
    segments: list[Segment] = []
    start = 0
    for i in range(1, len(chars) + 1):
        if i == len(chars) or styles[i] != styles[start]:
            segments.append(Segment("".join(chars[start:i]), styles[start]))
            start = i
    return Strip(segments, len(chars))


def _neighbour(layout: GraphLayout, current: str | None, direction: str) -> str | None:
    """The box to select when moving from `current` in `direction` (the nearest by column)."""
    if not layout.layers:
        return None
    boxes = layout.boxes
    if direction == "first" or current not in boxes:
        return layout.layers[0][0] if layout.layers[0] else None
    if direction == "last":
        return layout.layers[-1][-1] if layout.layers[-1] else None
    layer_of = {node: n for n, layer in enumerate(layout.layers) for node in layer}
    here = boxes[current]
    n = layer_of[current]
    if direction in ("left", "right"):
        row = sorted(layout.layers[n], key=lambda node: boxes[node].x)
        index = row.index(current) + (1 if direction == "right" else -1)
        return row[index] if 0 <= index < len(row) else None
    step = -1 if direction == "up" else 1
    while 0 <= n + step < len(layout.layers):
        n += step
        if layout.layers[n]:
            return min(layout.layers[n], key=lambda node: abs(boxes[node].center - here.center))
    return None
