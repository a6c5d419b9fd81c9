"""What the preview shows for a node: the images of its output's first batch (or the latest
sample a training node wrote), made small enough to draw, and, when there is nothing to
show, exactly why. Getting the images may pull a batch of a stream, so `fetch_images` runs
in a worker thread; nothing here imports Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from PIL import Image

from nodeflow.node import NodeType
from nodeflow.tui.status import NodeStatus, State
from nodeflow.tui.widgets.preview import to_pixels
from nodeflow.types import PIXEL_TYPES

PREVIEW_MAX = 256
"""Longest side, in pixels, of the images kept for previews (the panel is far smaller)."""
PAGE_MAX = 32
"""At most this many images of a batch are kept to page through."""


@dataclass(frozen=True)
class PreviewImages:
    """RGB uint8 images (height x width x 3) to page through, and what they are."""

    label: str
    images: list[np.ndarray]
    source: str
    """`first batch` of an output, or a sample file's name."""
    batch_size: int = 1

    def caption(self, index: int) -> str:
        if len(self.images) == 1 and self.batch_size == 1:
            return f"{self.label}: {self.source}"
        kept = "" if len(self.images) == self.batch_size else f" (first {len(self.images)} kept)"
        return (
            f"{self.label}: image {index + 1} of {self.batch_size} in the {self.source}{kept}"
            "   [ ] pages"
        )


def image_outputs(node_type: NodeType | None) -> list[str]:
    """The names of a node type's image outputs, in order."""
    if node_type is None:
        return []
    return [name for name, out in node_type.outputs.items() if out.type.name in PIXEL_TYPES]


def fetch_images(label: str, value: Any, batch: Any, sample: str | None) -> PreviewImages:
    """The images to preview: a sample file, a kept first batch, or the first batch of a
    stream (pulled now, which may compute its upstream)."""
    if value is None and batch is None:
        image = Image.open(sample or "").convert("RGB")
        image.thumbnail((PREVIEW_MAX, PREVIEW_MAX))
        return PreviewImages(
            label, [np.asarray(image)], f"latest sample, {Path(sample or '').name}"
        )
    data = batch.data if batch is not None else next(iter(value)).data
    kept = _shrink(data[:PAGE_MAX])
    return PreviewImages(label, [to_pixels(image) for image in kept], "first batch", len(data))


def no_image_reason(
    node_id: str, type_id: str, node_type: NodeType | None, status: NodeStatus, stale: bool
) -> str:
    """Why there is no image to show for a node, and what would give one."""
    if node_type is None:
        return f"{node_id}: there is no node type {type_id!r}, so it has no output to show."
    if not image_outputs(node_type):
        outputs = ", ".join(f"{name} ({out.type.name})" for name, out in node_type.outputs.items())
        return (
            f"{node_id} ({type_id}) has no image output to view; its outputs: {outputs or 'none'}."
        )
    match status.state:
        case State.RUNNING | State.WAITING:
            return f"{node_id} is still running: its image shows when it is done."
        case State.FAILED:
            return f"{node_id} failed, so it has no image: {status.message}"
        case State.CANCELLED:
            return f"The run was cancelled before {node_id} finished: r runs it again."
        case State.CACHED:
            return f"{node_id} came from the cache without being loaded: R loads it (no recompute)."
        case State.DONE:
            return f"{node_id} ran, but the run kept no image of it: R runs up to it to keep one."
    if stale:
        return f"{node_id} changed since the last run: r runs the graph, R runs up to {node_id}."
    return f"{node_id} has not run yet: r runs the graph, R runs up to {node_id}."


def _shrink(image: Any) -> Any:
    """An image batch no larger than PREVIEW_MAX on its longest side."""
    height, width = image.shape[-2:]
    scale = PREVIEW_MAX / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image.float(), size=size, mode="area")
