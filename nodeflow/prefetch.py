"""Work on threads ahead of its reader: decoding and encoding files while the graph computes.

Pillow, tifffile and numpy release the GIL while they decode, encode and convert, so a few
threads keep a folder streaming on several cores while the reader stays one ordered loop.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def worker_count() -> int:
    """Threads for file work: `NODEFLOW_IO_THREADS`, else the cores, at most 8."""
    configured = os.environ.get("NODEFLOW_IO_THREADS")
    return max(1, int(configured)) if configured else min(8, os.cpu_count() or 1)


def ordered_map(
    work: Callable[[T], R], items: Iterable[T], workers: int | None = None, ahead: int = 0
) -> Iterator[R]:
    """`work(item)` for each item, in order, computed up to `ahead` items in advance.

    An exception in `work` is raised when its item's turn comes. Leaving early (or an
    exception) cancels what has not started and waits for what has.
    """
    workers = workers or worker_count()
    ahead = ahead or 2 * workers
    pool = ThreadPoolExecutor(workers, thread_name_prefix="nodeflow-io")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class Writer:
    """Runs file writes on threads, at most `ahead` in flight; `finish` waits for them all.

    A failed write raises at the next `submit` or at `finish`, so a run never reports
    success for a file that was not written.
    """

    def __init__(self, workers: int | None = None, ahead: int = 0):
        workers = workers or worker_count()
        self._ahead = ahead or 2 * workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nodeflow-write")
        self._pending: deque[Future[None]] = deque()

    def submit(self, write: Callable[[], None]) -> None:
        while len(self._pending) >= self._ahead:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(write))

    def finish(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
