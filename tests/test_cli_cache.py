"""`nodeflow cache info|clear` and the disk cache as a person sees it across processes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nodeflow.cli import main

PCA_GRAPH = """
version = 1

[nodes.photos]
type = "sample_images"
params = { names = "camera,coins", size = 32 }

[nodes.basis]
type = "pca_fit"
params = { components = 4, patch_size = 8 }
inputs = { image = "photos.image" }

[nodes.eigen]
type = "pca_components"
params = { count = 4 }
inputs = { basis = "basis.basis" }

[nodes.save]
type = "save_images"
params = { folder = "out" }
inputs = { image = "eigen.image" }
"""


def _started(output: str) -> list[str]:
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [e["node"] for e in events if e["event"] == "NodeStarted"]


def _entries(info: str, kind: str) -> int:
    line = next(line for line in info.splitlines() if line.startswith(kind))
    return int(line.split()[1])


def test_cache_info_and_clear(tmp_path: Path) -> None:
    graph = tmp_path / "pca.toml"
    graph.write_text(PCA_GRAPH)
    runner = CliRunner()
    empty = runner.invoke(main, ["cache", "info"])
    assert _entries(empty.output, "total") == 0

    first = runner.invoke(main, ["run", str(graph), "--events", "jsonl"])
    assert first.exit_code == 0, first.output
    assert "basis" in _started(first.output)
    info = runner.invoke(main, ["cache", "info"]).output
    assert str(tmp_path / "cache") in info
    assert _entries(info, "results") >= 1  # the PCA basis persists
    assert _entries(info, "sinks") == 1  # save_images recorded what it wrote

    cleared = runner.invoke(main, ["cache", "clear"])
    assert f"removed {_entries(info, 'total')} entries" in cleared.output
    assert _entries(runner.invoke(main, ["cache", "info"]).output, "total") == 0


def test_no_cache_leaves_the_cache_empty(tmp_path: Path) -> None:
    graph = tmp_path / "pca.toml"
    graph.write_text(PCA_GRAPH)
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(graph), "--no-cache", "--quiet"])
    assert result.exit_code == 0, result.output
    assert _entries(runner.invoke(main, ["cache", "info"]).output, "total") == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


def test_bf16_precision_runs_on_the_cpu(tmp_path: Path) -> None:
    graph = tmp_path / "pca.toml"
    graph.write_text(PCA_GRAPH)
    result = CliRunner().invoke(main, ["run", str(graph), "--precision", "bf16", "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


TRAIN_GRAPH = """
version = 1

[nodes.photos]
type = "sample_images"
params = { names = "camera", size = 32 }

[nodes.pairs]
type = "pairs"
params = { task = "autoencode", crop = 16, crops_per_image = 2 }
inputs = { image = "photos.image" }

[nodes.train]
type = "train_autoencoder"
params = { latent_channels = 2, depth = 1, width = 4, steps = 3, batch_size = 2, samples = "samples" }
inputs = { dataset = "pairs.dataset" }

[nodes.save]
type = "save_model"
params = { path = "out/ae.safetensors" }
inputs = { model = "train.model" }
"""


def test_a_graph_named_relatively_finds_what_it_cached_by_absolute_path(
    tmp_path: Path, monkeypatch
) -> None:
    graph = tmp_path / "train.toml"
    graph.write_text(TRAIN_GRAPH)
    runner = CliRunner()
    first = runner.invoke(main, ["run", str(graph), "--events", "jsonl"])
    assert first.exit_code == 0, first.output
    assert "train" in _started(first.output)

    monkeypatch.chdir(tmp_path)
    again = runner.invoke(main, ["run", "train.toml", "--events", "jsonl"])
    assert again.exit_code == 0, again.output
    assert "train" not in _started(again.output)
