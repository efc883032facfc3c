"""Agent and SyncAgent offer the same verbs (agent_sdk.verbs): the table is checked statically (`drift()`), a
drift of either client is caught, and the same script run through both on two real hubs returns the same
values; SyncAgent's subscribe and wait_for; the package's public names are pinned."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agent_sdk
from agent_sdk import Agent, Claim, Code, HubError, SyncAgent, SyncClaim
from agent_sdk.aio import AsyncState
from agent_sdk.parity import drift
from agent_sdk.sync import SyncState, SyncTasks
from agent_sdk.verbs import VERBS
from hub.protocol import commands as c
from hub.protocol.frames import Trigger
from tests.conftest import ThreadHub, hub_config, seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


@pytest.fixture
def second_hub(tmp_path: Path) -> Iterator[ThreadHub]:
    th = ThreadHub(hub_config(tmp_path / "second.db"))
    try:
        yield th
    finally:
        th.stop()


def test_agent_sdk_all_is_pinned() -> None:
    assert agent_sdk.__all__ == [
        "Agent",
        "Claim",
        "Code",
        "HubError",
        "Message",
        "Notice",
        "SyncAgent",
        "SyncClaim",
        "Trigger",
    ]
    for name in agent_sdk.__all__:
        assert getattr(agent_sdk, name) is not None


def test_the_clients_are_in_step_with_the_verb_table() -> None:
    assert drift() == []


def test_every_verb_of_the_table_is_documented_in_both_clients() -> None:
    for path in VERBS:
        ns, _, name = path.rpartition(".")
        for client in (Agent, SyncAgent):
            owner = {"": client, "state": AsyncState if client is Agent else SyncState}.get(ns)
            if ns == "tasks":
                continue  # the namespace documents its verbs and errors once, in its class docstring
            fn = inspect.getattr_static(owner, name)
            fn = fn.fget if isinstance(fn, property) else fn
            assert ns == "state" or fn.__doc__, f"{client.__name__}.{path} has no docstring"


def _sync_send_returning_the_reply(self: SyncAgent, target: str, body: Any) -> dict[str, Any]:
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("cls", "name", "replacement", "expected"),
    [
        pytest.param(SyncAgent, "send", _sync_send_returning_the_reply, "parameters differ", id="args"),
        pytest.param(SyncAgent, "wait_for", None, "SyncAgent lacks wait_for", id="missing"),
        pytest.param(Agent, "intent", None, "Agent lacks intent", id="missing-async"),
        pytest.param(
            SyncAgent, "shout", lambda self: None, "SyncAgent.shout is not in the verb table", id="extra"
        ),
        pytest.param(SyncState, "set", lambda self, key, value, **kw: 0, "returns", id="returns"),
        pytest.param(SyncTasks, "show", SyncTasks.show, None, id="unchanged"),
    ],
)
def test_drift_names_what_departs(
    monkeypatch: pytest.MonkeyPatch, cls: type, name: str, replacement: Any, expected: str | None
) -> None:
    if replacement is None:
        monkeypatch.delattr(cls, name)
    else:
        if name == "set":
            replacement.__annotations__ = {"return": "dict[str, Any]"}
        monkeypatch.setattr(cls, name, replacement, raising=False)
    problems = drift()
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_drift_names_a_blocking_async_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    def board(self: Agent) -> dict[str, Any]:
        return {}

    monkeypatch.setattr(Agent, "board", board)
    assert any("board: Agent's must be awaited" in p for p in drift()), drift()


def _script(room: str) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """The same verbs, for both clients: (verb path, args, kwargs); `@claim` is the claim of step 3."""
    return [
        ("send", ("*", {"hi": 1}), {}),
        ("list_messages", (), {}),
        ("claim_message", (1,), {}),
        ("claim", ("w", ["src/w"]), {"ttl": 60.0}),
        ("state.set", ("k", 1), {"fence": "@fence"}),
        ("state.cas", ("k", 1, 2), {}),
        ("state.increment", ("n",), {"by": 5}),
        ("state.init", ("i", 0), {}),
        ("state.view", ("v", "state._shared.k + 1"), {}),
        ("state.get", ("k",), {}),
        ("state.delete", ("k",), {}),
        ("state.batch", ([{"key": "b", "value": 1}],), {}),
        ("tasks.declare", ("T", "the task"), {}),
        ("tasks.claim", ("T",), {}),
        ("tasks.list", (), {}),
        ("intent", (["src/x"],), {"note": "soon"}),
        ("heartbeat", ("busy",), {}),
        ("eval", ("state._shared.n * 2",), {}),
        ("wait_for", ("state._shared.i == 0",), {"timeout": seconds(10_000)}),
        ("send", ("*", "fenced"), {"fence": "@fence"}),
        ("handoff", ("w", "bob"), {"fence": "@fence"}),
        ("claims", (), {}),
        ("claim", ("w2", ["src/q"]), {}),
        ("release", ("w2",), {"checkpoint": "cp"}),
    ]


TIMES = {"ts", "at", "expires", "since", "last_seen", "last_heartbeat", "created", "updated", "claimed_at"}


def _comparable(value: Any) -> Any:
    """What must be equal across two hubs: no timestamps, no tokens."""
    if isinstance(value, Claim | SyncClaim):
        return ("claim", value.work, value.paths, value.holder, value.epoch, value.held_by)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in TIMES and not k.endswith("_at")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


async def test_the_same_script_returns_the_same_values_through_both_clients(
    hub: ThreadHub, second_hub: ThreadHub
) -> None:
    """Every verb of the script returns the same value (and type) through Agent and through SyncAgent."""
    with SyncAgent("bob", hub=hub.url) as bob:
        bob.join()
    with SyncAgent("bob", hub=second_hub.url) as bob:
        bob.join()
    got: dict[str, list[Any]] = {"async": [], "sync": []}
    async with Agent("alice", hub=hub.url) as alice:
        fence: dict[str, int] = {}
        for path, args, kw in _script("default"):
            kw = {k: (fence if v == "@fence" else v) for k, v in kw.items()}
            ns, _, verb = path.rpartition(".")
            target = getattr(alice, ns) if ns else alice
            result = await getattr(target, verb)(*args, **kw)
            if verb == "claim" and not ns:
                fence.update(result.fence)
            got["async"].append((path, type(result).__name__, _comparable(result)))
    with SyncAgent("alice", hub=second_hub.url) as alice_s:
        alice_s.attach()  # Agent attaches on entry: presence and claims follow the session the same way
        fence = {}
        for path, args, kw in _script("default"):
            kw = {k: (fence if v == "@fence" else v) for k, v in kw.items()}
            ns, _, verb = path.rpartition(".")
            target = getattr(alice_s, ns) if ns else alice_s
            result = getattr(target, verb)(*args, **kw)
            if verb == "claim" and not ns:
                fence.update(result.fence)
            got["sync"].append((path, type(result).__name__.removeprefix("Sync"), _comparable(result)))
    for a, s in zip(got["async"], got["sync"], strict=True):
        assert a == s
    returned = dict((path, value) for path, _t, value in got["sync"])
    assert returned["send"] == 2 and returned["claim_message"] == "alice" and returned["state.set"] == 1
    assert returned["state.delete"] is None and returned["release"] is None and returned["eval"] == 10


def test_sync_subscribe_yields_a_trigger_each_time_the_condition_becomes_true(hub: ThreadHub) -> None:
    with SyncAgent("alice", hub=hub.url) as alice, SyncAgent("bob", hub=hub.url) as bob:
        alice.state.set("turn", 0)
        triggers = alice.subscribe("state._shared.turn > 0", include=("state",))
        bob.state.set("turn", 1)
        first = next(triggers)
        assert isinstance(first, Trigger) and first.value is True
        assert first.include["state"]["_shared"]["turn"] == 1
        bob.state.set("turn", 0)
        bob.state.set("turn", 2)
        assert next(triggers).include["state"]["_shared"]["turn"] == 2
        sub = first.sub
        triggers.close()  # unsubscribes: the hub has no subscription of this session left
        with pytest.raises(HubError) as err:
            alice.request(alice.read(c.Unsubscribe, sub=sub))
        assert err.value.code == Code.NOT_FOUND


def test_sync_subscribe_keeps_messages_and_triggers_apart(hub: ThreadHub) -> None:
    """Pushes of another kind that arrive while a subscription is read are kept for their own readers."""
    with SyncAgent("alice", hub=hub.url) as alice, SyncAgent("bob", hub=hub.url) as bob:
        alice.attach()
        triggers = alice.subscribe("state._shared.go == true")
        bob.send("alice", "first", allow_unknown=True)
        bob.state.set("go", True)
        assert next(triggers).value is True
        assert [m.body for m in alice.messages(timeout=0)] == ["first"]
        triggers.close()


def test_sync_wait_for_returns_the_value_and_times_out(hub: ThreadHub) -> None:
    with SyncAgent("alice", hub=hub.url) as alice, SyncAgent("bob", hub=hub.url) as bob:
        bob.state.set("done", 3)
        assert alice.wait_for("state._shared.done > 2", timeout=seconds(10_000)) is True  # already true
        with pytest.raises(HubError) as err:
            alice.wait_for("state._shared.done > 5", timeout=0.05)
        assert err.value.code == Code.TIMED_OUT
        assert alice.wait_for("state._shared.done == 3", timeout=seconds(10_000)) is True
        with pytest.raises(HubError) as err:
            alice.wait_for("state._shared.(", timeout=1)
        assert err.value.code == Code.BAD_EXPRESSION


async def test_sync_wait_for_wakes_on_another_agents_write(hub: ThreadHub) -> None:
    """SyncAgent.wait_for blocks (in a thread here) until an Agent's write makes it true; meanwhile the waiter
    shows as waiting on the expression."""
    expr = "state._shared.turn == 2"

    def wait() -> Any:
        with SyncAgent("black", hub=hub.url) as black:
            black.attach()
            return black.wait_for(expr, timeout=seconds(20_000))

    async with Agent("white", hub=hub.url) as white:
        waiting = asyncio.create_task(asyncio.to_thread(wait))
        deadline = asyncio.get_running_loop().time() + seconds(10_000)
        while not any(a.get("waiting_on") == expr for a in await white.agents()):
            assert asyncio.get_running_loop().time() < deadline and not waiting.done(), "never waited"
            await asyncio.sleep(0.01)
        await white.state.set("turn", 2)
        assert await asyncio.wait_for(waiting, seconds(10_000)) is True


async def test_agent_messages_and_notices_stop_after_an_idle_timeout(hub: ThreadHub) -> None:
    async with Agent("alice", hub=hub.url) as alice:
        assert [m async for m in alice.messages(timeout=0.01)] == []
        assert [n async for n in alice.notices(timeout=0.01)] == []
