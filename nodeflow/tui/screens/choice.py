"""Choose one of a few options from a list (what to link an input to, which input)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option


class ChoiceScreen(ModalScreen[Any]):
    """A titled list; enter (or a click) returns the chosen option's value, escape None."""

    DEFAULT_CSS = """
    ChoiceScreen {
        align: center middle;
        #choice-box {
            width: 64;
            max-width: 100%;
            height: auto;
            max-height: 80%;
            border: round $primary;
            background: $surface;
            padding: 0 1;
        }
        OptionList { height: auto; max-height: 16; }
        #choice-keys { color: $text-muted; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(
        self,
        title: str,
        options: list[tuple[str, Any]],
        empty: str = "nothing fits",
        highlighted: int = 0,
    ):
        super().__init__()
        self.title_text, self.options, self.empty = title, options, empty
        self.highlighted = highlighted

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-box"):
            yield Label(self.title_text)
            if self.options:
                choices = OptionList(
                    *[Option(label, id=str(i)) for i, (label, _v) in enumerate(self.options)]
                )
                choices.highlighted = self.highlighted
                yield choices
            else:
                yield Static(self.empty)
            yield Static("enter choose  esc cancel", id="choice-keys")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.options[int(event.option.id or 0)][1])

    def action_cancel(self) -> None:
        self.dismiss(None)
