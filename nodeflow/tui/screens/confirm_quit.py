"""The guard against quitting with unsaved changes."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmQuitScreen(ModalScreen[str | None]):
    """Unsaved changes: save and quit, quit without saving, or stay ("save", "discard", None)."""

    DEFAULT_CSS = """
    ConfirmQuitScreen {
        align: center middle;
        #quit-box {
            width: 60;
            max-width: 100%;
            height: auto;
            border: round $warning;
            background: $surface;
            padding: 1 2;
        }
        #quit-buttons { height: auto; margin-top: 1; }
        Button { margin-right: 1; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "choose('save')", "save and quit"),
        Binding("d", "choose('discard')", "discard"),
        Binding("escape", "choose(None)", "stay"),
    ]

    def __init__(self, name: str):
        super().__init__()
        self.graph_name = name

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box"):
            yield Label(f"{self.graph_name} has unsaved changes.")
            with Horizontal(id="quit-buttons"):
                yield Button("Save and quit (s)", id="save", variant="primary")
                yield Button("Discard (d)", id="discard", variant="error")
                yield Button("Stay (esc)", id="stay")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
