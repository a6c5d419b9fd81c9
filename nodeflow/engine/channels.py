"""Bounded channels that carry one stream's batches from a pass to a collecting node.

Every consumer of a stream gets its own channel, so a batch computed once reaches all of
them; a full channel holds the producer back (backpressure), so memory stays flat however
long the stream. Two things would deadlock a plain bounded queue, and are handled here:

- a consumer that reads its streams one after the other (all of `image`, then all of
  `reference`) while both come from the same pass: when the channel it is not reading is
  full and it waits on another one, that full channel takes more instead of blocking;
- a consumer that stops reading (it only needed the first batch, or it finished or
  failed): its channels are detached, and the producer drops their batches.
"""

from __future__ import annotations

import threading
from collections import deque

from nodeflow.engine.context import CancelToken
from nodeflow.types import Batch

CAPACITY = 2
_POLL = 0.1  # seconds between checks for cancellation while waiting


class UpstreamFailed(Exception):
    """The stream's producer failed; the consumer is skipped."""

    def __init__(self, node_id: str):
        self.node_id = node_id
        super().__init__(f"upstream node {node_id!r} failed")


class Reader:
    """The consumer side shared by one collecting node's channels."""

    def __init__(self, cancel: CancelToken):
        self.cancel = cancel
        self.changed = threading.Condition()
        self.waiting_on: Channel | None = None

    def channel(self, capacity: int = CAPACITY) -> Channel:
        return Channel(self, capacity)


class Channel:
    """One stream's batches for one consumer, in order, at most `capacity` ahead."""

    def __init__(self, reader: Reader, capacity: int):
        self.reader = reader
        self.capacity = capacity
        self._queue: deque[Batch] = deque()
        self._closed = False
        self._error: BaseException | None = None
        self.detached = False
        self.total: int | None = None

    def put(self, batch: Batch) -> None:
        """Add a batch; blocks while the consumer is behind (unless that would deadlock)."""
        reader = self.reader
        with reader.changed:
            while (
                len(self._queue) >= self.capacity
                and not self.detached
                and reader.waiting_on in (None, self)
            ):
                reader.cancel.check()
                reader.changed.wait(_POLL)
            if not self.detached:
                self._queue.append(batch)
                reader.changed.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """No more batches: the stream ended, or its producer failed with `error`.

        The first close wins: a stream that failed stays failed."""
        with self.reader.changed:
            if self._closed:
                return
            self._closed = True
            self._error = error
            self.reader.changed.notify_all()

    def detach(self) -> None:
        """The consumer reads no more: drop what is queued and what comes."""
        with self.reader.changed:
            self.detached = True
            self._queue.clear()
            self.reader.changed.notify_all()

    def get(self) -> Batch | None:
        """The next batch, or None at the end; raises the producer's error or RunCancelled."""
        reader = self.reader
        with reader.changed:
            while not self._queue:
                if self._closed:
                    if self._error is not None:
                        raise self._error
                    return None
                reader.cancel.check()
                reader.waiting_on = self
                reader.changed.notify_all()
                try:
                    reader.changed.wait(_POLL)
                finally:
                    reader.waiting_on = None
            batch = self._queue.popleft()
            reader.changed.notify_all()
            return batch
