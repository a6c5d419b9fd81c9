"""How wide each of the three top panels is, from the terminal's width and what they hold.

The graph is what needs room, so it gets the most of it: the inspector takes about a third
of a wide screen (within bounds), the node list only what its rows need, and the graph the
rest. When the graph is wider than that, the inspector and then the list give up columns
down to their minimums. On a narrow screen the graph folds away unless it is asked for; in
"graph mode" (`g`) the graph takes the list's place at every width. Pure, tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDE = 100
"""Terminals at least this wide show the list, the graph and the inspector side by side."""
BORDERS = 2
INSPECTOR_MIN = 34
INSPECTOR_MAX = 64
LIST_MAX = 40
LIST_MIN = 18


@dataclass(frozen=True)
class PanelWidths:
    """Outer widths (borders included); 0 hides a panel."""

    nodes: int
    graph: int
    inspector: int


def panel_widths(
    total: int, list_content: int, graph_content: int, graph_mode: bool
) -> PanelWidths:
    """Widths for a terminal `total` columns wide; `list_content` and `graph_content` are
    the columns the node list's rows and the graph's drawing need (no borders)."""
    list_want = min(list_content + BORDERS, LIST_MAX)
    if total < WIDE:
        if graph_mode:
            inspector = max(INSPECTOR_MIN, total * 2 // 5)
            return PanelWidths(0, total - inspector, inspector)
        nodes = min(list_want, total * 11 // 20)
        return PanelWidths(nodes, 0, total - nodes)
    inspector = min(max(INSPECTOR_MIN, total * 3 // 10), INSPECTOR_MAX)
    nodes = 0 if graph_mode else list_want
    short = graph_content + BORDERS - (total - inspector - nodes)
    if short > 0:
        give = min(short, inspector - INSPECTOR_MIN)
        inspector -= give
        short -= give
    if short > 0 and nodes:
        nodes -= min(short, max(0, nodes - LIST_MIN))
    return PanelWidths(nodes, total - inspector - nodes, inspector)
