"""Shared fixtures: an isolated cache per test, the registry, and a helper to run graph text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nodeflow.engine.cache import Cache
from nodeflow.engine.events import Event
from nodeflow.engine.executor import Executor, RunResult
from nodeflow.graph import Graph
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own cache and config folders, and no stray plugins from the
    environment."""
    monkeypatch.setenv("NODEFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("NODEFLOW_PLUGIN_PATH", raising=False)
    monkeypatch.delenv("NODEFLOW_DISABLE_PLUGINS", raising=False)
    torch.manual_seed(0)


@pytest.fixture
def registry() -> Registry:
    reset_registry()
    return load_registry()


@pytest.fixture
def run_graph(tmp_path: Path, registry: Registry) -> Callable[..., tuple[RunResult, list[Event]]]:
    """Write `text` as a graph file in tmp_path, run it on the CPU, return the result and events."""

    def run(text: str, name: str = "graph.toml", **kwargs) -> tuple[RunResult, list[Event]]:
        path = tmp_path / name
        path.write_text(text)
        graph = Graph.load(path)
        events: list[Event] = []
        executor = Executor(registry, Cache(tmp_path / "cache"), device="cpu")
        result = executor.run(graph, on_event=events.append, **kwargs)
        return result, events

    return run
