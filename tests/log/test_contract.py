"""The EventLog contract, the same on every backend: SQLite always, PostgreSQL when SYNAPSE_TEST_PG_URL is set."""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from hub.core import snapshot
from hub.core.machine import Machine
from hub.log.schema import metadata, snapshots
from hub.log.store import KEEP_SNAPSHOTS, EventLog, LogError, Row
from hub.protocol.codec import decode_event, encode
from hub.protocol.errors import Code
from hub.protocol.events import Event, HubStarted, MessageSent

PG_ENV = "SYNAPSE_TEST_PG_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty log location on each backend (PostgreSQL only when SYNAPSE_TEST_PG_URL is set)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}"
        return
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL contract cases need {PG_ENV}=postgresql+psycopg://user:pw@host/db")
    engine = create_engine(url)
    metadata.drop_all(engine)  # every case starts from an empty database
    engine.dispose()
    yield url
    engine = create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


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


def test_a_reopened_log_has_everything(log_url: str, log: EventLog) -> None:
    """Another EventLog on the same location (a restarted hub) reads every committed event and snapshot."""
    log.append(rows(1, 4))
    log.save_snapshot(4, 1, b"snap")
    other = EventLog(log_url)
    try:
        assert other.read() == log.read()
        assert other.load_snapshot([1]) == (4, 1, b"snap")
        other.append(rows(5, 5))
    finally:
        other.close()
    assert log.last_seq() == 5


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
    default, ops = machine.rooms["default"], machine.rooms["ops"]
    assert set(default.agents) == {"alice", "bob"} and set(ops.agents) == {"dana"}
    assert default.agents["alice"].status == "offline" and default.agents["alice"].role == "dev"
    assert default.agents["bob"].status == "busy"
    assert default.seq == 2 and ops.seq == 1
    assert ops.feed[0].sender == "default/alice" and ops.feed[0].to == ("*",)
    assert default.claimed == {1: "bob"}
    assert default.feed[1].reply_to == 1


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
