"""The result cache: node outputs by Merkle key, in memory and, for expensive nodes, on disk.

A node's key hashes its type id and version, its resolved params, the keys of the nodes it
reads (so a change anywhere upstream changes every key downstream), external state it
declares (file sizes and times), and the device and precision. Nodes declared `persist`
also write their outputs to `<cache dir>/<key>.safetensors`, so a new process finds a
trained model or a PCA basis without recomputing it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from nodeflow.atomic import atomic_path
from nodeflow.node import NodeType


def default_cache_dir() -> Path:
    """`NODEFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/nodeflow`, else `~/.cache/nodeflow`."""
    if os.environ.get("NODEFLOW_CACHE_DIR"):
        return Path(os.environ["NODEFLOW_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nodeflow"


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
    """Outputs by key: an in-memory LRU of `memory_entries`, backed by a folder for persisted nodes."""

    def __init__(self, folder: Path | None = None, enabled: bool = True, memory_entries: int = 256):
        self.folder = folder if folder is not None else default_cache_dir()
        self.enabled = enabled
        self.memory_entries = memory_entries
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._written: dict[str, list[Path]] = {}

    def _file(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def has(self, key: str, node_type: NodeType) -> bool:
        """Whether a current result exists; one that wrote files is current while they exist."""
        if not self.enabled:
            return False
        if key in self._memory:
            return all(path.exists() for path in self._written.get(key, ()))
        return node_type.persist and self._file(key).is_file()

    def get(self, key: str, node_type: NodeType, device: torch.device) -> dict[str, Any] | None:
        """The cached outputs, moved to `device` when read from disk; None on a miss."""
        if not self.enabled:
            return None
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if node_type.persist and self._file(key).is_file():
            outputs = self._read(key, node_type, device)
            if outputs is not None:
                self._remember(key, outputs)
            return outputs
        return None

    def put(
        self,
        key: str,
        node_type: NodeType,
        outputs: dict[str, Any],
        written: list[Path] | None = None,
    ) -> None:
        if not self.enabled:
            return
        self._remember(key, outputs)
        if written:
            self._written[key] = list(written)
        if node_type.persist:
            self._write(key, node_type, outputs)

    def _remember(self, key: str, outputs: dict[str, Any]) -> None:
        self._memory[key] = outputs
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_entries:
            evicted, _ = self._memory.popitem(last=False)
            self._written.pop(evicted, None)

    def _write(self, key: str, node_type: NodeType, outputs: dict[str, Any]) -> None:
        tensors: dict[str, torch.Tensor] = {}
        layout: dict[str, Any] = {}
        for name, value in outputs.items():
            socket = node_type.outputs[name].type
            if socket.to_tensors is None:
                return
            part, meta = socket.to_tensors(value)
            for tensor_name, tensor in part.items():
                tensors[f"{name}/{tensor_name}"] = tensor.detach().to("cpu").contiguous()
            layout[name] = {"meta": meta, "tensors": list(part)}
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._file(key)) as tmp:
            save_file(tensors, str(tmp), metadata={"nodeflow": json.dumps(layout)})

    def _read(self, key: str, node_type: NodeType, device: torch.device) -> dict[str, Any] | None:
        path = self._file(key)
        try:
            with safe_open(str(path), framework="pt") as handle:
                layout = json.loads((handle.metadata() or {})["nodeflow"])
            tensors = load_file(str(path), device=str(device))
        except (OSError, KeyError, ValueError, SafetensorError):
            path.unlink(missing_ok=True)
            return None
        outputs = {}
        for name, entry in layout.items():
            socket = node_type.outputs[name].type
            part = {t: tensors[f"{name}/{t}"] for t in entry["tensors"]}
            outputs[name] = socket.from_tensors(part, entry["meta"])
        return outputs

    def clear_memory(self) -> None:
        self._memory.clear()
        self._written.clear()

    def disk_usage(self) -> tuple[int, int]:
        """How many entries the cache folder holds and how many bytes they take."""
        if not self.folder.is_dir():
            return 0, 0
        files = list(self.folder.glob("*.safetensors"))
        return len(files), sum(f.stat().st_size for f in files)

    def clear_disk(self) -> int:
        """Delete every cached entry; return how many were removed."""
        if not self.folder.is_dir():
            return 0
        files = list(self.folder.glob("*.safetensors")) + list(self.folder.glob(".*.part"))
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)
