"""pytest fixtures for plugin authors: run graph text through the real engine on the CPU.

Name this module in your plugin's `tests/conftest.py`:

    pytest_plugins = ["nodeflow.testing"]

and tests can take them as arguments:

- `nodeflow_registry`: the registry built from every installed plugin (yours included,
  once it is installed with `pip install -e .`), built afresh for the test.
- `run_graph`: `run_graph(text)` writes graph TOML text into the test's temporary folder,
  validates it, runs it on the CPU with a cache in that folder, and returns
  `(RunResult, events)`. Relative paths in the graph start at that folder. An invalid
  graph fails the test with every problem listed, and with the errors of any plugin that
  failed to load (the usual reason a node type is unknown).

`run_graph_text` is the same without pytest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from nodeflow.engine.cache import Cache
from nodeflow.engine.events import Event
from nodeflow.engine.executor import Executor, RunResult
from nodeflow.graph import Graph, GraphFileError
from nodeflow.plugins import load_registry, reset_registry
from nodeflow.registry import Registry

__all__ = ["nodeflow_registry", "plugin_problems", "run_graph", "run_graph_text"]


def plugin_problems(registry: Registry) -> list[str]:
    """One line per error of every plugin that failed to load or register."""
    return [
        f"plugin {record.name!r} ({record.source}): {error}"
        for record in registry.plugins.values()
        for error in record.errors
    ]


def run_graph_text(
    text: str,
    folder: str | Path,
    registry: Registry | None = None,
    name: str = "graph.toml",
    **run_options: Any,
) -> tuple[RunResult, list[Event]]:
    """Write `text` to `folder/name`, run it on the CPU, return the result and its events.

    `folder` is made if it does not exist. `run_options` go to `Executor.run` (e.g. `targets=["node_id"]`). The cache lives in
    `folder/cache`. Raises AssertionError listing the problems of an invalid graph.
    """
    registry = registry if registry is not None else load_registry()
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / name
    path.write_text(text)
    events: list[Event] = []
    executor = Executor(registry, Cache(Path(folder) / "cache"), device="cpu")
    try:
        result = executor.run(Graph.load(path), on_event=events.append, **run_options)
    except GraphFileError as exc:
        lines = [problem.format(path) for problem in exc.all_problems(registry)]
        broken = plugin_problems(registry)
        if broken:
            lines += ["plugins that failed to load:", *broken]
        raise AssertionError("the graph is invalid:\n  " + "\n  ".join(lines)) from None
    return result, events


@pytest.fixture
def nodeflow_registry() -> Registry:
    """Every installed plugin's nodes and architectures, loaded afresh for this test."""
    reset_registry()
    return load_registry()


@pytest.fixture
def run_graph(
    tmp_path: Path, nodeflow_registry: Registry
) -> Callable[..., tuple[RunResult, list[Event]]]:
    """`run_graph(text, name="graph.toml", **run_options)` -> (RunResult, events), on the CPU."""
    torch.manual_seed(0)

    def run(text: str, name: str = "graph.toml", **run_options: Any) -> tuple[RunResult, list]:
        return run_graph_text(text, tmp_path, nodeflow_registry, name, **run_options)

    return run
