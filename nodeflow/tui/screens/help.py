"""The help screen: every key binding, and what each panel is for."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

PANELS = [
    ("Nodes", "every node in execution order, with its type and run status"),
    ("Graph", "the graph in layers, sources on top; the selected node is drawn heavy"),
    ("Inspector", "the selected node: inputs, params (checked as you type), output, preview"),
    ("Problems", "what validation finds; enter on a problem selects the node at fault"),
    ("Log, Run", "what the latest run did, and each node's progress while it runs"),
    ("Status", "· not run  … waiting  ▶ running  ✓ done or cached  ✗ failed  ■ cancelled"),
]

NOTES = (
    "The node list, the graph and the problems share one selection. Narrow terminals fold "
    "the graph away; g puts the graph in place of the list at any width. A run (r) runs what the file's output "
    "nodes need, like `nodeflow run`; R runs what the selected node needs. Results stay in "
    "memory for the session, so a re-run recomputes only what an edit changed."
)


class HelpScreen(ModalScreen[None]):
    """Lists the bindings given to it, in sections, and the panels."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        #help-box {
            width: 90;
            max-width: 100%;
            height: 90%;
            border: round $primary;
            background: $surface;
            padding: 0 1;
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "close"),
        Binding("question_mark", "app.pop_screen", "close", show=False),
        Binding("q", "app.pop_screen", "close", show=False),
    ]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]):
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for title, rows in [*self.sections, ("Panels", PANELS)]:
            table.add_row(Text(title, style="bold underline"), "")
            for key, description in rows:
                table.add_row(key, description)
            table.add_row("", "")
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Help  (esc closes)"
            yield Static(table)
            yield Static(NOTES, markup=False)
