"""Tests for hub.core.state through the Machine: set, init, CAS, gates, increments, batches, scopes, views,
eval and branches; every test's events fold again into an equal machine (the `script` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import HubConfig
from hub.core import snapshot
from hub.core.conditions import Conditions
from hub.core.effects import Outcome, Reply
from hub.core.machine import Context, Machine
from hub.core.state import State
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import to_builtins
from hub.protocol.errors import Code, HubError

Script = Any  # the fixture's class lives in tests/core/conftest.py


def reply(out: Outcome) -> Any:
    """The result of the one Reply effect in `out`."""
    results = [to_builtins(fx.result) for fx in out.effects if isinstance(fx, Reply)]
    assert len(results) == 1, out.effects
    return results[0]


def written(out: Outcome) -> list[tuple[str, str, Any, int]]:
    """(scope, key, value, version) of every StateWritten in `out`."""
    return [(ev.scope, ev.key, ev.value, ev.version) for ev in out.events if isinstance(ev, e.StateWritten)]


def put(script: Script, key: str, value: Any, who: str = "alice", **kw: Any) -> dict[str, Any]:
    return reply(script.do(who, c.SetState(name=who, key=key, value=value, **kw)))


def get(script: Script, key: str, **kw: Any) -> dict[str, Any]:
    return reply(script.run(c.GetState(key=key, **kw)))


def evaluate(script: Script, expr: str, **kw: Any) -> Any:
    return reply(script.run(c.Eval(expr=expr, **kw)))


@pytest.fixture
def room(script: Script) -> Script:
    """alice and bob in `default`."""
    script.join("alice", "bob")
    return script


# --------------------------------------------------------------------------- set, init, CAS


def test_set_writes_version_one_then_two(room: Script) -> None:
    """A first write is version 1, the next version 2; get returns value, version and writer."""
    assert put(room, "turn", 0) == {"scope": "_shared", "key": "turn", "value": 0, "version": 1}
    out = room.do("bob", c.SetState(name="bob", key="turn", value={"n": 1}))
    assert written(out) == [("_shared", "turn", {"n": 1}, 2)]
    got = get(room, "turn")
    assert (got["value"], got["version"], got["by"]) == ({"n": 1}, 2, "bob")


def test_init_only_if_absent(room: Script) -> None:
    """init writes an absent key; a second init is already_exists carrying the current entry."""
    assert reply(room.do("alice", c.InitState(name="alice", key="next", value=0)))["version"] == 1
    err = room.refused("bob", c.InitState(name="bob", key="next", value=99))
    assert err.code == Code.ALREADY_EXISTS
    assert (err.detail["current"]["value"], err.detail["current"]["version"]) == (0, 1)


def test_cas_succeeds_at_the_current_version(room: Script) -> None:
    """if_version equal to the entry's version writes; the version steps by one."""
    put(room, "k", "a")
    assert put(room, "k", "b", if_version=1)["version"] == 2


def test_cas_stale_version_is_conflict_with_current(room: Script) -> None:
    """A stale if_version is conflict, carrying the current entry so the caller can retry at once."""
    put(room, "k", "a")
    put(room, "k", "b")
    err = room.refused("bob", c.SetState(name="bob", key="k", value="c", if_version=1))
    assert err.code == Code.CONFLICT
    current = err.detail["current"]
    assert (current["value"], current["version"], current["key"]) == ("b", 2, "k")


def test_cas_version_zero_means_absent(room: Script) -> None:
    """if_version 0 writes only an absent key; on a present one it is conflict with the entry."""
    assert put(room, "leader", "alice", if_version=0)["version"] == 1
    err = room.refused("bob", c.SetState(name="bob", key="leader", value="bob", if_version=0))
    assert err.code == Code.CONFLICT and err.detail["current"]["value"] == "alice"


def test_cas_on_absent_key_with_a_version_is_conflict_with_none(room: Script) -> None:
    """if_version 3 on a key that does not exist is conflict whose current is null."""
    err = room.refused("alice", c.SetState(name="alice", key="ghost", value=1, if_version=3))
    assert err.code == Code.CONFLICT and err.detail["current"] is None


# --------------------------------------------------------------------------- gates


def test_false_gate_is_precondition_failed_with_expression_and_value(room: Script) -> None:
    """A gate that is false refuses the write with precondition_failed, its expression and its value."""
    put(room, "player", "white")
    gate = 'state._shared.player == "black"'
    err = room.refused("bob", c.SetState(name="bob", key="board", value="e7e5", if_=gate))
    assert err.code == Code.PRECONDITION_FAILED
    assert err.detail["expression"] == gate and err.detail["value"] is False


def test_gate_that_fails_to_evaluate_is_precondition_failed(room: Script) -> None:
    """A gate reading a missing key is precondition_failed (value null, the error named)."""
    err = room.refused("bob", c.SetState(name="bob", key="x", value=1, if_="state._shared.nope == 1"))
    assert err.code == Code.PRECONDITION_FAILED and err.detail["value"] is None and err.detail["error"]


def test_gate_non_bool_value_does_not_pass(room: Script) -> None:
    """Only exactly true passes a gate: a number does not."""
    put(room, "n", 1)
    err = room.refused("alice", c.SetState(name="alice", key="x", value=1, if_="state._shared.n"))
    assert err.code == Code.PRECONDITION_FAILED and err.detail["value"] == 1


def test_true_gate_writes(room: Script) -> None:
    """A true gate lets the write through."""
    put(room, "player", "white")
    assert put(room, "board", "e2e4", if_='state._shared.player == "white"')["version"] == 1


def test_bad_gate_is_bad_expression_with_position(room: Script) -> None:
    """A gate that does not compile is bad_expression naming where, and nothing is written."""
    err = room.refused("alice", c.SetState(name="alice", key="x", value=1, if_="state._shared.x == "))
    assert err.code == Code.BAD_EXPRESSION and isinstance(err.detail["position"], int)


def test_gate_and_cas_together_both_must_hold(room: Script) -> None:
    """With `if` and if_version both given, a true gate with a stale version is conflict, a false gate
    with the right version is precondition_failed, both right writes."""
    put(room, "player", "white")
    put(room, "board", "start")
    gate = 'state._shared.player == "white"'
    stale = room.refused("alice", c.SetState(name="alice", key="board", value="x", if_=gate, if_version=7))
    assert stale.code == Code.CONFLICT and stale.detail["current"]["version"] == 1
    wrong = room.refused(
        "alice",
        c.SetState(name="alice", key="board", value="x", if_='state._shared.player == "black"', if_version=1),
    )
    assert wrong.code == Code.PRECONDITION_FAILED
    assert put(room, "board", "e2e4", if_=gate, if_version=1)["version"] == 2


def test_gate_can_read_a_view(room: Script) -> None:
    """A gate may read a computed view."""
    put(room, "votes", 3)
    room.do("alice", c.DefineView(name="alice", key="quorum", expr="state._shared.votes >= 3"))
    assert put(room, "outcome", "yes", if_="state._view.quorum")["version"] == 1
    put(room, "votes", 1)
    err = room.refused("alice", c.SetState(name="alice", key="outcome", value="no", if_="state._view.quorum"))
    assert err.code == Code.PRECONDITION_FAILED


# --------------------------------------------------------------------------- increment, delete


def test_increment_adds_without_conflict(room: Script) -> None:
    """Increments from two agents both land; an absent key starts at 0; the event records the outcome."""
    out = room.do("alice", c.SetState(name="alice", key="done", value=1, increment=True))
    assert written(out) == [("_shared", "done", 1, 1)]
    room.do("bob", c.SetState(name="bob", key="done", value=1, increment=True))
    out = room.do("bob", c.SetState(name="bob", key="done", value=2.5, increment=True))
    assert written(out) == [("_shared", "done", 4.5, 3)]


def test_increment_of_a_non_number_is_an_error(room: Script) -> None:
    """Incrementing by a non-number is bad_request; incrementing a string entry is conflict with it."""
    put(room, "name", "x")
    assert room.refused("alice", c.SetState(name="alice", key="n", value="1", increment=True)).code == (
        Code.BAD_REQUEST
    )
    assert room.refused("alice", c.SetState(name="alice", key="n", value=True, increment=True)).code == (
        Code.BAD_REQUEST
    )
    err = room.refused("alice", c.SetState(name="alice", key="name", value=1, increment=True))
    assert err.code == Code.CONFLICT and err.detail["current"]["value"] == "x"


def test_delete_removes_and_cas_guards_it(room: Script) -> None:
    """delete with a stale if_version is conflict; without, the key is gone; deleting again is not_found."""
    put(room, "k", 1)
    put(room, "k", 2)
    assert room.refused("bob", c.DeleteState(name="bob", key="k", if_version=1)).code == Code.CONFLICT
    assert reply(room.do("bob", c.DeleteState(name="bob", key="k", if_version=2)))["deleted"] is True
    assert room.refused(None, c.GetState(key="k")).code == Code.NOT_FOUND
    assert room.refused("bob", c.DeleteState(name="bob", key="k")).code == Code.NOT_FOUND
    assert put(room, "k", 3, if_version=0)["version"] == 3  # absent again: its version continues


# --------------------------------------------------------------------------- batches


def test_batch_is_all_or_nothing(room: Script) -> None:
    """A batch whose middle write fails its CAS emits nothing and writes nothing."""
    put(room, "a", 1)
    put(room, "b", 1)
    writes = (
        c.Write(key="a", value=2),
        c.Write(key="b", value=2, if_version=9),
        c.Write(key="c", value=2),
    )
    err = room.refused("alice", c.BatchState(name="alice", writes=writes))
    assert err.code == Code.CONFLICT and err.detail["current"]["key"] == "b"
    assert get(room, "a")["value"] == 1 and get(room, "b")["value"] == 1
    assert room.refused(None, c.GetState(key="c")).code == Code.NOT_FOUND


def test_batch_with_a_forbidden_write_in_the_middle_emits_nothing(room: Script) -> None:
    """A batch writing another agent's scope in the middle is forbidden as a whole."""
    writes = (c.Write(key="a", value=1), c.Write(key="x", value=1, scope="bob"), c.Write(key="c", value=1))
    assert room.refused("alice", c.BatchState(name="alice", writes=writes)).code == Code.FORBIDDEN


def test_batch_writes_and_increments_together(room: Script) -> None:
    """The turn-advance batch: set the player and increment the turn in one command."""
    put(room, "turn", 0)
    out = room.do(
        "alice",
        c.BatchState(
            name="alice",
            writes=(c.Write(key="player", value="black"), c.Write(key="turn", value=1, increment=True)),
        ),
    )
    assert written(out) == [("_shared", "player", "black", 1), ("_shared", "turn", 1, 2)]
    assert [w["value"] for w in reply(out)["writes"]] == ["black", 1]


def test_batch_same_key_twice_chains(room: Script) -> None:
    """Two increments of one key in a batch see each other: +1 then +2 is +3, versions 1 and 2."""
    out = room.do(
        "alice",
        c.BatchState(
            name="alice",
            writes=(c.Write(key="n", value=1, increment=True), c.Write(key="n", value=2, increment=True)),
        ),
    )
    assert written(out) == [("_shared", "n", 1, 1), ("_shared", "n", 3, 2)]


def test_batch_gate_false_writes_nothing(room: Script) -> None:
    """A batch behind a false gate is precondition_failed and nothing is written."""
    put(room, "phase", "voting")
    gate = 'state._shared.phase == "decided"'
    err = room.refused(
        "alice", c.BatchState(name="alice", writes=(c.Write(key="phase", value="x"),), if_=gate)
    )
    assert err.code == Code.PRECONDITION_FAILED and err.detail["expression"] == gate


def test_empty_batch_is_bad_request(room: Script) -> None:
    """A batch needs at least one write."""
    assert room.refused("alice", c.BatchState(name="alice", writes=())).code == Code.BAD_REQUEST


# --------------------------------------------------------------------------- scopes


def test_own_scope_only(room: Script) -> None:
    """alice writes her own scope and _shared; bob's scope is forbidden to her; _view is not written directly."""
    assert put(room, "score", 42, scope="alice")["version"] == 1
    err = room.refused("alice", c.SetState(name="alice", key="score", value=1, scope="bob"))
    assert err.code == Code.FORBIDDEN
    assert room.refused("alice", c.DeleteState(name="alice", key="score", scope="bob")).code == Code.FORBIDDEN
    assert room.refused("alice", c.SetState(name="alice", key="v", value=1, scope="_view")).code == (
        Code.BAD_REQUEST
    )
    assert evaluate(room, "state.alice.score")["value"] == 42


def test_bad_keys_are_refused(room: Script) -> None:
    """An empty key or one with a control character is bad_request."""
    for key in ("", "a\nb", "a\x00", "c1\x85", "x" * 257):
        assert room.refused("alice", c.SetState(name="alice", key=key, value=1)).code == Code.BAD_REQUEST


def test_list_state_by_scope(room: Script) -> None:
    """list shows every entry sorted by scope and key, or one scope's."""
    put(room, "b", 1)
    put(room, "a", 2)
    put(room, "mine", 3, scope="alice")
    listed = reply(room.run(c.ListState()))["entries"]
    assert [(x["scope"], x["key"]) for x in listed] == [("_shared", "a"), ("_shared", "b"), ("alice", "mine")]
    only = reply(room.run(c.ListState(scope="alice")))["entries"]
    assert [x["key"] for x in only] == ["mine"]


# --------------------------------------------------------------------------- views and eval


def test_view_resolves_on_read_and_follows_its_inputs(room: Script) -> None:
    """A view is computed when read and changes with what it reads."""
    put(room, "votes_for", 1)
    put(room, "votes_against", 1)
    put(room, "quorum", 3)
    expr = "state._shared.votes_for + state._shared.votes_against >= state._shared.quorum"
    assert reply(room.do("alice", c.DefineView(name="alice", key="quorum_met", expr=expr)))["value"] is False
    room.do("bob", c.SetState(name="bob", key="votes_for", value=1, increment=True))
    got = get(room, "quorum_met", scope="_view")
    assert (got["value"], got["expr"], got["version"]) == (True, expr, 1)
    assert evaluate(room, "state._view.quorum_met")["value"] is True


def test_views_over_views(room: Script) -> None:
    """A view may read another view; a change flows through both."""
    put(room, "x", 2)
    room.do("alice", c.DefineView(name="alice", key="double", expr="state._shared.x * 2"))
    room.do("alice", c.DefineView(name="alice", key="big", expr="state._view.double > 10"))
    assert evaluate(room, "state._view.big")["value"] is False
    put(room, "x", 6)
    assert get(room, "double", scope="_view")["value"] == 12
    assert get(room, "big", scope="_view")["value"] is True


def test_view_cycle_is_bad_expression(room: Script) -> None:
    """a → b → a is refused with bad_expression naming the cycle; a view reading itself too."""
    room.do("alice", c.DefineView(name="alice", key="a", expr="state._view.b == 1"))
    room.do("alice", c.DefineView(name="alice", key="b", expr="state._view.c == 1"))
    err = room.refused("alice", c.DefineView(name="alice", key="c", expr="state._view.a"))
    assert err.code == Code.BAD_EXPRESSION and err.detail["cycle"] == ["c", "a", "b", "c"]
    err = room.refused("alice", c.DefineView(name="alice", key="self", expr="state._view.self"))
    assert err.code == Code.BAD_EXPRESSION


def test_a_view_reading_the_whole_state_reads_itself(room: Script) -> None:
    """`state` and `state._view` hold every view, the one being defined included: a cycle, refused (left in,
    `[state, state]` doubled itself on every change until the hub ran out of memory)."""
    for expr in ("[state, state]", "size(state._view) > 0", "state['_view']"):
        err = room.refused("alice", c.DefineView(name="alice", key="all", expr=expr))
        assert err.code == Code.BAD_EXPRESSION and err.detail["cycle"] == ["all", "all"], expr


def test_views_doubling_one_another_stop_at_the_result_bound(room: Script) -> None:
    """A chain of views each twice the last grows only to MAX_RESULT_VALUES: past it a view has no value
    (as when its evaluation fails) and the room goes on serving."""
    put(room, "x", list(range(100)))
    prev = "state._shared.x"
    for i in range(12):
        room.do("alice", c.DefineView(name="alice", key=f"d{i}", expr=f"[{prev}, {prev}]"))
        prev = f"state._view.d{i}"
    assert evaluate(room, "size(state._view.d8)")["value"] == 2
    assert evaluate(room, "has(state._view.d9)")["value"] is False  # 2**10 * 100 values: over the bound
    put(room, "x", [1])  # now every view is small again: d11 is a full binary tree of 4,096 ones
    assert evaluate(room, "state._view.d11[1][0][1][0][1][0][1][0][1][0][1][0][0]")["value"] == 1


def test_redefining_a_view_steps_its_version(room: Script) -> None:
    """Defining a view again replaces it, version 2; deleting it removes it."""
    room.do("alice", c.DefineView(name="alice", key="v", expr="1"))
    out = reply(room.do("alice", c.DefineView(name="alice", key="v", expr="2")))
    assert (out["value"], out["version"]) == (2, 2)
    room.do("alice", c.DeleteState(name="alice", key="v", scope="_view"))
    assert room.refused(None, c.GetState(key="v", scope="_view")).code == Code.NOT_FOUND


def test_view_that_fails_to_evaluate_reads_as_null(room: Script) -> None:
    """A view over a missing key has no value (null) until the key exists."""
    assert (
        reply(room.do("alice", c.DefineView(name="alice", key="v", expr="state._shared.later + 1")))["value"]
        is None
    )
    put(room, "later", 1)
    assert get(room, "v", scope="_view")["value"] == 2


def test_list_state_resolves_views(room: Script) -> None:
    """list shows views with their current value and expression."""
    put(room, "x", 1)
    room.do("alice", c.DefineView(name="alice", key="v", expr="state._shared.x + 1"))
    views = reply(room.run(c.ListState(scope="_view")))["entries"]
    assert views == [{"scope": "_view", "key": "v", "value": 2, "version": 1, "expr": "state._shared.x + 1"}]


def test_eval_reads_the_whole_context(room: Script) -> None:
    """eval sees state, agents, messages, claims and tasks."""
    put(room, "turn", 3)
    assert evaluate(room, "state._shared.turn + 1")["value"] == 4
    assert evaluate(room, 'agents["bob"].status')["value"] == "active"
    assert evaluate(room, "messages.count == 0 && messages.unclaimed == 0")["value"] is True
    assert evaluate(room, "size(claims) == 0 && size(tasks) == 0")["value"] is True


def test_eval_error_is_a_value_not_a_refusal(room: Script) -> None:
    """eval of a missing key replies with the error (nothing refused, nothing emitted)."""
    out = evaluate(room, "state._shared.nope")
    assert out["value"] is None and out["error"]


def test_bad_cel_is_bad_expression_with_position(room: Script) -> None:
    """A syntax error names its 0-based position; an unknown name is refused too."""
    err = room.refused(None, c.Eval(expr="state._shared.x == == 1"))
    assert err.code == Code.BAD_EXPRESSION and err.detail["position"] == 19
    assert err.detail["expression"] == "state._shared.x == == 1"
    assert room.refused(None, c.Eval(expr="nosuch.thing")).code == Code.BAD_EXPRESSION
    err = room.refused("alice", c.DefineView(name="alice", key="v", expr="(1 +"))
    assert err.code == Code.BAD_EXPRESSION


# --------------------------------------------------------------------------- branches


def test_branch_writes_are_isolated(room: Script) -> None:
    """A branch sees the state as forked; its writes stay in it, and the main line's later writes stay out."""
    put(room, "x", 1)
    put(room, "y", 1)
    assert reply(room.do("alice", c.CreateBranch(name="alice", branch="exp")))["branch"] == "exp"
    put(room, "x", 10, branch="exp")
    put(room, "z", 5, branch="exp")
    put(room, "y", 2)  # main moves on after the fork
    assert get(room, "x")["value"] == 1 and get(room, "x", branch="exp")["value"] == 10
    assert get(room, "y", branch="exp")["value"] == 1, "the main line's write leaked into the branch"
    assert room.refused(None, c.GetState(key="z")).code == Code.NOT_FOUND
    assert evaluate(room, "state._shared.x + state._shared.y", branch="exp")["value"] == 11
    listed = reply(room.run(c.ListState(branch="exp")))["entries"]
    assert {x["key"]: x["value"] for x in listed} == {"x": 10, "y": 1, "z": 5}


def test_branch_delete_is_isolated(room: Script) -> None:
    """Deleting in a branch hides the key there only; deleting on main leaves the branch's copy."""
    put(room, "a", 1)
    put(room, "b", 1)
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    room.do("alice", c.DeleteState(name="alice", key="a", branch="exp"))
    room.do("alice", c.DeleteState(name="alice", key="b"))
    assert get(room, "a")["value"] == 1
    assert room.refused(None, c.GetState(key="a", branch="exp")).code == Code.NOT_FOUND
    assert get(room, "b", branch="exp")["value"] == 1


def test_branch_views_resolve_over_the_branch(room: Script) -> None:
    """A view read or evaluated on a branch is computed from the branch's state."""
    put(room, "x", 2)
    room.do("alice", c.DefineView(name="alice", key="double", expr="state._shared.x * 2"))
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    put(room, "x", 5, branch="exp")
    assert evaluate(room, "state._view.double", branch="exp")["value"] == 10
    assert get(room, "double", scope="_view", branch="exp")["value"] == 10
    assert get(room, "double", scope="_view")["value"] == 4


def test_branch_gate_reads_the_branch(room: Script) -> None:
    """A gated write on a branch evaluates its gate against the branch."""
    put(room, "phase", "a")
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    put(room, "phase", "b", branch="exp")
    assert put(room, "k", 1, branch="exp", if_='state._shared.phase == "b"')["version"] == 1
    err = room.refused("alice", c.SetState(name="alice", key="k", value=1, if_='state._shared.phase == "b"'))
    assert err.code == Code.PRECONDITION_FAILED


def test_branch_diff_lists_changes_beside_the_source(room: Script) -> None:
    """diff lists each changed key with its value on the branch and where it came from."""
    put(room, "x", 1)
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    put(room, "x", 2, branch="exp")
    room.do("alice", c.DeleteState(name="alice", key="x", branch="exp"))
    put(room, "new", "n", branch="exp")
    d = reply(room.run(c.DiffBranch(branch="exp")))
    assert d["conflicts"] == []
    assert [(ch["key"], ch["value"], ch["deleted"], ch["source"]) for ch in d["changes"]] == [
        ("new", "n", False, None),
        ("x", None, True, 1),
    ]


def test_branch_merge_applies_changes(room: Script) -> None:
    """merge writes the branch's changes to the main line (deletes included), each a version step."""
    put(room, "x", 1)
    put(room, "gone", 1)
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    put(room, "x", 2, branch="exp")
    room.do("alice", c.DeleteState(name="alice", key="gone", branch="exp"))
    put(room, "other", 1)  # main changes a key the branch did not touch: no conflict
    out = room.do("bob", c.MergeBranch(name="bob", branch="exp"))
    assert reply(out) == {"branch": "exp", "merged": 2}
    assert get(room, "x") == {**get(room, "x"), "value": 2, "version": 2, "by": "bob"}
    assert room.refused(None, c.GetState(key="gone")).code == Code.NOT_FOUND


def test_branch_merge_conflict_lists_keys_changed_on_both_sides(room: Script) -> None:
    """A key written on both sides since the fork (a delete counts) refuses the merge, naming the keys."""
    put(room, "a", 1)
    put(room, "b", 1)
    put(room, "c", 1)
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    put(room, "a", 2, branch="exp")
    put(room, "b", 2, branch="exp")
    put(room, "c", 2, branch="exp")
    put(room, "a", 3)
    room.do("alice", c.DeleteState(name="alice", key="b"))
    put(room, "c", 2)  # the same value on both sides is no conflict
    assert reply(room.run(c.DiffBranch(branch="exp")))["conflicts"] == ["_shared.a", "_shared.b"]
    err = room.refused("alice", c.MergeBranch(name="alice", branch="exp"))
    assert err.code == Code.CONFLICT and err.detail["keys"] == ["_shared.a", "_shared.b"]


def test_branch_merge_is_three_way(room: Script) -> None:
    """A key the branch set back to its fork-time value does not overwrite the source's newer value, and a
    key the source changed and changed back is no conflict: only what the branch changed is merged."""
    put(room, "a", 1)
    put(room, "b", 1)
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    put(room, "a", 2, branch="exp")
    put(room, "a", 1, branch="exp")  # the branch ends where it began
    put(room, "b", 5, branch="exp")
    put(room, "a", 3)  # the source moved on
    put(room, "b", 2)
    put(room, "b", 1)  # ... and came back
    assert reply(room.run(c.DiffBranch(branch="exp")))["conflicts"] == []
    assert reply(room.do("alice", c.MergeBranch(name="alice", branch="exp")))["merged"] == 1
    assert get(room, "a")["value"] == 3 and get(room, "b")["value"] == 5


def test_branch_from_branch(room: Script) -> None:
    """A branch forked from a branch sees its source as forked, and merges into it, not into main."""
    put(room, "x", 1)
    room.do("alice", c.CreateBranch(name="alice", branch="b1"))
    put(room, "x", 2, branch="b1")
    created = reply(room.do("alice", c.CreateBranch(name="alice", branch="b2", from_="b1")))
    assert created["from"] == "b1"
    assert get(room, "x", branch="b2")["value"] == 2
    put(room, "x", 3, branch="b1")  # b1 moves on: b2 still reads what it forked
    put(room, "x", 9)
    assert get(room, "x", branch="b2")["value"] == 2
    put(room, "y", 7, branch="b2")
    room.do("alice", c.MergeBranch(name="alice", branch="b2"))
    assert get(room, "y", branch="b1")["value"] == 7
    assert room.refused(None, c.GetState(key="y")).code == Code.NOT_FOUND
    names = [(b["branch"], b["from"]) for b in reply(room.run(c.ListBranches()))["branches"]]
    assert names == [("b1", None), ("b2", "b1")]


def test_branch_errors(room: Script) -> None:
    """An existing branch name is already_exists, an unknown one not_found, a bad one bad_request."""
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    assert room.refused("alice", c.CreateBranch(name="alice", branch="exp")).code == Code.ALREADY_EXISTS
    assert room.refused("alice", c.CreateBranch(name="alice", branch="x", from_="no")).code == Code.NOT_FOUND
    assert room.refused("alice", c.CreateBranch(name="alice", branch="-bad")).code == Code.BAD_REQUEST
    assert room.refused("alice", c.SetState(name="alice", key="k", value=1, branch="no")).code == (
        Code.NOT_FOUND
    )


def test_branch_writes_do_not_touch_main_line_conditions(room: Script) -> None:
    """A write on a branch re-evaluates no subscription (conditions read the main line)."""
    put(room, "x", 1)
    room.do("alice", c.CreateBranch(name="alice", branch="exp"))
    room.run(c.Subscribe(expr="state._shared.x == 2"), session=5)
    before = room.machine.world.rooms["default"].part(Conditions).evaluations
    out = room.do("alice", c.SetState(name="alice", key="x", value=2, branch="exp"))
    assert room.machine.world.rooms["default"].part(Conditions).evaluations == before
    assert [fx for fx in out.effects if not isinstance(fx, Reply)] == []


# --------------------------------------------------------------------------- snapshot


def busy_state(script: Script) -> None:
    """A history with entries in several scopes, views over views, deletes, branches and a merge."""
    script.join("alice", "bob")
    put(script, "x", 1)
    put(script, "y", "s")
    put(script, "mine", {"a": [1, 2]}, scope="alice")
    script.do("alice", c.DefineView(name="alice", key="dbl", expr="state._shared.x * 2"))
    script.do("alice", c.DefineView(name="alice", key="big", expr="state._view.dbl > 3"))
    script.do("alice", c.CreateBranch(name="alice", branch="b1"))
    put(script, "x", 5, branch="b1")
    script.do("alice", c.DeleteState(name="alice", key="y", branch="b1"))
    script.do("alice", c.CreateBranch(name="alice", branch="b2", from_="b1"))
    put(script, "x", 2)  # the main line moves on after the forks
    script.do("alice", c.DeleteState(name="alice", key="y"))
    put(script, "z", 1, branch="b2")
    script.do("alice", c.MergeBranch(name="alice", branch="b2"))
    script.do("bob", c.BatchState(name="bob", writes=(c.Write(key="n", value=1, increment=True),)))


def test_snapshot_with_state_round_trips_and_equals_the_fold(script: Script) -> None:
    """dump → load → dump is identical, equals a fresh fold of the events, and reads the same."""
    busy_state(script)
    data = snapshot.dump(script.machine)
    loaded = snapshot.load(data, script.config)
    assert snapshot.dump(loaded) == data
    fresh = Machine(script.config)
    for event in script.events:
        fresh.apply(event)
    assert snapshot.dump(fresh) == data
    room = loaded.world.rooms["default"]
    assert room.part(State).lookup("_shared", "x").value == 2
    assert room.part(State).lookup("_shared", "x", room.part(State).branch("b2")).value == 5
    assert room.part(State).lookup("_shared", "y", room.part(State).branch("b1")) is None
    assert room.part(State).lookup("_shared", "z", room.part(State).branch("b1")).value == 1


def test_snapshot_keeps_branch_isolation_and_views_working(script: Script) -> None:
    """A machine loaded from a snapshot still resolves views and keeps branches isolated as it folds on."""
    busy_state(script)
    loaded = snapshot.load(snapshot.dump(script.machine), script.config)
    script.machine = loaded
    assert evaluate(script, "state._view.big")["value"] is True
    assert evaluate(script, "state._view.dbl", branch="b1")["value"] == 10
    put(script, "x", 100)
    assert get(script, "x", branch="b2")["value"] == 5
    assert get(script, "dbl", scope="_view")["value"] == 200


# --------------------------------------------------------------------------- branches against a model

LINES = [None, "b1", "b2", "b3"]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(LINES), st.sampled_from("xyz"), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.sampled_from(LINES), st.sampled_from("xyz"), st.just(0)),
        st.tuples(st.just("fork"), st.sampled_from(LINES[1:]), st.sampled_from(LINES), st.just(0)),
        st.tuples(st.just("merge"), st.sampled_from(LINES[1:]), st.just(""), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_branches_behave_like_copies_taken_at_the_fork(ops: list[tuple[str, Any, str, int]]) -> None:
    """Against a model where a fork is a copy of its source's view: every line reads the model; a merge is
    three-way (refused exactly when a key changed on both sides since the fork to different values, else
    bringing over what only the branch changed); the machine equals the fold of its events and snapshot."""
    machine = Machine(HubConfig(rate_per_agent=None))
    events: list[Any] = []

    def run(cmd: Any) -> Any:
        out = machine.run(cmd, Context(1.0, None, lambda: "tok"))
        events.extend(out.events)
        return out

    run(c.Join(name="a"))
    views: dict[Any, dict[str, int]] = {None: {}}  # each line's keys → values
    forked: dict[str, tuple[Any, dict[str, int]]] = {}  # branch → (source, the source's view at the fork)
    mine: dict[str, set[str]] = {}  # keys a branch wrote or deleted itself
    for op, line, key, value in ops:
        if op == "set" and line in views:
            run(c.SetState(name="a", token="tok", key=key, value=value, branch=line))
            views[line][key] = value
            mine.get(line, set()).add(key)
        elif op == "delete" and line in views and key in views[line]:
            run(c.DeleteState(name="a", token="tok", key=key, branch=line))
            del views[line][key]
            mine.get(line, set()).add(key)
        elif op == "fork" and line not in views and key in views:
            run(c.CreateBranch(name="a", token="tok", branch=line, from_=key))
            views[line] = dict(views[key])
            forked[line] = (key, dict(views[key]))
            mine[line] = set()
        elif op == "merge" and line in views:
            source, base = forked[line]
            theirs = views[source]
            clash, bring = [], []
            for k in sorted(mine[line]):  # three ways: mine, theirs, and theirs at the fork
                m, t, b = (views[line].get(k, "-"), theirs.get(k, "-"), base.get(k, "-"))
                if m != t and m != b:
                    (clash if t != b else bring).append(k)
            try:
                out = machine.run(c.MergeBranch(name="a", token="tok", branch=line), Context(1.0, 1))
            except HubError as exc:
                assert (
                    exc.code == Code.CONFLICT
                    and clash
                    and exc.detail["keys"] == [f"_shared.{k}" for k in clash]
                )
                continue
            assert not clash, f"merge of {line} should conflict on {clash}"
            assert reply(out)["merged"] == len(bring)
            events.extend(out.events)
            for k in bring:
                if k in views[line]:
                    theirs[k] = views[line][k]
                else:
                    theirs.pop(k, None)
                if source is not None:
                    mine[source].add(k)
        room = machine.world.rooms["default"]
        for name, expected in views.items():
            got = {
                k: e.value
                for k, e in room.part(State)
                .entries(room.part(State).branches.get(name) if name else None)
                .get("_shared", {})
                .items()
            }
            assert got == expected, (name, ops)
    fresh = Machine(HubConfig(rate_per_agent=None))
    for event in events:
        fresh.apply(event)
    data = snapshot.dump(machine)
    assert snapshot.dump(fresh) == data
    assert snapshot.dump(snapshot.load(data)) == data
