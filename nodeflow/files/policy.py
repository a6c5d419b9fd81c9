"""Where a node may write files: the one policy every node that writes follows.

- A file stays inside the folder its param names (or is the file it names), and inside the
  run's output root when there is one (`nodeflow run --output-root DIR`; the default for a
  graph taken from an image). Symlinks are followed before the check.
- Names that come from data (item names, which come from file names) are sanitized: no path
  separators but the `/` between a loaded file's sub-folders, no `..`, no leading dot, no
  control characters. A file name pattern, which comes from the graph, may make
  sub-folders, but no absolute path, `..`, empty or hidden part.
- A writer writes only its own format's extension: a file param without one gets it,
  another one is refused.
- An existing file is replaced only by a file of the same name the node itself writes, and
  never when it is read-only or a folder. Within one node, two items that would write the
  same file get unique names (`-2`, `-3`, ...); two nodes writing into one folder, or a
  node writing where the run reads images, are refused at validation
  (`nodeflow.files.conflicts`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEPARATORS = re.compile(r"[/\\]")


class WriteRefused(ValueError):
    """A write the policy does not allow; the message says which file and why."""


def safe_item_name(name: str) -> str:
    """An item name fit for a file name: `/` may separate sub-folders, nothing may climb out."""
    parts = [_safe_part(part) for part in _SEPARATORS.split(name) if part not in ("", ".")]
    return "/".join(parts) or "_"


def _safe_part(part: str) -> str:
    part = _CONTROL.sub("_", part)
    if part == "..":
        return "_"
    return "_" + part[1:] if part.startswith(".") else part


def confine(path: Path, root: Path | None) -> Path:
    """`path` absolute with symlinks followed; `WriteRefused` when it is outside `root`."""
    resolved = path.expanduser().resolve()
    if root is not None and not resolved.is_relative_to(root.resolve()):
        raise WriteRefused(
            f"{str(path)!r} is outside the output root {str(root)!r}; this run may write only "
            "inside it (--output-root, the default for a graph taken from an image)"
        )
    return resolved


def output_folder(folder: str | Path, root: Path | None) -> Path:
    """A writer's folder param, checked against `root` and created."""
    target = confine(Path(folder), root)
    target.mkdir(parents=True, exist_ok=True)
    return target


def file_in_folder(folder: Path, relative: str, suffix: str, root: Path | None) -> Path:
    """`folder/relative` plus `suffix`, refused when it would leave `folder` or hide itself.

    `relative` is a file name pattern's result, with item names already sanitized.
    """
    name = PurePosixPath(relative.replace("\\", "/"))
    rule = "a pattern makes names inside its folder: no absolute path, no '..', no leading dot"
    if not relative.strip():
        raise WriteRefused(f"the file name pattern gave an empty name ({suffix!r} alone); {rule}")
    if name.is_absolute() or ".." in name.parts:
        raise WriteRefused(f"the file name {relative + suffix!r} leaves {str(folder)!r}; {rule}")
    if any(part.startswith(".") for part in name.parts):
        raise WriteRefused(f"the file name {relative + suffix!r} would be hidden; {rule}")
    home = folder.resolve()
    target = confine(folder / (str(name) + suffix), root)
    if not target.is_relative_to(home):
        raise WriteRefused(f"{str(folder / name)!r} leads out of the folder {str(folder)!r}")
    return target


def output_file(path: str | Path, suffix: str, root: Path | None) -> Path:
    """A writer's file param: it gets `suffix` when it has none; another suffix is refused."""
    target = Path(path)
    if not target.suffix:
        target = target.with_name(target.name + suffix)
    if target.suffix.lower() != suffix:
        raise WriteRefused(
            f"this node writes {suffix} files only; name the file {target.stem}{suffix} "
            f"instead of {target.name}"
        )
    if target.name.startswith("."):
        raise WriteRefused(f"{str(target)!r} is a hidden file name; give it a visible name")
    return confine(target, root)


def check_replaceable(path: Path) -> None:
    """Raise `WriteRefused` when `path` exists as a folder or a read-only file.

    Read-only means this process may not write it, or it has no write permission bit at
    all (which the superuser, whom the system lets write anything, should respect too).
    """
    if path.is_dir():
        raise WriteRefused(f"{str(path)!r} is a folder; nodeflow writes a file there only")
    if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
        raise WriteRefused(
            f"{str(path)!r} exists and is read-only; nodeflow does not replace read-only "
            "files: make it writable, move it, or write elsewhere"
        )


class NameClaims:
    """The files one node has written in this run, so no two of its items share a file."""

    def __init__(self) -> None:
        self._taken: set[Path] = set()

    def claim(self, path: Path) -> Path:
        """`path`, or `path` with `-2`, `-3`, ... before its suffix when already taken."""
        candidate, number = path, 1
        while candidate in self._taken:
            number += 1
            candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
        self._taken.add(candidate)
        return candidate
