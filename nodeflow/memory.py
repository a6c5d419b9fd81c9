"""Memory asked for before anything runs: sizes in text, the budget, and node footprints.

A graph file is text anyone can write: `random_image` with `count = 16, size = 8192`
or `resize` to 31623 x 31623 validates as well-formed, then asks for 12 to 13 GB the
moment it runs. Nodes whose params decide the size of what they make declare a
`Footprint`, and validation refuses a batch bigger than the memory budget, naming the
node, the param and the bytes. The budget is `NODEFLOW_MEMORY_BUDGET` (`8GB`, `500MB`)
or, by default, a quarter of the machine's memory: a node's work holds several tensors
of a batch's size at once. Torch-free, like validation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9}
FLOAT_BYTES = 4
FALLBACK_MEMORY = 8 * 10**9  # when the machine does not say how much memory it has


def parse_size(text: str) -> int:
    """Bytes from `4GB`, `500 MB`, `1e9` or `0`; ValueError when it is none of those."""
    match = re.fullmatch(r"\s*([0-9.e+]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else "?"
    if not match or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size; write it like 4GB, 500MB or 0")
    return int(float(match.group(1)) * _UNITS[unit])


def size_text(count: float) -> str:
    """Bytes for people: `12.9 GB`, `805 MB`, `64 kB`."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} bytes"


def memory_budget() -> int:
    """The most one batch of one node's output may take (see the module docstring)."""
    text = os.environ.get("NODEFLOW_MEMORY_BUDGET")
    if text:
        return parse_size(text)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = FALLBACK_MEMORY
    return total // 4


@dataclass(frozen=True)
class Footprint:
    """The float32 images one batch of a node's output holds, read from its params.

    `size` names the Size param (a side, or [height, width]); `count` a param saying how
    many images the node makes, of which one batch holds at most `batch`; `channels` a
    param name or a number.
    """

    size: str
    count: str | None = None
    batch: int = 1
    channels: str | int = 3

    def bytes(self, params: Mapping[str, Any]) -> int | None:
        """One batch's bytes for these params (defaults filled in); None without a size."""
        size = params.get(self.size)
        if size is None:
            return None
        height, width = (size, size) if isinstance(size, int | float) else size
        count = min(int(params.get(self.count) or 1), self.batch) if self.count else self.batch
        channels = params.get(self.channels) if isinstance(self.channels, str) else self.channels
        return int(count * int(channels or 3) * height * width * FLOAT_BYTES)

    def problem(self, params: Mapping[str, Any], budget: int) -> str | None:
        """Why these params cannot run within `budget` bytes, or None when they can."""
        need = self.bytes(params)
        if need is None or need <= budget:
            return None
        knobs = " or ".join(f"`{name}`" for name in (self.size, self.count) if name)
        return (
            f"one batch of these images would take {size_text(need)} of memory, more than the "
            f"budget of {size_text(budget)}; make {knobs} smaller, or raise the budget with "
            "NODEFLOW_MEMORY_BUDGET (for example 32GB)"
        )

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "count": self.count, "batch": self.batch,
                "channels": self.channels}  # fmt: skip
