"""The engine API that clients (the CLI, the TUI, scripts, tests) use.

A client loads the registry (`nodeflow.plugins.load_registry`), reads a graph
(`nodeflow.graph.Graph.load`), validates it (`graph.validate(registry)`), then runs it
with `Executor(registry).run(graph, on_event=..., cancel=CancelToken())`.
"""

from nodeflow.engine.cache import Cache
from nodeflow.engine.context import CancelToken, NodeContext, RunCancelled
from nodeflow.engine.device import DeviceError
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
from nodeflow.engine.executor import Executor, NodeError, RunResult

__all__ = [
    "Cache",
    "CancelToken",
    "DeviceError",
    "Event",
    "Executor",
    "ItemError",
    "NodeContext",
    "NodeError",
    "NodeFailed",
    "NodeFinished",
    "NodeProgress",
    "NodeStarted",
    "RunCancelled",
    "RunFinished",
    "RunResult",
    "RunStarted",
]
