"""The node list: every node in execution order, with its type and its run status."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable

from nodeflow.tui.layout import STATUS_WIDTH
from nodeflow.tui.messages import NodeSelected
from nodeflow.tui.status import RunBoard, State

STATE_CLASSES = {state: f"status--{state.value}" for state in State}
"""Component classes for run states; their colours are set once, in app.tcss."""


def component_color(widget: Widget, name: str) -> Style:
    """A component's colour and weight, resolved against the widget's own background (so
    `$text-muted` and friends read right in light and dark themes), without the background."""
    style = widget.get_component_rich_style(name)
    return Style(color=style.color, bold=style.bold, italic=style.italic)


class NodeList(DataTable):
    """A table of nodes; moving the cursor selects a node everywhere."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | set(
        STATE_CLASSES.values()
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "scroll_top", tooltip="the first node", show=False),
        Binding("end", "scroll_bottom", tooltip="the last node", show=False),
    ]

    DEFAULT_CSS = """
    NodeList {
        height: 1fr;
        scrollbar-size: 1 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", show_header=False)
        self.selected: str | None = None
        self.border_title = "Nodes"
        self.compact = False
        """Without the type column, when the panel is too narrow for it."""
        self._shown: tuple[list[str], dict[str, str], RunBoard] = ([], {}, RunBoard())

    def show_nodes(self, order: list[str], types: dict[str, str], board: RunBoard) -> None:
        """Rebuild the rows (after an edit) and keep the cursor on the selected node."""
        self._shown = (order, types, board)
        with self.prevent(DataTable.RowHighlighted):
            self.clear(columns=True)
            self.add_column("node", key="node")
            if not self.compact:
                self.add_column("type", key="type")
            self.add_column("", key="status", width=STATUS_WIDTH - 1)
            for node_id in order:
                name, status = self._status_cells(board, node_id)
                cells = (name, status) if self.compact else (name, types[node_id], status)
                self.add_row(*cells, key=node_id)
            self._move_to_selected()
        self.border_title = f"Nodes ({len(order)})"

    def set_compact(self, compact: bool) -> None:
        """Show or hide the type column (the graph and the inspector name the types too)."""
        if compact != self.compact:
            self.compact = compact
            self.show_nodes(*self._shown)

    def content_width(self, compact: bool = False) -> int:
        """Columns the rows need: glyph and id, type (unless `compact`), status, and the
        cells' padding."""
        order, types, _board = self._shown
        ids = max(map(len, order), default=4) + 2 + STATUS_WIDTH - 1 + 2 * 2
        if compact:
            return ids
        return ids + max((len(types[node_id]) for node_id in order), default=4) + 2

    def show_selection(self, node_id: str | None) -> None:
        self.selected = node_id
        with self.prevent(DataTable.RowHighlighted):
            self._move_to_selected()

    def show_status(self, board: RunBoard, node_ids: set[str]) -> None:
        for node_id in node_ids:
            if node_id not in self.rows:
                continue
            name, status = self._status_cells(board, node_id)
            self.update_cell(node_id, "node", name)
            self.update_cell(node_id, "status", status)

    def _move_to_selected(self) -> None:
        if self.selected in self.rows:
            self.move_cursor(row=self.get_row_index(self.selected))

    def _status_cells(self, board: RunBoard, node_id: str) -> tuple[Text, Text]:
        status = board.get(node_id)
        style = component_color(self, STATE_CLASSES[status.state])
        name = Text.assemble((status.glyph, style), " ", node_id)
        return name, Text(status.short(), style=style)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        node_id = event.row_key.value
        if node_id is not None and node_id != self.selected:
            self.selected = node_id
            self.post_message(NodeSelected(node_id))
