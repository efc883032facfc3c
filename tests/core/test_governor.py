"""Tests for the wake governor (hub.core.governor and its use in hub.core.feed): a wake hands over the whole burst,
settle and stagger defer wakes to a Tick, a reply answers its sender, and the loop limit breaks wake loops."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from hub.config import HubConfig
from hub.core import governor
from hub.core.agents import Waiters
from hub.core.effects import ArmTimer, Deliver, Outcome
from hub.core.machine import SessionGone, Tick
from hub.protocol import commands as c
from hub.protocol.errors import Code
from hub.protocol.frames import WAKE_CAP, Wake
from tests.core.conftest import Script


def wake_of(out: Outcome, session: int) -> Wake | None:
    frames = [fx.frame for fx in out.effects if isinstance(fx, Deliver) and session in fx.sessions]
    wakes = [f for f in frames if isinstance(f, Wake)]
    assert len(wakes) <= 1
    return wakes[0] if wakes else None


def timers(out: Outcome) -> list[float]:
    return [fx.at for fx in out.effects if isinstance(fx, ArmTimer)]


def seqs(wake: Wake | None) -> list[int]:
    assert wake is not None and wake.message is not None
    assert wake.message == wake.messages[0]
    return [m.seq for m in wake.messages]


def text(value: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


def tick(script: Script) -> Outcome:
    return script.run(Tick(), session=None)


def armed(script: Script, name: str = "w") -> bool:
    return name in script.machine.world.rooms["default"].part(Waiters).by_name


def test_a_wake_hands_over_every_message_waiting(script: Script) -> None:
    """Ten messages sent before the wait: one wake hands over all ten, oldest first; `message` is the first."""
    script.join("alice", "bob")
    for i in range(10):
        script.do("alice", c.Send(name="alice", to=("bob",), body=text(i)))
    out = script.do("bob", c.Wait(id=3, waiter="w", for_="bob", after=0), session=7)
    assert seqs(wake_of(out, 7)) == list(range(1, 11))
    assert not armed(script)


def test_a_wake_hands_over_at_most_the_cap_and_the_next_wait_gets_the_rest(script: Script) -> None:
    """150 waiting: the wake hands over the first WAKE_CAP; waiting after the last one gets the other 50."""
    script.join("alice", "bob")
    for _ in range(150):
        script.do("alice", c.Send(name="alice", to=("bob",)))
    first = seqs(wake_of(script.do("bob", c.Wait(waiter="w", for_="bob", after=0), session=7), 7))
    assert first == list(range(1, WAKE_CAP + 1))
    rest = seqs(wake_of(script.do("bob", c.Wait(waiter="w", for_="bob", after=first[-1]), session=8), 8))
    assert rest == list(range(WAKE_CAP + 1, 151))


def test_only_messages_for_the_waiter_are_handed_over(script: Script) -> None:
    """A wake hands over what is addressed to the waiter (directed and broadcast), not carol's messages."""
    script.join("alice", "bob", "carol")
    script.do("alice", c.Send(name="alice", to=("carol",)))
    script.do("alice", c.Send(name="alice", to=("bob",)))
    script.do("alice", c.Send(name="alice", to=("*",)))
    script.do("alice", c.Send(name="alice", to=("carol",)))
    out = script.do("bob", c.Wait(waiter="w", for_="bob", after=0), session=7)
    assert seqs(wake_of(out, 7)) == [2, 3]


def test_settle_collects_the_burst_into_one_wake(script: Script) -> None:
    """With settle 2 the first message arms a timer instead of waking; what arrives before it is handed over
    together when the Tick comes, and only then is the waiter disarmed."""
    script.join("alice", "bob")
    out = script.do("bob", c.Wait(id=5, waiter="w", for_="bob", settle=2.0), session=7)
    start = script.now
    first = script.do("alice", c.Send(name="alice", to=("bob",)))
    assert wake_of(first, 7) is None and timers(first) == [start + 2.0]
    for _ in range(4):
        script.now += 0.3
        assert wake_of(script.do("alice", c.Send(name="alice", to=("bob",))), 7) is None
    script.now = start + 1.9
    assert wake_of(tick(script), 7) is None and armed(script)
    script.now = start + 2.0
    out = tick(script)
    wake = wake_of(out, 7)
    assert wake is not None and wake.id == 5 and seqs(wake) == [1, 2, 3, 4, 5]
    assert not armed(script)
    assert wake_of(tick(script), 7) is None  # the entry is gone: no second wake


def test_settle_zero_wakes_at_once(script: Script) -> None:
    """The default settle adds no latency: the message wakes the waiter in the same command."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=7)
    out = script.do("alice", c.Send(name="alice", to=("bob",)))
    assert seqs(wake_of(out, 7)) == [1] and timers(out) == []


def test_settle_counts_from_the_first_waiting_message(script: Script) -> None:
    """Messages already waiting at the wait: the burst settles from the first one's time, not the wait's."""
    script.join("alice", "bob")
    sent_at = script.now
    script.do("alice", c.Send(name="alice", to=("bob",)))
    script.now += 1.0
    out = script.do("bob", c.Wait(waiter="w", for_="bob", after=0, settle=3.0), session=7)
    assert wake_of(out, 7) is None and timers(out) == [sent_at + 3.0]
    script.do("alice", c.Send(name="alice", to=("bob",)))
    script.now = sent_at + 3.0
    assert seqs(wake_of(tick(script), 7)) == [1, 2]
    script.now += 10.0  # long past: a later wait with settle wakes at once
    script.do("alice", c.Send(name="alice", to=("bob",)))
    script.now += 10.0
    out = script.do("bob", c.Wait(waiter="w", for_="bob", after=2, settle=3.0), session=8)
    assert seqs(wake_of(out, 8)) == [3]


def test_a_deferred_wake_that_fills_up_wakes_early(script: Script) -> None:
    """A settling waiter that has collected WAKE_CAP messages is woken at once with them."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="w", for_="bob", settle=60.0), session=7)
    for i in range(1, WAKE_CAP):
        assert wake_of(script.do("alice", c.Send(name="alice", to=("bob",))), 7) is None, i
    out = script.do("alice", c.Send(name="alice", to=("bob",)))
    assert seqs(wake_of(out, 7)) == list(range(1, WAKE_CAP + 1))
    assert not armed(script)


def test_a_waiter_gone_before_its_deferred_wake_is_not_woken(script: Script) -> None:
    """The session ends while the burst settles: the Tick finds the entry stale and delivers nothing."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="w", for_="bob", settle=1.0), session=7)
    script.do("alice", c.Send(name="alice", to=("bob",)))
    script.run(SessionGone(7), session=None)
    script.now += 1.0
    out = tick(script)
    assert not [fx for fx in out.effects if isinstance(fx, Deliver)]
    assert script.machine.world.part(governor.Deferred).heap == []


def test_stagger_spreads_a_broadcasts_wakes_in_waiter_order(script: Script) -> None:
    """A `*` send with stagger 4 to four waiters wakes the first (by name) at once and the others 1, 2 and 3
    seconds later, each with what reached it meanwhile."""
    names = ("bob", "carol", "dave", "erin")
    script.join("alice", *names)
    for session, name in enumerate(reversed(names), start=10):  # armed in the reverse order
        script.do(name, c.Wait(waiter=f"w-{name}", for_=name), session=session)
    sessions = {name: 13 - i for i, name in enumerate(names)}
    start = script.now
    out = script.do("alice", c.Send(name="alice", to=("*",), stagger=4.0))
    assert seqs(wake_of(out, sessions["bob"])) == [1]
    assert all(wake_of(out, sessions[n]) is None for n in names[1:])
    assert sorted(timers(out)) == [start + 1.0, start + 2.0, start + 3.0]
    script.now = start + 0.5
    script.do("alice", c.Send(name="alice", to=("dave",)))  # joins dave's deferred wake
    for offset, name in ((1.0, "carol"), (2.0, "dave"), (3.0, "erin")):
        script.now = start + offset
        out = tick(script)
        woken = [n for n in names if wake_of(out, sessions[n]) is not None]
        assert woken == [name]
        assert seqs(wake_of(out, sessions[name])) == ([1, 2] if name == "dave" else [1])


def test_stagger_does_not_delay_a_directed_send(script: Script) -> None:
    """Stagger spreads only `*`/`all` sends: a directed message wakes its waiter at once."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=7)
    out = script.do("alice", c.Send(name="alice", to=("bob",), stagger=30.0))
    assert seqs(wake_of(out, 7)) == [1]


@pytest.mark.parametrize("value", [-0.5, 60.5, math.inf, math.nan])
def test_out_of_range_settle_and_stagger_are_refused(script: Script, value: float) -> None:
    """settle and stagger are 0..60 s: anything else is `bad_request` naming the field, and changes nothing."""
    script.join("alice", "bob")
    err = script.refused("bob", c.Wait(waiter="w", for_="bob", settle=value), session=7)
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "settle"
    err = script.refused("alice", c.Send(name="alice", to=("*",), stagger=value))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "stagger"
    assert not armed(script)


def test_a_reply_without_targets_answers_only_the_sender(script: Script) -> None:
    """A reply to a broadcast with no target goes to the broadcast's sender only: carol's waiter sleeps on.
    Addressed wider (`*`), the reply wakes the room as any broadcast does."""
    script.join("alice", "bob", "carol")
    script.do("alice", c.Send(name="alice", to=("*",)))
    script.do("alice", c.Wait(waiter="wa", for_="alice"), session=7)
    script.do("carol", c.Wait(waiter="wc", for_="carol"), session=8)
    out = script.do("bob", c.Send(name="bob", to=(), reply_to=1))
    assert [ev.to for ev in out.events] == [("alice",)]
    assert seqs(wake_of(out, 7)) == [2] and wake_of(out, 8) is None
    out = script.do("bob", c.Send(name="bob", to=("*",), reply_to=1))
    assert seqs(wake_of(out, 8)) == [3]


def test_a_send_with_no_target_and_nothing_to_answer_is_refused(script: Script) -> None:
    """No target and no --reply-to: `bad_request` on `to`, as before."""
    script.join("alice")
    err = script.refused("alice", c.Send(name="alice", to=()))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "to"


def ping_pong(script: Script, rounds: int) -> list[Outcome]:
    """alice and bob each wait, then wake the other in turn (alice first), `rounds` sends in all."""
    outs = []
    for i in range(rounds):
        sender, partner = ("alice", "bob") if i % 2 == 0 else ("bob", "alice")
        script.do(partner, c.Wait(waiter=f"w-{partner}", for_=partner), session=20 + i)
        outs.append(script.do(sender, c.Send(name=sender, to=(partner,))))
        script.now += 0.1
    return outs


def test_the_loop_limit_refuses_the_wake_that_continues_a_loop() -> None:
    """loop_limit 3: alice and bob wake each other back and forth; the wake past 3 exchanges a minute is
    refused with `rate_limited` naming the pair, and nothing is sent; a minute later they may go on."""
    script = Script(HubConfig(rate_per_agent=None, loop_limit=3))
    script.join("alice", "bob")
    ping_pong(script, 4)  # alice→bob, then 3 exchanges back and forth
    script.do("bob", c.Wait(waiter="w-bob", for_="bob"), session=40)
    err = script.refused("alice", c.Send(name="alice", to=("bob",)))
    assert err.code == Code.RATE_LIMITED
    assert err.detail["loop"] == ["alice", "bob"] and err.detail["limit"] == 3
    assert "alice" in err.message and "bob" in err.message and "loop" in err.message
    assert 0 < err.detail["retry_after"] <= governor.LOOP_WINDOW
    script.now += err.detail["retry_after"] + 0.01  # float rounding
    assert seqs(wake_of(script.do("alice", c.Send(name="alice", to=("bob",))), 40)) == [5]
    script.check_replay()


def test_a_one_way_stream_is_never_a_loop() -> None:
    """A producer waking its consumer many times a minute is not a loop, and neither is the consumer's answer."""
    script = Script(HubConfig(rate_per_agent=None, loop_limit=2))
    script.join("alice", "bob")
    for i in range(20):
        script.do("bob", c.Wait(waiter="w", for_="bob"), session=50 + i)
        assert wake_of(script.do("alice", c.Send(name="alice", to=("bob",))), 50 + i) is not None
    script.do("alice", c.Wait(waiter="wa", for_="alice"), session=99)
    assert wake_of(script.do("bob", c.Send(name="bob", to=("alice",))), 99) is not None


def test_the_loop_limit_is_off_by_default(script: Script) -> None:
    """Without --loop-limit a ping-pong goes on, and no pair is tracked."""
    script.join("alice", "bob")
    outs = ping_pong(script, 30)
    assert all(o.events for o in outs)
    assert script.machine.world.part(governor.Loops).pairs == {}


def test_the_loop_counters_are_bounded() -> None:
    """Past MAX_PAIRS pairs the least recently active is forgotten, and so is any pair quiet for a minute; a pair
    keeps at most limit + 1 flips."""
    loops = governor.Loops()
    for i in range(governor.MAX_PAIRS + 50):
        governor.count_wake(loops, 2, "r", "a", f"b{i}", 0.0)  # type: ignore[arg-type]
    assert len(loops.pairs) == governor.MAX_PAIRS
    assert ("r", "a", "b0") not in loops.pairs
    for i in range(100):
        governor.count_wake(loops, 2, "r", "x" if i % 2 else "y", "z" if i % 2 else "x", float(i))  # type: ignore[arg-type]
    assert all(len(p.flips) <= 3 for p in loops.pairs.values())
    governor.count_wake(loops, 2, "r", "p", "q", 1_000.0)  # type: ignore[arg-type]
    assert list(loops.pairs) == [("r", "p", "q")]  # every other pair was quiet for a minute: forgotten


def test_stagger_offsets_are_even_and_deterministic() -> None:
    """The i-th of n waiters wakes stagger·i/n seconds after the send; no stagger or one waiter: all at once."""
    assert governor.stagger_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert governor.stagger_offsets(1, 9.0) == [0.0]
    assert governor.stagger_offsets(3, 0.0) == [0.0, 0.0, 0.0]
