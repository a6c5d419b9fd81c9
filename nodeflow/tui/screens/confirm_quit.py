"""The guard against quitting with unsaved changes or during a run."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmQuitScreen(ModalScreen[str | None]):
    """Unsaved changes, a run going, or both: the choices are "save" (save and quit),
    "discard" (quit without saving), "quit" (stop the run and quit), or None (stay)."""

    DEFAULT_CSS = """
    ConfirmQuitScreen {
        align: center middle;
        #quit-box {
            width: 64;
            max-width: 100%;
            height: auto;
            border: round $warning;
            background: $surface;
            padding: 1 2;
        }
        Label { width: 1fr; }
        #quit-buttons { height: auto; margin-top: 1; }
        Button { margin-right: 1; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "choose('save')", "save and quit"),
        Binding("d", "choose('discard')", "discard"),
        Binding("q", "choose('quit')", "stop the run and quit"),
        Binding("escape", "choose(None)", "stay"),
    ]

    def __init__(self, name: str, unsaved: bool = True, running: bool = False):
        super().__init__()
        self.graph_name = name
        self.unsaved = unsaved
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box"):
            if self.running:
                yield Label(
                    "A run is in progress: quitting stops it at its next batch or step "
                    "(training keeps a checkpoint to resume from).",
                    id="quit-running",
                )
            if self.unsaved:
                yield Label(f"{self.graph_name} has unsaved changes.", id="quit-unsaved")
            with Horizontal(id="quit-buttons"):
                if self.unsaved:
                    yield Button("Save and quit (s)", id="save", variant="primary")
                    yield Button("Discard (d)", id="discard", variant="error")
                else:
                    yield Button("Stop the run and quit (q)", id="quit", variant="error")
                yield Button("Stay (esc)", id="stay")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters and parameters[0] in ("save", "discard"):
            return self.unsaved
        if action == "choose" and parameters == ("quit",):
            return not self.unsaved
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
