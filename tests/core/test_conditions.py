"""Tests for hub.core.conditions through the Machine: subscriptions trigger on the edge, only what reads a
touched path is re-evaluated, condition waiters show in presence, and the live context equals a fresh one."""

from __future__ import annotations

from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.config import HubConfig
from hub.core import conditions as index
from hub.core.conditions import Conditions, context_of, resolve_views
from hub.core.effects import Deliver, Outcome, Reply
from hub.core.machine import SessionGone
from hub.protocol import commands as c
from hub.protocol.codec import to_builtins
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Trigger, Wake

Script = Any  # the fixture's class lives in tests/core/conftest.py

WATCHER = 7  # the session that subscribes


def reply(out: Outcome) -> Any:
    results = [to_builtins(fx.result) for fx in out.effects if isinstance(fx, Reply)]
    assert len(results) == 1, out.effects
    return results[0]


def pushed(out: Outcome, session: int = WATCHER) -> list[Any]:
    """Frames pushed to `session` by `out`."""
    return [fx.frame for fx in out.effects if isinstance(fx, Deliver) and session in fx.sessions]


def triggers(out: Outcome, session: int = WATCHER) -> list[Trigger]:
    return [f for f in pushed(out, session) if isinstance(f, Trigger)]


def put(script: Script, key: str, value: Any, who: str = "alice", **kw: Any) -> Outcome:
    return script.do(who, c.SetState(name=who, key=key, value=value, **kw), session=None)


def subscribe(script: Script, expr: str, session: int = WATCHER, **kw: Any) -> tuple[int, Outcome]:
    """Subscribe; a `name` (the agent shown as waiting) comes with that agent's token."""
    cmd = c.Subscribe(expr=expr, **kw)
    out = script.do(kw["name"], cmd, session=session) if kw.get("name") else script.run(cmd, session=session)
    return reply(out)["sub"], out


def presence(script: Script, name: str) -> dict[str, Any]:
    listed = reply(script.run(c.Agents()))["agents"]
    return next(a for a in listed if a["name"] == name)


def evaluations(script: Script) -> int:
    return script.machine.world.rooms["default"].part(Conditions).evaluations


@pytest.fixture
def room(script: Script) -> Script:
    """alice and bob in `default`; `turn` is 0."""
    script.join("alice", "bob")
    put(script, "turn", 0)
    return script


# --------------------------------------------------------------------------- edges


def test_trigger_once_when_it_becomes_true(room: Script) -> None:
    """A subscription is pushed one Trigger when its condition becomes true, none while it stays true."""
    sub, out = subscribe(room, "state._shared.turn >= 2")
    assert reply(out) == {"sub": sub, "value": False, "holds": False} and triggers(out) == []
    assert triggers(put(room, "turn", 1)) == []
    [t] = triggers(put(room, "turn", 2))
    assert (t.sub, t.condition, t.value) == (sub, "state._shared.turn >= 2", True)
    assert t.position == room.machine.position
    assert triggers(put(room, "turn", 3)) == []
    assert triggers(put(room, "turn", 4)) == []


def test_trigger_again_only_after_false_in_between(room: Script) -> None:
    """true → false → true pushes a second Trigger."""
    subscribe(room, "state._shared.turn == 1")
    assert len(triggers(put(room, "turn", 1))) == 1
    assert triggers(put(room, "turn", 1)) == []  # rewritten, still true
    assert triggers(put(room, "turn", 0)) == []
    assert len(triggers(put(room, "turn", 1))) == 1


def test_already_true_triggers_at_once(room: Script) -> None:
    """A condition true when subscribed is pushed a Trigger right after the reply."""
    sub, out = subscribe(room, "state._shared.turn == 0")
    assert reply(out)["holds"] is True
    frames = [fx for fx in out.effects if isinstance(fx, Reply | Deliver)]
    assert isinstance(frames[0], Reply) and isinstance(frames[1].frame, Trigger)
    assert frames[1].frame.sub == sub


def test_erroring_condition_does_not_hold_until_it_can_be_evaluated(room: Script) -> None:
    """A condition over a missing key is not an error at subscribe time; it triggers once the key exists."""
    sub, out = subscribe(room, "state._shared.later == 1")
    assert reply(out)["holds"] is False
    assert [t.sub for t in triggers(put(room, "later", 1))] == [sub]


def test_once_subscription_is_dropped_after_its_trigger(room: Script) -> None:
    """`once`: one Trigger, then the subscription is gone (whether it was true at once or later)."""
    subscribe(room, "state._shared.turn == 5", once=True)
    assert len(triggers(put(room, "turn", 5))) == 1
    put(room, "turn", 0)
    assert triggers(put(room, "turn", 5)) == []
    assert room.machine.world.rooms["default"].part(Conditions).subs == {}


def test_unsubscribe_stops_triggers(room: Script) -> None:
    """After unsubscribe nothing more is pushed; an unknown id is not_found."""
    sub, _ = subscribe(room, "state._shared.turn == 1")
    assert reply(room.run(c.Unsubscribe(sub=sub), session=WATCHER)) == {"sub": sub, "removed": True}
    assert triggers(put(room, "turn", 1)) == []
    assert room.refused(None, c.Unsubscribe(sub=sub), session=WATCHER).code == Code.NOT_FOUND


def test_session_gone_drops_its_subscriptions(room: Script) -> None:
    """When the session ends its subscriptions go with it."""
    subscribe(room, "state._shared.turn == 1")
    room.run(SessionGone(WATCHER), session=None)
    assert room.machine.world.rooms["default"].part(Conditions).subs == {}
    assert pushed(put(room, "turn", 1)) == []


def test_include_carries_asked_for_roots(room: Script) -> None:
    """A Trigger carries the context roots asked for in `include`; a bad root is bad_request."""
    subscribe(room, "state._shared.turn == 1", include=("state",))
    [t] = triggers(put(room, "turn", 1))
    assert t.include == {"state": {"_shared": {"turn": 1}, "_view": {}}}
    assert room.refused(None, c.Subscribe(expr="true", include=("nope",)), session=WATCHER).code == (
        Code.BAD_REQUEST
    )


def test_bad_cel_at_subscribe_is_bad_expression(room: Script) -> None:
    """A condition that does not compile is refused at subscribe (and at wait) time with its position."""
    err = room.refused(None, c.Subscribe(expr="state._shared.turn ==="), session=WATCHER)
    assert err.code == Code.BAD_EXPRESSION and err.detail["position"] is not None
    err = room.refused(None, c.Wait(waiter="bob", condition="state.(turn"), session=WATCHER)
    assert err.code == Code.BAD_EXPRESSION
    assert room.machine.world.rooms["default"].part(Conditions).subs == {}


def test_subscriptions_per_session_are_limited(script: Script) -> None:
    """Past the configured cap a subscribe is limit_exceeded."""
    script.config = HubConfig(rate_per_agent=None, max_subscriptions_per_session=2)
    script.machine.config = script.config
    script.join("alice")
    subscribe(script, "true")
    subscribe(script, "false")
    err = script.refused(None, c.Subscribe(expr="1 == 1"), session=WATCHER)
    assert err.code == Code.LIMIT_EXCEEDED


def test_subscriptions_per_agent_are_limited_over_its_sessions(script: Script) -> None:
    """An agent's attached sessions share one cap: past it a subscribe on any of them is limit_exceeded naming
    it; an anonymous session has only its own cap; closing a subscription's session frees its share."""
    script.config = HubConfig(
        rate_per_agent=None, max_subscriptions_per_session=2, max_subscriptions_per_agent=3
    )
    script.machine.config = script.config
    script.join("alice")
    for session in (1, 2):
        script.do("alice", c.Attach(name="alice"), session=session)
    subscribe(script, "true", session=1)
    subscribe(script, "false", session=1)
    subscribe(script, "1 == 1", session=2)
    err = script.refused(None, c.Subscribe(expr="2 == 2"), session=2)
    assert err.code == Code.LIMIT_EXCEEDED and err.detail == {"limit": 3, "what": "subscriptions per agent"}
    subscribe(script, "3 == 3", session=WATCHER)  # anonymous: its own per-session cap only
    subscribe(script, "4 == 4", session=WATCHER)
    script.run(SessionGone(1), session=1)
    subscribe(script, "2 == 2", session=2)


# --------------------------------------------------------------------------- what is re-evaluated


def test_only_conditions_reading_a_touched_path_are_evaluated(room: Script) -> None:
    """A write to `turn` evaluates the two conditions reading it, not the 50 reading other keys."""
    for i in range(50):
        subscribe(room, f"state._shared.other{i} == 1")
    subscribe(room, "state._shared.turn == 1")
    subscribe(room, "state._shared.turn > 5 && state._shared.other3 == 1")
    before = evaluations(room)
    put(room, "turn", 1)
    assert evaluations(room) - before == 2
    before = evaluations(room)
    put(room, "unrelated", 1)
    assert evaluations(room) == before


def test_a_condition_reading_a_whole_scope_sees_every_key_of_it(room: Script) -> None:
    """`size(state._shared)` reads the scope, so a new key in it re-evaluates the condition."""
    sub, _ = subscribe(room, "size(state._shared) == 2")
    before = evaluations(room)
    assert [t.sub for t in triggers(put(room, "new", 1))] == [sub]
    assert evaluations(room) == before + 1
    before = evaluations(room)
    put(room, "mine", 1, scope="alice")
    assert evaluations(room) == before


def test_conditions_on_a_view_follow_its_inputs(room: Script) -> None:
    """A condition on a view triggers when a write changes the view's value."""
    put(room, "votes", 0)
    room.do("alice", c.DefineView(name="alice", key="quorum", expr="state._shared.votes >= 2"), session=None)
    sub, _ = subscribe(room, "state._view.quorum == true")
    put(room, "votes", 1, increment=True)
    before = evaluations(room)
    put(room, "unrelated", 1)
    assert evaluations(room) == before
    assert [t.sub for t in triggers(put(room, "votes", 1, increment=True))] == [sub]


def test_conditions_over_messages_claims_tasks_and_agents(room: Script) -> None:
    """Conditions over every root of the context trigger when that root changes."""
    msgs, _ = subscribe(room, "messages.unclaimed > 0")
    claim, _ = subscribe(room, 'has(claims.api) && claims.api.holder == "bob"')
    task, _ = subscribe(room, '"T-1" in tasks && tasks["T-1"].status == "in_progress"')
    busy, _ = subscribe(room, 'agents["bob"].status == "busy"')
    out = room.do("alice", c.Send(name="alice", to=("bob",), body=msgspec.Raw(b"1")), session=None)
    assert [t.sub for t in triggers(out)] == [msgs]
    out = room.do("bob", c.Claim(name="bob", work="api", paths=("src/api/",)), session=None)
    assert [t.sub for t in triggers(out)] == [claim]
    room.do("alice", c.DeclareTask(name="alice", task="T-1", title="one"), session=None)
    out = room.do("bob", c.ClaimTask(name="bob", task="T-1"), session=None)
    assert [t.sub for t in triggers(out)] == [task]
    out = room.do("bob", c.Heartbeat(name="bob", status="busy"), session=None)
    assert [t.sub for t in triggers(out)] == [busy]


# --------------------------------------------------------------------------- waiters and presence


def test_condition_waiter_shows_waiting_then_back(room: Script) -> None:
    """While `wait --condition` is armed the agent (its token proving it) is `waiting` with `waiting_on`; after
    the wake it is back."""
    cond = "state._shared.turn == 1"
    out = room.do("bob", c.Wait(id=9, waiter="bob", condition=cond), session=WATCHER)
    assert pushed(out) == []
    p = presence(room, "bob")
    assert (p["status"], p["waiting_on"]) == ("waiting", cond)
    assert reply(room.run(c.Eval(expr='agents["bob"].waiting_on')))["value"] == cond
    assert reply(room.run(c.Eval(expr='agents["bob"].status')))["value"] == "waiting"
    out = put(room, "turn", 1)
    [wake] = pushed(out)
    assert isinstance(wake, Wake) and (wake.id, wake.reason, wake.value) == (9, "condition", True)
    p = presence(room, "bob")
    assert (p["status"], p["waiting_on"]) == ("active", None)
    assert reply(room.run(c.Eval(expr='agents["bob"].status')))["value"] == "active"
    assert room.machine.world.rooms["default"].part(Conditions).subs == {}


def test_condition_waiter_already_true_wakes_at_once(room: Script) -> None:
    """A condition already true wakes the waiter in the same step; it never shows as waiting."""
    out = room.do("bob", c.Wait(id=3, waiter="bob", condition="state._shared.turn == 0"), session=WATCHER)
    assert reply(out) == {"armed": 0}
    [wake] = pushed(out)
    assert isinstance(wake, Wake) and wake.reason == "condition"
    assert presence(room, "bob")["status"] == "active"


def test_a_watchdog_can_wait_for_another_agent_waiting(room: Script) -> None:
    """A condition on `agents[x].status == "waiting"` triggers when x arms a condition waiter."""
    sub, _ = subscribe(room, 'agents["bob"].status == "waiting"', session=3)
    out = room.do("bob", c.Wait(id=1, waiter="bob", condition="state._shared.turn == 9"), session=WATCHER)
    assert [t.sub for t in triggers(out, session=3)] == [sub]


def test_waiting_stays_while_another_subscription_of_the_agent_lives(room: Script) -> None:
    """An agent with two conditions stays `waiting` until the last one goes."""
    a, _ = subscribe(room, "state._shared.turn == 1", name="bob")
    b, _ = subscribe(room, "state._shared.turn == 2", name="bob")
    assert presence(room, "bob")["waiting_on"] == "state._shared.turn == 2"
    room.run(c.Unsubscribe(sub=b), session=WATCHER)
    assert presence(room, "bob")["waiting_on"] == "state._shared.turn == 1"
    room.run(c.Unsubscribe(sub=a), session=WATCHER)
    assert presence(room, "bob")["status"] == "active" and presence(room, "bob")["waiting_on"] is None


def test_session_gone_ends_the_waiting(room: Script) -> None:
    """A condition waiter whose session ends no longer shows as waiting."""
    room.do("bob", c.Wait(id=1, waiter="bob", condition="state._shared.turn == 9"), session=WATCHER)
    room.run(SessionGone(WATCHER), session=None)
    assert presence(room, "bob")["status"] == "active"


# --------------------------------------------------------------------------- the live context


def test_live_context_equals_a_fresh_one(room: Script) -> None:
    """After writes, deletes (emptying a scope), views and presence changes the kept context is exact."""
    subscribe(room, "true")  # keeps the live context
    put(room, "mine", 1, scope="alice")
    room.do("alice", c.DefineView(name="alice", key="v", expr="state._shared.turn + 1"), session=None)
    put(room, "turn", 4)
    room.do("alice", c.DeleteState(name="alice", key="mine", scope="alice"), session=None)
    room.do("bob", c.Heartbeat(name="bob", status="busy"), session=None)
    room.do("alice", c.Wait(id=1, waiter="alice", condition="state._shared.turn == 9"), session=3)
    w = room.machine.world
    r = w.rooms["default"]
    fresh = context_of(w, r)
    assert resolve_views(r.part(Conditions).view_programs, fresh) == {"v": 5}
    assert r.part(Conditions).ctx == fresh
    assert reply(room.run(c.Eval(expr="has(state.alice)")))["value"] is False


def test_dropped_subscriptions_leave_no_index_behind(room: Script) -> None:
    """Subscriptions on 100 distinct keys, then dropped: the path index is empty again (no slow leak)."""
    ids = [subscribe(room, f'state._shared["task:{i}:owner"] == "me"')[0] for i in range(100)]
    conditions = room.machine.world.rooms["default"].part(Conditions)
    assert len(conditions.by_path.children["state"].children["_shared"].children) == 100
    for sub in ids:
        room.run(c.Unsubscribe(sub=sub), session=WATCHER)
    assert conditions.by_path.children == {} and conditions.subs == {}


def test_condition_on_a_view_defined_later(room: Script) -> None:
    """A condition on a view that does not exist yet triggers once the view is defined true (and redefined)."""
    sub, out = subscribe(room, "state._view.ready == true")
    assert reply(out)["holds"] is False
    out = room.do(
        "alice", c.DefineView(name="alice", key="ready", expr="state._shared.turn == 0"), session=None
    )
    assert [t.sub for t in triggers(out)] == [sub]
    out = room.do("alice", c.DefineView(name="alice", key="ready", expr="false"), session=None)
    assert triggers(out) == []
    out = room.do("alice", c.DefineView(name="alice", key="ready", expr="true"), session=None)
    assert [t.sub for t in triggers(out)] == [sub]


def test_waiting_presence_needs_the_agents_token(room: Script) -> None:
    """Waiting is acting: a waiter without a member's token is refused (nobody looks `waiting`); with bob's
    token, bob shows `waiting`; a named subscription with a wrong token is refused."""
    err = room.refused(None, c.Wait(id=1, waiter="bob", condition="state._shared.turn == 9"), session=WATCHER)
    assert err.code == Code.UNAUTHORIZED and presence(room, "bob")["status"] == "active"
    room.do("bob", c.Wait(id=1, waiter="bob", condition="state._shared.turn == 9"), session=WATCHER)
    assert presence(room, "bob")["status"] == "waiting"
    err = room.refused(None, c.Subscribe(expr="state._shared.turn == 9", name="bob", token="nope"), session=3)
    assert err.code == Code.UNAUTHORIZED


# --------------------------------------------------------------------------- equality conditions by literal


def test_a_write_evaluates_only_the_equalities_it_may_change(room: Script) -> None:
    """`k == 0` .. `k == 9`: a write to `k` evaluates the one that held and the one its value may equal, not
    all ten; the triggers are those of evaluating every one."""
    subs = [subscribe(room, f"state._shared.k == {j}")[0] for j in range(10)]
    other = subscribe(room, "state._shared.k > 7")[0]  # not an equality: evaluated on every write to k
    put(room, "k", -1)
    for value, fired in (
        (3, [subs[3]]),
        (3.0, []),
        (9, [subs[9], other]),
        ("9", []),
        (True, []),
        (1, [subs[1]]),
    ):
        before = evaluations(room)
        assert [t.sub for t in triggers(put(room, "k", value))] == fired
        assert evaluations(room) - before <= 3
    room.do("alice", c.DeleteState(name="alice", key="k"), session=None)
    assert [t.sub for t in triggers(put(room, "k", 1))] == [subs[1]]


def test_an_equality_reads_its_own_path_below_a_written_map(room: Script) -> None:
    """`m.x == 1` is indexed at its own path: a write of a map to `m` finds it by the value under `x`."""
    sub = subscribe(room, "state._shared.m.x == 1")[0]
    other = subscribe(room, "state._shared.m.x == 2")[0]
    assert [t.sub for t in triggers(put(room, "m", {"x": 1}))] == [sub]
    assert [t.sub for t in triggers(put(room, "m", {"x": 2.0, "y": 1}))] == [other]
    assert triggers(put(room, "m", [1])) == []
    assert [t.sub for t in triggers(put(room, "m", {"x": 1}))] == [sub]


EQ_LITERALS = (
    "0",
    "1",
    "1u",
    "1.0",
    "-0.0",
    "true",
    "false",
    "null",
    "'a'",
    "'1'",
    "9007199254740993",
    "9223372036854775807",
    "18446744073709551615u",
    "9007199254740992.0",
)
EQ_PATHS = ("state._shared.a", "state._shared.b", "state._shared.a.x", "state.alice.a")
EQ_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from(
        [
            2**53,
            2**53 + 1,
            2**63 - 1,
            -(2**63),
            2**63,
            2**64 - 1,
            0.0,
            -0.0,
            1.0,
            1.5,
            2.0,
            9007199254740992.0,
            1e308,
            "a",
            "1",
            "é",
            "",
            [1],
            [],
            {},
        ]
    ),
    st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from([1, 1.0, "a", None, True, [1], {"x": 1}])),
)
EQ_STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"), st.sampled_from(["a", "b"]), EQ_VALUES, st.sampled_from(["_shared", "alice"])
        ),
        st.tuples(
            st.just("delete"), st.sampled_from(["a", "b"]), st.none(), st.sampled_from(["_shared", "alice"])
        ),
        st.tuples(
            st.just("subscribe"), st.sampled_from(EQ_PATHS), st.sampled_from(EQ_LITERALS), st.booleans()
        ),
        st.tuples(st.just("unsubscribe"), st.integers(0, 20), st.none(), st.none()),
    ),
    max_size=30,
)


def _equality_run(steps: list[tuple[Any, ...]]) -> list[Any]:
    """Run `steps` on a fresh room; what each step pushed and replied, and every subscription's held flag."""
    from tests.core.conftest import Script as Fresh

    script = Fresh()
    script.join("alice")
    subs: list[int] = []
    seen: list[Any] = []
    for kind, a, b, flag in steps:
        try:
            if kind == "put":
                out = put(script, a, b, scope=flag)
            elif kind == "delete":
                out = script.do("alice", c.DeleteState(name="alice", key=a, scope=flag), session=None)
            elif kind == "subscribe":
                expr = f"{a} == {b}" if flag else f"{b} == {a}"
                out = script.run(c.Subscribe(expr=expr, once=len(subs) % 3 == 2), session=WATCHER)
                subs.append(reply(out)["sub"])
            else:
                out = script.run(c.Unsubscribe(sub=subs[a % len(subs)] if subs else 0), session=WATCHER)
        except HubError as err:
            seen.append(err.code)
            continue
        seen.append([to_builtins(fx) for fx in out.effects])
    cond = script.machine.world.rooms["default"].part(Conditions)
    seen.append(sorted((sid, sub.held) for sid, sub in cond.subs.items()))
    return seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=EQ_STEPS)
def test_equalities_by_literal_trigger_as_evaluating_every_one(steps: list[tuple[Any, ...]]) -> None:
    """Differential: with equality conditions indexed by literal, every step pushes, replies and leaves held
    exactly what evaluating every condition reading a touched path does (edge values: ints past 2**53 and
    int64, -0.0, bools against 1, maps, lists, missing keys and scopes)."""
    indexed = _equality_run(steps)
    with mock.patch.object(index, "_equality", lambda compiled: None):
        every = _equality_run(steps)
    assert indexed == every


@pytest.mark.parametrize(
    "value",
    [2**53 + 1, 9007199254740992.0, 2**63 - 1, 2**63, 2**64 - 1, 9.223372036854776e18, -0.0, 1.0, True],
)
def test_equalities_by_literal_compare_ints_and_doubles_as_doubles(value: Any) -> None:
    """An int and a double are equal in CEL when equal as doubles (`2**53 + 1 == 9007199254740992.0`): the
    index finds those too, as evaluating every condition does."""
    steps = [("put", "a", -1, "_shared")]
    steps += [("subscribe", "state._shared.a", lit, True) for lit in EQ_LITERALS]
    steps += [
        ("subscribe", "state._shared.a", lit, False)
        for lit in ("18446744073709551615.0", "9.223372036854776e18", "0")
    ]
    steps += [("put", "a", value, "_shared"), ("put", "a", -1, "_shared"), ("put", "a", value, "_shared")]
    indexed = _equality_run(steps)
    with mock.patch.object(index, "_equality", lambda compiled: None):
        assert indexed == _equality_run(steps)
    fired = [fx for step in indexed[:-1] if type(step) is list for fx in step if "frame" in fx]
    assert fired or indexed[-2] == Code.BAD_REQUEST  # (2**63: refused)
