"""What a log holds, read the ways an operator's checks need: its rows, its newest snapshot, the state a hub
restores from it, and the state of every event folded from nothing."""

from __future__ import annotations

from hub.config import HubConfig
from hub.core import snapshot
from hub.core.machine import Machine
from hub.log.store import EventLog, Row, Snapshot
from hub.protocol.codec import decode_event


def rows_of(db: str) -> list[Row]:
    log = EventLog(db, owner=False)
    try:
        return log.read()
    finally:
        log.close()


def snapshot_of(db: str) -> Snapshot | None:
    log = EventLog(db, owner=False)
    try:
        return log.load_snapshot(None)
    finally:
        log.close()


def restored(db: str) -> bytes:
    """The state a hub starting on `db` restores (newest snapshot + the events after it), as a snapshot."""
    from hub.server.hub import Hub

    hub = Hub(HubConfig(db=db))
    try:
        hub.restore()
        return snapshot.dump(hub.machine)
    finally:
        hub.log.close()


def folded(rows: list[Row]) -> bytes:
    """The state of every event folded from nothing, as a snapshot."""
    machine = Machine()
    for row in rows:
        machine.apply(decode_event(row[3]))
    return snapshot.dump(machine)
