"""Every graph shipped in graphs/ validates and runs, at small sizes, from a copy in tmp."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nodeflow.engine.cache import Cache
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph

GRAPHS = sorted((Path(__file__).parent.parent / "graphs").glob("*.toml"))
SMALL = {"sample_images": {"size": 48}}


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_shipped_graph_validates(path: Path, registry) -> None:
    assert Graph.load(path).validate(registry) == []


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_shipped_graph_runs_small(path: Path, registry, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    graph = Graph.load(copy)
    for spec in graph.nodes.values():
        spec.params.update(SMALL.get(spec.type, {}))
    result = Executor(registry, Cache(tmp_path / "cache"), device="cpu").run(graph)
    assert result.ok, result.failed
    saved = list((tmp_path / "out").rglob("*.png"))
    assert saved, "every shipped graph saves at least one image"
