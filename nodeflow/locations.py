"""Where nodeflow keeps things of its own on the user's machine (no heavy imports here)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`NODEFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/nodeflow`, else `~/.cache/nodeflow`."""
    if os.environ.get("NODEFLOW_CACHE_DIR"):
        return Path(os.environ["NODEFLOW_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nodeflow"
