"""Panel widths: the graph gets the room, the others what they need, nothing hidden by accident."""

from __future__ import annotations

import pytest

from nodeflow.tui.panels import INSPECTOR_MIN, LIST_MIN, PanelWidths, panel_widths


@pytest.mark.parametrize("total", [100, 120, 160, 200, 260])
@pytest.mark.parametrize("graph", [20, 70, 140])
def test_wide_screens_show_all_three_and_fill_the_width(total: int, graph: int) -> None:
    widths = panel_widths(total, list_content=28, graph_content=graph, graph_mode=False)
    assert widths.nodes + widths.graph + widths.inspector == total
    assert widths.nodes >= LIST_MIN and widths.inspector >= INSPECTOR_MIN
    assert widths.graph >= min(graph + 2, total - LIST_MIN - INSPECTOR_MIN)


def test_a_small_graph_leaves_the_inspector_its_third() -> None:
    assert panel_widths(120, 20, 30, False) == PanelWidths(22, 62, 36)


def test_a_wide_graph_takes_columns_from_the_inspector_then_the_list() -> None:
    widths = panel_widths(120, 28, 60, False)
    assert widths == PanelWidths(24, 62, INSPECTOR_MIN)
    assert panel_widths(120, 28, 200, False) == PanelWidths(LIST_MIN, 120 - 18 - 34, 34)


def test_narrow_screens_fold_the_graph_unless_it_is_asked_for() -> None:
    assert panel_widths(80, 28, 70, False).graph == 0
    widths = panel_widths(80, 28, 70, True)
    assert widths.nodes == 0 and widths.graph > 0 and widths.inspector >= INSPECTOR_MIN
    assert panel_widths(160, 28, 70, True).nodes == 0
