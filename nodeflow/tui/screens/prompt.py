"""A one-line prompt (rename a node, save as): refuses a bad answer with the reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text; `check(text)` gives the reason a text is refused, or None."""

    DEFAULT_CSS = """
    PromptScreen {
        align: center middle;
        #prompt-box {
            width: 64;
            max-width: 100%;
            height: auto;
            border: round $primary;
            background: $surface;
            padding: 0 1;
        }
        #prompt-error { color: $text-error; height: auto; }
        #prompt-keys { color: $text-muted; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, value: str, check: Callable[[str], str | None]):
        super().__init__()
        self.title_text, self.value, self.check = title, value, check

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Label(self.title_text, markup=False)
            yield Input(self.value, id="prompt-input", select_on_focus=True)
            yield Static("", id="prompt-error", markup=False)
            yield Static("enter accept  esc cancel", id="prompt-keys")

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        reason = self.check(event.value.strip())
        self.query_one("#prompt-error", Static).update(f"✗ {reason}" if reason else "")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        reason = self.check(text)
        if reason:
            self.query_one("#prompt-error", Static).update(f"✗ {reason}")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
