"""A full disk and a read-only log (SQLite on a tiny tmpfs): writes are refused with `unavailable` saying why,
reads, waits and tails keep working, nothing acknowledged is lost, and writes come back without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ThreadHub, hub_config
from tests.faults.rig import Refused, Wire, fill, immutable, metric, readyz, until

VALUE = "x" * 4000  # a few pages per write: the filesystem fills in tens of writes, not thousands
MAX_WRITES = 5_000


def write_until_refused(wire: Wire, ledger: dict[str, Any]) -> Refused:
    """Write new keys until one is refused; every acknowledged one goes in the ledger."""
    for i in range(MAX_WRITES):
        key = f"fill{i}"
        try:
            wire.call("state.set", name="alice", key=key, value=VALUE)
        except Refused as exc:
            with pytest.raises(Refused) as missing:  # the refused write changed nothing
                wire.call("state.get", key=key)
            assert missing.value.code == "not_found"
            return exc
        ledger[key] = VALUE
    pytest.fail(f"{MAX_WRITES} writes on a full {Path} were all acknowledged")


def check_ledger(wire: Wire, ledger: dict[str, Any]) -> None:
    for key, value in ledger.items():
        assert wire.call("state.get", key=key)["value"] == value, key


def keep_one(db: Path, wires: Any, ledger: dict[str, Any]) -> str:
    """Before the fault: a hub on `db` where alice writes `kept` = 1; returns alice's token."""
    th = ThreadHub(hub_config(db))
    try:
        alice = wires(th.url).join("alice")
        alice.call("state.set", name="alice", key="kept", value=1)
        ledger["kept"] = 1
        assert alice.token is not None
        return alice.token
    finally:
        th.stop()


def restart_and_check(db: Path, ledger: dict[str, Any]) -> None:
    """A fresh hub on the same log has every acknowledged write."""
    th = ThreadHub(hub_config(db))
    try:
        wire = Wire(th.url)
        try:
            check_ledger(wire, ledger)
        finally:
            wire.close()
    finally:
        th.stop()


def test_a_full_disk_refuses_writes_serves_reads_waits_tails_and_recovers(small_fs: Path, wires: Any) -> None:
    """The disk under the log fills: the write that hit it and every later one get `unavailable` ("the log's
    disk is full"), sessions stay open, reads, waits and tails answer, a waiter armed before is woken after;
    the filler deleted, writes are accepted again without a restart, and a restart finds every acknowledged
    write."""
    db = small_fs / "log.db"
    th = ThreadHub(hub_config(db))
    try:
        alice = wires(th.url).join("alice")
        bob = wires(th.url).join("bob")
        ledger: dict[str, Any] = {}
        for i in range(3):
            alice.call("state.set", name="alice", key=f"k{i}", value=i)
            ledger[f"k{i}"] = i
        seq = alice.call("send", name="alice", to=["bob"], body="before")["seq"]
        armed = bob.send("wait", waiter="bob", **{"for": "bob"}, after=seq)  # armed before the disk fills
        assert bob.answer(armed)["type"] == "Ok"  # "armed": it is woken only after the disk has room again

        filler = fill(small_fs)
        refused = write_until_refused(alice, ledger)
        assert refused.code == "unavailable" and "the log's disk is full" in refused.message, refused

        with pytest.raises(Refused) as again:  # refused at once, saying why, without touching the log
            alice.call("send", name="alice", to=["bob"], body="while full")
        assert again.value.code == "unavailable" and "disk is full" in again.value.message
        status, ready = readyz(th)
        assert status == 503 and not ready["ready"] and not ready["log_writable"]
        assert "disk is full" in ready["degraded"]
        assert metric(th, "synapse_log_degraded") == 1

        check_ledger(alice, ledger)  # reads are served (the same session, open all along)
        listed = alice.call("message.list")
        assert [m["body"] for m in listed["messages"]] == ["before"]
        woke = alice.woken(alice.send("wait", waiter="alice", condition="state._shared.k2 == 2"))
        assert woke["type"] == "Wake" and woke["reason"] == "condition"  # a wait on what is durable
        tail = wires(th.url)
        tail.call("tail", after=0, admin_token=None)
        frames = [tail.next_frame() for _ in range(3)]
        assert all(f["type"] == "EventFrame" for f in frames) and frames[0]["position"] == 1

        filler.unlink()
        until("the hub to take writes again", lambda: readyz(th)[0] == 200)
        assert readyz(th)[1]["degraded"] is None and metric(th, "synapse_log_degraded") == 0
        sent = alice.call("send", name="alice", to=["bob"], body="after")["seq"]
        wake = bob.woken(armed)  # the waiter armed before the fault, carried over the rebuild
        assert wake["type"] == "Wake" and wake["message"]["seq"] == sent
        alice.call("state.set", name="alice", key="after", value=True)
        ledger["after"] = True
        while True:  # the tail, started while degraded, goes on with what is written after
            frame = tail.next_frame()
            event = frame.get("event", {})
            if event.get("type") == "StateWritten" and event.get("key") == "after":
                break
    finally:
        th.stop()
    restart_and_check(db, ledger)


def test_a_hub_restarted_on_a_full_disk_degrades_at_its_first_write_instead_of_stopping(
    small_fs: Path, wires: Any
) -> None:
    """Restarted while the disk is still all but full, the hub no longer dies at the first write that does not
    fit: it refuses it with `unavailable`, serves what the log holds, and takes writes once there is room.
    (With not one byte left SQLite cannot even open the log (its -shm file): the hub then refuses to start,
    saying so, and its supervisor retries.)"""
    db = small_fs / "log.db"
    ledger: dict[str, Any] = {}
    token = keep_one(db, wires, ledger)
    filler = fill(small_fs, leave=256 << 10)  # room to open the log and record the start, little more
    th = ThreadHub(hub_config(db))
    try:
        writer = wires(th.url)
        writer.token = token
        refused = write_until_refused(writer, ledger)
        assert refused.code == "unavailable" and "disk is full" in refused.message
        assert readyz(th)[0] == 503 and th.hub is not None and th.hub.failed is None  # degraded, not dead
        check_ledger(writer, ledger)
        filler.unlink()
        until("the hub to take writes again", lambda: readyz(th)[0] == 200)
        writer.call("state.set", name="alice", key="later", value=2)
        ledger["later"] = 2
    finally:
        th.stop()
    restart_and_check(db, ledger)


def test_a_read_only_log_refuses_writes_serves_reads_and_recovers(small_fs: Path, wires: Any) -> None:
    """The log file made read-only (chattr +i: as root, chmod would not stop a write) while the hub was down:
    the hub serves it read-only with `unavailable` ("the log is read-only") and takes writes once it is
    writable again, without a restart. (A running hub keeps the file open, and Linux lets an open file be
    written, so the read-only case is met at the next start or reconnect.)"""
    db = small_fs / "log.db"
    ledger: dict[str, Any] = {}
    token = keep_one(db, wires, ledger)
    immutable(db, True)
    try:
        th = ThreadHub(hub_config(db))
        try:
            until("the start to be refused", lambda: readyz(th)[0] == 503)
            assert "read-only" in readyz(th)[1]["degraded"]
            reader = wires(th.url)
            check_ledger(reader, ledger)
            reader.token = token
            with pytest.raises(Refused) as refused:
                reader.call("state.set", name="alice", key="ro", value=1)
            assert refused.value.code == "unavailable" and "read-only" in refused.value.message
            with pytest.raises(Refused):
                reader.call("state.get", key="ro")
            immutable(db, False)
            until("the hub to take writes again", lambda: readyz(th)[0] == 200)
            reader.call("state.set", name="alice", key="ro", value=2)
            ledger["ro"] = 2
        finally:
            th.stop()
    finally:
        immutable(db, False)
    restart_and_check(db, ledger)
