"""Tests for hub.log.store on real SQLite files: opening, schema versions, pragmas, errors and size."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.log.schema import SCHEMA_VERSION
from hub.log.store import EventLog, LogError, Row, db_url
from hub.protocol.codec import encode
from hub.protocol.errors import Code
from hub.protocol.events import HubStarted


def row(seq: int) -> Row:
    event = HubStarted(room="", at=float(seq))
    return (seq, "", "HubStarted", encode(event), event.at)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hub.db"


@pytest.fixture
def log(path: Path) -> Iterator[EventLog]:
    store = EventLog(str(path))
    yield store
    store.close()


def set_schema_version(path: Path, version: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    conn.close()


def test_a_path_creates_the_file_and_its_folder(log: EventLog, path: Path) -> None:
    """A plain path becomes an SQLite file, its missing parent folders created."""
    assert path.exists()
    assert log.is_sqlite and log.url.database == str(path)


def test_db_url() -> None:
    """A URL is kept as it is; a path (relative or with ~) becomes an absolute sqlite:/// URL."""
    assert db_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert db_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"  # psycopg 3, the driver we ship
    assert db_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert db_url("sqlite:////x/y.db") == "sqlite:////x/y.db"
    assert db_url("/x/y.db") == "sqlite:////x/y.db"
    assert db_url("rel.db").startswith("sqlite:////") and db_url("rel.db").endswith("/rel.db")
    assert "~" not in db_url("~/hub.db")


def test_sqlite_runs_in_wal_mode(log: EventLog, path: Path) -> None:
    """The log is in WAL mode so readers never block the writer."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.parametrize(("sync", "level"), [("normal", 1), ("full", 2)])
def test_sync_setting_sets_the_synchronous_pragma(path: Path, sync: str, level: int) -> None:
    """sync="full" fsyncs every commit (synchronous=FULL); the default is NORMAL."""
    store = EventLog(str(path), sync=sync)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
    finally:
        store.close()


def test_schema_version_is_recorded(log: EventLog, path: Path) -> None:
    """A new log records the schema version of the hub that created it."""
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert found == (str(SCHEMA_VERSION),)


def test_a_log_from_a_newer_hub_is_refused(log: EventLog, path: Path) -> None:
    """A log whose schema_version is above SCHEMA_VERSION is refused with a LogError that says why."""
    log.append([row(1)])
    log.close()
    set_schema_version(path, str(SCHEMA_VERSION + 1))
    with pytest.raises(LogError) as info:
        EventLog(str(path))
    err = info.value
    assert err.code == Code.UNAVAILABLE
    assert "newer hub" in err.message
    assert str(SCHEMA_VERSION + 1) in err.message and str(SCHEMA_VERSION) in err.message
    assert "SELECT" not in err.message


def test_a_newer_log_is_refused_untouched(log: EventLog, path: Path) -> None:
    """Refusing a newer hub's log creates nothing in it (its layout may differ from ours)."""
    log.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE snapshots")  # as if the newer schema had renamed it
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(LogError):
        EventLog(str(path))
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "snapshots" not in tables


def test_a_log_with_an_unreadable_schema_version_is_refused(log: EventLog, path: Path) -> None:
    """A schema_version that is not a number is a LogError, not a ValueError traceback."""
    log.close()
    set_schema_version(path, "two")
    with pytest.raises(LogError) as info:
        EventLog(str(path))
    assert "'two'" in info.value.message


def test_a_log_of_this_or_an_older_schema_opens(log: EventLog, path: Path) -> None:
    """The same schema version (or an older one) opens and keeps its events."""
    log.append([row(1)])
    log.close()
    for version in (str(SCHEMA_VERSION), "0"):
        set_schema_version(path, version)
        again = EventLog(str(path))
        try:
            assert again.last_seq() == 1
        finally:
            again.close()


def test_an_unusable_location_is_a_log_error(tmp_path: Path) -> None:
    """A path under a regular file cannot hold a log: LogError, not an OSError traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LogError) as info:
        EventLog(str(blocker / "sub" / "hub.db"))
    assert info.value.code == Code.UNAVAILABLE and "cannot open the log" in info.value.message


def test_a_file_that_is_not_a_database_is_a_log_error(tmp_path: Path) -> None:
    """Pointing the hub at a file that is not SQLite is a clear LogError."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, it is a text file. " * 200)
    with pytest.raises(LogError) as info:
        EventLog(str(junk))
    assert "cannot open the log" in info.value.message


def drop_events(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE events")
    conn.close()


def test_reading_a_broken_log_is_a_log_error(log: EventLog, path: Path) -> None:
    """Driver errors on reads are translated to LogError before they leave hub/log."""
    log.append([row(1)])
    drop_events(path)
    for read in (log.read, log.last_seq, lambda: list(log.scan())):
        with pytest.raises(LogError) as info:
            read()
        assert "SELECT" not in info.value.message


def test_appending_to_a_broken_log_is_a_log_error(log: EventLog, path: Path) -> None:
    """An append that the database refuses is a LogError; the log works again once repaired."""
    log.append([row(1)])
    drop_events(path)
    with pytest.raises(LogError) as info:
        log.append([row(2)])
    assert "INSERT" not in info.value.message
    log.close()
    repaired = EventLog(str(path))  # create_all brings the table back (empty)
    try:
        repaired.append([row(3)])
        assert repaired.last_seq() == 3
    finally:
        repaired.close()


def test_size_counts_the_file_and_its_wal(log: EventLog, path: Path) -> None:
    """size() is the bytes of the SQLite file plus its WAL, and grows with appends."""
    before = log.size()
    assert before is not None and before > 0
    log.append([row(seq) for seq in range(1, 200)])
    after = log.size()
    assert after is not None and after > before
    wal = path.with_name(path.name + "-wal")
    assert after == path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_an_unsupported_database_is_a_log_error() -> None:
    """Only SQLite paths and PostgreSQL URLs hold a log; anything else is refused before connecting."""
    with pytest.raises(LogError) as info:
        EventLog("mysql://u@h/db")
    assert "postgresql://" in info.value.message


def test_postgres_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg is an optional extra: without it a PostgreSQL URL names the extra, not an ImportError."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(LogError) as info:
        EventLog("postgresql://u@127.0.0.1:1/db")
    assert "synapse-hub[postgres]" in info.value.message


def test_the_owner_holds_a_lock_file_naming_its_pid(log: EventLog, path: Path) -> None:
    """The owner flocks <file>.lock and writes its pid there; a second owner is refused naming it."""
    lock = path.with_name(path.name + ".lock")
    assert lock.read_text().split()[0] == str(os.getpid())
    with pytest.raises(LogError) as info:
        EventLog(str(path))
    assert info.value.message == f"another hub is using this log (pid {os.getpid()})"


def test_a_killed_owner_frees_the_log(path: Path) -> None:
    """The lock dies with its process: after a SIGKILL the next owner opens the log at once."""
    code = (
        "import sys, time; from hub.log.store import EventLog; log = EventLog(sys.argv[1]);"
        "print('owned', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "owned"
        with pytest.raises(LogError) as info:
            EventLog(str(path))
        assert f"(pid {proc.pid})" in info.value.message
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    again = EventLog(str(path))
    again.close()
