"""Tests for hub.log.writer on a real SQLite file: group commit, order, durability before on_durable, failure."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.log.store import EventLog, LogError, Row
from hub.log.writer import LogWriter
from hub.protocol.codec import decode_event, encode
from hub.protocol.events import HubStarted

WAIT = 10.0  # seconds: an upper bound for a thread hand-off, never a sleep


def row(seq: int) -> Row:
    event = HubStarted(room="", at=float(seq))
    return (seq, "", "HubStarted", encode(event), event.at)


class Recorder:
    """on_durable / on_failure callbacks that note what they saw, and what a second reader saw then."""

    def __init__(self, reader: EventLog | None = None) -> None:
        self.reader = reader
        self.durable: list[tuple[int, int]] = []  # (ticket, rows in the batch)
        self.visible: list[int] = []  # the reader's last_seq when each batch was reported
        self.failures: list[BaseException] = []
        self.failed = threading.Event()
        self.reported = threading.Event()

    def on_durable(self, ticket: int, rows: int, seconds: float) -> None:
        assert seconds >= 0
        self.durable.append((ticket, rows))
        if self.reader is not None:
            self.visible.append(self.reader.last_seq())
        self.reported.set()

    def on_failure(self, exc: BaseException) -> None:
        self.failures.append(exc)
        self.failed.set()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


@pytest.fixture
def log(path: Path) -> Iterator[EventLog]:
    store = EventLog(str(path))
    yield store
    store.close()


@pytest.fixture
def reader(path: Path, log: EventLog) -> Iterator[EventLog]:
    """A second EventLog reading the same file while the writer's log owns it."""
    store = EventLog(str(path), owner=False)
    yield store
    store.close()


def test_queued_submits_are_one_group_commit(log: EventLog, reader: EventLog) -> None:
    """Fifty submits queued before the thread runs are committed as one batch reporting the last ticket."""
    rec = Recorder(reader)
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    for ticket in range(50):
        writer.submit(ticket, [row(2 * ticket + 1), row(2 * ticket + 2)])
    writer.start()
    writer.stop()
    assert rec.durable == [(49, 100)]
    assert writer.batches == 1 and writer.rows == 100
    assert [r[0] for r in reader.read()] == list(range(1, 101))
    assert rec.failures == []


def test_live_submits_are_reported_in_order_in_fewer_batches(log: EventLog, reader: EventLog) -> None:
    """Tickets submitted while the thread runs come back in increasing order, ending with the last one."""
    rec = Recorder(reader)
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.start()
    count = 400
    for ticket in range(count):
        writer.submit(ticket, [row(ticket + 1)])
    writer.stop()
    tickets = [t for t, _ in rec.durable]
    assert tickets == sorted(set(tickets)) and tickets[-1] == count - 1
    assert sum(n for _, n in rec.durable) == count
    assert writer.batches == len(rec.durable) <= count
    assert reader.last_seq() == count


def test_on_durable_runs_only_after_rows_are_readable_elsewhere(log: EventLog, reader: EventLog) -> None:
    """When on_durable reports ticket t, a second EventLog on the file already reads every row of t."""
    rec = Recorder(reader)
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.start()
    last_seq_of: dict[int, int] = {}
    for ticket in range(30):
        writer.submit(ticket, [row(3 * ticket + 1), row(3 * ticket + 2), row(3 * ticket + 3)])
        last_seq_of[ticket] = 3 * ticket + 3
    writer.stop()
    assert rec.durable
    for (ticket, _), visible in zip(rec.durable, rec.visible, strict=True):
        assert visible >= last_seq_of[ticket]


def test_stop_commits_what_is_queued(log: EventLog, reader: EventLog) -> None:
    """stop() commits every batch submitted before it, then ends the thread."""
    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.start()
    writer.submit(0, [row(1)])
    writer.submit(1, [row(2), row(3)])
    writer.stop()
    assert reader.last_seq() == 3
    assert rec.durable[-1][0] == 1
    assert not writer._thread.is_alive()


def test_empty_batches_are_still_acknowledged(log: EventLog) -> None:
    """A ticket with no rows (a read's reply waiting its turn) is reported durable in order."""
    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.submit(0, [])
    writer.start()
    writer.stop()
    assert rec.durable == [(0, 0)]


def test_snapshot_is_written_after_the_batches_before_it(log: EventLog, reader: EventLog) -> None:
    """A snapshot queued after some batches is saved after they commit, and later batches still commit."""
    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.submit(0, [row(1), row(2)])
    writer.snapshot(2, 1, b"state at 2")
    writer.submit(1, [row(3)])
    writer.start()
    writer.stop()
    assert [t for t, _ in rec.durable] == [0, 1]
    assert reader.load_snapshot([1]) == (2, 1, b"state at 2")
    assert reader.last_seq() == 3


def test_a_failed_snapshot_does_not_stop_the_writer(log: EventLog, path: Path, reader: EventLog) -> None:
    """A snapshot is a cache: if it cannot be saved, the writer logs it and keeps committing events."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE snapshots")
    conn.close()
    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.submit(0, [row(1)])
    writer.snapshot(1, 1, b"lost")
    writer.submit(1, [row(2)])
    writer.start()
    writer.stop()
    assert rec.failures == [] and [t for t, _ in rec.durable] == [0, 1]
    assert reader.last_seq() == 2


def drop_events(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE events")
    conn.close()


def test_a_failing_commit_calls_on_failure_once(log: EventLog, path: Path) -> None:
    """When the database refuses a commit, on_failure runs once with a LogError, nothing is reported durable
    and what is submitted after it is dropped, never committed."""
    drop_events(path)  # from another connection: the writer's INSERT now fails for real
    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.submit(0, [row(1)])
    writer.submit(1, [row(2)])
    writer.start()
    assert rec.failed.wait(WAIT)
    writer.stop()  # the thread has ended; stop() still returns
    writer.submit(2, [row(3)])
    assert len(rec.failures) == 1 and isinstance(rec.failures[0], LogError)
    assert rec.durable == []
    assert not writer._thread.is_alive()


def test_after_a_failure_nothing_is_committed_until_resume(
    log: EventLog, path: Path, reader: EventLog
) -> None:
    """A failed writer drops batches and snapshots (the hub rejects them and rebuilds from the log); once the
    log takes writes again and the caller resumes it, it commits and reports again."""
    from sqlalchemy import create_engine

    from hub.log.schema import metadata

    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.start()
    drop_events(path)
    writer.submit(0, [row(1)])
    assert rec.failed.wait(WAIT) and writer.failed
    writer.submit(1, [row(2)])
    writer.snapshot(2, 1, b"never")
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)  # the log takes writes again
    engine.dispose()
    assert writer.commit_now([row(1)]) is None  # still failed: the caller must resume it first
    writer.resume()  # what was queued before this is dropped, whenever the thread gets to it
    writer.submit(2, [row(1)])
    writer.stop()
    assert len(rec.failures) == 1 and rec.durable == [(2, 1)]
    assert reader.last_seq() == 1 and reader.load_snapshot(None) is None


def test_failure_after_success_reports_only_what_was_durable(log: EventLog, path: Path) -> None:
    """Batches committed before the failure stay reported; the failing one and later ones never are."""
    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.start()
    writer.submit(0, [row(1)])
    assert rec.reported.wait(WAIT)
    drop_events(path)
    writer.submit(1, [row(2)])
    assert rec.failed.wait(WAIT)
    writer.submit(2, [row(3)])
    writer.stop()
    assert rec.durable == [(0, 1)]
    assert len(rec.failures) == 1


def test_a_duplicate_seq_fails_the_whole_batch(log: EventLog, reader: EventLog) -> None:
    """A batch whose rows clash with the log fails as a whole: none of its rows become visible."""
    log.append([row(2)])
    rec = Recorder()
    writer = LogWriter(log, rec.on_durable, rec.on_failure)
    writer.submit(0, [row(1), row(2), row(3)])
    writer.start()
    writer.stop()
    assert len(rec.failures) == 1 and rec.durable == []
    assert [r[0] for r in reader.read()] == [2]
    assert decode_event(reader.read()[0][3]) == HubStarted(room="", at=2.0)
