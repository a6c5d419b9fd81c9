"""What a running node may use: its device, progress reporting, cancellation, item errors."""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nodeflow.engine.events import Event, ItemError, NodeProgress


class RunCancelled(Exception):
    """The run was cancelled (Ctrl-C, the TUI's cancel); raised at the next batch or step."""


class CancelToken:
    """Set from any thread to stop a run at its next check.

    A token made with a `parent` is cancelled when its parent is: the scheduler stops its
    own work (fail-fast) without cancelling the caller's token. The parent passes its
    cancel down, so a check reads one flag however deep the tokens nest.
    """

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self._children: weakref.WeakSet[CancelToken] = weakref.WeakSet()
        if parent is not None:
            parent._children.add(self)
            if parent.cancelled:  # after joining: a cancel racing with us reaches us either way
                self._event.set()

    def cancel(self) -> None:
        self._event.set()
        for child in list(self._children):
            child.cancel()

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
    stored_callbacks: list[Callable[[], None]] = field(default_factory=list)
    _work_lock: int | None = field(default=None, repr=False)

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
        if self._work_lock is None:
            self._work_lock = _lock_folder(folder, self.node_id)
        return folder

    def on_result_stored(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this node's result is safely kept: written to the disk cache,
        or, with no disk cache, handed on by a run that finished well.

        A training node removes its resumable checkpoint this way, so no stop at any moment
        (a kill during the cache write, a read-only cache) loses the trained model.
        """
        self.stored_callbacks.append(callback)

    def release(self) -> None:
        """The node is done: let other processes use its work folder."""
        if self._work_lock is not None:
            os.close(self._work_lock)
            self._work_lock = None

    def wrote(self, path: Path) -> None:
        """Record a file this node wrote: its cached result is current only while it exists."""
        self.written.append(Path(path))

    def check_cancelled(self) -> None:
        """Raise `RunCancelled` if the run was cancelled; call it between steps of long work."""
        self.cancel.check()


class FolderBusy(RuntimeError):
    """Another process is working in the same training folder."""


def _lock_folder(folder: Path, node_id: str) -> int:
    """Hold an exclusive lock on `folder` for this process; FolderBusy if another has it."""
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise FolderBusy(
            f"another nodeflow process (pid {holder}) is running node {node_id!r} with the same "
            f"settings and owns its work folder {folder}; wait for it to finish, or stop it "
            "and run again to resume from its checkpoint"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
