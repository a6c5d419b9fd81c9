"""The selected node's image, as large as the terminal allows."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from nodeflow.tui.widgets.preview import ImagePreview


class PreviewScreen(ModalScreen[None]):
    """Full-screen half-block pictures side by side (one, or A and B), each with its
    caption; any of esc, v or q closes it."""

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
        #preview-panes { height: 1fr; }
        .preview-pane { width: 1fr; height: 1fr; }
        ImagePreview { height: 1fr; }
        .preview-screen-caption { color: $text-muted; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,v,q", "app.pop_screen", "close"),
    ]

    def __init__(self, panes: list[tuple[np.ndarray, str]]):
        super().__init__()
        self.panes = panes

    def compose(self) -> ComposeResult:
        with Vertical(id="preview-box") as box:
            box.border_title = "Preview  (esc closes)"
            with Horizontal(id="preview-panes"):
                for pixels, caption in self.panes:
                    with Vertical(classes="preview-pane"):
                        preview = ImagePreview()
                        preview.show(pixels)
                        yield preview
                        yield Static(caption, classes="preview-screen-caption", markup=False)
