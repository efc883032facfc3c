"""`synapse backup`, `restore` and `log migrate` on logs a real hub wrote: copies fold to the identical state."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner, Result

from agent_sdk import SyncAgent
from hub.config import HubConfig
from hub.log.store import EventLog, LogError
from hub.protocol.codec import encode
from hub.protocol.events import MessageSent
from tests.conftest import ThreadHub, seconds
from tests.ops.logs import folded, restored, rows_of, snapshot_of


def synapse(*args: str, input: bytes | None = None, env: dict[str, str | None] | None = None) -> Result:
    """Run `synapse ...` in-process; the log comes from the arguments, never from the caller's SYNAPSE_DB."""
    from cli.main import synapse as group

    return CliRunner().invoke(group, list(args), input=input, env={"SYNAPSE_DB": None, **(env or {})})


def make_history(db: str, sends: int = 60) -> None:
    """A real hub writes a varied log (two rooms, presence, feed, a message claim, state, a lease, a plan)
    with snapshots every 25 events, then stops."""
    th = ThreadHub(HubConfig(host="127.0.0.1", port=0, db=db, snapshot_every=25))
    try:
        with (
            SyncAgent("alice", hub=th.url, save_token=False) as alice,
            SyncAgent("bob", hub=th.url, save_token=False) as bob,
            SyncAgent("dana", room="ops", hub=th.url, save_token=False) as dana,
        ):
            alice.join("dev")
            bob.join()
            dana.join()
            for i in range(sends):
                alice.send("bob", {"i": i, "text": 'héllo ✓ \u2028 "quoted"'}, allow_unknown=True)
            bob.claim_message(1)
            alice.state.set("turn", 1)
            alice.state.set("plan", {"x": [1, 2.5, None]})
            alice.claim("edit-api", ["src/api/"], ttl=600)
            alice.tasks.declare("T-1", "first")
            bob.tasks.declare("T-2", "second", depends_on=["T-1"])
            dana.send("default/*", "from ops", allow_unknown=True)
    finally:
        th.stop()


def assert_same_log(original: str, copy: str) -> None:
    """Byte for byte the same events and newest snapshot, and a hub on either restores the same state."""
    rows = rows_of(original)
    assert rows and rows_of(copy) == rows
    assert snapshot_of(copy) == snapshot_of(original) is not None
    assert restored(copy) == restored(original)
    assert folded(rows_of(copy)) == folded(rows)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The path of an SQLite log a real hub wrote (read-only for the tests)."""
    db = str(tmp_path_factory.mktemp("history") / "hub.db")
    make_history(db)
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_log(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where to restore: a new SQLite file, or a new PostgreSQL database (when SYNAPSE_TEST_PG_URL is set)."""
    if request.param == "sqlite":
        return str(tmp_path / "restored" / "hub.db")
    return str(request.getfixturevalue("pg_url"))


def test_ndjson_backup_restores_to_the_identical_fold(history: str, empty_log: str, tmp_path: Path) -> None:
    """backup → NDJSON → restore into an empty log: same rows, same snapshot, same restored state."""
    out = tmp_path / "log.ndjson"
    r = synapse("backup", "--db", history, str(out))
    assert r.exit_code == 0, r.output
    n = len(rows_of(history))
    assert r.stdout.startswith(f"backed up {n} events (last seq {n}, snapshot at ")
    r = synapse("restore", "--db", empty_log, str(out), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["events"] == n
    assert_same_log(history, empty_log)


def test_sqlite_file_backup_is_a_log_and_restores(history: str, empty_log: str, tmp_path: Path) -> None:
    """backup to OUT.db uses SQLite's backup API: OUT.db is itself a log, and restores anywhere."""
    out = tmp_path / "copy.db"
    r = synapse("backup", "--db", history, str(out))
    assert r.exit_code == 0, r.output
    assert_same_log(history, str(out))
    r = synapse("restore", "--db", empty_log, str(out))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("restored ")
    assert_same_log(history, empty_log)


def test_migrate_sqlite_to_postgres_and_back(history: str, pg_url: str, tmp_path: Path) -> None:
    """log migrate moves a log to PostgreSQL and back unchanged; PostgreSQL logs back up both ways too."""
    r = synapse("log", "migrate", "--from", history, "--to", pg_url)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("migrated ")
    assert_same_log(history, pg_url)
    back = str(tmp_path / "back.db")
    r = synapse("log", "migrate", "--from", pg_url, "--to", back)
    assert r.exit_code == 0, r.output
    assert_same_log(history, back)
    for name in ("pg.ndjson", "pg.db"):  # NDJSON, and a PostgreSQL log copied into an SQLite file
        out = tmp_path / name
        assert synapse("backup", "--db", pg_url, str(out)).exit_code == 0
        target = str(tmp_path / f"from-{name}.db")
        r = synapse("restore", "--db", target, str(out))
        assert r.exit_code == 0, r.output
        assert_same_log(history, target)


def test_migrate_within_sqlite(history: str, tmp_path: Path) -> None:
    """log migrate works between any two logs (here two SQLite files); the source is left as it was."""
    target = str(tmp_path / "moved.db")
    before = rows_of(history)
    r = synapse("log", "migrate", "--from", history, "--to", target, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["events"] == len(before)
    assert_same_log(history, target)
    assert rows_of(history) == before


class Writer:
    """A thread sending as fast as acknowledgements come back, until told to stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked = 0
        self.enough = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with SyncAgent("w", hub=self.url, save_token=False) as agent:
            agent.join()
            while not self.done.is_set():
                agent.send("sink", {"n": self.acked}, allow_unknown=True)
                self.acked += 1
                if self.acked == 200:
                    self.enough.set()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(seconds(30_000))


def test_backup_while_the_hub_writes_is_a_consistent_prefix(tmp_path: Path) -> None:
    """Backups taken while a hub commits are each a prefix of the final log and restore to its fold."""
    db = str(tmp_path / "live.db")
    th = ThreadHub(HubConfig(host="127.0.0.1", port=0, db=db, snapshot_every=50))
    try:
        writer = Writer(th.url)
        assert writer.enough.wait(seconds(30_000))
        for name in ("live.ndjson", "live.db.bak.db"):
            r = synapse("backup", "--db", db, str(tmp_path / name))
            assert r.exit_code == 0, r.output
        writer.stop()
    finally:
        th.stop()
    final = rows_of(db)
    for name in ("live.ndjson", "live.db.bak.db"):
        target = str(tmp_path / f"restored-{name}.db")
        assert synapse("restore", "--db", target, str(tmp_path / name)).exit_code == 0
        copy = rows_of(target)
        assert len(copy) >= 200 and copy == final[: len(copy)]
        snap = snapshot_of(target)
        assert snap is None or snap[0] <= len(copy)
        assert restored(target) == folded(copy)
    assert len(final) > 200


def test_restore_and_migrate_refuse_a_log_a_hub_is_using(history: str, tmp_path: Path) -> None:
    """While a hub runs on a log, restore and migrate refuse (exit 1) naming its pid; backup still works."""
    db = str(tmp_path / "busy.db")
    th = ThreadHub(HubConfig(host="127.0.0.1", port=0, db=db))
    try:
        out = tmp_path / "h.ndjson"
        assert synapse("backup", "--db", history, str(out)).exit_code == 0
        r = synapse("restore", "--db", db, str(out))
        assert r.exit_code == 1
        held = f"another hub is using this log (pid {os.getpid()})"
        assert r.stderr.strip() == f"unavailable: {held}: stop it before restoring"
        r = synapse("log", "migrate", "--from", db, "--to", str(tmp_path / "x.db"))
        assert r.exit_code == 1 and f"{held}: stop it before migrating it" in r.stderr
        r = synapse("log", "migrate", "--from", history, "--to", db)
        assert r.exit_code == 1 and held in r.stderr
        r = synapse("--json", "restore", "--db", db, str(out))
        assert json.loads(r.stderr)["error"]["code"] == "unavailable"
        r = synapse("backup", "--db", db, str(tmp_path / "online.ndjson"))
        assert r.exit_code == 0, r.output
    finally:
        th.stop()


def test_restore_refuses_a_log_with_events(history: str, tmp_path: Path) -> None:
    """Restore only fills an empty log: a log with history is refused and left as it was."""
    out = tmp_path / "h.ndjson"
    assert synapse("backup", "--db", history, str(out)).exit_code == 0
    target = str(tmp_path / "t.db")
    assert synapse("restore", "--db", target, str(out)).exit_code == 0
    before = rows_of(target)
    r = synapse("restore", "--db", target, str(out))
    assert r.exit_code == 1
    assert f"is not empty ({len(before)} events)" in r.stderr
    assert rows_of(target) == before


def test_a_damaged_backup_restores_nothing(history: str, tmp_path: Path) -> None:
    """Truncated, corrupted, foreign or newer backups are refused with the reason; the log stays empty."""
    out = tmp_path / "h.ndjson"
    assert synapse("backup", "--db", history, str(out)).exit_code == 0
    lines = out.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    bad_event = json.loads(lines[10])
    bad_event["event"]["type"] = "NoSuchEvent"
    cases = {
        "truncated": (b"".join(lines[:-3]), "is incomplete"),
        "garbled": (b"".join(lines[:10] + [b"{not json\n"] + lines[11:]), "line 11: not an event line"),
        "unknown": (b"".join(lines[:10] + [json.dumps(bad_event).encode() + b"\n"] + lines[11:]), "line 11"),
        "reordered": (b"".join(lines[:10] + [lines[11], lines[10]] + lines[12:]), "line 12: seq"),
        "foreign": (b"hello\n", "not a Synapse backup"),
        "newer": (json.dumps({**header, "synapse_backup": 99}).encode() + b"\n", "newer hub"),
        "empty": (b"", "is empty"),
    }
    target = str(tmp_path / "t.db")
    for name, (data, reason) in cases.items():
        bad = tmp_path / f"{name}.ndjson"
        bad.write_bytes(data)
        r = synapse("restore", "--db", target, str(bad))
        assert r.exit_code == 1, name
        assert r.stderr.startswith("unavailable: ") and reason in r.stderr, (name, r.stderr)
        assert rows_of(target) == [] and snapshot_of(target) is None, name
    assert synapse("restore", "--db", target, str(out)).exit_code == 0
    assert_same_log(history, target)


def test_backup_to_stdout_and_restore_from_stdin(history: str, tmp_path: Path) -> None:
    """`-` streams NDJSON: backup - | restore - (the summary goes to stderr, stdout stays the backup)."""
    r = synapse("backup", "--db", history, "-")
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("backed up ")
    target = str(tmp_path / "piped.db")
    r = synapse("restore", "--db", target, "-", input=r.stdout_bytes)
    assert r.exit_code == 0, r.output
    assert_same_log(history, target)


def test_ndjson_lines_describe_themselves(history: str, tmp_path: Path) -> None:
    """Header, newest snapshot, then one JSON object per event: seq, room, type, at and the event itself."""
    out = tmp_path / "h.ndjson"
    assert synapse("backup", "--db", history, str(out)).exit_code == 0
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    rows = rows_of(history)
    header, snap, events = lines[0], lines[1]["snapshot"], lines[2:]
    assert header["synapse_backup"] == 1 and header["events"] == len(rows) == header["last_seq"]
    assert header["snapshot_seq"] == snap["seq"] and set(snap) == {"seq", "version", "data"}
    assert [e["seq"] for e in events] == [r[0] for r in rows]
    for line, (_seq, room, type_, data, at) in zip(events, rows, strict=True):
        assert (line["room"], line["type"], line["at"]) == (room, type_, at)
        assert line["event"] == json.loads(data)


def test_restore_keeps_each_event_byte_for_byte(tmp_path: Path) -> None:
    """Bodies are stored as sent (spacing, escapes): an NDJSON round trip keeps every byte."""
    db, target, out = str(tmp_path / "a.db"), str(tmp_path / "b.db"), tmp_path / "a.ndjson"
    body = b'{"a": 1,  "b": "\\u00e9\\n",\t"c": [1.50, 2e3]}'
    event = MessageSent(room="r", at=1.25, seq=1, sender="x", to=("y",), kind="note", body=msgspec.Raw(body))
    data = encode(event)
    assert body in data
    log = EventLog(db)
    log.append([(1, "r", "MessageSent", data, 1.25), (2, 'odd "room",\n', "MessageSent", data, 2.0)])
    log.close()
    assert synapse("backup", "--db", db, str(out)).exit_code == 0
    assert synapse("restore", "--db", target, str(out)).exit_code == 0
    assert rows_of(target) == rows_of(db)


def test_backup_never_overwrites_and_needs_a_log(history: str, tmp_path: Path) -> None:
    """An existing OUT is never overwritten; a missing log is an error, and nothing is created."""
    out = tmp_path / "exists.ndjson"
    out.write_text("keep me")
    r = synapse("backup", "--db", history, str(out))
    assert r.exit_code == 1 and "already exists" in r.stderr and out.read_text() == "keep me"
    missing = tmp_path / "none.db"
    r = synapse("backup", "--db", str(missing), str(tmp_path / "x.ndjson"))
    assert r.exit_code == 1 and "there is no log" in r.stderr and not missing.exists()
    r = synapse("restore", "--db", str(tmp_path / "t.db"), str(tmp_path / "nope.ndjson"))
    assert r.exit_code == 1 and "there is no backup" in r.stderr
    r = synapse("log", "migrate", "--from", history, "--to", history)
    assert r.exit_code == 1 and "same log" in r.stderr


def test_commands_default_to_the_hubs_log(history: str, tmp_path: Path) -> None:
    """Without --db the commands use `synapse hub`'s default log, $XDG_DATA_HOME/synapse/hub.db, or
    SYNAPSE_DB."""
    data = tmp_path / "data"
    env: dict[str, str | None] = {"XDG_DATA_HOME": str(data)}
    out = tmp_path / "h.ndjson"
    assert synapse("backup", "--db", history, str(out)).exit_code == 0
    r = synapse("restore", str(out), env=env)
    assert r.exit_code == 0, r.output
    assert_same_log(history, str(data / "synapse" / "hub.db"))
    r = synapse("backup", str(tmp_path / "again.ndjson"), env={"SYNAPSE_DB": history})
    assert r.exit_code == 0 and f"from sqlite:///{history}" in r.stdout


def test_long_work_shows_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Past a second, a progress line (done/total, percent, seconds) goes to stderr; quick work shows none."""
    from cli.ops import _Progress

    quick = _Progress("restore")
    quick(5_000, 10_000)
    quick(10_000, 10_000)
    assert capsys.readouterr().err == ""
    slow = _Progress("restore")
    slow.started -= 3
    slow.shown -= 3
    slow(5_000, 10_000)
    slow(10_000, 10_000)
    slow.end()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("restore: 5000/10000 events (50%), 3 s")
    assert err[-1].startswith("restore: 10000/10000 events (100%)")


def test_fill_errors_name_the_line(tmp_path: Path) -> None:
    """The library raises LogError (unavailable) for a bad backup, as the CLI shows it."""
    from hub.log.backup import restore

    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"synapse_backup": 1, "schema": 1, "events": 1, "last_seq": 1}\n{"seq": 1}\n')
    with pytest.raises(LogError, match="line 2: not an event line"):
        restore(str(bad), str(tmp_path / "t.db"))


@pytest.fixture(autouse=True)
def _no_stray_db_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SYNAPSE_DB", raising=False)
    yield
