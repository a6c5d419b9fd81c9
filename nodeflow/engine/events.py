"""Run events: what the executor tells its clients (CLI progress bars, the TUI, tests, scripts).

Each event is a small frozen dataclass; `to_json` gives the line `--events jsonl` writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    def to_json(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class RunStarted(Event):
    nodes: list[str]
    device: str
    precision: str
    engine: str = "local"
    world_size: int = 1


@dataclass(frozen=True)
class NodeStarted(Event):
    node: str
    type: str


@dataclass(frozen=True)
class NodeProgress(Event):
    node: str
    done: int
    total: int | None
    eta: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemError(Event):
    node: str
    item: str
    message: str


@dataclass(frozen=True)
class NodeFinished(Event):
    node: str
    seconds: float
    cached: bool = False
    summary: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeFailed(Event):
    node: str
    type: str
    message: str
    upstream: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class RunWarning(Event):
    """Something the run worked around (a damaged cache entry, a failed cache write)."""

    message: str
    node: str | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    ok: bool
    seconds: float
    failed: list[str]
    cancelled: bool = False
