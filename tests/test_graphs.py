"""Every graph shipped in graphs/ validates and runs, at small sizes, from a copy in tmp."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nodeflow.engine.cache import Cache
from nodeflow.engine.executor import Executor
from nodeflow.graph import Graph

GRAPHS = sorted((Path(__file__).parent.parent / "graphs").glob("*.toml"))
# Shrink every graph to seconds: small photos and crops, tiny networks, a few steps.
SMALL = {
    "sample_images": {"size": 48},
    "random_image": {"size": 48},
    "pairs": {"crop": 32, "crops_per_image": 2},
    "train_unet": {"steps": 2, "num_downs": 3, "ngf": 4, "sample_every": 0},
    "train_pix2pix": {"steps": 2, "num_downs": 3, "ngf": 4, "ndf": 4, "sample_every": 0},
    "train_autoencoder": {"steps": 2, "width": 4, "sample_every": 0},
    "cyclegan.train": {"steps": 2, "crop": 24, "ngf": 4, "n_blocks": 1, "ndf": 4, "n_layers": 2},
}
# These need files only their user has (pretrained weights, a folder of class folders, a
# community upscaler); the plugins' tests make stand-ins and run them:
# plugins/nodeflow-transfer/tests and plugins/nodeflow-spandrel/tests.
NEEDS_USER_FILES = {"transfer_classify", "transfer_features_pca", "upscale_community"}
RUN_HERE = [p for p in GRAPHS if p.stem not in NEEDS_USER_FILES]


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_shipped_graph_validates(path: Path, registry) -> None:
    assert Graph.load(path).validate(registry) == []


@pytest.mark.parametrize("path", RUN_HERE, ids=[p.stem for p in RUN_HERE])
def test_shipped_graph_runs_small(path: Path, registry, tmp_path: Path) -> None:
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    graph = Graph.load(copy)
    for spec in graph.nodes.values():
        spec.params.update(SMALL.get(spec.type, {}))
    result = Executor(registry, Cache(tmp_path / "cache"), device="cpu").run(graph)
    assert result.ok, result.failed
    saved = list((tmp_path / "out").rglob("*.png")) + list(
        (tmp_path / "out").rglob("*.safetensors")
    )
    assert saved, "every shipped graph saves an image or a model"
