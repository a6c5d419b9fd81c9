"""Test helpers: a source node that streams a saved tensor, and its fixture; a real
`nodeflow run` process.

Request the `tensor_source` fixture *before* `registry` or `run_graph` in a test's
arguments: it puts the test-only plugin on NODEFLOW_PLUGIN_PATH, and the registry must be
built after that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nodeflow.plugins import reset_registry

PLUGINS_FOR_TESTS = Path(__file__).parent / "plugins_for_tests"


class TensorSource:
    """Saves tensors in a test's folder and writes the graph text of nodes that stream them."""

    def __init__(self, folder: Path):
        self.folder = folder

    def node(self, node_id: str, images: torch.Tensor, batch_size: int = 8) -> str:
        """A `[nodes.<node_id>]` table streaming `images` (N x C x H x W) in batches."""
        path = self.folder / f"{node_id}.pt"
        torch.save(images.contiguous(), path)
        return (
            f"[nodes.{node_id}]\n"
            'type = "tensor_source.from_file"\n'
            f'params = {{ path = "{path.as_posix()}", batch_size = {batch_size} }}\n'
        )


@pytest.fixture
def tensor_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TensorSource:
    """Make `tensor_source.from_file` available to graphs run in this test."""
    monkeypatch.setenv("NODEFLOW_PLUGIN_PATH", str(PLUGINS_FOR_TESTS))
    reset_registry()
    folder = tmp_path / "tensors"
    folder.mkdir()
    return TensorSource(folder)


def start_run(graph: Path, cache: Path) -> subprocess.Popen[str]:
    """`nodeflow run GRAPH --events jsonl` as its own process, in the graph's folder, with
    `cache` as its cache and no other NODEFLOW_ variable; events on its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEFLOW_")}
    env["NODEFLOW_CACHE_DIR"] = str(cache)
    return subprocess.Popen(
        [sys.executable, "-m", "nodeflow.cli", "run", str(graph), "--events", "jsonl"],
        cwd=graph.parent, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
