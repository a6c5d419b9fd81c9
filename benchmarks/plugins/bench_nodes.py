"""Cheap nodes for measuring the engine's own overhead (loaded via NODEFLOW_PLUGIN_PATH)."""

from collections.abc import Callable
from typing import Any

from nodeflow.node import Input, Int, Output, node
from nodeflow.plugins import hookimpl
from nodeflow.types import INT


@node("const", outputs={"value": Output(INT)}, params={"value": Int(0)})
def const(value: int) -> int:
    """An integer constant."""
    return value


@node("inc", inputs={"value": Input(INT)}, outputs={"value": Output(INT)}, params={"step": Int(1)})
def inc(value: int, step: int) -> int:
    """Add `step` to the input."""
    return value + step


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(const)
    register(inc)
