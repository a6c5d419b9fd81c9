"""The selected node's image, as large as the terminal allows."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from nodeflow.tui.widgets.preview import ImagePreview


class PreviewScreen(ModalScreen[None]):
    """A full-screen half-block picture with its caption; any of esc, v or q closes it."""

    DEFAULT_CSS = """
    PreviewScreen {
        align: center middle;
        #preview-box {
            width: 100%;
            height: 100%;
            border: round $primary;
            background: $surface;
            padding: 0 1;
        }
        ImagePreview { height: 1fr; }
        #preview-screen-caption { color: $text-muted; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,v,q", "app.pop_screen", "close"),
    ]

    def __init__(self, pixels: np.ndarray, caption: str):
        super().__init__()
        self.pixels, self.caption = pixels, caption

    def compose(self) -> ComposeResult:
        with Vertical(id="preview-box") as box:
            box.border_title = "Preview  (esc closes)"
            preview = ImagePreview()
            preview.show(self.pixels)
            yield preview
            yield Static(self.caption, id="preview-screen-caption", markup=False)
