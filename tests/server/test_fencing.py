"""Fencing on a real hub (CLI.md "Fencing"): a holder paused past its TTL loses the claim to another agent at a
higher epoch, and every write it fences on the old epoch is refused with `fenced` and changes nothing; epochs
never repeat, across release and re-claim, handoff, lapse, task re-offers and a SIGKILLed hub."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent_sdk import Code, HubError, SyncAgent
from tests.conftest import HubProcess, ManualClock, ThreadHub, seconds

TTL = 30.0  # seconds of the hub's (manual) clock


@pytest.fixture(autouse=True)
def _tokens_here(client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


def refused(call: Callable[[], Any]) -> HubError:
    with pytest.raises(HubError) as info:
        call()
    return info.value


def snapshot(agent: SyncAgent) -> dict[str, Any]:
    """What a stale write could have changed: every state entry, the feed's head, claims and the plan."""
    return {
        "state": agent.state.list(),
        "head": agent.replies.list_messages(after=0, limit=1)["head"],
        "claims": agent.claims(),
        "tasks": agent.tasks.list(),
    }


def test_a_holder_paused_past_its_ttl_is_fenced_and_changes_nothing(
    timed_hub: ThreadHub, clock: ManualClock
) -> None:
    """Alice claims with a TTL and is paused past it; Bob takes the work at a higher epoch; every write Alice
    fences on her epoch (state set/init/cas/delete/batch, send, task update, release, handoff) is `fenced`, and
    the room is exactly as before; Bob's own fenced writes land."""
    with SyncAgent("alice", hub=timed_hub.url) as alice, SyncAgent("bob", hub=timed_hub.url) as bob:
        mine = alice.replies.claim("migrate", ["db/"], ttl=TTL)
        assert (mine["holder"], mine["held_by"], mine["epoch"]) == ("alice", "ttl", 1)
        fence = {"migrate": mine["epoch"]}
        assert alice.state.set("schema", "v1", fence=fence) == 1  # held: it lands
        alice.state.set("doomed", 1)
        alice.tasks.declare("T", "migrate the schema")
        alice.tasks.claim("T")

        clock.advance(TTL + 1)  # alice is paused: her claim's TTL runs out on the hub's clock
        err = refused(lambda: alice.state.set("schema", "v2", fence=fence))
        assert err.code == Code.FENCED and err.detail["current"] is None  # nobody holds it now

        theirs = bob.replies.claim("migrate", ["db/"], ttl=TTL)  # the lapse happens first, in the same step
        assert (theirs["holder"], theirs["epoch"], theirs.get("already_held")) == ("bob", 2, None)
        before = snapshot(bob)

        stale_writes: dict[str, Callable[[], Any]] = {
            "state set": lambda: alice.state.set("schema", "v2", fence=fence),
            "state increment": lambda: alice.state.increment("count", fence=fence),
            "state init": lambda: alice.state.init("fresh", 1, fence=fence),
            "state cas": lambda: alice.state.cas("schema", 1, "v2", fence=fence),
            "state delete": lambda: alice.state.delete("doomed", fence=fence),
            "state batch": lambda: alice.state.batch([{"key": "schema", "value": "v2"}], fence=fence),
            "send": lambda: alice.send("bob", "schema v2 is live", fence=fence, allow_unknown=True),
            "task update": lambda: alice.tasks.update("T", status="done", fence=fence),
            "release": lambda: alice.release("migrate", fence=fence),
            "handoff": lambda: alice.handoff("migrate", "alice", fence=fence),
        }
        for what, write in stale_writes.items():
            err = refused(write)
            assert err.code == Code.FENCED, what
            assert err.detail == {
                "work": "migrate",
                "epoch": 1,
                "current": {"holder": "bob", "epoch": 2},
            }, what
        assert snapshot(bob) == before  # nothing a stale write touched changed

        # guessing the new epoch does not help: the fence names the writer too
        assert refused(lambda: alice.state.set("schema", "v2", fence={"migrate": 2})).code == Code.FENCED
        assert bob.state.set("schema", "v2", fence={"migrate": 2}) == 2
        assert bob.send("alice", "v2 done", fence={"migrate": 2}, allow_unknown=True) == before["head"] + 1
        bob.release("migrate", fence={"migrate": 2})


def test_a_reoffered_task_fences_its_old_holder(timed_hub: ThreadHub, clock: ManualClock) -> None:
    """Alice's task is re-offered while she is idle; Bob claims it at epoch 2; Alice's writes fenced on
    `task:T=1` are `fenced`, her update of Bob's task is `forbidden`; Bob's `task:T=2` writes land."""
    with SyncAgent("alice", hub=timed_hub.url) as alice, SyncAgent("bob", hub=timed_hub.url) as bob:
        bob.heartbeat()
        alice.tasks.declare("T", "index the corpus")
        first = alice.tasks.claim("T")
        assert (first["holder"], first["epoch"]) == ("alice", 1)
        assert alice.tasks.update("T", note="half way", fence={"task:T": 1})["etag"] == first["etag"] + 1

        clock.advance(120)  # alice goes quiet; the supervisor (bob) re-offers her task
        assert bob.reoffer_task("T", 60)["status"] == "ready"
        second = bob.tasks.claim("T")
        assert (second["holder"], second["epoch"]) == ("bob", 2)

        before = snapshot(bob)
        err = refused(lambda: alice.state.set("index", "built", fence={"task:T": 1}))
        assert err.code == Code.FENCED and err.detail["current"] == {"holder": "bob", "epoch": 2}
        assert (
            refused(lambda: alice.send("bob", "done!", fence={"task:T": 1}, allow_unknown=True)).code
            == Code.FENCED
        )
        assert (
            refused(lambda: alice.tasks.update("T", status="done", fence={"task:T": 1})).code
            == Code.FORBIDDEN
        )
        assert snapshot(bob) == before

        done = bob.tasks.update("T", status="done", fence={"task:T": 2})
        assert (done["status"], done["holder"]) == ("done", "bob")


def test_several_fences_must_all_hold(timed_hub: ThreadHub) -> None:
    """A write fenced on two works lands only while its writer holds both at those epochs."""
    with SyncAgent("alice", hub=timed_hub.url) as alice, SyncAgent("bob", hub=timed_hub.url) as bob:
        bob.heartbeat()
        a = alice.claim("a", ["src/a"]).epoch
        alice.tasks.declare("T", "t")
        t = alice.tasks.claim("T")["epoch"]
        assert alice.state.set("k", 1, fence={"a": a, "task:T": t}) == 1
        alice.handoff("a", "bob")
        err = refused(lambda: alice.state.set("k", 2, fence={"a": a, "task:T": t}))
        assert (err.code, err.detail["work"]) == (Code.FENCED, "a")
        assert bob.claims()[0]["epoch"] == a + 1
        assert refused(lambda: bob.state.set("k", 2, fence={"zzz": 1})).code == Code.FENCED


# -- epochs never repeat ----------------------------------------------------------------------------------


class Team:
    """Agents that keep their tokens across hub restarts (a restarted hub listens on a new port)."""

    def __init__(self, hp: HubProcess) -> None:
        self.hp = hp
        self.tokens: dict[str, str] = {}

    def __call__(self, name: str) -> SyncAgent:
        agent = SyncAgent(name, hub=self.hp.url, token=self.tokens.get(name), save_token=False)
        if name not in self.tokens:
            self.tokens[name] = agent.join()
        return agent

    def lapse(self, name: str, work: str) -> None:
        """Wait, through the hub, until `work`'s TTL claim has lapsed (a condition wait, not a sleep)."""
        with self(name) as waiter:
            waiter.arm(f"{name}-lapse", None, condition=f'!("{work}" in claims)')
            waiter.woken(seconds(10_000))


@pytest.mark.parametrize("snapshot_every", ["0", "3"], ids=["log-only", "snapshots"])
def test_epochs_never_repeat_across_restarts_lapses_and_reoffers(
    hub_procs: Callable[..., HubProcess], snapshot_every: str
) -> None:
    """Per work (and `task:ID`), every grant takes a fresh, higher epoch: release and re-claim, handoff, a TTL
    lapse, a task given back or re-offered, and a SIGKILLed hub restarted on the same log (folded from the log
    alone, or from a snapshot); a holder re-claiming its own work keeps its epoch and is told `already_held`."""
    hp = hub_procs("--snapshot-every", snapshot_every)
    team = Team(hp)
    seen: dict[str, list[int]] = {"w": [], "task:T": []}

    def grant(name: str, work: str = "w", **kw: Any) -> dict[str, Any]:
        with team(name) as agent:
            view = agent.replies.claim(work, ["src/w"], **kw)
        seen[work].append(view["epoch"])
        return view

    def take_task(name: str) -> dict[str, Any]:
        with team(name) as agent:
            view = agent.tasks.claim("T")
        seen["task:T"].append(view["epoch"])
        return view

    for name in ("alice", "bob", "carol"):
        team(name).close()  # each joins once; its token outlives the hub's restarts
    grant("alice")
    with team("alice") as alice:
        again = alice.replies.claim("w", ["src/w"])
        assert (again["epoch"], again["already_held"]) == (seen["w"][-1], True)
        alice.release("w")
        alice.tasks.declare("T", "the task")
    grant("bob")
    take_task("alice")
    restored = hp.restart()
    assert ("snapshot=None" in restored) == (snapshot_every == "0"), restored

    with team("bob") as bob:
        (held,) = bob.claims()
        assert (held["holder"], held["epoch"]) == ("bob", seen["w"][-1])  # the live grant is back as it was
        handed = bob.replies.handoff("w", "carol")
        seen["w"].append(handed["epoch"])
    with team("alice") as alice:
        alice.tasks.update("T", status="ready", note="giving it back")
    take_task("bob")
    with team("carol") as carol:
        assert carol.reoffer_task("T", 0)["status"] == "ready"  # bob has no session: the supervisor's verb
        carol.release("w")
    take_task("carol")
    hp.restart()

    grant("alice", ttl=0.2)
    team.lapse("bob", "w")
    grant("bob")
    with team("bob") as bob:
        bob.release("w")
    hp.restart()

    grant("carol")
    with team("carol") as carol:
        carol.tasks.update("T", status="ready")
    take_task("alice")

    for work, epochs in seen.items():
        assert epochs == sorted(set(epochs)), f"{work}: epochs repeat or go back: {epochs}"
        assert epochs[0] == 1, work
    assert seen["w"] == [1, 2, 3, 4, 5, 6]
    assert seen["task:T"] == [1, 2, 3, 4]
