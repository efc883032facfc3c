"""Waiting is visible live: an armed `synapse wait` (a real process) shows its agent `waiting` with the waiter's
name in `synapse agents`, in `synapse tail` (an `agent.presence` Notice, pushed at once), and to subscriptions
reading `agents[...]`; when the wait ends (woken, or its connection dropped) the status goes back."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agent_sdk import SyncAgent
from hub.protocol import commands as c
from hub.protocol.frames import Trigger
from tests.cli.test_wait import Waiters, finish
from tests.conftest import seconds, synapse_cmd

WITHIN = 20_000  # ms (scaled): a bound on how long an expected frame may take, never a synchronization


class Tail:
    """`synapse tail --json` as a real process; its lines are read on a thread, so a test waits on them."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            synapse_cmd("tail", "--json", "--since", "0"),
            env={**env, "SYNAPSE_HUB": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            self.lines.put(json.loads(text))

    def until(self, want: Any, what: str) -> dict[str, Any]:
        """The first frame from here on that `want` accepts (fails after WITHIN)."""
        while True:
            try:
                frame = self.lines.get(timeout=seconds(WITHIN))
            except queue.Empty:
                raise AssertionError(f"tail never showed {what}") from None
            if want(frame):
                return frame

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=seconds(10_000))


def presence_of(name: str, status: str) -> Any:
    def want(frame: dict[str, Any]) -> bool:
        detail = frame.get("detail") or {}
        return (
            frame.get("type") == "Notice"
            and frame.get("kind") == "agent.presence"
            and detail.get("name") == name
            and detail.get("status") == status
        )

    return want


@pytest.fixture
def tail(hub, client_env) -> Iterator[Tail]:
    t = Tail(hub.url, client_env)
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def alice(hub, client_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncAgent]:
    """A sender; bob (who waits) has joined, so his presence can show his waiter."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    with SyncAgent("bob", hub=hub.url) as bob:
        bob.join()
    with SyncAgent("alice", hub=hub.url) as agent:
        agent.join()
        yield agent


def triggered(watcher: SyncAgent, sub: int) -> Trigger:
    """The next Trigger of subscription `sub` (fails after WITHIN)."""
    while True:
        frame = watcher.next_frame(timeout=seconds(WITHIN))
        if type(frame) is Trigger and frame.sub == sub:
            return frame


def subscribe(watcher: SyncAgent, expr: str) -> int:
    return int(watcher.request(watcher.read(c.Subscribe, expr=expr))["sub"])


def test_message_waiter_shows_waiting_live(waiters: Waiters, alice: SyncAgent, tail: Tail, cli) -> None:
    """`synapse wait --name bob-rx` armed: bob is `waiting` (waiter bob-rx) in agents, tail and CEL; woken, he
    is `active` again, everywhere."""
    tail.until(lambda f: (f.get("event") or {}).get("type") == "AgentJoined", "the backlog")  # it follows
    with SyncAgent(hub=alice.hub) as watcher:
        waiting = subscribe(watcher, 'agents["bob"].status == "waiting"')
        proc = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "120")

        shown = tail.until(presence_of("bob", "waiting"), "bob waiting")
        assert shown["room"] == "default"
        assert shown["detail"]["waiter"] == "bob-rx" and shown["detail"].get("waiting_on") is None
        assert triggered(watcher, waiting).value is True

        listed = {a["name"]: a for a in json.loads(cli("--json", "agents").stdout)}
        assert (listed["bob"]["status"], listed["bob"]["waiter"]) == ("waiting", "bob-rx")
        assert (listed["alice"]["status"], listed["alice"].get("waiter")) == ("active", None)
        row = next(line for line in cli("agents").stdout.splitlines() if line.startswith("bob "))
        assert row.split()[1] == "waiting" and row.endswith("messages (waiter bob-rx)")
        assert alice.eval('agents["bob"].status') == "waiting"

        back = subscribe(watcher, 'agents["bob"].status == "active"')
        seq = alice.send("bob", "wake up", allow_unknown=True)
        code, out, err = finish(proc)
        assert code == 0 and out.startswith(f"#{seq} "), err

        shown = tail.until(presence_of("bob", "active"), "bob active again")
        assert shown["detail"].get("waiter") is None
        assert triggered(watcher, back).value is True
        listed = {a["name"]: a for a in json.loads(cli("--json", "agents").stdout)}
        assert (listed["bob"]["status"], listed["bob"].get("waiter")) == ("active", None)


def test_killed_waiter_stops_showing(waiters: Waiters, alice: SyncAgent, tail: Tail, cli) -> None:
    """A waiter whose process dies (its connection drops) stops showing: the tail sees bob `active` again."""
    tail.until(lambda f: (f.get("event") or {}).get("type") == "AgentJoined", "the backlog")
    proc = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "120")
    tail.until(presence_of("bob", "waiting"), "bob waiting")
    proc.kill()
    proc.communicate(timeout=seconds(10_000))
    assert tail.until(presence_of("bob", "active"), "bob active again")["detail"].get("waiter") is None
    listed = {a["name"]: a for a in json.loads(cli("--json", "agents").stdout)}
    assert (listed["bob"]["status"], listed["bob"].get("waiter")) == ("active", None)


def test_timed_out_waiter_stops_showing(waiters: Waiters, alice: SyncAgent, tail: Tail) -> None:
    """A wait that times out (exit 3) ends its waiter: bob shows `active` again."""
    tail.until(lambda f: (f.get("event") or {}).get("type") == "AgentJoined", "the backlog")
    proc = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "0.5")
    tail.until(presence_of("bob", "waiting"), "bob waiting")
    assert finish(proc)[0] == 3
    tail.until(presence_of("bob", "active"), "bob active again")


def test_condition_waiter_shows_its_expression(waiters: Waiters, alice: SyncAgent, tail: Tail, cli) -> None:
    """A condition waiter shows `waiting` on its expression (in agents and in the tail), and the waiter's name."""
    tail.until(lambda f: (f.get("event") or {}).get("type") == "AgentJoined", "the backlog")
    proc = waiters.start("--name", "bob", "--condition", 'state._shared.turn == "bob"', "--timeout", "120")
    shown = tail.until(presence_of("bob", "waiting"), "bob waiting")
    assert shown["detail"]["waiting_on"] == 'state._shared.turn == "bob"'
    assert shown["detail"]["waiter"] == "bob"
    row = next(line for line in cli("agents").stdout.splitlines() if line.startswith("bob "))
    assert row.split()[1] == "waiting" and row.endswith('state._shared.turn == "bob"')
    proc.kill()
    proc.communicate(timeout=seconds(10_000))
    tail.until(presence_of("bob", "active"), "bob active again")
