"""Which files a `path` param names, in natural order, and the item name each one gets.

A folder means its image files (and, asked for, those of its sub-folders); anything else
is a glob pattern. Files sort naturally (frame_2 before frame_10). An item's name is the
file's path relative to the folder (or to the pattern's fixed leading folders) without its
extension, written with `/`: `a/photo` and `b/photo` stay apart. When two files differ only
in their extension (`photo.png`, `photo.jpg`) both keep it: `photo.png`, `photo.jpg`.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
_DIGITS = re.compile(r"(\d+)")
_MAGIC = re.compile(r"[*?[]")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that reads runs of digits as numbers: 'frame_2' < 'frame_10'."""
    return tuple(
        (1, int(part)) if part.isdigit() else (0, part.lower())
        for part in _DIGITS.split(text)
        if part
    )


def _path_key(path: Path, root: Path) -> tuple[tuple[tuple[int, int | str], ...], ...]:
    relative = path.relative_to(root) if path.is_relative_to(root) else path
    return tuple(natural_key(part) for part in relative.parts)


def pattern_root(pattern: str) -> Path:
    """The fixed folders a glob pattern starts with: 'photos/**/*.jpg' -> 'photos'."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if _MAGIC.search(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def image_root(path: str) -> Path:
    """The folder item names of `path` are relative to: the folder itself, or a pattern's root."""
    return Path(path) if Path(path).is_dir() else pattern_root(path)


def list_images(path: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """The files `path` names: a folder's image files, or a glob's matches, in natural order.

    `recursive` takes a folder's sub-folders too (a pattern recurses with `**`). Raises
    ValueError when nothing matches, saying what was looked for.
    """
    path = os.fspath(path)
    folder = Path(path)
    if folder.is_dir():
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        files = [p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            where = "or its sub-folders " if recursive else ""
            raise ValueError(
                f"the folder {path!r} {where}holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                "point `path` at a folder of images or a pattern like 'photos/*.jpg'"
            )
        return sorted(files, key=lambda p: _path_key(p, folder))
    files = [Path(p) for p in glob.glob(path, recursive=True) if os.path.isfile(p)]
    if not files:
        what = "pattern" if _MAGIC.search(path) else "file or folder"
        raise ValueError(
            f"the {what} {path!r} matched no files; check the path "
            "(relative paths start at the graph file's folder)"
        )
    root = pattern_root(path)
    return sorted(files, key=lambda p: _path_key(p, root))


def item_names(files: list[Path], root: Path) -> list[str]:
    """Each file's item name: its path under `root` without extension, unique in the list."""
    relative = [
        PurePosixPath(*(f.relative_to(root) if f.is_relative_to(root) else Path(f.name)).parts)
        for f in files
    ]
    stems = [str(r.with_suffix("")) for r in relative]
    repeated = {stem for stem, count in Counter(stems).items() if count > 1}
    return [str(r) if stem in repeated else stem for r, stem in zip(relative, stems, strict=True)]
