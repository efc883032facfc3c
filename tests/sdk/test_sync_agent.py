"""SyncAgent (blocking): the same verbs as Agent, and the implicit join the CLI relies on."""

from __future__ import annotations

import socket

import pytest

from agent_sdk import Code, HubError, SyncAgent
from hub.protocol import commands as c
from tests.conftest import seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


def test_send_joins_implicitly(hub) -> None:
    """The first send by a name that never joined joins it and returns the seq; the whole reply (under
    `replies`) also names the unknown targets."""
    with SyncAgent("alice", hub=hub.url) as alice:
        assert alice.token is None
        assert alice.send("bob", "hi", allow_unknown=True) == 1
        assert alice.token is not None
        result = alice.replies.send(["bob", "carol"], {"n": 2}, kind="k", priority=True, allow_unknown=True)
        assert result["seq"] == 2 and result["unknown"] == ["bob", "carol"]


def test_attach_and_messages(hub) -> None:
    """attach() binds the session; messages() yields what is addressed to the agent and stops when idle."""
    with SyncAgent("bob", hub=hub.url) as bob, SyncAgent("alice", hub=hub.url) as alice:
        bob.attach()
        alice.send("bob", "one", allow_unknown=True)
        alice.send("carol", "not bob's", allow_unknown=True)
        alice.send("default/*", "two", allow_unknown=True)
        alice.send("bob", "end", allow_unknown=True)
        got = []
        for m in bob.messages(timeout=seconds(5_000)):
            got.append(m.body)
            if m.body == "end":
                break
        assert got == ["one", "two", "end"]


def test_attach_resumes_from_cursor(hub) -> None:
    """A SyncAgent that attaches with a cursor gets what it missed, then live messages, no repeats."""
    with SyncAgent("alice", hub=hub.url) as alice:
        alice.send("bob", "before", allow_unknown=True)
        with SyncAgent("bob", hub=hub.url) as bob:
            bob.attach()
            alice.send("bob", "first", allow_unknown=True)
            first = next(bob.messages(timeout=seconds(5_000)))
            assert first.body == "first"
            cursor = bob.cursor
        alice.send("bob", "missed", allow_unknown=True)
        with SyncAgent("bob", hub=hub.url) as bob:
            bob.cursor = cursor
            bob.attach()
            alice.send("bob", "live", allow_unknown=True)
            got = []
            for m in bob.messages(timeout=seconds(5_000)):
                got.append(m.body)
                if m.body == "live":
                    break
        assert got == ["missed", "live"]


def test_claim_message(hub) -> None:
    """claim_message: the first wins; the second gets already_claimed naming the holder."""
    with SyncAgent("alice", hub=hub.url) as alice, SyncAgent("bob", hub=hub.url) as bob:
        seq = alice.send("default/*", "job", allow_unknown=True)
        assert bob.claim_message(seq) == "bob"
        with pytest.raises(HubError) as err:
            alice.claim_message(seq)
        assert err.value.code == Code.ALREADY_CLAIMED and err.value.detail["holder"] == "bob"


def test_heartbeat_agents_status(hub) -> None:
    """heartbeat(status) sets presence; agents() and status() read it."""
    with SyncAgent("alice", hub=hub.url) as alice:
        assert alice.heartbeat("idle")["status"] == "idle"
        assert [(a["name"], a["status"]) for a in alice.agents()] == [("alice", "idle")]
        status = alice.status()
        assert status["agents"] == 1 and status["rooms"] == 1 and status["log_events"] >= 3
        assert alice.list_messages() == []
        assert alice.replies.list_messages() == {"messages": [], "head": 0}


def test_join_rotates(hub) -> None:
    """join(rotate=True) issues a new token; the old one is then `unauthorized`."""
    with SyncAgent("alice", hub=hub.url) as alice:
        old = alice.join()
        assert alice.join() == old
        new = alice.join(rotate=True)
        assert old != new
    with SyncAgent("alice", hub=hub.url, token=old) as stale:
        stale.implicit_join = False
        with pytest.raises(HubError) as err:
            stale.heartbeat()
        assert err.value.code == Code.UNAUTHORIZED


def test_forbidden_on_bound_session(hub) -> None:
    """A session attached as alice cannot act as bob, even with bob's own token."""
    with SyncAgent("bob", hub=hub.url) as bob:
        bob_token = bob.join()
    with SyncAgent("alice", hub=hub.url) as alice:
        alice.attach()
        as_bob = c.Send(id=alice.next_id(), token=bob_token, name="bob", to=("carol",))
        with pytest.raises(HubError) as err:
            alice.request(as_bob)
        assert err.value.code == Code.FORBIDDEN


def test_unreachable() -> None:
    """A SyncAgent with no hub to reach raises `unreachable`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HubError) as err:
        SyncAgent("alice", hub=f"ws://127.0.0.1:{port}").connect()
    assert err.value.code == Code.UNREACHABLE


def test_arm_and_woken(hub) -> None:
    """arm() then woken(): a message for the agent wakes it; nothing within the timeout is `timed_out`."""
    with SyncAgent("bob", hub=hub.url) as waiter, SyncAgent("alice", hub=hub.url) as alice:
        waiter.arm("rx", "bob")
        seq = alice.send("bob", "wake", allow_unknown=True)
        wake = waiter.woken(seconds(5_000))
        assert wake.reason == "message" and wake.message is not None and wake.message.seq == seq
    with SyncAgent("bob", hub=hub.url) as waiter:
        waiter.arm("rx", "bob")
        with pytest.raises(HubError) as err:
            waiter.woken(seconds(200))
        assert err.value.code == Code.TIMED_OUT
