"""What a running node may use: its device, progress reporting, cancellation, item errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nodeflow.engine.events import Event, ItemError, NodeProgress


class RunCancelled(Exception):
    """The run was cancelled (Ctrl-C, the TUI's cancel); raised at the next batch or step."""


class CancelToken:
    """Set from any thread to stop a run at its next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise RunCancelled("the run was cancelled")


@dataclass
class NodeContext:
    """Handed to node functions that take a `ctx` argument."""

    node_id: str
    type_id: str
    device: torch.device
    dtype: torch.dtype
    emit: Callable[[Event], None]
    cancel: CancelToken
    describe_graph: Callable[[], str] = str
    fail_fast: bool = False
    cache_key: str = ""
    cache_folder: Path | None = None
    batch_index: int = 0
    manual_progress: bool = False
    started: float = field(default_factory=time.perf_counter)
    written: list[Path] = field(default_factory=list)
    output_root: Path | None = None

    def progress(self, done: int, total: int | None = None, **info: Any) -> None:
        """Report `done` of `total` units (batches, steps); `info` carries e.g. losses."""
        self.manual_progress = True
        self.cancel.check()
        self._emit_progress(done, total, info)

    def _emit_progress(self, done: int, total: int | None, info: dict[str, Any]) -> None:
        eta = None
        if total and done:
            elapsed = time.perf_counter() - self.started
            eta = elapsed / done * max(total - done, 0)
        self.emit(NodeProgress(self.node_id, done, total, eta, info))

    @property
    def graph_json(self) -> str:
        """The running graph as JSON, for outputs that record what made them (PNG metadata)."""
        return self.describe_graph()

    def item_error(self, item: str, message: str) -> None:
        """Report one bad item (an unreadable file) that the node skips.

        Under fail-fast the bad item fails the node instead.
        """
        self.emit(ItemError(self.node_id, item, message))
        if self.fail_fast:
            raise ValueError(f"{item}: {message} (failing because of --fail-fast)")

    @property
    def work_dir(self) -> Path:
        """A folder kept across runs for this node with these params and inputs.

        Training nodes keep resumable checkpoints here: a re-run of the same node with the
        same settings finds them; any change of params or upstream gives a fresh folder.
        """
        base = self.cache_folder if self.cache_folder is not None else Path.cwd() / ".nodeflow"
        folder = base / "work" / (self.cache_key or self.node_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def wrote(self, path: Path) -> None:
        """Record a file this node wrote: its cached result is current only while it exists."""
        self.written.append(Path(path))

    def check_cancelled(self) -> None:
        """Raise `RunCancelled` if the run was cancelled; call it between steps of long work."""
        self.cancel.check()
