"""Agent reconnects by itself after the hub is SIGKILLed and restarted; its stream has no gap and no repeat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent_sdk import Agent, Message, SyncAgent
from tests.conftest import HubProcess, seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


def close_pipes(hp: HubProcess) -> None:
    """A killed hub's pipes (the fixture leaves them open)."""
    assert hp.proc is not None
    for pipe in (hp.proc.stdout, hp.proc.stderr):
        if pipe is not None:
            pipe.close()


async def until(check, within_ms: float = 15_000, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + seconds(within_ms)
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def take(stream: AsyncIterator[Message], n: int, within_ms: float = 15_000) -> list[Message]:
    return [await asyncio.wait_for(anext(stream), seconds(within_ms)) for _ in range(n)]


async def test_stream_continues_across_sigkill_and_restart(hub_process: HubProcess) -> None:
    """Before the kill, during the outage (read from the feed after restart) and after: each message once, in order."""
    port = hub_process.port
    url = hub_process.url
    try:
        async with Agent("bob", hub=url) as bob:
            stream = bob.messages()
            with SyncAgent("alice", hub=url) as alice:
                alice.send("bob", "before-1", allow_unknown=True)
                alice.send("carol", "not for bob", allow_unknown=True)
                alice.send("default/*", "before-2", allow_unknown=True)
            got = await take(stream, 2)

            hub_process.kill()
            await until(lambda: not bob.connected.is_set(), what="bob to notice the hub is gone")
            close_pipes(hub_process)
            # Restart and send while this loop is blocked: bob cannot have reconnected yet, so these
            # messages reach him only through the feed when his Agent re-attaches from its cursor.
            hub_process.start(port=port)
            with SyncAgent("alice", hub=url) as alice:
                alice.send("bob", "outage-1", allow_unknown=True)
                alice.send("carol", "still not for bob", allow_unknown=True)
                alice.send("all", "outage-2", allow_unknown=True)
            assert bob.reconnects == 0
            got += await take(stream, 2)

            await until(bob.connected.is_set, what="bob to reconnect")
            assert bob.reconnects == 1
            with SyncAgent("alice", hub=url) as alice:
                alice.send("bob", "after-1", allow_unknown=True)
                alice.send("bob,carol", "after-2", allow_unknown=True)
                alice.send("bob", "end", allow_unknown=True)
            got += await take(stream, 3)

            assert [m.body for m in got] == [
                "before-1",
                "before-2",
                "outage-1",
                "outage-2",
                "after-1",
                "after-2",
                "end",
            ]
            feed = await bob.list_messages(for_="bob")
            assert [m.seq for m in got] == [m["seq"] for m in feed]
            assert bob.reconnects == 1
            listed = {a["name"]: a for a in await bob.agents()}
            assert listed["bob"]["sessions"] == 1 and listed["bob"]["status"] == "active"
            seq = await bob.send("alice", "bob can send again", allow_unknown=True)
            assert seq == (await bob.list_messages())[-1]["seq"]
    finally:
        hub_process.kill()
        close_pipes(hub_process)


async def test_wait_for_armed_while_reconnecting_waits_for_the_session(hub_process: HubProcess) -> None:
    """A wait_for (a subscription) started while the Agent is reconnecting is registered once it is back and
    is woken, instead of failing at once with `disconnected` (a caller retrying that would spin)."""
    port, url = hub_process.port, hub_process.url
    try:
        async with Agent("waiter", hub=url) as waiter:
            hub_process.kill()
            await until(lambda: not waiter.connected.is_set(), what="the waiter to notice the hub is gone")
            close_pipes(hub_process)
            armed = asyncio.create_task(waiter.wait_for("state._shared.bell == 1", timeout=seconds(30_000)))
            await asyncio.sleep(0)  # it runs up to its wait for the session
            assert not armed.done(), armed
            hub_process.start(port=port)
            await until(waiter.connected.is_set, what="the waiter to reconnect")
            async with Agent("ringer", hub=url) as ringer:
                await ringer.state.set("bell", 1)
            assert await armed is True
    finally:
        hub_process.kill()
        close_pipes(hub_process)
