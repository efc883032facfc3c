"""A client given a list of hub addresses connects to the first that answers and, when its hub dies, fails over
to the next and resumes there: the stream from its last seq, subscriptions, waiters, session-bound claims.

Two hubs of one deployment share one log; with SQLite that is simulated by starting hub 2 on hub 1's file once
hub 1 is dead (tests.conftest.Pair)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from agent_sdk import Agent, Code, HubError, Message, SyncAgent, Trigger, verbs
from agent_sdk.base import hubs_of
from tests.conftest import Pair, Refusing, ThreadHub, free_port, seconds

RETRIES = 30  # rounds of addresses a SyncAgent tries after a drop: room for hub 2 to start on a busy machine


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


async def until(check, within_ms: float = 20_000, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + seconds(within_ms)
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def take(stream: AsyncIterator[Message], n: int, within_ms: float = 20_000) -> list[Message]:
    return [await asyncio.wait_for(anext(stream), seconds(within_ms)) for _ in range(n)]


async def armed(agent: Agent, waiting: asyncio.Task[list[Message]]) -> None:
    """Until the hub says `agent`'s waiter is armed (its wait runs in `waiting`)."""
    while True:
        try:
            await agent.why("wait", agent.need_name())
            return
        except HubError as exc:
            assert exc.code == Code.NOT_FOUND and not waiting.done(), exc


def test_the_list_is_parsed_once() -> None:
    """Blanks are dropped, a list of strings works too; an empty list or a bad address is refused clearly."""
    assert hubs_of(" ws://a:1 , wss://b:2,, ") == ("ws://a:1", "wss://b:2")
    assert hubs_of(["ws://a:1", " ws://[::1]:2 "]) == ("ws://a:1", "ws://[::1]:2")
    assert hubs_of("ws://a") == ("ws://a",)
    for bad in (" , ", [], "http://a:1", "ws://:1", "ws://a:99999", "ws://a:x", "a:1", "ws://a:1,b"):
        with pytest.raises(HubError) as caught:
            hubs_of(bad)
        assert caught.value.code == Code.BAD_REQUEST and caught.value.detail["field"] == "hub", bad
    with pytest.raises(HubError, match="not a hub address"):
        SyncAgent("x", hub="ws://127.0.0.1:1,http://127.0.0.1:2")
    agent = Agent("x", hub=["ws://127.0.0.1:1", "ws://127.0.0.1:2"])
    assert agent.hubs == ("ws://127.0.0.1:1", "ws://127.0.0.1:2") and agent.hub == "ws://127.0.0.1:1"


def test_the_environment_takes_a_list(hub: ThreadHub, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"
    monkeypatch.setenv("SYNAPSE_HUB", f"{closed},{hub.url}")
    with SyncAgent("envy") as agent:
        agent.join()
        assert agent.hub == hub.url and agent.hubs == (closed, hub.url)


def test_sync_skips_a_closed_port_and_a_503(
    hub: ThreadHub, refusing: Refusing, caplog: pytest.LogCaptureFixture
) -> None:
    """The first address refuses the connection, the second the upgrade (503, as a standby): the third serves."""
    closed = f"ws://127.0.0.1:{free_port()}"
    with (
        caplog.at_level(logging.WARNING, "agent_sdk"),
        SyncAgent("sync-a", hub=[closed, refusing.url, hub.url]) as agent,
    ):
        agent.join()
        assert agent.hub == hub.url
        assert agent.status()["rooms"] >= 1
    assert refusing.refused == 1
    assert f"agent.failover from={closed} to={hub.url}" in caplog.text


async def test_async_skips_a_closed_port_and_a_503(hub: ThreadHub, refusing: Refusing) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"
    async with Agent("async-a", hub=f"{closed},{refusing.url},{hub.url}") as agent:
        assert agent.hub == hub.url
        assert (await agent.status())["rooms"] >= 1
    assert refusing.refused == 1


async def test_none_answers(refusing: Refusing) -> None:
    """Every address fails: `unreachable`, naming each with its own reason."""
    closed = f"ws://127.0.0.1:{free_port()}"
    with pytest.raises(HubError) as caught:
        await Agent("nobody", hub=[closed, refusing.url]).connect()
    assert caught.value.code == Code.UNREACHABLE
    assert closed in caught.value.message and refusing.url in caught.value.message
    assert "503" in caught.value.message
    with pytest.raises(HubError) as caught:
        SyncAgent("nobody", hub=[refusing.url, closed]).connect()
    assert caught.value.code == Code.UNREACHABLE and "503" in caught.value.message


async def test_agent_fails_over_and_resumes(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    """Hub 1 dies; the Agent moves to hub 2 and resumes: each message once and in order (those sent while it
    was away included), its subscription triggers again, its waiter wakes, its session-bound claim held."""
    async with Agent("bob", hub=pair.hubs) as bob:
        stream = bob.messages()
        triggers: asyncio.Queue[Trigger] = asyncio.Queue()

        async def watch() -> None:
            async for trigger in bob.subscribe("state._shared.bell > 0"):
                triggers.put_nowait(trigger)

        watcher = asyncio.create_task(watch())
        claim = await bob.claim("api", ["src/api/**"])
        with SyncAgent("alice", hub=pair.hubs, retries=RETRIES) as alice:
            alice.send("bob", "before", allow_unknown=True)
            alice.state.set("bell", 1)
        assert [m.body for m in await take(stream, 1)] == ["before"]
        assert (await asyncio.wait_for(triggers.get(), seconds(20_000))).value is True

        with caplog.at_level(logging.WARNING, "agent_sdk"):
            pair.kill()
            await until(lambda: not bob.connected.is_set(), what="bob to notice hub 1 is gone")
            pair.start_two()  # sent while this loop is blocked: bob reads these from his cursor on hub 2
            with SyncAgent("alice", hub=pair.hubs, retries=RETRIES) as alice:
                alice.send("bob", "during", allow_unknown=True)
                assert alice.hub == pair.url2
            await until(bob.connected.is_set, what="bob to reconnect")
        assert bob.hub == pair.url2 and bob.reconnects == 1
        assert f"agent.failover from={pair.one.url} to={pair.url2}" in caplog.text
        # re-registered on hub 2, where the bell is still rung: it triggers at once
        assert (await asyncio.wait_for(triggers.get(), seconds(20_000))).value is True

        waiting = asyncio.create_task(bob.wait(timeout=seconds(20_000)))
        await armed(bob, waiting)
        with SyncAgent("alice", hub=pair.hubs) as alice:
            alice.state.set("bell", 0)
            alice.state.set("bell", 2)  # false, then true again: a trigger from hub 2
            alice.send("bob", "after", allow_unknown=True)
        assert [m.body for m in await asyncio.wait_for(waiting, seconds(20_000))] == ["after"]
        assert (await asyncio.wait_for(triggers.get(), seconds(20_000))).value is True
        got = await take(stream, 2)
        assert [m.body for m in got] == ["during", "after"]
        feed = await bob.list_messages(for_="bob")
        assert [m["body"] for m in feed] == ["before", "during", "after"]

        held = {c["work"]: c for c in await bob.claims()}
        assert held["api"]["holder"] == "bob" and held["api"]["epoch"] == claim.epoch
        watcher.cancel()


async def test_a_waiter_armed_before_the_kill_wakes_on_hub_2(pair: Pair) -> None:
    """`wait` armed on hub 1 is armed again on hub 2 (after the seq of its first arm) and woken there."""
    async with Agent("carol", hub=pair.hubs) as carol:
        waiting = asyncio.create_task(carol.wait(timeout=seconds(30_000)))
        await armed(carol, waiting)
        pair.switch()
        with SyncAgent("dave", hub=pair.hubs, retries=RETRIES) as dave:
            seq = dave.send("carol", "wake up", allow_unknown=True)
        woke = await asyncio.wait_for(waiting, seconds(30_000))
        assert [(m.seq, m.body) for m in woke] == [(seq, "wake up")]
        assert carol.hub == pair.url2


def test_sync_waiter_reads_and_sends_fail_over(pair: Pair) -> None:
    """SyncAgent: a waiter armed on hub 1 is woken by a message sent on hub 2; a send lost with hub 1 is sent
    again on hub 2 with its key (delivered once); a read after the drop is made again on hub 2."""
    with SyncAgent("erin", hub=pair.hubs, retries=RETRIES) as erin:
        erin.arm("erin", "erin")
        with (
            SyncAgent("frank", hub=pair.hubs, retries=RETRIES) as frank,
            SyncAgent("gina", hub=pair.hubs, retries=RETRIES) as gina,
        ):
            first = frank.send("zed", "once", key="k-1", allow_unknown=True)
            gina.join()
            pair.switch()
            assert frank.send("zed", "once", key="k-1", allow_unknown=True) == first
            assert frank.hub == pair.url2
            seq = frank.send("erin", "after the switch", allow_unknown=True)
            assert [m["body"] for m in frank.list_messages()] == ["once", "after the switch"]
            assert gina.list_messages() == [] and gina.hub == pair.url2
        wake = erin.woken(seconds(30_000))
        assert erin.hub == pair.url2
        assert [(m.seq, m.body) for m in verbs.handed(wake)] == [(seq, "after the switch")]
