"""What a file really is, from its first bytes: for checkpoint errors people can act on.

A PNG renamed `.safetensors` should be reported as a PNG image, not as the safetensors
reader's "header too large". `file_kind` names the formats people mix up with
checkpoints; `None` means the bytes match none of them.
"""

from __future__ import annotations

from pathlib import Path

SAFETENSORS = "a safetensors file"
TORCH_ZIP = "a PyTorch checkpoint (the zip format torch.save writes)"
TORCH_LEGACY = "a PyTorch checkpoint in the legacy pickle format"

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", TORCH_ZIP),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x89HDF", "an HDF5 file (Keras or MATLAB weights, not a PyTorch checkpoint)"),
    (b"GGUF", "a GGUF file (llama.cpp weights)"),
    (b"%PDF", "a PDF document"),
)
_HEAD = 64
_MAX_SAFETENSORS_HEADER = 100_000_000


def file_kind(path: str | Path) -> str | None:
    """ "a PNG image", "a safetensors file", "an empty file", ... or None when unknown."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD)
    if not head:
        return "an empty file"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return TORCH_LEGACY
    if _looks_like_safetensors(head):
        return SAFETENSORS
    return _text_kind(head)


def _looks_like_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length of sane size, then a JSON object."""
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size <= _MAX_SAFETENSORS_HEADER and head[8:9] == b"{"


def _text_kind(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the head
            return None
        text = head[: exc.start].decode("utf-8")
    if not text.strip() or not all(c.isprintable() or c in "\r\n\t" for c in text):
        return None
    stripped = text.lstrip()
    if stripped.startswith("version https://git-lfs"):
        return "a Git LFS pointer (the real file was never fetched: run `git lfs pull`)"
    if stripped.startswith(("<!DOCTYPE", "<!doctype", "<html", "<HTML")):
        return "an HTML page (a download that saved a web page instead of the file?)"
    if stripped.startswith(("version", "[nodes")):
        return "a nodeflow graph file"
    if stripped.startswith(("{", "[")):
        return "a JSON or text file"
    return f"a text file (it starts with {stripped.splitlines()[0][:40]!r})"
