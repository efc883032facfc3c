"""The EventLog contract, the same on every backend: SQLite always, PostgreSQL when SYNAPSE_TEST_PG_URL is set."""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.core import snapshot
from hub.core.agents import Roster
from hub.core.feed import Feed
from hub.core.machine import Machine
from hub.log.schema import snapshots
from hub.log.store import KEEP_SNAPSHOTS, EventLog, LogError, Row
from hub.protocol.codec import decode_event, encode
from hub.protocol.errors import Code
from hub.protocol.events import Event, HubStarted, MessageSent
from tests.log.pg import fresh_database, query


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty log location on each backend (PostgreSQL: a new database per case, when
    SYNAPSE_TEST_PG_URL is set)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}"
        return
    with fresh_database() as url:
        yield url


@pytest.fixture
def log(log_url: str) -> Iterator[EventLog]:
    store = EventLog(log_url)
    yield store
    store.close()


def row(seq: int, room: str = "default") -> Row:
    """A real encoded event as the hub writes it."""
    event = MessageSent(
        room=room, at=1000.0 + seq / 8, seq=seq, sender="alice", to=("bob",), kind="note", body=b'{"n":1}'
    )
    return (seq, room, "MessageSent", encode(event), event.at)


def rows(first: int, last: int) -> list[Row]:
    return [row(seq) for seq in range(first, last + 1)]


def count_snapshots(log: EventLog) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(snapshots)).scalar_one())


# --------------------------------------------------------------------------- events


def test_empty_log(log: EventLog) -> None:
    """A new log has no events, last_seq 0 and no snapshot."""
    assert log.last_seq() == 0
    assert log.read() == []
    assert list(log.scan()) == []
    assert log.load_snapshot([1]) is None


def test_append_then_read_gives_the_rows_back_exactly(log: EventLog) -> None:
    """Appended rows come back in order, byte for byte, and the data decodes to the same event."""
    batch = rows(1, 5)
    log.append(batch)
    got = log.read()
    assert got == batch
    assert all(isinstance(r[3], bytes) for r in got)
    assert decode_event(got[0][3]) == decode_event(batch[0][3])
    assert log.last_seq() == 5


def test_times_and_text_round_trip_exactly(log: EventLog) -> None:
    """Wall-clock times keep every bit, rooms and types their text, data every byte (NUL and 0xFF included)."""
    times = [1732400000.1234567, 0.1, 1e-300, 1.7976931348623157e308, 2.5]
    batch = [
        (i, f"room-{i}.é", "MessageSent", bytes([0, 255, i]) + row(i)[3], at) for i, at in enumerate(times, 1)
    ]
    log.append(batch)
    assert log.read() == batch
    assert [str(r[4]) for r in log.read()] == [str(t) for t in times]


def test_read_after_and_limit(log: EventLog) -> None:
    """read(after, limit) returns the events strictly after `after`, at most `limit` of them."""
    log.append(rows(1, 10))
    assert [r[0] for r in log.read(after=7)] == [8, 9, 10]
    assert [r[0] for r in log.read(after=2, limit=3)] == [3, 4, 5]
    assert log.read(after=10) == []
    assert log.read(after=99) == []


def test_appends_accumulate_across_batches(log: EventLog) -> None:
    """Several appends read back as one ordered log."""
    log.append(rows(1, 3))
    log.append(rows(4, 4))
    log.append(rows(5, 9))
    assert [r[0] for r in log.read()] == list(range(1, 10))
    assert log.last_seq() == 9


@pytest.mark.parametrize(("count", "chunk"), [(10, 3), (9, 3), (2, 5), (0, 4), (1, 1)])
def test_scan_reads_everything_in_chunks(log: EventLog, count: int, chunk: int) -> None:
    """scan() yields every event after the cursor across chunk boundaries, exactly once, in order."""
    if count:
        log.append(rows(1, count))
    assert [r[0] for r in log.scan(chunk=chunk)] == list(range(1, count + 1))
    assert [r[0] for r in log.scan(after=count // 2, chunk=chunk)] == list(range(count // 2 + 1, count + 1))


def test_appending_nothing_is_a_no_op(log: EventLog) -> None:
    """An empty batch commits nothing and raises nothing."""
    log.append([])
    log.append(rows(1, 1))
    log.append([])
    assert [r[0] for r in log.read()] == [1]


def test_a_failed_append_stores_nothing(log: EventLog) -> None:
    """A batch that cannot be written (a seq already taken) raises LogError and none of its rows are stored."""
    log.append(rows(1, 3))
    with pytest.raises(LogError) as info:
        log.append([row(4), row(5), row(3)])
    assert info.value.code == Code.UNAVAILABLE
    assert "INSERT" not in info.value.message
    assert log.last_seq() == 3 and [r[0] for r in log.read()] == [1, 2, 3]


def test_writes_of_every_kind_share_the_write_connection(log: EventLog) -> None:
    """Appends, snapshots and probes interleave on the one write connection, and after a failed append the
    next one commits (SQLite appends run below SQLAlchemy, the others through it)."""
    log.append(rows(1, 2))
    log.save_snapshot(2, 1, b"two")
    log.probe(1.0)
    with pytest.raises(LogError):
        log.append([row(3), row(2)])
    log.append(rows(3, 4))
    log.save_snapshot(4, 1, b"four")
    log.append(rows(5, 5))
    assert [r[0] for r in log.read()] == [1, 2, 3, 4, 5]
    assert log.load_snapshot(None) == (4, 1, b"four")


def test_a_reopened_log_has_everything(log_url: str, log: EventLog) -> None:
    """Another owner on the same location (a restarted hub) reads every committed event and snapshot."""
    log.append(rows(1, 4))
    log.save_snapshot(4, 1, b"snap")
    expected = log.read()
    log.close()
    other = EventLog(log_url)
    try:
        assert other.read() == expected
        assert other.load_snapshot([1]) == (4, 1, b"snap")
        other.append(rows(5, 5))
        assert other.last_seq() == 5
    finally:
        other.close()


def test_rooms_and_types_are_stored(log: EventLog) -> None:
    """Each row keeps its room and event type for operators' filters."""
    started = HubStarted(room="", at=5.0)
    log.append([(1, "", "HubStarted", encode(started), 5.0), row(2, room="ops")])
    assert [(r[1], r[2]) for r in log.read()] == [("", "HubStarted"), ("ops", "MessageSent")]


# --------------------------------------------------------------------------- snapshots


def test_snapshots_keep_only_the_newest_few(log: EventLog) -> None:
    """Saving more snapshots than KEEP_SNAPSHOTS drops the oldest; the newest is loaded."""
    for seq in (10, 20, 30, 40, 50):
        log.save_snapshot(seq, 1, f"at {seq}".encode())
    assert count_snapshots(log) == KEEP_SNAPSHOTS
    assert log.load_snapshot([1]) == (50, 1, b"at 50")


def test_load_snapshot_picks_the_newest_of_a_known_version(log: EventLog) -> None:
    """Snapshots of versions this hub does not read are ignored; the newest readable one wins."""
    log.save_snapshot(10, 1, b"v1")
    log.save_snapshot(20, 99, b"v99")
    assert log.load_snapshot([1]) == (10, 1, b"v1")
    assert log.load_snapshot([99]) == (20, 99, b"v99")
    assert log.load_snapshot([1, 99]) == (20, 99, b"v99")
    assert log.load_snapshot([2]) is None
    assert log.load_snapshot([]) is None


def test_snapshot_at_the_same_seq_replaces(log: EventLog) -> None:
    """Saving again at the same seq replaces the snapshot instead of failing."""
    log.save_snapshot(7, 1, b"first")
    log.save_snapshot(7, 1, b"second")
    assert log.load_snapshot([1]) == (7, 1, b"second")
    assert count_snapshots(log) == 1


def test_large_snapshot_round_trips(log: EventLog) -> None:
    """A multi-megabyte snapshot is stored and loaded unchanged."""
    data = bytes(range(256)) * 8192
    log.save_snapshot(1, 1, data)
    assert log.load_snapshot([1]) == (1, 1, data)


def test_log_error_is_a_hub_error_without_secrets(log_url: str) -> None:
    """Opening an unreachable log raises LogError (unavailable) whose message hides the password."""
    if log_url.startswith("sqlite"):
        bad = "sqlite:////proc/no/such/dir/log.db"
    else:
        from sqlalchemy.engine import make_url

        bad = (
            make_url(log_url)
            .set(password="hunter2-secret", database="no_such_db_synapse")
            .render_as_string(hide_password=False)
        )
    with pytest.raises(LogError) as info:
        EventLog(bad)
    assert info.value.code == Code.UNAVAILABLE
    assert "hunter2-secret" not in str(info.value)


# --------------------------------------------------------------------------- one owner


def test_a_second_owner_is_refused_until_the_first_closes(log_url: str, log: EventLog) -> None:
    """Two hubs never write one log: a second owner gets LogError (unavailable) naming this process; once
    the first closes, a new owner opens it."""
    log.append(rows(1, 2))
    with pytest.raises(LogError) as info:
        EventLog(log_url)
    assert info.value.code == Code.UNAVAILABLE
    assert info.value.message == f"another hub is using this log (pid {os.getpid()})"
    assert log.last_seq() == 2
    log.append(rows(3, 3))  # the refused owner disturbed nothing
    log.close()
    again = EventLog(log_url)
    try:
        again.append(rows(4, 4))
        assert again.last_seq() == 4
    finally:
        again.close()


def test_a_reader_sees_the_owners_commits_and_cannot_write(log_url: str, log: EventLog) -> None:
    """owner=False opens a live log beside its owner (a backup): it reads every commit and never writes."""
    reader = EventLog(log_url, owner=False)
    try:
        log.append(rows(1, 3))
        log.save_snapshot(3, 1, b"s")
        assert reader.read() == log.read() and reader.load_snapshot([1]) == (3, 1, b"s")
        for write in (lambda: reader.append(rows(4, 4)), lambda: reader.save_snapshot(4, 1, b"x")):
            with pytest.raises(LogError) as info:
                write()
            assert "read only" in info.value.message
        assert log.last_seq() == 3
    finally:
        reader.close()


def test_a_reader_needs_an_existing_log(tmp_path: Path) -> None:
    """Reading a log that does not exist is a LogError, and creates nothing."""
    path = tmp_path / "none.db"
    with pytest.raises(LogError) as info:
        EventLog(str(path), owner=False)
    assert "there is no log" in info.value.message and not path.exists()


# --------------------------------------------------------------------------- fill (restore, migrate)


def test_fill_writes_rows_and_snapshot_in_one_go(log: EventLog) -> None:
    """fill() stores every row and the snapshot, reporting progress, and returns the count."""
    seen: list[int] = []
    assert log.fill(iter(rows(1, 12_000)), (10_000, 1, b"snap"), seen.append) == 12_000
    assert log.last_seq() == 12_000 and log.count() == 12_000 and log.count(upto=5) == 5
    assert log.load_snapshot(None) == (10_000, 1, b"snap")
    assert seen[-1] == 12_000 and seen == sorted(seen)


def test_fill_refuses_a_log_that_is_not_empty(log: EventLog) -> None:
    """Restoring over history would mix two logs: fill() refuses and changes nothing."""
    log.append(rows(1, 1))
    with pytest.raises(LogError) as info:
        log.fill(iter(rows(2, 3)))
    assert "not empty (1 events)" in info.value.message
    assert log.last_seq() == 1


def test_fill_is_all_or_nothing(log: EventLog) -> None:
    """When the rows stop with an error half way (a bad backup line), nothing is stored."""

    def broken() -> Iterator[Row]:
        yield from rows(1, 7_000)
        raise LogError("line 7002 is not an event")

    with pytest.raises(LogError, match="line 7002"):
        log.fill(broken(), (5, 1, b"s"))
    assert log.last_seq() == 0 and log.load_snapshot(None) is None
    assert log.fill(iter(rows(1, 2))) == 2  # the connection is still good


def test_read_upto_and_any_snapshot_version(log: EventLog) -> None:
    """read/scan stop at `upto`; load_snapshot(None) picks the newest of any version."""
    log.append(rows(1, 10))
    assert [r[0] for r in log.read(after=2, upto=5)] == [3, 4, 5]
    assert [r[0] for r in log.scan(after=6, chunk=2, upto=9)] == [7, 8, 9]
    log.save_snapshot(4, 1, b"a")
    log.save_snapshot(8, 99, b"b")
    assert log.load_snapshot(None) == (8, 99, b"b")


def test_long_room_names_are_stored(log: EventLog) -> None:
    """A room name of any length is stored as on SQLite (a bounded column would stop the hub)."""
    long = "r" * 1000
    log.append([row(1, room=long)])
    assert log.read()[0][1] == long


def test_size_is_reported(log: EventLog) -> None:
    """size() is a byte count on each backend (the SQLite file, PostgreSQL's tables)."""
    log.append(rows(1, 50))
    size = log.size()
    assert size is not None and size > 0


def test_postgres_owner_session_lost_and_taken_again(log_url: str, log: EventLog) -> None:
    """PostgreSQL: if the owner's session is killed, the next write fails (never writes unowned); the one
    after takes ownership again, unless another owner took the log meanwhile."""
    if log_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL session case")
    log.append(rows(1, 1))
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'synapse pid=%'"
    )
    assert query(log_url, terminate) == [(True,)]
    with pytest.raises(LogError):
        log.append(rows(2, 2))
    log.append(rows(2, 2))
    assert log.last_seq() == 2
    assert query(log_url, terminate) == [(True,)]
    with pytest.raises(LogError):
        log.append(rows(3, 3))
    other = EventLog(log_url)  # another hub started while the session was gone
    try:
        with pytest.raises(LogError) as info:
            log.append(rows(3, 3))
        assert "another hub is using this log" in info.value.message
        other.append(rows(3, 3))
    finally:
        other.close()
    assert log.last_seq() == 3


# --------------------------------------------------------------------------- event versioning


FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("events-v*.ndjson"))


def fixture_events(path: Path) -> list[Event]:
    return [decode_event(line) for line in path.read_bytes().splitlines() if line.strip()]


def fold(events: list[Event]) -> Machine:
    machine = Machine()
    for event in events:
        machine.apply(event)
    return machine


def test_there_are_event_fixtures() -> None:
    """At least the first release's encoded events are kept."""
    assert FIXTURES / "events-v1.ndjson" in FIXTURE_FILES


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_encoded_events_of_every_release_decode_and_fold(path: Path) -> None:
    """Every line of every release's fixture decodes with today's codec and folds into a fresh Machine."""
    events = fixture_events(path)
    assert events
    machine = fold(events)
    assert machine.position == len(events)
    data = snapshot.dump(machine)
    assert snapshot.dump(snapshot.load(data)) == data
    for event in events:
        assert decode_event(encode(event)) == event


V1_TYPES = {
    "HubStarted",
    "AgentJoined",
    "PresenceChanged",
    "SessionOpened",
    "SessionClosed",
    "MessageSent",
    "MessageClaimed",
    "ClaimGranted",
    "ClaimRenewed",
    "ClaimOrphaned",
    "ClaimReleased",
    "ClaimLapsed",
    "ClaimHandedOff",
    "IntentDeclared",
    "TaskDeclared",
    "TaskUpdated",
}


def test_v1_fixture_keeps_an_example_of_each_v1_event_type() -> None:
    """events-v1 holds every event type of v1, and each still exists: types are never removed or renamed."""
    in_fixture = {type(event).__name__ for event in fixture_events(FIXTURES / "events-v1.ndjson")}
    assert in_fixture >= V1_TYPES
    assert {cls.__name__ for cls in typing.get_args(Event)} >= V1_TYPES


def test_v1_fixture_folds_to_the_state_it_recorded() -> None:
    """The v1 history folds to its known outcome: rooms, presence, feeds and the message claim."""
    machine = fold(fixture_events(FIXTURES / "events-v1.ndjson"))
    default, ops = machine.world.rooms["default"], machine.world.rooms["ops"]
    agents, ops_agents = default.part(Roster).agents, ops.part(Roster).agents
    assert set(agents) == {"alice", "bob"} and set(ops_agents) == {"dana"}
    assert agents["alice"].status == "offline" and agents["alice"].role == "dev"
    assert agents["bob"].status == "busy"
    feed, ops_feed = default.part(Feed), ops.part(Feed)
    assert feed.seq == 2 and ops_feed.seq == 1
    assert ops_feed.messages[0].sender == "default/alice" and ops_feed.messages[0].to == ("*",)
    assert feed.claimed == {1: "bob"}
    assert feed.messages[1].reply_to == 1


def test_fixture_survives_each_backend(log: EventLog) -> None:
    """The v1 events stored in the log and scanned back fold to the same state as the file itself."""
    lines = [line for line in (FIXTURES / "events-v1.ndjson").read_bytes().splitlines() if line]
    events = [decode_event(line) for line in lines]
    log.append(
        [
            (i, ev.room, type(ev).__name__, line, ev.at)
            for i, (ev, line) in enumerate(zip(events, lines, strict=True), 1)
        ]
    )
    scanned = [decode_event(r[3]) for r in log.scan(chunk=5)]
    assert snapshot.dump(fold(scanned)) == snapshot.dump(fold(events))
