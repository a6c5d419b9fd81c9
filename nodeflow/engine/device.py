"""Device and precision: `auto` picks CUDA, then MPS, then the CPU."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """The requested device or precision cannot be used here."""


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for `auto|cpu|cuda[:N]|mps`, checked against what this machine has."""
    if not DEVICE_PATTERN.match(name):
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but this machine has no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise DeviceError(f"device {name!r} asked for, but this machine has {count} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' asked for, but MPS is not available here")
    return device


def resolve_precision(name: str) -> torch.dtype:
    if name not in PRECISIONS:
        raise DeviceError(f"unknown precision {name!r}: use {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


@contextlib.contextmanager
def compute_mode(device: torch.device, dtype: torch.dtype, inference: bool) -> Iterator[None]:
    """Inference mode for inference nodes, and autocast when a lower precision is asked for."""
    with contextlib.ExitStack() as stack:
        if inference:
            stack.enter_context(torch.inference_mode())
        if dtype != torch.float32:
            stack.enter_context(torch.autocast(device_type=device.type, dtype=dtype))
        yield
