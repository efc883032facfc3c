"""Any armed waiter shows its agent `waiting` with the waiter's name (message waiters too), as session state:
no event is logged, CEL sees it, and a ShowPresence effect carries each change to the tails."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.effects import Outcome, ShowPresence
from hub.core.machine import SessionGone
from hub.protocol import commands as c
from hub.protocol.codec import to_builtins
from hub.protocol.frames import Wake
from tests.core.test_conditions import presence, pushed, reply, subscribe, triggers

Script = Any  # the fixture's class lives in tests/core/conftest.py

WAITER = 5  # the session that waits
WATCHER = 7  # the session that subscribes


def shown(out: Outcome) -> list[tuple[str, str, str | None]]:
    """(agent, status, waiter) of each presence change `out` carries to the tails."""
    records = [to_builtins(fx.presence) for fx in out.effects if isinstance(fx, ShowPresence)]
    return [(p["name"], p["status"], p.get("waiter")) for p in records]


@pytest.fixture
def room(script: Script) -> Script:
    script.join("alice", "bob")
    return script


def test_message_waiter_shows_waiting_until_woken(room: Script) -> None:
    """Armed: bob is `waiting` with `waiter` (no event logged, CEL sees it); woken by a message: back."""
    out = room.do("bob", c.Wait(id=4, waiter="bob-rx", for_="bob"), session=WAITER)
    assert out.events == [] and shown(out) == [("bob", "waiting", "bob-rx")]
    p = presence(room, "bob")
    assert (p["status"], p["waiter"], p["waiting_on"]) == ("waiting", "bob-rx", None)
    assert presence(room, "alice")["status"] == "active"
    assert reply(room.run(c.Eval(expr='agents["bob"].status')))["value"] == "waiting"
    out = room.do("alice", c.Send(name="alice", to=("bob",), body=b'"hi"'), session=None)
    assert [type(f) for f in pushed(out, WAITER)] == [Wake]
    assert shown(out) == [("bob", "active", None)]
    p = presence(room, "bob")
    assert (p["status"], p.get("waiter")) == ("active", None)


def test_heartbeat_reply_keeps_waiting(room: Script) -> None:
    """A heartbeat while a message waiter is armed answers `waiting` (the waiter still shows)."""
    room.do("bob", c.Wait(id=4, waiter="bob-rx", for_="bob"), session=WAITER)
    assert reply(room.do("bob", c.Heartbeat(name="bob", status="busy"), session=9))["status"] == "waiting"


def test_subscription_on_status_triggers_on_arm_and_disarm(room: Script) -> None:
    """`agents["bob"].status == "waiting"` triggers when a message waiter arms; the session's end takes it back."""
    sub, _ = subscribe(room, 'agents["bob"].status == "waiting"')
    back, _ = subscribe(room, 'agents["bob"].status == "active"')
    out = room.do("bob", c.Wait(id=4, waiter="bob-rx", for_="bob"), session=WAITER)
    assert [t.sub for t in triggers(out)] == [sub]
    out = room.run(SessionGone(WAITER), session=None)
    assert [t.sub for t in triggers(out)] == [back]
    assert shown(out) == [("bob", "active", None)]


def test_condition_waiter_shows_its_name_and_expression(room: Script) -> None:
    """A condition waiter shows `waiting_on` (as before) and now its waiter's name too."""
    cond = "state._shared.turn == 1"
    out = room.do("bob", c.Wait(id=4, waiter="bob-turn", condition=cond), session=WAITER)
    assert shown(out) == [("bob", "waiting", "bob-turn")]
    p = presence(room, "bob")
    assert (p["status"], p["waiter"], p["waiting_on"]) == ("waiting", "bob-turn", cond)


def test_taken_over_waiter_moves_to_the_new_one(room: Script) -> None:
    """A newer waiter of the same name takes it over: bob stays `waiting`, on the newer one."""
    room.do("bob", c.Wait(id=4, waiter="bob-rx", for_="bob"), session=WAITER)
    out = room.do("bob", c.Wait(id=5, waiter="bob-rx", for_="bob"), session=WAITER + 1)
    assert shown(out)[-1] == ("bob", "waiting", "bob-rx")
    assert presence(room, "bob")["status"] == "waiting"
    out = room.run(SessionGone(WAITER), session=None)  # the old session ending does not end the new wait
    assert presence(room, "bob")["status"] == "waiting"
