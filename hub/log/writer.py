"""LogWriter: one thread that group-commits batches and hands each durable batch back to the loop."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from hub.log.store import EventLog, Row

__all__ = ["LogWriter"]

logger = logging.getLogger(__name__)

_STOP = object()
_RESUME = object()


class LogWriter:
    """Drain the queue, INSERT everything waiting in one transaction, COMMIT, report the last ticket.

    `on_durable(ticket)` runs in the writer thread after a commit; the caller hops to its loop.
    `on_failure(exc)` runs once when a commit fails; from then on the writer drops (never commits) every
    batch and snapshot it is given, so nothing decided after the failure reaches the log behind the caller's
    back, until the caller has made its memory equal the log again and calls `resume()`.
    """

    def __init__(
        self,
        log: EventLog,
        on_durable: Callable[[int, int, float], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.log = log
        self.on_durable = on_durable
        self.on_failure = on_failure
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="synapse-log-writer", daemon=True)
        self.batches = 0
        self.rows = 0
        self._outstanding = (
            0  # items queued or in the thread's hands; only when 0 may the caller commit inline
        )
        self._count = threading.Lock()
        self._failed = False  # a commit failed: drop everything until resume()

    def start(self) -> None:
        self._thread.start()

    def submit(self, ticket: int, rows: list[Row]) -> None:
        """Queue rows for the next group commit; `ticket` comes back through on_durable once they are."""
        self._put((ticket, rows))

    def _put(self, item: object) -> None:
        with self._count:
            self._outstanding += 1
        self._queue.put(item)

    def commit_now(self, rows: list[Row]) -> float | None:
        """Commit on the caller's thread when the writer has nothing queued or in hand; None if it has.

        A lone batch then skips two thread hand-offs (one message's round trip); anything else goes through
        the thread, so commits stay in submission order and a burst still groups. Returns the commit's seconds.
        """
        with self._count:
            if self._outstanding or self._failed:
                return None
        started = time.perf_counter()
        try:
            self.log.append(rows)
        except BaseException:
            with self._count:
                self._failed = True  # what the caller submits next is dropped until it resumes us
            raise
        self.batches += 1
        self.rows += len(rows)
        return time.perf_counter() - started

    def snapshot(self, seq: int, version: int, data: bytes) -> None:
        """Queue a snapshot; it is written after every batch submitted before it."""
        self._put(("snapshot", seq, version, data))

    @property
    def failed(self) -> bool:
        return self._failed

    def resume(self) -> None:
        """Commit again what is submitted from now on: the caller has rejected what was dropped and rebuilt its
        memory from the log. A marker in the queue, so whatever was queued before it is still dropped."""
        self._put(_RESUME)

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        self._put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            taken = 1
            pending: list[Row] = []
            ticket = -1
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                elif item is _RESUME:
                    self._commit(pending, ticket)  # queued before the resume: still dropped
                    pending, ticket = [], -1
                    with self._count:
                        self._failed = False
                elif isinstance(item, tuple) and item[0] == "snapshot":
                    self._commit(pending, ticket)
                    pending, ticket = [], -1
                    if not self._failed:
                        try:
                            self.log.save_snapshot(item[1], item[2], item[3])
                        except Exception as exc:  # a snapshot is a cache: losing one costs only replay time
                            logger.warning("snapshot.failed seq=%s error=%s", item[1], exc)
                else:
                    batch: tuple[int, list[Row]] = item  # type: ignore[assignment]
                    ticket = batch[0]
                    pending.extend(batch[1])
                try:
                    item = q.get_nowait()
                    taken += 1
                except queue.Empty:
                    break
            self._commit(pending, ticket)
            with self._count:
                self._outstanding -= taken
            if stop:
                return

    def _commit(self, rows: list[Row], ticket: int) -> None:
        if ticket < 0:
            return
        if self._failed:
            logger.debug("log.dropped rows=%d ticket=%d", len(rows), ticket)
            return
        started = time.perf_counter()
        try:
            if rows:
                self.log.append(rows)
        except BaseException as exc:
            logger.error("log.commit_failed rows=%d error=%s", len(rows), exc)
            with self._count:
                self._failed = True
            self.on_failure(exc)
            return
        self.batches += 1
        self.rows += len(rows)
        self.on_durable(ticket, len(rows), time.perf_counter() - started)
