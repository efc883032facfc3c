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


class LogWriter:
    """Drain the queue, INSERT everything waiting in one transaction, COMMIT, report the last ticket.

    `on_durable(ticket)` runs in the writer thread after a commit; the caller hops to its loop.
    `on_failure(exc)` runs once if a commit fails; the writer then stops (replay restores the hub).
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

    def start(self) -> None:
        self._thread.start()

    def submit(self, ticket: int, rows: list[Row]) -> None:
        """Queue rows for the next group commit; `ticket` comes back through on_durable once they are."""
        self._queue.put((ticket, rows))

    def snapshot(self, seq: int, version: int, data: bytes) -> None:
        """Queue a snapshot; it is written after every batch submitted before it."""
        self._queue.put(("snapshot", seq, version, data))

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            pending: list[Row] = []
            ticket = -1
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, tuple) and item[0] == "snapshot":
                    if not self._commit(pending, ticket):
                        return
                    pending, ticket = [], -1
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
                except queue.Empty:
                    break
            if not self._commit(pending, ticket) or stop:
                return

    def _commit(self, rows: list[Row], ticket: int) -> bool:
        if ticket < 0:
            return True
        started = time.perf_counter()
        try:
            if rows:
                self.log.append(rows)
        except BaseException as exc:
            logger.error("log.commit_failed rows=%d error=%s", len(rows), exc)
            self.on_failure(exc)
            return False
        self.batches += 1
        self.rows += len(rows)
        self.on_durable(ticket, len(rows), time.perf_counter() - started)
        return True
