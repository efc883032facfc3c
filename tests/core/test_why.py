"""Explanations in the core: why a task is not ready, a claim's lease, a waiter, a condition's parts, and a
key's history read back page by page (the shell's log read played by the test). Reads: no events."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.effects import HistoryRead, Outcome, ReadHistory
from hub.core.why import MAX_LINKS, MAX_PARTS
from hub.protocol import commands as c
from hub.protocol.errors import Code
from hub.protocol.events import StateDeleted, StateWritten, ViewDefined
from tests.core.test_conditions import reply

Script = Any  # the fixture's class lives in tests/core/conftest.py

CLI = 3
WAITER = 5


@pytest.fixture
def team(script: Script) -> Script:
    script.join("lead", "alice", "bob")
    return script


def declare(script: Script, task: str, **kw: Any) -> None:
    script.do("lead", c.DeclareTask(name="lead", task=task, title=kw.pop("title", task), **kw), session=CLI)


def why(script: Script, cmd: Any, name: str = "lead") -> Any:
    out = script.do(name, cmd, session=CLI)
    assert out.events == []
    return reply(out)


# -- why task ----------------------------------------------------------------------------------------------


def test_task_chain_goes_down_to_the_actionable_tasks(team: Script) -> None:
    """deploy ← test ← build (held by alice) and lint (ready): the chain names each with status and holder,
    and the actionable ones are build (in progress) and lint (ready)."""
    declare(team, "build")
    declare(team, "lint")
    declare(team, "test", depends_on=("build", "lint"))
    declare(team, "deploy", depends_on=("test",))
    team.do("alice", c.ClaimTask(name="alice", task="build"), session=CLI)
    got = why(team, c.WhyTask(task="deploy"))
    assert (got["task"], got["ready"], got["status"]) == ("deploy", False, "pending")
    [test] = got["chain"]["blockers"]
    assert (test["id"], test["reason"], test["status"]) == ("test", "depends_on", "pending")
    build, lint = test["blockers"]
    assert (build["id"], build["status"], build["holder"], build["actionable"]) == (
        "build",
        "in_progress",
        "alice",
        True,
    )
    assert (lint["id"], lint["status"], lint.get("holder"), lint["actionable"]) == (
        "lint",
        "ready",
        None,
        True,
    )
    assert got["actionable"] == ["build", "lint"]


def test_ready_task_is_its_own_answer(team: Script) -> None:
    """A ready task: ready, no blockers, actionable itself."""
    declare(team, "a")
    got = why(team, c.WhyTask(task="a"))
    assert got["ready"] is True and got["actionable"] == ["a"] and got["chain"].get("blockers", []) == []


def test_seq_sibling_blocks(team: Script) -> None:
    """In a seq epic, step 2 is ready but blocked by step 1 (`seq`); step 1 is actionable."""
    declare(team, "epic", epic=True, mode="seq")
    declare(team, "s1", parent="epic", order=1)
    declare(team, "s2", parent="epic", order=2)
    got = why(team, c.WhyTask(task="s2"))
    assert got["ready"] is False and got["status"] == "ready"
    [s1] = got["chain"]["blockers"]
    assert (s1["id"], s1["reason"], s1["actionable"]) == ("s1", "seq", True)
    epic = why(team, c.WhyTask(task="epic"))
    assert [(b["id"], b["reason"]) for b in epic["chain"]["blockers"]] == [("s1", "child"), ("s2", "child")]


def test_missing_and_repeated_dependencies(team: Script) -> None:
    """A dependency never declared shows as missing; a task reached twice is shown once in full."""
    declare(team, "base")
    declare(team, "left", depends_on=("base",))
    declare(team, "right", depends_on=("base", "ghost"))
    declare(team, "top", depends_on=("left", "right"))
    got = why(team, c.WhyTask(task="top"))
    left, right = got["chain"]["blockers"]
    assert left["blockers"][0]["id"] == "base" and "repeated" not in left["blockers"][0]
    base_again, ghost = right["blockers"]
    assert base_again["repeated"] is True and ghost["missing"] is True and ghost["status"] == "missing"
    assert got["actionable"] == ["base"]


def test_chain_is_bounded(team: Script) -> None:
    """A dependency chain longer than MAX_LINKS stops there and says so."""
    declare(team, "t0")
    for i in range(1, MAX_LINKS + 5):
        declare(team, f"t{i}", depends_on=(f"t{i - 1}",))
    got = why(team, c.WhyTask(task=f"t{MAX_LINKS + 4}"))
    assert got["truncated"] is True and got["actionable"] == []


def test_unknown_task_is_not_found(team: Script) -> None:
    err = team.refused("lead", c.WhyTask(task="nope"))
    assert err.code == Code.NOT_FOUND and err.detail["what"] == "task"


# -- why claim ---------------------------------------------------------------------------------------------


def test_claim_explained(team: Script) -> None:
    """A TTL claim: holder, since, lease `ttl`, expiry, epoch, paths; a renewal shows its time."""
    team.do("alice", c.Claim(name="alice", work="api", paths=("src/api/",), ttl=60), session=None)
    got = why(team, c.WhyClaim(work="api"))
    assert (got["holder"], got["lease"], got["since"], got["expires"], got["epoch"]) == (
        "alice",
        "ttl",
        1000.0,
        1060.0,
        1,
    )
    assert got["paths"] == ["src/api"] and got["renewed_at"] is None and got["holder_sessions"] == 0
    team.now = 1010.0
    team.do("alice", c.Claim(name="alice", work="api", ttl=60, renew=True), session=None)
    got = why(team, c.WhyClaim(work="api"))
    assert (got["renewed_at"], got["expires"]) == (1010.0, 1070.0)


def test_session_claim_is_session_bound(team: Script) -> None:
    team.do("bob", c.Attach(name="bob"), session=WAITER)
    team.do("bob", c.Claim(name="bob", work="ui", paths=("ui/",)), session=WAITER)
    got = why(team, c.WhyClaim(work="ui"))
    assert (got["lease"], got["expires"], got["holder_sessions"]) == ("session", None, 1)


def test_unknown_claim_is_not_found(team: Script) -> None:
    err = team.refused("lead", c.WhyClaim(work="nope"))
    assert err.code == Code.NOT_FOUND and err.detail["what"] == "claim"


# -- why wait ----------------------------------------------------------------------------------------------


def test_waiter_explained(team: Script) -> None:
    """A message waiter: owner, for, since, armed seq, nothing waking it; with a condition: its value."""
    team.do("alice", c.Send(name="alice", to=("*",), body=b'"x"'), session=None)
    team.now = 1005.0
    team.do("bob", c.Wait(waiter="bob-rx", for_="bob", condition="state._shared.go == true"), session=WAITER)
    team.do("lead", c.SetState(name="lead", key="go", value=False), session=None)
    got = why(team, c.WhyWait(waiter="bob-rx"))
    assert (got["owner"], got["for"], got["since"], got["armed"], got["waking"]) == (
        "bob",
        "bob",
        1005.0,
        1,
        0,
    )
    assert got["condition"] == "state._shared.go == true" and got["value"] is False


def test_unknown_waiter_is_not_found(team: Script) -> None:
    err = team.refused("lead", c.WhyWait(waiter="nobody"))
    assert err.code == Code.NOT_FOUND and err.detail["what"] == "waiter"


# -- why condition -----------------------------------------------------------------------------------------


def test_condition_parts_and_the_false_one(team: Script) -> None:
    """Each conjunct with its value; the relation operands show what they read; the false one is named."""
    team.do("lead", c.SetState(name="lead", key="turn", value="alice"), session=None)
    expr = 'state._shared.turn == "bob" && agents.bob.status == "active"'
    got = why(team, c.WhyCondition(expr=expr))
    assert got["holds"] is False and got["value"] is False
    parts = [(p["expr"], p["depth"], p.get("value"), p.get("blame", False)) for p in got["parts"]]
    assert parts == [
        (expr, 0, False, True),
        ('state._shared.turn == "bob"', 1, False, True),
        ("state._shared.turn", 2, "alice", False),
        ('agents.bob.status == "active"', 1, True, False),
        ("agents.bob.status", 2, "active", False),
    ]
    assert got["false_part"] == 'state._shared.turn == "bob"'


def test_condition_errors_are_shown_per_part(team: Script) -> None:
    """A missing key is an evaluation error on its part, not a refusal; `||` absorbs it when true."""
    got = why(team, c.WhyCondition(expr="state._shared.nope == 1 || true"))
    assert got["holds"] is True and "false_part" not in got
    nope = got["parts"][1]
    assert nope["expr"] == "state._shared.nope == 1" and nope["error"]
    got = why(team, c.WhyCondition(expr="!(state._shared.nope > 1)"))
    assert got["holds"] is False and got["error"]


def test_condition_parts_are_bounded(team: Script) -> None:
    expr = " && ".join(["true"] * (MAX_PARTS + 10))
    got = why(team, c.WhyCondition(expr=expr))
    assert len(got["parts"]) == MAX_PARTS and got["truncated"] is True


def test_bad_condition_is_refused(team: Script) -> None:
    err = team.refused("lead", c.WhyCondition(expr="state._shared.x =="))
    assert err.code == Code.BAD_EXPRESSION


# -- state history -----------------------------------------------------------------------------------------


def read_back(script: Script, request: ReadHistory, page: int) -> HistoryRead:
    """The shell's part: the room's state events below `before`, newest first, `page` at most."""
    kinds = (StateWritten, StateDeleted, ViewDefined)
    rows = [
        (pos, ev)
        for pos, ev in enumerate(script.events, start=1)
        if pos < request.before and type(ev) in kinds and ev.room == request.room
    ][::-1][:page]
    return HistoryRead(request, tuple(rows), rows[-1][0] if len(rows) == page else 0)


def history(script: Script, cmd: c.StateHistory, page: int = 2) -> tuple[Any, int]:
    """Run a history read to its reply, page by page; the reply and the number of pages read."""
    out: Outcome = script.do("lead", cmd, session=CLI)
    pages = 0
    while True:
        assert out.events == []
        reads = [fx for fx in out.effects if isinstance(fx, ReadHistory)]
        if not reads:
            return reply(out), pages
        pages += 1
        out = script.run(read_back(script, reads[0], page), session=CLI)


def test_history_newest_first_with_writer_and_op(team: Script) -> None:
    """set, batch, delete and re-create: every version, who and which command; the delete shows its version."""
    team.do("alice", c.SetState(name="alice", key="k", value=1), session=None)
    team.do("bob", c.SetState(name="bob", key="other", value=0), session=None)
    team.do("bob", c.BatchState(name="bob", writes=(c.Write(key="k", value=2),)), session=None)
    team.do("alice", c.DeleteState(name="alice", key="k"), session=None)
    team.do("bob", c.InitState(name="bob", key="k", value=3), session=None)
    got, pages = history(team, c.StateHistory(key="k"))
    rows = [(v["version"], v.get("value"), v["deleted"], v["by"], v["op"]) for v in got["versions"]]
    assert rows == [
        (3, 3, False, "bob", "state.init"),
        (2, None, True, "alice", "state.delete"),
        (2, 2, False, "bob", "state.batch"),
        (1, 1, False, "alice", "state.set"),
    ]
    assert got["complete"] is True and pages == 3


def test_history_limit_and_bad_limit(team: Script) -> None:
    for i in range(5):
        team.do("alice", c.SetState(name="alice", key="k", value=i), session=None)
    got, _ = history(team, c.StateHistory(key="k", limit=2))
    assert [v["version"] for v in got["versions"]] == [5, 4] and got["complete"] is False
    for bad in (0, 1001):
        err = team.refused("lead", c.StateHistory(key="k", limit=bad))
        assert err.code == Code.BAD_REQUEST and err.detail["field"] == "limit"


def test_history_of_unknown_key_is_not_found(team: Script) -> None:
    err = team.refused("lead", c.StateHistory(key="never"))
    assert err.code == Code.NOT_FOUND


def test_history_of_older_events_shows_op_unknown(team: Script) -> None:
    """An event from before `op` was recorded reads back with op None."""
    team.do("alice", c.SetState(name="alice", key="k", value=1), session=None)
    ev = team.events[-1]
    team.events[-1] = StateWritten(
        room=ev.room, at=ev.at, scope=ev.scope, key=ev.key, value=ev.value, version=ev.version, by=ev.by
    )
    got, _ = history(team, c.StateHistory(key="k"))
    assert got["versions"][0]["op"] is None and got["versions"][0]["by"] == "alice"


def test_condition_blame_through_or_and_not(team: Script) -> None:
    """At `||` every operand is marked (none is true) and the `||` is the answer; a `!` is its own answer,
    its true operand is not marked."""
    team.do("lead", c.SetState(name="lead", key="n", value=1), session=None)
    got = why(team, c.WhyCondition(expr="state._shared.n > 5 || !(state._shared.n == 1)"))
    marks = {p["expr"]: p.get("blame", False) for p in got["parts"]}
    assert marks == {
        "state._shared.n > 5 || !(state._shared.n == 1)": True,
        "state._shared.n > 5": True,
        "state._shared.n": False,
        "!(state._shared.n == 1)": True,
        "(state._shared.n == 1)": False,
    }
    assert got["false_part"] == "state._shared.n > 5 || !(state._shared.n == 1)"
    got = why(team, c.WhyCondition(expr="true && !(state._shared.n == 1)"))
    assert got["false_part"] == "!(state._shared.n == 1)"
