"""nodeflow: plugin-based image-synthesis node graphs for PyTorch.

From Python (see docs/python.md):

    import nodeflow
    g = nodeflow.Graph()                          # or nodeflow.load("graph.toml")
    photos = g.add("sample_images", size=64)
    noisy = g.add("add_noise", image=photos.image, sigma=25)
    result = nodeflow.run(g)
    result[noisy]["image"]                        # the noisy images, B x C x H x W

The names below are imported on first use, so `import nodeflow` stays quick and torch is
imported only when a graph's node types are loaded or a graph runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodeflow.builder import Graph, NodeHandle, load
    from nodeflow.graph import GraphFileError
    from nodeflow.runner import NodeFailedError, Result, run

__version__ = "0.1.0"

_LAZY = {
    "Graph": "nodeflow.builder",
    "NodeHandle": "nodeflow.builder",
    "load": "nodeflow.builder",
    "GraphFileError": "nodeflow.graph",
    "run": "nodeflow.runner",
    "Result": "nodeflow.runner",
    "NodeFailedError": "nodeflow.runner",
}

__all__ = [
    "Graph",
    "GraphFileError",
    "NodeFailedError",
    "NodeHandle",
    "Result",
    "__version__",
    "load",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nodeflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
