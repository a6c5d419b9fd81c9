"""Run status folded from events: what the node list, graph and run panel show."""

from __future__ import annotations

from nodeflow.engine.events import NodeFailed, NodeProgress, NodeStarted, RunStarted
from nodeflow.tui.status import RunBoard


def test_a_dataset_read_again_each_epoch_counts_its_passes() -> None:
    board = RunBoard()
    board.apply(RunStarted(["pairs"], "cpu", "fp32"))
    board.apply(NodeStarted("pairs", "pairs"))
    for done in (1, 2, 3, 4, 1, 2):
        board.apply(NodeProgress("pairs", done, 4))
    status = board.get("pairs")
    assert status.passes == 2
    assert status.detail().startswith("pass 2  2/4")


def test_short_states_fit_their_column_whole() -> None:
    board = RunBoard()
    board.apply(NodeFailed("save", "save_images", "disk full"))
    assert board.get("save").short() == "failed"
