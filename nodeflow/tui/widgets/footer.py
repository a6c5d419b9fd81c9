"""The footer: every key binding, wrapped onto as many rows as the terminal's width needs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

GAP = 1


class KeyFooter(Footer):
    """Textual's footer with its keys wrapped into rows, so none scrolls out of sight."""

    DEFAULT_CSS = """
    KeyFooter {
        layout: vertical;
        height: auto;
        .footer-row { height: 1; width: 1fr; }
        &.-compact FooterKey { margin: 0 1 0 0; }
    }
    """

    def __init__(self, *, compact: bool = True) -> None:
        super().__init__(compact=compact)
        self._rows_for_width: int | None = None
        self._shown: list[tuple[str, str, bool]] | None = None

    def bindings_changed(self, screen: Screen) -> None:
        """Redraw only when the keys themselves change, not at every move of the focus."""
        shown = [
            (binding.key, binding.description, enabled)
            for _node, binding, enabled, _tooltip in screen.active_bindings.values()
            if binding.show
        ]
        if shown != self._shown:
            self._shown = shown
            super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        width = self.size.width or self.app.size.width
        self._rows_for_width = width
        row: list[FooterKey] = []
        used = 0
        for key in keys:
            needed = _width(key) + (3 if key.has_class("-command-palette") else GAP)
            if row and used + needed > width:
                yield Horizontal(*row, classes="footer-row")
                row, used = [], 0
            row.append(key)
            used += needed
        if row:
            yield Horizontal(*row, classes="footer-row")

    def on_resize(self) -> None:
        if self._rows_for_width not in (None, self.size.width):
            self._rows_for_width = self.size.width
            self.call_after_refresh(self.recompose)


def _width(key: FooterKey) -> int:
    return len(key.key_display) + 1 + len(key.description)
