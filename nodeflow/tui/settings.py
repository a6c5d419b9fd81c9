"""The editor's settings kept between sessions (the theme), in a small TOML file:
`$XDG_CONFIG_HOME/nodeflow/tui.toml`, else `~/.config/nodeflow/tui.toml`.

A file that cannot be read is ignored (the defaults apply) rather than stop the editor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from nodeflow.atomic import write_text_atomic


def settings_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "nodeflow" / "tui.toml"


def load_settings() -> dict[str, Any]:
    try:
        return tomlkit.parse(settings_path().read_text(encoding="utf-8")).unwrap()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError):
        return {}


def save_setting(key: str, value: Any) -> None:
    """Set one setting, keeping the rest of the file (and its comments) as it is."""
    path = settings_path()
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError):
        document = tomlkit.document()
    if document.get(key) == value:
        return
    document[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, tomlkit.dumps(document))
    except OSError:
        pass  # a read-only home: the choice lasts this session only
