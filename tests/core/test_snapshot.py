"""Tests for hub.core.snapshot: dump ⇄ load is exact, and a loaded snapshot folds on like the full log."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hub.core import snapshot
from hub.core.agents import Roster, Waiters
from hub.core.feed import Feed, Streams
from hub.core.machine import Context, Machine, SessionGone, Start
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError
from hub.protocol.events import Event

Script = Any  # the fixture's class lives in tests/core/conftest.py


def busy_history(script: Script) -> None:
    """A history touching every event type, two rooms, cross-room messages, claims and restarts."""
    script.run(Start(), session=None)
    script.join("alice", "bob", "carol")
    script.join("dana", room="ops")
    script.do("alice", c.Attach(name="alice"), session=1)
    script.do("bob", c.Attach(name="bob"), session=2)
    script.now += 1
    script.do(
        "alice", c.Send(name="alice", to=("bob",), body=msgspec.Raw(b'{"n":1}'), kind="task"), session=1
    )
    script.do("bob", c.Send(name="bob", to=("*",), reply_to=1, priority=True), session=2)
    script.do("alice", c.Send(name="alice", to=("all",)), session=1)
    script.do("dana", c.Send(room="ops", name="dana", to=("default/carol",)), session=None)
    script.now += 1
    script.do("carol", c.ClaimMessage(name="carol", seq=2), session=None)
    script.do("bob", c.Heartbeat(name="bob", status="busy"), session=2)
    script.run(SessionGone(2), session=2)
    rotated = script.do("alice", c.Join(name="alice", role="lead", rotate=True), session=1)  # a new token
    script.tokens[("default", "alice")] = rotated.effects[0].result.token
    script.now += 1
    script.run(Start(), session=None)
    script.do("alice", c.Attach(name="alice"), session=3)
    script.do("carol", c.Heartbeat(name="carol", status="done"), session=None)


def test_dump_load_dump_is_identical(script: Script) -> None:
    """A snapshot loaded into a fresh machine dumps to the same bytes."""
    busy_history(script)
    data = snapshot.dump(script.machine)
    assert snapshot.dump(snapshot.load(data, script.config)) == data
    assert snapshot.take(script.machine).version == snapshot.SNAPSHOT_VERSION


def test_snapshot_of_an_empty_machine(script: Script) -> None:
    """An empty machine round-trips too."""
    data = snapshot.dump(Machine())
    assert snapshot.dump(snapshot.load(data)) == data
    del script


def test_loaded_snapshot_folds_on_like_the_full_log(script: Script) -> None:
    """For every split point k: load(dump(fold(events[:k]))) + events[k:] equals fold(all events)."""
    busy_history(script)
    events: list[Event] = list(script.events)
    full = Machine(script.config)
    for event in events:
        full.apply(event)
    expected = snapshot.dump(full)
    assert expected == snapshot.dump(script.machine)
    for k in range(len(events) + 1):
        head = Machine(script.config)
        for event in events[:k]:
            head.apply(event)
        restored = snapshot.load(snapshot.dump(head), script.config)
        assert restored.position == k
        for event in events[k:]:
            restored.apply(event)
        assert snapshot.dump(restored) == expected, f"diverged after a snapshot at event {k}"


def test_restored_machine_keeps_deciding_the_same(script: Script) -> None:
    """A machine restored from a snapshot gives the next command the same seq, tokens and refusals."""
    busy_history(script)
    restored = snapshot.load(snapshot.dump(script.machine), script.config)
    cmd = c.Send(name="alice", to=("bob",), token=script.token("alice"))
    ctx = Context(script.now, None, script.secret)
    assert restored.handle(cmd, ctx).events == script.run(cmd, session=None).events
    assert (
        restored.world.rooms["default"].part(Feed).claimed
        == script.machine.world.rooms["default"].part(Feed).claimed
    )


def test_restored_token_of_another_agent_is_still_forbidden(script: Script) -> None:
    """The token → owner index is rebuilt on load, so using bob's token as alice stays forbidden."""
    busy_history(script)
    restored = snapshot.load(snapshot.dump(script.machine), script.config)
    cmd = c.Heartbeat(name="alice", token=script.token("bob"))
    with pytest.raises(HubError) as info:
        restored.handle(cmd, Context(script.now))
    assert info.value.code == Code.FORBIDDEN


def test_start_after_restore_marks_snapshot_sessions_offline(script: Script) -> None:
    """Sessions recorded in a snapshot are from the previous run: Start after load marks their agents offline."""
    busy_history(script)
    restored = snapshot.load(snapshot.dump(script.machine), script.config)
    assert restored.world.rooms["default"].part(Roster).agents["alice"].sessions
    restored.run(Start(), Context(script.now + 1))
    assert restored.world.rooms["default"].part(Roster).agents["alice"].status == "offline"
    assert not restored.world.rooms["default"].part(Roster).agents["alice"].sessions


def test_snapshot_does_not_hold_live_sessions_bindings(script: Script) -> None:
    """Streams and waiters are ephemeral: a restored machine has none."""
    busy_history(script)
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=9)
    restored = snapshot.load(snapshot.dump(script.machine), script.config)
    room = restored.world.rooms["default"]
    assert room.part(Streams).of == {} and room.part(Waiters).by_name == {} and restored.world.sessions == {}
