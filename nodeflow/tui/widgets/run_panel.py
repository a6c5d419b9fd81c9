"""The run panel (a line per node of the current run, with a progress bar) and the run log."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import RichLog, Static

import nodeflow.tui.status as run_status
from nodeflow.engine.events import (
    Event,
    ItemError,
    NodeFailed,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from nodeflow.tui.status import RunBoard, State
from nodeflow.tui.widgets.node_list import STATE_CLASSES, component_color

BAR_WIDTH = 20


class RunPanel(VerticalScroll):
    """Every node of the latest run: status, a bar while it runs, counts, ETA, time, losses."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "run-panel--bar",
        "run-panel--bar-empty",
        *STATE_CLASSES.values(),
    }

    DEFAULT_CSS = """
    RunPanel {
        height: 1fr;
        & > .run-panel--bar { color: $text-accent; }
        & > .run-panel--bar-empty { color: $text-muted; }
        #run-lines { width: 1fr; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.order: list[str] = []
        self.types: dict[str, str] = {}

    def compose(self):
        yield Static(
            "Nothing has run yet: r runs the graph, R runs up to the selected node.", id="run-lines"
        )

    def start(self, order: list[str], types: dict[str, str]) -> None:
        self.order, self.types = order, types

    def show_status(self, board: RunBoard) -> None:
        if not self.order:
            return
        width = max(len(node_id) for node_id in self.order)
        type_width = max(len(self.types.get(node_id, "")) for node_id in self.order)
        text = Text()
        for node_id in self.order:
            status = board.get(node_id)
            style = component_color(self, STATE_CLASSES[status.state])
            text.append(f"{status.glyph} ", style)
            text.append(f"{node_id:<{width}}  ")
            text.append(f"{self.types.get(node_id, ''):<{type_width}}  ", "dim")
            if status.state == State.RUNNING:
                self._bar(text, status.fraction)
            text.append(status.detail(), style if status.state == State.FAILED else "")
            text.append("\n")
        text.rstrip()
        self.query_one("#run-lines", Static).update(text)

    def _bar(self, text: Text, fraction: float | None) -> None:
        filled = round((fraction or 0.0) * BAR_WIDTH)
        text.append("█" * filled, component_color(self, "run-panel--bar"))
        empty = component_color(self, "run-panel--bar-empty")
        text.append("░" * (BAR_WIDTH - filled), empty)
        text.append(f" {fraction:>4.0%}  " if fraction is not None else "   ?   ")


class RunLog(RichLog):
    """A line per notable run event: start, each node's end or failure, skipped items."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"run-log--ok", "run-log--error", "run-log--warning"}

    DEFAULT_CSS = """
    RunLog {
        height: 1fr;
        & > .run-log--ok { color: $text-success; }
        & > .run-log--error { color: $text-error; }
        & > .run-log--warning { color: $text-warning; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=True, markup=False, highlight=False)

    def log_event(self, event: Event) -> None:
        line = _describe(event)
        if line is None:
            return
        text, kind = line
        style = component_color(self, f"run-log--{kind}") if kind else ""
        self.write(Text(text, style))

    def log_text(self, text: str, kind: str = "") -> None:
        style = component_color(self, f"run-log--{kind}") if kind else ""
        self.write(Text(text, style))


def _describe(event: Event) -> tuple[str, str] | None:
    match event:
        case RunStarted(nodes=nodes, device=device, precision=precision):
            return f"run: {len(nodes)} nodes on {device} ({precision})", ""
        case NodeStarted(node=node, type=type_id):
            return f"  {node} ({type_id}) started", ""
        case NodeFinished(node=node, cached=True):
            return f"  {node}: cached", ""
        case NodeFinished(node=node, seconds=seconds, summary=summary):
            outputs = ", ".join(f"{name} {text}" for name, text in summary.items())
            return f"  {node}: done in {run_status.format_seconds(seconds)}" + (
                f"  ({outputs})" if outputs else ""
            ), "ok"
        case NodeFailed(node=node, message=message, upstream=None):
            return f"  {node} failed: {message}", "error"
        case NodeFailed(node=node, message=message):
            return f"  {node}: {message}", "warning"
        case ItemError(node=node, item=item, message=message):
            return f"  {node}: skipped {item}: {message}", "warning"
        case RunFinished(ok=ok, seconds=seconds, failed=failed, cancelled=cancelled):
            if cancelled:
                return "run cancelled; no partial output files were left behind", "warning"
            if not ok:
                return f"run failed: {', '.join(failed)}", "error"
            return f"run done in {run_status.format_seconds(seconds)}", "ok"
    return None
