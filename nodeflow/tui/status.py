"""Per-node run status, folded from the engine's run events; how a status reads on screen.

`RunBoard.apply(event)` turns one event into status changes and says which nodes changed.
The node list, the graph view and the run panel all draw from the same board. Pure: no
Textual, so it is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nodeflow.engine.events import (
    Event,
    ItemError,
    NodeFailed,
    NodeFinished,
    NodeProgress,
    NodeStarted,
    RunFinished,
    RunStarted,
)


class State(Enum):
    IDLE = "idle"
    WAITING = "waiting"
    RUNNING = "running"
    CACHED = "cached"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


GLYPHS = {
    State.IDLE: "·",
    State.WAITING: "…",
    State.RUNNING: "▶",
    State.CACHED: "✓",
    State.DONE: "✓",
    State.FAILED: "✗",
    State.CANCELLED: "■",
}


def format_seconds(seconds: float) -> str:
    """`0.12s`, `3.4s`, `42s`, `2:05`: short enough for a box in the graph view."""
    if seconds < 10:
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def format_info(info: dict[str, Any]) -> str:
    """A training node's progress info (losses and the like), without the sample path."""
    parts = []
    for key, value in info.items():
        if key == "sample":
            continue
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


@dataclass
class NodeStatus:
    """Where one node stands in the latest run."""

    state: State = State.IDLE
    done: int = 0
    total: int | None = None
    eta: float | None = None
    seconds: float | None = None
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    passes: int = 1
    """Which pass over its data a node is on: a dataset a training node reads again each
    epoch starts its count over, and says so rather than look restarted."""

    @property
    def glyph(self) -> str:
        return GLYPHS[self.state]

    @property
    def fraction(self) -> float | None:
        if self.state == State.RUNNING and self.total:
            return min(self.done / self.total, 1.0)
        return None

    def short(self) -> str:
        """A few characters for a box or a list row: `62%`, `0.12s`, `cached`, `failed`."""
        if self.state == State.RUNNING:
            if self.fraction is not None:
                return f"{self.fraction:.0%}"
            return str(self.done) if self.done else "…"
        if self.state == State.DONE and self.seconds is not None:
            return format_seconds(self.seconds)
        if self.state in (State.CACHED, State.FAILED):
            return self.state.value
        return ""

    def detail(self) -> str:
        """One line for the run panel: counts, ETA or time, training info, failure."""
        if self.state == State.RUNNING:
            count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
            parts = [f"step {count}" if self.info else count]
            if self.passes > 1:
                parts.insert(0, f"pass {self.passes}")
            if self.eta is not None:
                parts.append(f"eta {format_seconds(self.eta)}")
            if self.info:
                parts.append(format_info(self.info))
            return "  ".join(parts)
        if self.state == State.DONE:
            parts = [f"done in {format_seconds(self.seconds or 0.0)}"]
            if self.info:
                parts.append(format_info(self.info))
            if self.skipped:
                parts.append(f"{self.skipped} item(s) skipped")
            return "  ".join(parts)
        if self.state == State.FAILED:
            return self.message
        return self.state.value


class RunBoard:
    """The status of every node, updated event by event."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeStatus] = {}
        self.running = False
        self.cancelled = False

    def get(self, node_id: str) -> NodeStatus:
        return self.nodes.get(node_id) or NodeStatus()

    def forget(self, node_ids: set[str]) -> None:
        """Nodes whose results an edit made stale go back to idle."""
        for node_id in node_ids:
            self.nodes.pop(node_id, None)

    def abort(self) -> None:
        """The run stopped without its last event (it could not start): nothing is running."""
        self.running = False
        for status in self.nodes.values():
            if status.state in (State.WAITING, State.RUNNING):
                status.state = State.IDLE

    def rename(self, old: str, new: str) -> None:
        if old in self.nodes:
            self.nodes[new] = self.nodes.pop(old)

    def apply(self, event: Event) -> set[str]:
        """Fold one event in; return the ids of the nodes whose status changed."""
        match event:
            case RunStarted(nodes=nodes):
                self.running, self.cancelled = True, False
                for node_id in nodes:
                    self.nodes[node_id] = NodeStatus(State.WAITING)
                return set(nodes)
            case NodeStarted(node=node):
                self.nodes[node] = NodeStatus(State.RUNNING)
                return {node}
            case NodeProgress(node=node, done=done, total=total, eta=eta, info=info):
                status = self.nodes.setdefault(node, NodeStatus(State.RUNNING))
                status.state = State.RUNNING
                if done < status.done:
                    status.passes += 1
                status.done, status.total, status.eta = done, total, eta
                status.info.update(info)
                return {node}
            case NodeFinished(node=node, seconds=seconds, cached=cached, summary=summary):
                status = self.nodes.setdefault(node, NodeStatus())
                status.state = State.CACHED if cached else State.DONE
                status.seconds, status.eta = seconds, None
                status.summary = dict(summary) or status.summary
                return {node}
            case NodeFailed(node=node, message=message):
                status = self.nodes.setdefault(node, NodeStatus())
                status.state, status.message = State.FAILED, message
                return {node}
            case ItemError(node=node):
                self.nodes.setdefault(node, NodeStatus(State.RUNNING)).skipped += 1
                return {node}
            case RunFinished(cancelled=cancelled):
                self.running, self.cancelled = False, cancelled
                changed = set()
                for node_id, status in self.nodes.items():
                    if status.state == State.RUNNING:
                        status.state = State.CANCELLED if cancelled else State.DONE
                        changed.add(node_id)
                    elif status.state == State.WAITING:
                        status.state = State.CANCELLED if cancelled else State.IDLE
                        changed.add(node_id)
                return changed
        return set()
