"""The footer: one row of keys, the most wanted first; the help screen (`?`) lists every key."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

GAP = 1
PALETTE_EDGE = 3
"""Columns the command palette's key takes beyond its text: its border, gap and margin."""


class KeyFooter(Footer):
    """Textual's footer kept to one row: when the keys do not all fit, it leaves out those that
    come last in `ranking` (a list of actions, most wanted first; actions it does not name come
    after all it names). The keys it keeps stay in their binding order."""

    def __init__(self, ranking: Sequence[str], *, compact: bool = True) -> None:
        super().__init__(compact=compact)
        self.ranking = list(ranking)
        self._composed_width: int | None = None
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
        self._composed_width = width
        palette = [key for key in keys if key.has_class("-command-palette")]
        keys = [key for key in keys if key not in palette]
        room = width - sum(_width(key) + PALETTE_EDGE for key in palette)
        kept: set[int] = set()
        for index in sorted(range(len(keys)), key=lambda i: (self._rank(keys[i]), i)):
            room -= _width(keys[index]) + GAP
            if room < 0:
                break
            kept.add(index)
        yield from (key for index, key in enumerate(keys) if index in kept)
        yield from palette

    def _rank(self, key: FooterKey) -> int:
        return self.ranking.index(key.action) if key.action in self.ranking else len(self.ranking)

    def on_resize(self) -> None:
        if self._composed_width not in (None, self.size.width):
            self._composed_width = self.size.width
            self.call_after_refresh(self.recompose)


def _width(key: FooterKey) -> int:
    return len(key.key_display) + 1 + len(key.description)
