"""The result cache: node outputs by Merkle key, in memory and on disk across processes.

A node's key hashes its type id and version, its resolved params, the keys of the nodes it
reads (so a change anywhere upstream changes every key downstream), external state it
declares (file sizes and times), and the device and precision.

What is kept on disk, under the cache folder, each kind in its own sub-folder:

    results/<key>.safetensors        whole outputs of a collecting node (a basis, a model,
                                     metrics) that cost more than `min_seconds`, or whose
                                     type asks to persist
    streams/<key>/<i>.safetensors    batch i of a per-item node's stream, for batches that
                                     cost more than `min_seconds`; `complete` marks a stream
                                     whose every batch is there
    sinks/<key>.json                 the files a writing node made, with sizes and times: a
                                     re-run with the same inputs skips it while they are there
    work/<key>/                      resumable training state (`NodeContext.work_dir`)

The cache manages only these folders and the files it made in them: a user's own files
beside them are never touched. Entries are evicted least recently used first once
`results` and `streams` pass `max_bytes`. A damaged or unreadable entry is a miss (removed,
and reported once through `warnings`); a failed write is a warning, never a failed run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nodeflow.atomic import atomic_path
from nodeflow.locations import default_cache_dir
from nodeflow.memory import parse_size
from nodeflow.node import NodeType
from nodeflow.types import Batch, Stream

RESULTS, STREAMS, SINKS, WORK = "results", "streams", "sinks", "work"
SUFFIX = ".safetensors"
COMPLETE = "complete"
DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_MIN_SECONDS = 0.1
_KEY = re.compile(r"^[0-9a-f]{32}$")


def _max_bytes_from_env() -> int:
    text = os.environ.get("NODEFLOW_CACHE_SIZE")
    return parse_size(text) if text else DEFAULT_MAX_BYTES


def _min_seconds_from_env() -> float:
    text = os.environ.get("NODEFLOW_CACHE_MIN_SECONDS")
    return float(text) if text else DEFAULT_MIN_SECONDS


def cache_key(
    node_type: NodeType,
    params: dict[str, Any],
    input_keys: dict[str, str],
    fingerprint: str,
    device: str,
    precision: str,
) -> str:
    document = json.dumps(
        [node_type.id, node_type.version, params, input_keys, fingerprint, device, precision],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(document.encode()).hexdigest()[:32]


class Cache:
    """Outputs by key: an in-memory LRU of `memory_entries`, backed by the cache folder.

    Safe to use from several threads of one run, and from several processes sharing the
    folder (entries are written atomically, and a reader that loses a race sees a miss).
    """

    def __init__(
        self,
        folder: Path | None = None,
        enabled: bool = True,
        memory_entries: int = 256,
        max_bytes: int | None = None,
        min_seconds: float | None = None,
    ):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.enabled = enabled
        self.memory_entries = memory_entries
        self.max_bytes = _max_bytes_from_env() if max_bytes is None else max_bytes
        self.min_seconds = _min_seconds_from_env() if min_seconds is None else min_seconds
        self.warnings: list[str] = []
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.RLock()
        self._warned: set[str] = set()

    # -- whole results ---------------------------------------------------------------------

    def _result_file(self, key: str) -> Path:
        return self.folder / RESULTS / f"{key}{SUFFIX}"

    def has(self, key: str, node_type: NodeType) -> bool:
        """Whether whole outputs for `key` are in memory or on disk."""
        if not self.enabled:
            return False
        with self._lock:
            if key in self._memory:
                return True
        return _persistable(node_type) and self._result_file(key).is_file()

    def get(self, key: str, node_type: NodeType, device: torch.device) -> dict[str, Any] | None:
        """The cached outputs, moved to `device` when read from disk; None on a miss."""
        if not self.enabled:
            return None
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        path = self._result_file(key)
        if not _persistable(node_type) or not path.is_file():
            return None
        try:
            outputs = _read_outputs(path, node_type, device)
        except Exception as exc:  # damaged, truncated, cleared meanwhile: all are misses
            self._damaged(path, exc)
            return None
        _touch(path)
        self._remember(key, outputs)
        return outputs

    def put(
        self, key: str, node_type: NodeType, outputs: dict[str, Any], seconds: float = 0.0
    ) -> bool:
        """Keep outputs in memory, and on disk when they cost at least `min_seconds` (or the
        node type persists). Returns whether they are stored on disk."""
        if not self.enabled:
            return False
        self._remember(key, outputs)
        if not _persistable(node_type) or not (node_type.persist or seconds >= self.min_seconds):
            return False
        tensors, layout = _to_tensors(node_type, outputs)
        if tensors is None:
            return False
        return self._write_safetensors(self._result_file(key), tensors, layout)

    def _remember(self, key: str, outputs: dict[str, Any]) -> None:
        with self._lock:
            self._memory[key] = outputs
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_entries:
                self._memory.popitem(last=False)

    def forget(self, key: str) -> None:
        """Drop an entry from memory (its files on disk stay)."""
        with self._lock:
            self._memory.pop(key, None)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    # -- streams -----------------------------------------------------------------------------

    def _stream_folder(self, key: str) -> Path:
        return self.folder / STREAMS / key

    def has_stream(self, key: str) -> bool:
        """Whether every batch of the stream `key` is on disk."""
        return self.enabled and (self._stream_folder(key) / COMPLETE).is_file()

    def put_batch(
        self, key: str, index: int, node_type: NodeType, outputs: dict[str, Batch]
    ) -> bool:
        """Write batch `index` of every output of a per-item node; False when it failed."""
        if not self.enabled:
            return False
        tensors: dict[str, torch.Tensor] = {}
        layout: dict[str, Any] = {}
        for name, batch in outputs.items():
            if not isinstance(batch.data, torch.Tensor):
                return False
            tensors[name] = batch.data.detach().to("cpu").contiguous()
            layout[name] = {"names": batch.names}
        return self._write_safetensors(
            self._stream_folder(key) / f"{index}{SUFFIX}", tensors, layout
        )

    def complete_stream(self, key: str, batches: int, singles: dict[str, bool]) -> None:
        """Mark the stream `key` whole once all its `batches` are written."""
        folder = self._stream_folder(key)
        text = json.dumps({"batches": batches, "single": singles})
        with contextlib.suppress(OSError), atomic_path(folder / COMPLETE) as tmp:
            tmp.write_text(text)

    def stream(self, key: str, output: str, device: torch.device) -> Stream | None:
        """One output of a complete cached stream, read batch by batch; None on a miss."""
        folder = self._stream_folder(key)
        try:
            info = json.loads((folder / COMPLETE).read_text())
            count = int(info["batches"])
            single = bool(info["single"][output])
            files = [folder / f"{i}{SUFFIX}" for i in range(count)]
            if not all(f.is_file() for f in files):
                raise FileNotFoundError("a batch file is missing")
        except Exception as exc:
            if folder.exists():
                self._damaged(folder, exc)
            return None
        _touch(folder)

        def produce() -> Iterator[Batch]:
            for path in files:
                try:
                    with safe_open(str(path), framework="pt", device=str(device)) as handle:
                        layout = json.loads((handle.metadata() or {})["nodeflow"])
                        data = handle.get_tensor(output)
                except Exception as exc:
                    self._damaged(folder, exc)
                    raise RuntimeError(
                        f"the cached stream {folder} is damaged ({exc}); it was removed, "
                        "run the graph again"
                    ) from None
                yield Batch(data, layout[output]["names"])

        return Stream(produce, total=count, single=single)

    # -- sinks --------------------------------------------------------------------------------

    def _sink_file(self, key: str) -> Path:
        return self.folder / SINKS / f"{key}.json"

    def has_sink(self, key: str) -> bool:
        """Whether a writing node with this key already wrote files that are all unchanged."""
        if not self.enabled:
            return False
        try:
            written = json.loads(self._sink_file(key).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        for path, size, mtime in written:
            try:
                stat = os.stat(path)
            except OSError:
                return False
            if stat.st_size != size or stat.st_mtime_ns != mtime:
                return False
        return bool(written)

    def has_sink_or_none(self, key: str) -> bool:
        """True unless the node wrote files last time and some of them changed or are gone."""
        return not self._sink_file(key).is_file() or self.has_sink(key)

    def put_sink(self, key: str, written: list[Path]) -> None:
        if not self.enabled or not written:
            return
        files = []
        for path in written:
            with contextlib.suppress(OSError):
                stat = os.stat(path)
                files.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
        try:
            with atomic_path(self._sink_file(key)) as tmp:
                tmp.write_text(json.dumps({"files": files}))
        except OSError as exc:
            self._warn(f"could not record the files of a writing node in {self.folder}: {exc}")

    # -- training work folders -------------------------------------------------------------------

    def work_dir(self, key: str) -> Path:
        return self.folder / WORK / key

    # -- disk ---------------------------------------------------------------------------------------

    def _write_safetensors(
        self, path: Path, tensors: dict[str, torch.Tensor], layout: dict[str, Any]
    ) -> bool:
        try:
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp), metadata={"nodeflow": json.dumps(layout)})
        except Exception as exc:  # full, read-only or vanished folder: keep running without
            self._warn(f"could not write to the cache folder {self.folder}: {exc}")
            return False
        self._evict()
        return True

    def _evict(self) -> None:
        """Remove least recently used entries until results and streams fit `max_bytes`."""
        entries = list(self._entries())
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for path, size, _ in sorted(entries, key=lambda entry: entry[2]):
            if total <= self.max_bytes:
                break
            _remove(path)
            total -= size

    def _entries(self) -> Iterator[tuple[Path, int, float]]:
        """(path, bytes, last use) of every result file and stream folder."""
        results = self.folder / RESULTS
        if results.is_dir():
            for path in results.iterdir():
                if _KEY.match(path.name.removesuffix(SUFFIX)) and path.suffix == SUFFIX:
                    with contextlib.suppress(OSError):
                        stat = path.stat()
                        yield path, stat.st_size, stat.st_mtime
        streams = self.folder / STREAMS
        if streams.is_dir():
            for folder in streams.iterdir():
                if _KEY.match(folder.name) and folder.is_dir() and not folder.is_symlink():
                    with contextlib.suppress(OSError):
                        size = sum(f.stat().st_size for f in folder.iterdir())
                        yield folder, size, folder.stat().st_mtime

    def disk_usage(self) -> dict[str, tuple[int, int]]:
        """Entries and bytes on disk per kind (results, streams, sinks, work, temporary)."""
        usage = {}
        for kind in (RESULTS, STREAMS, SINKS, WORK):
            root = self.folder / kind
            entries = [p for p in root.iterdir() if _ours(p)] if root.is_dir() else []
            usage[kind] = (len(entries), sum(_size(p) for p in entries))
        temporary = list(self._temporary())
        usage["temporary"] = (len(temporary), sum(_size(p) for p in temporary))
        return usage

    def _temporary(self) -> Iterator[Path]:
        """Half-written files a killed process left in the cache's own folders."""
        for kind in (RESULTS, STREAMS, SINKS):
            root = self.folder / kind
            if root.is_dir():
                yield from root.glob(".*.part")
                yield from root.glob("*/.*.part")

    def clear_disk(self) -> int:
        """Delete every entry the cache made (results, streams, sinks, work folders and
        temporary files); the user's own files in the folder stay. Returns how many."""
        removed = 0
        for path in list(self._temporary()):
            _remove(path)
            removed += 1
        for kind in (RESULTS, STREAMS, SINKS, WORK):
            root = self.folder / kind
            if not root.is_dir() or root.is_symlink():
                continue
            for path in root.iterdir():
                if _ours(path):
                    _remove(path)
                    removed += 1
        self.clear_memory()
        return removed

    # -- problems --------------------------------------------------------------------------------

    def _damaged(self, path: Path, exc: BaseException) -> None:
        _remove(path)
        self._warn(f"a damaged cache entry was removed and will be recomputed: {path} ({exc})")

    def _warn(self, message: str) -> None:
        with self._lock:
            if message not in self._warned:
                self._warned.add(message)
                self.warnings.append(message)

    def take_warnings(self) -> list[str]:
        """The warnings not yet reported, once each."""
        with self._lock:
            taken, self.warnings = self.warnings, []
        return taken


def _persistable(node_type: NodeType) -> bool:
    return bool(node_type.outputs) and all(
        output.type.to_tensors is not None for output in node_type.outputs.values()
    )


def _to_tensors(
    node_type: NodeType, outputs: dict[str, Any]
) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    for name, value in outputs.items():
        socket = node_type.outputs[name].type
        if socket.to_tensors is None:
            return None, {}
        part, meta = socket.to_tensors(value)
        for tensor_name, tensor in part.items():
            tensors[f"{name}/{tensor_name}"] = tensor.detach().to("cpu").contiguous()
        layout[name] = {"meta": meta, "tensors": list(part)}
    return tensors, layout


def _read_outputs(path: Path, node_type: NodeType, device: torch.device) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as handle:
        layout = json.loads((handle.metadata() or {})["nodeflow"])
    tensors = load_file(str(path), device=str(device))
    outputs = {}
    for name, entry in layout.items():
        socket = node_type.outputs[name].type
        part = {t: tensors[f"{name}/{t}"] for t in entry["tensors"]}
        outputs[name] = socket.from_tensors(part, entry["meta"])
    if set(outputs) != set(node_type.outputs):
        raise ValueError("the entry does not hold every output of the node")
    return outputs


def _ours(path: Path) -> bool:
    """A file or folder the cache made: named by a key, or one of its temporary files."""
    name = path.name
    stem = name.removesuffix(SUFFIX).removesuffix(".json")
    return bool(_KEY.match(stem)) and not path.is_symlink()


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _touch(path: Path) -> None:
    """Mark an entry as just used, for least-recently-used eviction."""
    with contextlib.suppress(OSError):
        os.utime(path)
