"""Messages between the widgets and the app: small dataclasses, one module.

Widgets say what the person asked for (select this node, set this param, link this input);
the app applies it to the document and tells every widget what changed. Run workers post
the engine's events and results the same way, from their thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from nodeflow.engine.events import Event
from nodeflow.engine.executor import RunResult
from nodeflow.graph import Link
from nodeflow.tui.previews import PreviewImages


@dataclass
class NodeSelected(Message):
    """Select a node everywhere (node list, graph view, problems, inspector)."""

    node_id: str


@dataclass
class ParamEdited(Message):
    """A param field holds a valid new value (`UNSET`: back to the default)."""

    node_id: str
    name: str
    value: Any


@dataclass
class InputLinked(Message):
    """An input was linked to an output, or unlinked (`link` None)."""

    node_id: str
    name: str
    link: Link | None


@dataclass
class ConnectRequested(Message):
    """The person asked to choose what feeds this input."""

    node_id: str
    name: str


@dataclass
class RunEventPosted(Message):
    """An event of run number `run` (posted from the run worker's thread)."""

    run: int
    event: Event


@dataclass
class RunEnded(Message):
    """Run number `run` is over: its result, or why it could not start."""

    run: int
    result: RunResult | None
    error: str = ""


@dataclass
class PreviewReady(Message):
    """Images for a node's preview, or (`images` None) why there are none."""

    node_id: str
    images: PreviewImages | None
    error: str = ""
