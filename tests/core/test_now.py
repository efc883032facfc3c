"""CEL `now`: the clock the shell gives with each command, in every context; conditions reading it are
re-evaluated at the next multiple of `now_resolution` (one timer, none when nobody reads `now`)."""

from __future__ import annotations

from typing import Any

from hub.core.effects import ArmTimer, Outcome
from hub.core.machine import Tick
from hub.protocol import commands as c
from tests.core.test_conditions import WATCHER, put, reply, subscribe, triggers

Script = Any


def timers(out: Outcome) -> list[float]:
    return [fx.at for fx in out.effects if isinstance(fx, ArmTimer)]


def test_eval_now_is_the_shell_clock(script: Script) -> None:
    script.join("alice")
    script.now = 1_234.5
    assert reply(script.run(c.Eval(expr="now")))["value"] == 1_234.5
    script.now = 1_240.25
    assert reply(script.run(c.Eval(expr="now - 1234.5")))["value"] == 5.75


def test_staleness_compares_with_last_heartbeat(script: Script) -> None:
    """`now - agents["w"].last_heartbeat` is seconds: both are doubles since the epoch."""
    script.join("alice", "w")
    script.now += 90
    assert reply(script.run(c.Eval(expr='now - agents["w"].last_heartbeat > 60')))["value"] is True
    assert reply(script.run(c.Eval(expr='now - agents["w"].last_heartbeat < 100')))["value"] is True


def test_subscription_on_now_fires_when_the_tick_passes_the_time(script: Script) -> None:
    script.join("alice")
    put(script, "turn", 0)
    script.now = 1_000.2
    sub, out = subscribe(script, "now > 1002.0")
    assert reply(out)["holds"] is False
    assert timers(out) == [1_001.0]  # the next multiple of the 1 s resolution
    script.now = 1_001.0
    out = script.run(Tick(), session=None)
    assert triggers(out) == [] and timers(out) == [1_002.0]
    script.now = 1_002.5
    [t] = triggers(script.run(Tick(), session=None), WATCHER)
    assert (t.sub, t.value) == (sub, True)


def test_no_timer_when_nothing_reads_now(script: Script) -> None:
    script.join("alice")
    put(script, "turn", 0)
    _, out = subscribe(script, "state._shared.turn > 1")
    assert timers(out) == []
    assert timers(put(script, "turn", 1)) == []


def test_only_now_readers_are_re_evaluated(script: Script) -> None:
    from hub.core.conditions import Conditions

    script.join("alice")
    put(script, "turn", 0)
    subscribe(script, "state._shared.turn > 1")
    subscribe(script, "now > 5000.0")
    cond = script.machine.world.rooms["default"].part(Conditions)
    before = cond.evaluations
    script.now += 1
    script.run(Tick(), session=None)
    assert cond.evaluations == before + 1
