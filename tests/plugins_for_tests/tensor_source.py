"""Test-only plugin: stream images from a tensor file saved with `torch.save`.

Load it by naming this folder in NODEFLOW_PLUGIN_PATH (see `tests/helpers.py`); its node
is `tensor_source.from_file`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from nodeflow.engine.context import NodeContext
from nodeflow.node import Int, Output, node
from nodeflow.node import Path as PathParam
from nodeflow.plugins import hookimpl
from nodeflow.types import IMAGE, Batch, Stream


def _file_state(params: dict[str, Any]) -> str:
    stat = Path(params["path"]).stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


@node(
    "from_file",
    outputs={"image": Output(IMAGE)},
    params={"path": PathParam(), "batch_size": Int(8, min=1)},
    mode="source",
    fingerprint=_file_state,
)
def from_file(*, path: str, batch_size: int, ctx: NodeContext) -> Stream:
    """Stream the N x C x H x W tensor saved in `path`, batch_size images at a time.

    Items are named by their index: 00000, 00001, ...
    """
    images = torch.load(path, weights_only=True).to(ctx.device, torch.float32)

    def produce() -> Iterator[Batch]:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            yield Batch(chunk, [f"{start + i:05d}" for i in range(len(chunk))])

    return Stream(produce, total=math.ceil(len(images) / batch_size))


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(from_file)
