"""Tests for hub.core.tasks through the Machine: readiness, atomic claims, etags, epics, seq pipelines, cycles."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.agents import Roster
from hub.core.effects import Outcome, Reply
from hub.core.tasks import Plan
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import to_builtins
from hub.protocol.errors import Code
from tests.core.conftest import Script

CLI = 99  # an unattached connection, like one `synapse task` run


def reply(out: Outcome) -> Any:
    """The result of the one Reply effect in `out`."""
    results = [to_builtins(fx.result) for fx in out.effects if isinstance(fx, Reply)]
    assert len(results) == 1, out.effects
    return results[0]


def declare(script: Script, task: str, by: str = "lead", **kw: Any) -> Any:
    kw.setdefault("title", task.replace("-", " "))
    return reply(script.do(by, c.DeclareTask(name=by, task=task, **kw), session=CLI))


def take(script: Script, name: str, task: str) -> Any:
    return reply(script.do(name, c.ClaimTask(name=name, task=task), session=CLI))


def update(script: Script, name: str, task: str, **kw: Any) -> Any:
    return reply(script.do(name, c.UpdateTask(name=name, task=task, **kw), session=CLI))


def status(script: Script, *tasks: str) -> list[str]:
    plan = script.machine.world.rooms["default"].part(Plan)
    return [plan.tasks[t].status for t in tasks]


@pytest.fixture
def team(script: Script) -> Script:
    script.join("lead", "a1", "a2", "a3")
    return script


# --------------------------------------------------------------------------- the core loop


def test_core_loop_claim_update_stale_etag_reread_retry(team: Script) -> None:
    """Orkestra's loop: claim → in_progress; update with the etag; a stale etag is `conflict` with the current task."""
    declare(team, "app-003", title="Fix login")
    t = take(team, "a1", "app-003")
    assert (t["status"], t["holder"], t["etag"]) == ("in_progress", "a1", 2)
    seen = t["etag"]
    t2 = update(team, "a1", "app-003", note="halfway", etag=seen)
    assert t2["etag"] == seen + 1 and t2["notes"][-1]["note"] == "halfway"
    err = team.refused("a1", c.UpdateTask(name="a1", task="app-003", status="done", etag=seen))
    assert err.code == Code.CONFLICT and err.detail["current"]["etag"] == seen + 1
    fresh = reply(team.run(c.ShowTask(task="app-003")))
    done = update(team, "a1", "app-003", status="done", etag=fresh["etag"])
    assert (done["status"], done["etag"]) == ("done", seen + 2)


def test_two_agents_update_the_same_etag_one_wins(team: Script) -> None:
    """A and B both read etag T1: A's update wins, B's is `conflict`; B re-reads T2 and its retry lands."""
    declare(team, "t")
    t1 = reply(team.run(c.ShowTask(task="t")))["etag"]
    update(team, "a1", "t", status="done", etag=t1)
    err = team.refused("a2", c.UpdateTask(name="a2", task="t", status="blocked", etag=t1))
    assert err.code == Code.CONFLICT and err.detail["current"]["status"] == "done"
    t2 = reply(team.run(c.ShowTask(task="t")))["etag"]
    assert update(team, "a2", "t", status="blocked", etag=t2)["status"] == "blocked"


def test_claiming_a_taken_task_is_conflict_naming_the_holder(team: Script) -> None:
    """The second claimer of a task gets `conflict` naming the holder; the holder re-claiming is a no-op."""
    declare(team, "t")
    take(team, "a1", "t")
    err = team.refused("a2", c.ClaimTask(name="a2", task="t"))
    assert err.code == Code.CONFLICT and err.detail["holder"] == "a1"
    assert "a1" in err.message
    out = team.do("a1", c.ClaimTask(name="a1", task="t"), session=CLI)
    assert out.events == [] and reply(out)["holder"] == "a1"


def test_unknown_task_is_not_found(team: Script) -> None:
    """Claiming, updating or showing a task that was never declared is `not_found`."""
    assert team.refused("a1", c.ClaimTask(name="a1", task="nope")).code == Code.NOT_FOUND
    assert team.refused("a1", c.UpdateTask(name="a1", task="nope", status="done")).code == Code.NOT_FOUND


def test_backlog_race_each_task_claimed_once(team: Script) -> None:
    """Three agents walking the same ready list claim every task exactly once; losers move to the next."""
    for i in range(9):
        declare(team, f"q-{i}")
    won: dict[str, str] = {}
    for _round in range(9):
        for agent in ("a1", "a2", "a3"):
            for t in reply(team.run(c.ListTasks(ready=True)))["tasks"]:
                try:
                    take(team, agent, t["id"])
                except Exception:
                    continue
                won[t["id"]] = agent
                break
    assert sorted(won) == [f"q-{i}" for i in range(9)]
    assert {a: list(won.values()).count(a) for a in ("a1", "a2", "a3")} == {"a1": 3, "a2": 3, "a3": 3}


# --------------------------------------------------------------------------- dependencies


def test_dependency_done_readies_the_dependent(team: Script) -> None:
    """SYNAPSE: `ship-api --depends-on edit-api` is pending; `edit-api` done makes it ready (by the hub)."""
    declare(team, "edit-api")
    assert declare(team, "ship-api", depends_on=("edit-api",))["status"] == "pending"
    err = team.refused("a1", c.ClaimTask(name="a1", task="ship-api"))
    assert err.code == Code.NOT_READY and err.detail["open_dependencies"] == ["edit-api"]
    out = team.do("a1", c.UpdateTask(name="a1", task="edit-api", status="done"), session=CLI)
    readied = [ev for ev in out.events if isinstance(ev, e.TaskUpdated) and ev.task == "ship-api"]
    assert [(ev.status, ev.by, ev.holder) for ev in readied] == [("ready", None, None)]
    assert take(team, "a2", "ship-api")["status"] == "in_progress"


def test_all_dependencies_must_be_done(team: Script) -> None:
    """A task waits for every dependency, declared before or after it."""
    declare(team, "c", depends_on=("a", "b"))  # neither exists yet
    declare(team, "a")
    update(team, "a1", "a", status="done")
    assert status(team, "c") == ["pending"]
    declare(team, "b")
    update(team, "a1", "b", status="done")
    assert status(team, "c") == ["ready"]


def test_declaring_after_dependencies_are_done_is_ready(team: Script) -> None:
    """A task whose dependencies are already done starts `ready`."""
    declare(team, "a")
    update(team, "a1", "a", status="done")
    assert declare(team, "b", depends_on=("a",))["status"] == "ready"


def test_cycle_is_refused_naming_it(team: Script) -> None:
    """Declaring c → a when a → b → c exists is `bad_request` naming the cycle; a self-dependency too."""
    declare(team, "a", depends_on=("b",))
    declare(team, "b", depends_on=("c",))
    err = team.refused("lead", c.DeclareTask(name="lead", task="c", title="c", depends_on=("a",)))
    assert err.code == Code.BAD_REQUEST and err.detail["cycle"] == ["c", "a", "b", "c"]
    assert "c → a → b → c" in err.message
    err = team.refused("lead", c.DeclareTask(name="lead", task="s", title="s", depends_on=("s",)))
    assert err.code == Code.BAD_REQUEST and err.detail["reason"] == "cycle"


def test_redeclare_is_idempotent_but_not_different(team: Script) -> None:
    """The same declaration twice is one task; a different one is `already_exists` with the current task."""
    declare(team, "t", title="T")
    out = team.do("lead", c.DeclareTask(name="lead", task="t", title="T"), session=CLI)
    assert out.events == []
    err = team.refused("lead", c.DeclareTask(name="lead", task="t", title="other"))
    assert err.code == Code.ALREADY_EXISTS and err.detail["current"]["title"] == "T"


@pytest.mark.parametrize(
    ("task", "title"),
    [
        ("", "t"),
        ("x" * 201, "t"),
        ("t", ""),
        ("t", "x" * 1001),
        ("a\x00b", "t"),
        ("\x1b[2J", "t"),
        ("\x9b", "t"),
    ],
)
def test_bad_ids_and_titles_are_bad_request(team: Script, task: str, title: str) -> None:
    """Ids are 1..200 characters without a control character, titles 1..1000."""
    assert team.refused("lead", c.DeclareTask(name="lead", task=task, title=title)).code == Code.BAD_REQUEST


def test_a_dependency_with_a_control_character_is_bad_request(team: Script) -> None:
    """`depends_on` names tasks: a name with a control character is refused, naming the field."""
    err = team.refused("lead", c.DeclareTask(name="lead", task="t", title="T", depends_on=("ok", "n\x00")))
    assert err.code == Code.BAD_REQUEST and err.detail == {"field": "depends_on", "reason": "control"}


def test_readying_many_dependents_at_once(team: Script) -> None:
    """One done task readies all of its 300 dependents in one outcome; those with another open dep stay."""
    declare(team, "root")
    declare(team, "other")
    for i in range(300):
        declare(team, f"d{i}", depends_on=("root",) if i % 3 else ("root", "other"))
    out = team.do("a1", c.UpdateTask(name="a1", task="root", status="done"), session=CLI)
    readied = {ev.task for ev in out.events if isinstance(ev, e.TaskUpdated) and ev.status == "ready"}
    assert readied == {f"d{i}" for i in range(300) if i % 3}


# --------------------------------------------------------------------------- epics and pipelines


def test_epic_with_parallel_children_completes_itself(team: Script) -> None:
    """Orkestra's epic: three `par` children claimed by three agents; the last one done makes the epic done."""
    declare(team, "auth", title="Auth system", epic=True)
    for child in ("jwt", "oauth", "sessions"):
        assert declare(team, child, parent="auth")["status"] == "ready"
    err = team.refused("a1", c.ClaimTask(name="a1", task="auth"))
    assert err.code == Code.BAD_REQUEST  # an epic is done by its children
    for agent, child in zip(("a1", "a2", "a3"), ("jwt", "oauth", "sessions"), strict=True):
        assert take(team, agent, child)["holder"] == agent
    update(team, "a1", "jwt", status="done")
    update(team, "a2", "oauth", status="done")
    assert status(team, "auth") == ["ready"]
    out = team.do("a3", c.UpdateTask(name="a3", task="sessions", status="done"), session=CLI)
    epic = [ev for ev in out.events if isinstance(ev, e.TaskUpdated) and ev.task == "auth"]
    assert [(ev.status, ev.by, ev.note) for ev in epic] == [("done", None, "all children done")]
    shown = reply(team.run(c.ShowTask(task="auth")))
    assert [ch["id"] for ch in shown["children"]] == ["jwt", "oauth", "sessions"]
    assert shown["kind"] == "epic" and shown["status"] == "done"


def test_epic_done_readies_what_depends_on_it(team: Script) -> None:
    """A task depending on an epic becomes ready once the epic completes itself."""
    declare(team, "epic", epic=True)
    declare(team, "child", parent="epic")
    declare(team, "release", depends_on=("epic",))
    update(team, "a1", "child", status="done")
    assert status(team, "epic", "release") == ["done", "ready"]


def test_seq_pipeline_refuses_out_of_order_naming_the_blocker(team: Script) -> None:
    """Orkestra's pipeline: claiming step 2 before step 1 is done is `seq_blocked` naming step 1."""
    declare(team, "deploy", title="Deploy pipeline", mode="seq")
    declare(team, "tests", parent="deploy", order=1)
    declare(team, "image", parent="deploy", order=2)
    declare(team, "push", parent="deploy", order=3)
    err = team.refused("a1", c.ClaimTask(name="a1", task="image"))
    assert err.code == Code.SEQ_BLOCKED and err.detail["blocked_by"] == ["tests"]
    assert "tests" in err.message
    err = team.refused("a1", c.ClaimTask(name="a1", task="push"))
    assert err.detail["blocked_by"] == ["tests", "image"]
    ready = [t["id"] for t in reply(team.run(c.ListTasks(ready=True, parent="deploy")))["tasks"]]
    assert ready == ["tests"]
    for step in ("tests", "image", "push"):
        take(team, "a1", step)
        update(team, "a1", step, status="done")
    assert status(team, "tests", "image", "push") == ["done"] * 3


def test_seq_order_not_declaration_order(team: Script) -> None:
    """Children of a seq parent run by --order, whatever order they were declared in."""
    declare(team, "p", mode="seq")
    declare(team, "second", parent="p", order=2)
    declare(team, "first", parent="p", order=1)
    err = team.refused("a1", c.ClaimTask(name="a1", task="second"))
    assert err.detail["blocked_by"] == ["first"]
    assert take(team, "a1", "first")["status"] == "in_progress"


def test_cancelled_step_does_not_block_the_pipeline(team: Script) -> None:
    """A cancelled earlier step no longer blocks the next one."""
    declare(team, "p", mode="seq")
    declare(team, "one", parent="p", order=1)
    declare(team, "two", parent="p", order=2)
    update(team, "lead", "one", status="cancelled")
    assert take(team, "a1", "two")["status"] == "in_progress"


def test_nested_outer_par_inner_seq(team: Script) -> None:
    """Outer `par` epic with an inner `seq` pipeline: the inner steps are ordered, the outer siblings are not."""
    declare(team, "release", epic=True)
    declare(team, "docs", parent="release")
    declare(team, "ship", parent="release", mode="seq")
    declare(team, "build", parent="ship", order=1)
    declare(team, "publish", parent="ship", order=2)
    assert take(team, "a1", "docs")["holder"] == "a1"
    assert take(team, "a2", "build")["holder"] == "a2"
    err = team.refused("a3", c.ClaimTask(name="a3", task="publish"))
    assert err.code == Code.SEQ_BLOCKED and err.detail["blocked_by"] == ["build"]
    update(team, "a2", "build", status="done")
    take(team, "a3", "publish")
    update(team, "a3", "publish", status="done")
    update(team, "a1", "docs", status="done")
    update(team, "lead", "ship", status="done")
    assert status(team, "release") == ["done"]


def test_nested_outer_seq_blocks_inner_children(team: Script) -> None:
    """Under an outer `seq` parent, the children of its second step wait for its first step."""
    declare(team, "outer", mode="seq")
    declare(team, "step1", parent="outer", order=1)
    declare(team, "step2", parent="outer", order=2)
    declare(team, "step2a", parent="step2")
    err = team.refused("a1", c.ClaimTask(name="a1", task="step2a"))
    assert err.code == Code.SEQ_BLOCKED and err.detail["blocked_by"] == ["step1"]


def test_parent_must_exist(team: Script) -> None:
    """A child of an undeclared parent is `not_found`; a task cannot be its own parent."""
    err = team.refused("lead", c.DeclareTask(name="lead", task="c", title="c", parent="ghost"))
    assert err.code == Code.NOT_FOUND
    err = team.refused("lead", c.DeclareTask(name="lead", task="c", title="c", parent="c"))
    assert err.code == Code.BAD_REQUEST


# --------------------------------------------------------------------------- re-offer, listing, the board


def test_back_to_ready_clears_the_holder(team: Script) -> None:
    """Its holder giving a task back (status ready with the etag) frees it for the next claimer."""
    declare(team, "t")
    t = take(team, "a1", "t")
    offered = update(team, "a1", "t", status="ready", etag=t["etag"], note="a1 gives it back")
    assert (offered["status"], offered["holder"]) == ("ready", None)
    assert take(team, "a2", "t")["holder"] == "a2"


def test_list_filters_and_orders_ready_first(team: Script) -> None:
    """`list` puts ready work first; --ready hides pending, taken and seq-blocked tasks and epics."""
    declare(team, "dep")
    declare(team, "waits", depends_on=("dep",))
    declare(team, "p", mode="seq")
    declare(team, "s1", parent="p", order=1)
    declare(team, "s2", parent="p", order=2)
    declare(team, "e", epic=True)
    take(team, "a1", "dep")
    ready = [t["id"] for t in reply(team.run(c.ListTasks(ready=True)))["tasks"]]
    assert ready == ["s1", "p"]
    listed = [t["id"] for t in reply(team.run(c.ListTasks()))["tasks"]]
    assert listed == ["s1", "s2", "p", "e", "dep", "waits"]
    assert [t["id"] for t in reply(team.run(c.ListTasks(status="pending")))["tasks"]] == ["waits"]
    assert [t["id"] for t in reply(team.run(c.ListTasks(parent="p")))["tasks"]] == ["s1", "s2"]


def test_board_shows_plan_claims_and_intents(team: Script) -> None:
    """The board holds the plan as a tree, the plan as records, live claims and intents."""
    declare(team, "epic", epic=True)
    declare(team, "child", parent="epic")
    team.do("a1", c.Claim(name="a1", work="child", paths=("src/x",)), session=CLI)
    team.do("a2", c.DeclareIntent(name="a2", paths=("src/x/y.py",), note="peek"), session=CLI)
    take(team, "a1", "child")
    board = reply(team.run(c.Board()))
    assert board["tasks"][0].split()[:3] == ["ready", "epic", "[epic]"]
    assert board["tasks"][1].strip().split()[:3] == ["in_progress", "child", "@a1"]
    assert {t["id"] for t in board["plan"]} == {"epic", "child"}
    assert [cl["work"] for cl in board["claims"]] == ["child"]
    assert board["intents"][0]["overlaps"] == [{"holder": "a1", "work": "child", "paths": ["src/x"]}]
    empty = reply(team.run(c.Board(room="nowhere")))
    assert empty == {"room": "nowhere", "tasks": [], "plan": [], "claims": [], "intents": []}


def test_task_actions_are_heartbeats(team: Script) -> None:
    """Claiming or updating a task moves the actor's last heartbeat (the supervisor reads it)."""
    declare(team, "t")
    team.now += 100
    take(team, "a1", "t")
    assert team.machine.world.rooms["default"].part(Roster).agents["a1"].last_heartbeat == team.now


def test_epic_completes_when_its_last_open_child_is_cancelled(team: Script) -> None:
    """An epic whose children are all done or cancelled is done, whichever of the two came last."""
    declare(team, "epic", epic=True)
    declare(team, "a", parent="epic")
    declare(team, "b", parent="epic")
    update(team, "a1", "a", status="done")
    update(team, "lead", "b", status="cancelled")
    assert status(team, "epic") == ["done"]
