"""sessions.carry: a world rebuilt from the log after a failed commit keeps the live sessions' bindings,
waiters and subscriptions (never in the log), and nothing of what the log refused."""

from __future__ import annotations

from hub.core import sessions
from hub.core.agents import Waiters
from hub.core.conditions import Conditions
from hub.core.effects import Start
from hub.core.feed import Streams
from hub.core.machine import Machine
from hub.protocol import commands as c
from hub.protocol.frames import Wake
from tests.core.conftest import Script


def rebuilt(script: Script, durable: int) -> Machine:
    """A fresh machine folded from the first `durable` events (what the log kept)."""
    fresh = Machine(script.config)
    for event in script.events[:durable]:
        fresh.apply(event)
    return fresh


def test_live_bindings_waiters_and_subscriptions_are_carried_over(script: Script) -> None:
    """Bob's stream, his armed waiter and his subscription survive the rebuild; a message the log refused is
    not in the rebuilt feed, and the carried waiter is woken by the next one."""
    script.run(Start(), session=None)
    script.join("alice", "bob")
    script.do("bob", c.Attach(name="bob"), session=2)
    script.do("bob", c.Wait(waiter="bob", for_="bob", id=7), session=2)
    script.do("bob", c.Subscribe(expr="has(state._shared.go)", id=8), session=3)
    durable = len(script.events)
    script.do("alice", c.SetState(name="alice", key="lost", value=1))  # the batch the log refused
    fresh = rebuilt(script, durable)
    sessions.carry(script.machine.world, fresh.world)
    script.machine = fresh
    script.events = script.events[:durable]
    world = fresh.world
    assert world.sessions[2].agent == "bob" and world.sessions[2].waiter == ("default", "bob")
    room = world.rooms["default"]
    assert room.part(Streams).of["bob"] == {2}
    assert room.part(Waiters).by_name["bob"].session == 2
    assert len(room.part(Conditions).subs) == 1
    out = script.do("alice", c.Send(name="alice", to=("bob",), body=b'"hi"'))  # type: ignore[arg-type]
    wakes = [e.frame for e in out.effects if type(getattr(e, "frame", None)) is Wake]
    assert [w.id for w in wakes] == [7]


def test_a_session_whose_attach_was_refused_stays_unbound(script: Script) -> None:
    """An attach whose SessionOpened the log refused leaves its session unbound after the rebuild."""
    script.run(Start(), session=None)
    script.join("carol")
    durable = len(script.events)
    script.do("carol", c.Attach(name="carol"), session=4)
    fresh = rebuilt(script, durable)
    sessions.carry(script.machine.world, fresh.world)
    script.machine = fresh
    script.events = script.events[:durable]
    assert fresh.world.sessions[4].agent is None
    assert 4 not in fresh.world.rooms["default"].part(Streams).of.get("carol", set())
