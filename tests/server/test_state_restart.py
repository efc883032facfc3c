"""Shared state survives a hub SIGKILL and restart (from the log alone, or from a snapshot plus the log):
entries with their versions, views, branches (isolated as forked), and every acknowledged increment."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Code, HubError, SyncAgent
from hub.core.state import State
from tests.conftest import HubProcess, fold, seconds

WRITERS = ("w1", "w2", "w3")


@pytest.fixture(params=[0, 7], ids=["log-only", "snapshot-every-7"])
def hub_proc(request: pytest.FixtureRequest, db_path: Path, client_env: dict[str, str]) -> Any:
    hp = HubProcess(db_path, client_env, "--snapshot-every", str(request.param)).start()
    try:
        yield hp
    finally:
        hp.kill()
        hp.close_pipes()


def history(url: str) -> None:
    """Every kind of state write, views over views, branches from branches, a merge and refusals."""
    with SyncAgent("alice", hub=url, save_token=False) as a, SyncAgent("bob", hub=url, save_token=False) as b:
        a.join()
        b.join()
        a.state.set("turn", 0)
        a.state.init("task:next", 0)
        for v in range(1, 4):
            b.state.cas("task:next", v, v)
        a.state.batch(
            [{"key": "phase", "value": "voting"}, {"key": "votes", "value": 0}, {"key": "quorum", "value": 1}]
        )
        b.state.increment("votes")
        a.state.set("score", 5, scope="alice")
        b.state.set("score", 7, scope="bob")
        a.state.view("quorum_met", "state._shared.votes >= state._shared.quorum")
        a.state.view("status", '(state._view.quorum_met ? "met" : "open") + ":" + string(state.alice.score)')
        a.state.set("tmp", "x")
        a.state.delete("tmp")
        a.state.branch_create("exp")
        a.state_at("exp").set("turn", 100)
        a.state_at("exp").delete("phase")
        a.state.branch_create("exp2", "exp")
        a.state_at("exp2").set("only2", True)
        a.state.set("turn", 1)  # the main line moves on after the forks
        a.state.branch_create("merged")
        a.state_at("merged").set("from_branch", "yes")
        a.state.branch_merge("merged")
        with pytest.raises(HubError):
            b.state.cas("turn", 1, 2)  # refused: nothing logged


def reads(url: str) -> dict[str, Any]:
    """Everything a client can read about the room's state."""
    with SyncAgent(hub=url) as r:
        out: dict[str, Any] = {"main": r.state.list(), "branches": r.state.branches()}
        for b in out["branches"]:
            out[f"branch:{b['branch']}"] = r.state_at(b["branch"]).list()
            out[f"diff:{b['branch']}"] = r.state.branch_diff(b["branch"])
        out["eval"] = r.eval("[state._view.status, state._shared.turn, state.bob.score]")
        out["eval:exp"] = r.eval("[state._view.status, state._shared.turn, has(state._shared.phase)]", "exp")
        return out


def test_state_survives_sigkill_and_restart(hub_proc: HubProcess, db_path: Path) -> None:
    """Entries, versions, views, branches and diffs read the same after a SIGKILL and restart, equal the log's
    fold, and the restarted hub carries on: CAS at the surviving version, views and conditions work."""
    history(hub_proc.url)
    before = reads(hub_proc.url)
    assert before["eval"] == ["met:5", 1, 7]
    assert before["eval:exp"] == ["met:5", 100, False]
    restored = hub_proc.restart()
    assert ("snapshot=None" in restored) == (hub_proc.args[-1] == "0"), restored
    after = reads(hub_proc.url)
    assert after == before

    machine = fold(db_path)
    room = machine.world.rooms["default"]
    folded = {
        (scope, key): (e.value, e.version)
        for scope, keys in room.part(State).scopes.items()
        for key, e in keys.items()
    }
    listed = {
        (e["scope"], e["key"]): (e["value"], e["version"]) for e in after["main"] if e["scope"] != "_view"
    }
    assert folded == listed

    with SyncAgent("bob-again", hub=hub_proc.url, save_token=False) as b:  # bob's token was not kept
        b.join()
        turn = b.state.get("turn")
        assert (turn["value"], turn["version"]) == (1, 2)
        assert b.state.cas("turn", 2, 2) == 3
        assert b.state.get("task:next")["version"] == 4
        b.state.set("quorum", 9)
        assert b.eval("state._view.status") == "open:5"
        b.arm("bob-w", None, condition="state._shared.turn == 3")
        with SyncAgent("alice-again", hub=hub_proc.url, save_token=False) as a:
            a.join()
            a.state.set("turn", 3)
        assert b.woken(seconds(10_000)).value is True


class Incrementers:
    """Three SyncAgents incrementing their own counters as fast as acknowledgements come back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: dict[str, int] = dict.fromkeys(WRITERS, 0)
        self.errors: dict[str, BaseException] = {}
        self.count = 0
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in WRITERS]

    def _run(self, name: str) -> None:
        try:
            with SyncAgent(name, hub=self.url, save_token=False) as agent:
                agent.join()
                while True:
                    value = agent.state.increment(f"count-{name}")
                    self.acked[name] = value
                    with self.cond:
                        self.count += 1
                        self.cond.notify_all()
        except BaseException as exc:  # the hub going away ends the thread
            self.errors[name] = exc
            with self.cond:
                self.cond.notify_all()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def wait_for(self, acks: int) -> None:
        with self.cond:
            reached = self.cond.wait_for(lambda: self.count >= acks or self.errors, seconds(60_000))
        assert reached and not self.errors, self.errors

    def join(self) -> None:
        for t in self.threads:
            t.join(seconds(30_000))
            assert not t.is_alive()


def test_acknowledged_increments_survive_sigkill(hub_proc: HubProcess) -> None:
    """SIGKILL under three busy incrementers: every acknowledged increment is there (at most the one in
    flight more), and each counter's version equals its value."""
    inc = Incrementers(hub_proc.url)
    inc.start()
    try:
        inc.wait_for(300)
        hub_proc.kill()
    finally:
        inc.join()
    hub_proc.close_pipes()
    for name, exc in inc.errors.items():
        assert isinstance(exc, HubError) and exc.code == Code.DISCONNECTED, f"{name}: {exc!r}"
    hub_proc.start()
    with SyncAgent(hub=hub_proc.url) as r:
        for name in WRITERS:
            entry = r.state.get(f"count-{name}")
            assert inc.acked[name] <= entry["value"] <= inc.acked[name] + 1, name
            assert entry["version"] == entry["value"]
