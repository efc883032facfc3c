"""Agent.wait (async) on a real hub: a wake hands over the whole burst; a settle collects what arrives meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from agent_sdk import Agent
from hub.protocol.errors import Code, HubError
from tests.conftest import seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


async def test_wait_returns_every_message_waiting(hub) -> None:
    """Five messages sent before the wait: one wait returns all five, oldest first; the next one what follows."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        seqs = [await alice.send("bob", i) for i in range(5)]
        got = await bob.wait(after=0, timeout=seconds(10_000))
        assert [m.seq for m in got] == seqs and [m.body for m in got] == [0, 1, 2, 3, 4]
        later = asyncio.create_task(bob.wait(after=seqs[-1], timeout=seconds(10_000)))
        seq = await alice.send("bob", "later")
        assert [m.seq for m in await later] == [seq]


async def test_wait_times_out_and_can_wait_again(hub) -> None:
    """A wait that timed out raises `timed_out`; the next wait on the same connection replaces it."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        with pytest.raises(HubError) as info:
            await bob.wait(timeout=0.05)
        assert info.value.code == Code.TIMED_OUT
        seq = await alice.send("bob", "now")
        assert [m.seq for m in await bob.wait(after=0, timeout=seconds(10_000))] == [seq]


async def test_settle_out_of_range_is_refused(hub) -> None:
    """A settle over 60 s is refused at the hub's edge with `bad_request` naming the field."""
    async with Agent("bob", hub=hub.url) as bob:
        with pytest.raises(HubError) as info:
            await bob.wait(settle=61, timeout=seconds(10_000))
        assert info.value.code == Code.BAD_REQUEST and "settle" in info.value.message
