"""Completion for path params: shipped model names (for `checkpoint`) and the file system.

Textual shows a suggestion greyed after the typed text; right arrow or end accepts it.
Relative paths complete against the graph file's folder, as the engine resolves them.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester

from nodeflow.models.checkpoint import shipped_checkpoints

MODEL_PARAMS = {"checkpoint"}
"""Path params that also take the name of a shipped model."""


def shipped_model_names(param_name: str) -> list[str]:
    return list(shipped_checkpoints()) if param_name in MODEL_PARAMS else []


class PathSuggester(Suggester):
    """Suggests the first shipped name, or the first file or folder, that `value` begins."""

    def __init__(self, base_dir: Path, names: list[str]):
        super().__init__(use_cache=False, case_sensitive=True)
        self.base_dir = base_dir
        self.names = names

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value, self.base_dir, self.names)


def complete_path(value: str, base_dir: Path, names: list[str]) -> str | None:
    """`value` completed: a shipped name it begins, else an entry of its folder it begins
    (a folder with a trailing `/`), hidden files only when asked for with a dot."""
    if not value:
        return None
    named = next((name for name in names if name.startswith(value) and name != value), None)
    if named is not None:
        return named
    folder_text, slash, stem = value.rpartition("/")
    prefix = folder_text + slash
    folder = Path(os.path.expanduser(prefix or "."))
    if not folder.is_absolute():
        folder = base_dir / folder
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return None
    for entry in entries:
        if not entry.name.startswith(stem) or entry.name == stem:
            continue
        if entry.name.startswith(".") and not stem.startswith("."):
            continue
        return prefix + entry.name + ("/" if entry.is_dir() else "")
    return None
