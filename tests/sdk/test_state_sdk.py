"""agent.state.*, agent.eval, agent.wait_for and agent.subscribe on a real hub (and SyncAgent's state verbs);
a subscription is re-registered after the hub is SIGKILLed and restarted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from agent_sdk import Agent, Code, HubError, SyncAgent
from hub.protocol.frames import Trigger
from tests.conftest import HubProcess, seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


async def until(check: Callable[[], Awaitable[Any]], within_ms: float = 10_000, what: str = "it") -> Any:
    """Ask `check` (reading the hub) until it answers truthy."""
    deadline = asyncio.get_running_loop().time() + seconds(within_ms)
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def waiting_on(agent: Agent, name: str) -> str | None:
    """The condition `name` waits on, as the hub shows it in presence."""
    me = next(a for a in await agent.agents() if a["name"] == name)
    return me["waiting_on"] if me["status"] == "waiting" else None


async def next_trigger(stream: AsyncIterator[Trigger], within_ms: float = 10_000) -> Trigger:
    return await asyncio.wait_for(anext(stream), seconds(within_ms))


async def test_state_verbs(hub) -> None:
    """set/get/init/cas/increment/batch/delete/view/list through agent.state."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        assert await alice.state.set("turn", 0) == 1
        assert await alice.state.cas("turn", 1, 1) == 2
        with pytest.raises(HubError) as info:
            await bob.state.cas("turn", 1, 5)
        assert info.value.code == Code.CONFLICT and info.value.detail["current"]["version"] == 2
        assert await alice.state.init("next", 0) == 1
        with pytest.raises(HubError) as info:
            await bob.state.init("next", 7)
        assert info.value.code == Code.ALREADY_EXISTS and info.value.detail["current"]["value"] == 0
        assert await alice.state.increment("done") == 1
        assert await bob.state.increment("done", 2) == 3
        writes = await bob.state.batch(
            [{"key": "player", "value": "alice"}, {"key": "turn", "value": 1, "increment": True}]
        )
        assert [(w["key"], w["value"], w["version"]) for w in writes] == [
            ("player", "alice", 1),
            ("turn", 2, 3),
        ]
        with pytest.raises(HubError) as info:
            await bob.state.set("board", "x", if_='state._shared.player == "bob"')
        assert info.value.code == Code.PRECONDITION_FAILED
        with pytest.raises(HubError) as info:
            await bob.state.set("score", 1, scope="alice")
        assert info.value.code == Code.FORBIDDEN
        assert await alice.state.set("score", 9, scope="alice") == 1
        assert await alice.state.view("sum", "state._shared.turn + state.alice.score") == 11
        got = await bob.state.get("sum", scope="_view")
        assert (got["value"], got["expr"]) == (11, "state._shared.turn + state.alice.score")
        await alice.state.delete("next")
        listed = await bob.state.list()
        assert {(e["scope"], e["key"]) for e in listed} == {
            ("_shared", "turn"),
            ("_shared", "done"),
            ("_shared", "player"),
            ("alice", "score"),
            ("_view", "sum"),
        }
        with pytest.raises(HubError) as info:
            await alice.state.view("bad", "state._shared.turn +")
        assert info.value.code == Code.BAD_EXPRESSION


async def test_branches_through_the_sdk(hub) -> None:
    """state_at(branch) reads and writes a branch; diff and merge through agent.state."""
    async with Agent("alice", hub=hub.url) as alice:
        await alice.state.set("x", 1)
        await alice.state.branch_create("exp")
        exp = alice.state_at("exp")
        await exp.set("x", 2)
        assert (await alice.state.get("x"))["value"] == 1
        assert (await exp.get("x"))["value"] == 2
        assert await alice.eval("state._shared.x", branch="exp") == 2
        assert [b["branch"] for b in await alice.state.branches()] == ["exp"]
        diff = await alice.state.branch_diff("exp")
        assert [(c["key"], c["value"], c["source"]) for c in diff["changes"]] == [("x", 2, 1)]
        assert (await alice.state.branch_merge("exp"))["merged"] == 1
        assert (await alice.state.get("x"))["value"] == 2


async def test_eval(hub) -> None:
    """eval returns the value; a bad expression is bad_expression; a failing evaluation bad_request."""
    async with Agent("alice", hub=hub.url) as alice:
        await alice.state.set("n", 2)
        assert await alice.eval("state._shared.n * 21") == 42
        assert await alice.eval('agents["alice"].status') == "active"
        with pytest.raises(HubError) as info:
            await alice.eval("state._shared.n *")
        assert info.value.code == Code.BAD_EXPRESSION and info.value.detail["position"] is not None
        with pytest.raises(HubError) as info:
            await alice.eval("state._shared.nothing")
        assert info.value.code == Code.BAD_REQUEST


async def test_wait_for_returns_at_once_when_already_true(hub) -> None:
    """wait_for on a condition that already holds returns its value at once; presence is back after."""
    async with Agent("alice", hub=hub.url) as alice:
        await alice.state.set("ready", True)
        assert await alice.wait_for("state._shared.ready", timeout=seconds(10_000)) is True
        await until(lambda: _not_waiting(alice, "alice"), what="alice to stop waiting")


async def _not_waiting(agent: Agent, name: str) -> bool:
    return await waiting_on(agent, name) is None


async def test_wait_for_wakes_on_a_later_write_and_shows_waiting(hub) -> None:
    """While wait_for blocks the agent is `waiting` on its expression; another agent's write wakes it."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        expr = "state._shared.turn == 2"
        waiter = asyncio.create_task(alice.wait_for(expr, timeout=seconds(20_000)))
        assert await until(lambda: waiting_on(bob, "alice"), what="alice waiting") == expr
        await bob.state.set("turn", 1)
        await bob.state.set("turn", 2)
        assert await waiter is True
        await until(lambda: _not_waiting(bob, "alice"), what="alice back from waiting")


async def test_wait_for_times_out(hub) -> None:
    """wait_for on a condition that stays false raises timed_out."""
    async with Agent("alice", hub=hub.url) as alice:
        with pytest.raises(HubError) as info:
            await alice.wait_for("state._shared.never == 1", timeout=0.2)
        assert info.value.code == Code.TIMED_OUT
        await until(lambda: _not_waiting(alice, "alice"), what="the timed-out wait to be dropped")


async def test_subscribe_pushes_each_edge(hub) -> None:
    """subscribe yields a Trigger at once when already true, then on each false → true edge; a background
    subscription leaves presence alone (waiting=True shows it); a bad expression raises at once."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        await bob.state.set("light", "green")
        expr = 'state._shared.light == "green"'
        stream = alice.subscribe(expr, include=("state",))
        t = await next_trigger(stream)  # already true: pushed at once (and so registered)
        assert (t.condition, t.value, t.include["state"]["_shared"]["light"]) == (expr, True, "green")
        assert await waiting_on(bob, "alice") is None
        await bob.state.set("light", "green")  # still true: no trigger
        await bob.state.set("light", "red")
        await bob.state.set("light", "green")
        second = await next_trigger(stream)
        assert second.position > t.position + 1 and second.include["state"]["_shared"]["light"] == "green"
        await stream.aclose()  # type: ignore[attr-defined]
        shown = alice.subscribe('state._shared.light == "blue"', waiting=True)
        pending = asyncio.ensure_future(next_trigger(shown))
        assert (
            await until(lambda: waiting_on(bob, "alice"), what="alice waiting")
            == 'state._shared.light == "blue"'
        )
        await bob.state.set("light", "blue")
        assert (await pending).value is True
        await shown.aclose()  # type: ignore[attr-defined]
        await until(lambda: _not_waiting(bob, "alice"), what="alice back")
        with pytest.raises(HubError) as info:
            await anext(alice.subscribe("state._shared.light =="))
        assert info.value.code == Code.BAD_EXPRESSION


async def test_subscription_survives_sigkill_and_restart(hub_process: HubProcess) -> None:
    """After the hub is SIGKILLed and restarted on the same port, the SDK re-subscribes: a later write triggers."""
    url, port = hub_process.url, hub_process.port
    try:
        async with Agent("alice", hub=url) as alice:
            stream = alice.subscribe('state._shared.phase == "go"')
            pending = asyncio.ensure_future(next_trigger(stream, 30_000))
            with SyncAgent("bob", hub=url) as bob:
                bob.state.set("phase", "wait")
                bob.state.set("phase", "go")
            assert (await pending).value is True

            hub_process.kill()
            await until(_async(lambda: not alice.connected.is_set()), what="alice to notice the kill")
            close_pipes(hub_process)
            hub_process.start(port=port)
            await until(_async(alice.connected.is_set), within_ms=20_000, what="alice to reconnect")
            assert alice.reconnects == 1
            # the restarted hub holds phase == "go" (it survived): the re-registered condition holds at once
            again = await next_trigger(stream)
            assert again.value is True
            with SyncAgent("bob", hub=url) as bob:
                assert bob.state.get("phase")["version"] == 2
                bob.state.set("phase", "stop")
                bob.state.set("phase", "go")
            later = await next_trigger(stream)
            assert later.value is True and later.position > again.position
    finally:
        hub_process.kill()
        close_pipes(hub_process)


def close_pipes(hp: HubProcess) -> None:
    """A killed hub's pipes (the fixture leaves them open)."""
    assert hp.proc is not None
    for pipe in (hp.proc.stdout, hp.proc.stderr):
        if pipe is not None:
            pipe.close()


def _async(check: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return check()

    return run


def test_sync_agent_state_verbs(hub) -> None:
    """SyncAgent: the same state verbs, blocking; entries come back as dicts."""
    with SyncAgent("alice", hub=hub.url) as alice:
        assert alice.state.init("next", 0) == 1
        assert alice.state.cas("next", 1, 1) == 2
        with pytest.raises(HubError) as info:
            alice.state.cas("next", 1, 2)
        assert info.value.code == Code.CONFLICT
        assert alice.state.increment("next", 5) == 6
        assert [
            w["value"] for w in alice.state.batch([{"key": "a", "value": 1}, {"key": "b", "value": 2}])
        ] == [1, 2]
        assert alice.state.view("ab", "state._shared.a + state._shared.b") == 3
        assert alice.eval("state._view.ab") == 3
        alice.state.branch_create("exp")
        alice.state_at("exp").set("a", 10)
        assert [b["branch"] for b in alice.state.branches()] == ["exp"]
        assert alice.eval("state._view.ab", branch="exp") == 12
        alice.state.delete("a")
        assert alice.state_at("exp").get("a")["value"] == 10
