"""Short descriptions of values for people: error messages, event summaries, the TUI."""

from __future__ import annotations

from typing import Any

import torch

from nodeflow.types import Latent, PCABasis, Scores, Stream

_CHANNELS = {1: "gray", 3: "RGB"}


def describe(value: Any) -> str:
    """ "RGB image batch 4x3x64x64", "PCA basis (16 components of 3x8x8)", "0.53"."""
    if value is None:
        return "nothing"
    if isinstance(value, torch.Tensor):
        return _describe_tensor(value)
    if isinstance(value, Stream):
        count = (
            f"{value.total} batch{'es' if value.total != 1 else ''}" if value.total else "batches"
        )
        return f"stream of {count}"
    if isinstance(value, Latent):
        return f"latent {_shape(value.tensor)} from {value.source}"
    if isinstance(value, Scores):
        return f"scores for {len(value)} images"
    if isinstance(value, PCABasis):
        c, h, w = value.shape
        return f"PCA basis ({len(value.components)} components of {c}x{h}x{w})"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int | bool | str):
        return repr(value) if isinstance(value, str) else str(value)
    describe_self = getattr(value, "describe", None)
    if callable(describe_self):
        return str(describe_self())
    return type(value).__name__


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape))


def _describe_tensor(tensor: torch.Tensor) -> str:
    if tensor.dim() == 4 and tensor.shape[1] in _CHANNELS:
        return f"{_CHANNELS[tensor.shape[1]]} image batch {_shape(tensor)}"
    return f"tensor {_shape(tensor)} {str(tensor.dtype).removeprefix('torch.')}"


def summarize_outputs(outputs: dict[str, Any]) -> dict[str, str]:
    """One short description per output, for `NodeFinished` events."""
    return {name: describe(value) for name, value in outputs.items()}
