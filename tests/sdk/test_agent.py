"""Agent (async): joins and attaches on entry; send, messages(), claim_message, heartbeat, agents on a real hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sdk import Agent, Code, HubError, Message
from tests.conftest import seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


async def next_message(stream: AsyncIterator[Message], within_ms: float = 5_000) -> Message:
    return await asyncio.wait_for(anext(stream), seconds(within_ms))


async def until(check, within_ms: float = 5_000) -> None:
    """Ask `check` (an async callable reading the hub) until it is true."""
    deadline = asyncio.get_running_loop().time() + seconds(within_ms)
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_send_and_stream(hub) -> None:
    """A message to bob is pushed to bob's messages() with its seq, sender, kind and body."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        stream = bob.messages()
        seq = await alice.send("bob", {"hello": [1, 2]}, kind="greeting", allow_unknown=True)
        assert seq == 1
        m = await next_message(stream)
        assert (m.seq, m.sender, m.to, m.kind, m.body) == (
            1,
            "alice",
            ("bob",),
            "greeting",
            {"hello": [1, 2]},
        )
        assert m.room == "default" and not m.priority and m.reply_to is None


async def test_stream_gets_only_what_is_addressed(hub) -> None:
    """bob's stream gets direct, a,b, room/* and all messages, in seq order; not carol's, nor his own broadcast."""
    async with (
        Agent("alice", hub=hub.url) as alice,
        Agent("bob", hub=hub.url) as bob,
        Agent("carol", hub=hub.url) as carol,
    ):
        stream = bob.messages()
        await alice.send("carol", "private to carol", allow_unknown=True)
        await alice.send("bob,carol", "both", allow_unknown=True)
        await bob.send("default/*", "bob to the room", allow_unknown=True)
        await alice.send("default/*", "alice to the room", allow_unknown=True)
        await alice.send("all", "everyone", priority=True, allow_unknown=True)
        await alice.send(["bob"], "direct", reply_to=1, allow_unknown=True)
        got = [await next_message(stream) for _ in range(4)]
        assert [(m.seq, m.body) for m in got] == [
            (2, "both"),
            (4, "alice to the room"),
            (5, "everyone"),
            (6, "direct"),
        ]
        assert got[2].priority and got[3].reply_to == 1
        carol_stream = carol.messages()
        carol_got = [await next_message(carol_stream) for _ in range(5)]
        assert [m.seq for m in carol_got] == [1, 2, 3, 4, 5]


async def test_list_messages(hub) -> None:
    """list_messages reads the feed with the same filters as the CLI."""
    async with Agent("alice", hub=hub.url) as alice:
        await alice.send("bob", "one", kind="a", allow_unknown=True)
        await alice.send("carol", "two", kind="b", allow_unknown=True)
        await alice.send("bob", "three", kind="b", allow_unknown=True)
        assert [m["seq"] for m in await alice.list_messages()] == [1, 2, 3]
        assert [m["seq"] for m in await alice.list_messages(for_="bob")] == [1, 3]
        assert [m["seq"] for m in await alice.list_messages(kind="b", after=2)] == [3]
        assert [m["seq"] for m in await alice.list_messages(limit=1)] == [1]


async def test_claim_message_once(hub) -> None:
    """claim_message returns the holder; a second claimer gets HubError already_claimed naming the holder."""
    async with (
        Agent("alice", hub=hub.url) as alice,
        Agent("bob", hub=hub.url) as bob,
        Agent("carol", hub=hub.url) as carol,
    ):
        seq = await alice.send("default/*", "a job", allow_unknown=True)
        assert await bob.claim_message(seq) == "bob"
        with pytest.raises(HubError) as err:
            await carol.claim_message(seq)
        assert err.value.code == Code.ALREADY_CLAIMED
        assert err.value.detail == {"holder": "bob", "seq": seq}
        assert (await alice.list_messages(unclaimed=True)) == []
        with pytest.raises(HubError) as err:
            await carol.claim_message(99)
        assert err.value.code == Code.NOT_FOUND


async def test_heartbeat_and_agents(hub) -> None:
    """heartbeat sets the status; agents() shows every agent with its presence and live session count."""
    async with Agent("alice", hub=hub.url, role="api") as alice, Agent("bob", hub=hub.url) as bob:
        record = await bob.heartbeat("busy")
        assert record["name"] == "bob" and record["status"] == "busy"
        record = await bob.heartbeat()
        assert record["status"] == "busy"
        listed = {a["name"]: a for a in await alice.agents()}
        assert listed["alice"]["role"] == "api" and listed["alice"]["status"] == "active"
        assert listed["bob"]["status"] == "busy"
        assert listed["alice"]["sessions"] == listed["bob"]["sessions"] == 1
        status = await alice.status()
        assert status["agents_online"] == 2 and status["rooms"] == 1


async def test_presence_follows_the_session(hub) -> None:
    """When an attached agent closes, the others see it offline."""
    async with Agent("alice", hub=hub.url) as alice:
        async with Agent("bob", hub=hub.url):
            pass

        async def bob_offline() -> bool:
            return any(a["name"] == "bob" and a["status"] == "offline" for a in await alice.agents())

        await until(bob_offline)


async def test_token_saved_and_reused(hub, client_env) -> None:
    """The first entry joins and saves the token; a later Agent of the same name attaches with it."""
    async with Agent("alice", hub=hub.url) as first:
        token = first.token
    saved = json.loads((Path(client_env["XDG_CONFIG_HOME"]) / "synapse" / "tokens.json").read_text())
    assert saved[f"{hub.url}|default|alice"] == token
    async with Agent("alice", hub=hub.url) as again:
        assert again.token == token
        assert await again.join() == token  # a re-join with its token keeps it
        rotated = await again.join(rotate=True)
        assert rotated != token


async def test_wrong_token_and_foreign_token(hub) -> None:
    """Entering with a wrong token is `unauthorized`; with another agent's token, `forbidden`."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url):
        pass
    with pytest.raises(HubError) as err:
        async with Agent("alice", hub=hub.url, token="st_wrong", reconnect=False):
            pass
    assert err.value.code == Code.UNAUTHORIZED
    with pytest.raises(HubError) as err:
        async with Agent("bob", hub=hub.url, token=alice.token, reconnect=False):
            pass
    assert err.value.code == Code.FORBIDDEN


async def test_unreachable(hub) -> None:
    """An Agent whose hub is not there raises `unreachable` on entry."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HubError) as err:
        async with Agent("alice", hub=f"ws://127.0.0.1:{port}"):
            pass
    assert err.value.code == Code.UNREACHABLE


async def test_rooms_are_separate(hub) -> None:
    """Agents of the same name in two rooms are two agents; room/name reaches across."""
    async with Agent("alice", hub=hub.url) as alice, Agent("alice", room="lab", hub=hub.url) as lab_alice:
        stream = lab_alice.messages()
        await alice.send("lab/alice", "hi me", allow_unknown=True)
        m = await next_message(stream)
        assert (m.room, m.sender, m.to, m.body) == ("lab", "default/alice", ("alice",), "hi me")
        assert [a["name"] for a in await lab_alice.agents()] == ["alice"]


async def test_messages_ends_after_close(hub) -> None:
    """messages() stops when the agent is closed."""
    agent = Agent("alice", hub=hub.url)
    await agent.connect()
    stream = agent.messages()
    await agent.close()
    with pytest.raises(StopAsyncIteration):
        await next_message(stream)


async def test_a_burst_of_sends_is_delivered_whole(hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 sends of 100 KB at once, more than the socket takes, so writes pause mid-burst and the later frames
    wait for the drain (through `ws.send`) behind the ones written in slices: each send returns the seq its own
    body got, and bob's stream has every one once, in seq order."""
    paths = {True: 0, False: 0}  # frames written in slices / left to ws.send (it waits for the drain)
    post = Agent._post

    def counted(self: Agent, ws, data: bytes) -> bool:
        took = post(self, ws, data)
        paths[took] += 1
        return took

    monkeypatch.setattr(Agent, "_post", counted)
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        stream = bob.messages()
        pad = "x" * 100_000
        seqs = await asyncio.gather(
            *(alice.send("bob", {"i": i, "pad": pad}, allow_unknown=True) for i in range(200))
        )
        assert sorted(seqs) == list(range(1, 201))
        got = [await next_message(stream) for _ in range(200)]
        assert [m.seq for m in got] == list(range(1, 201))
        assert {m.seq: m.body["i"] for m in got} == {seq: i for i, seq in enumerate(seqs)}
    assert paths[True] > 0 and paths[False] > 0, paths


async def test_a_body_json_cannot_carry_is_refused_naming_it(hub) -> None:
    """A body that is not valid UTF-8 or not JSON at all is refused `bad_request` naming the body; nothing is
    sent, and the connection serves the next send."""
    async with Agent("alice", hub=hub.url) as alice:
        with pytest.raises(HubError) as bad_text:
            await alice.send("alice", {"text": "\ud800"}, allow_unknown=True)
        assert bad_text.value.code == Code.BAD_REQUEST
        assert bad_text.value.detail == {"reason": "not_utf8", "field": "body"}
        with pytest.raises(HubError) as not_json:
            await alice.send("alice", [object()], allow_unknown=True)
        assert not_json.value.code == Code.BAD_REQUEST and not_json.value.detail == {"field": "body"}
        assert await alice.send("alice", "fine", allow_unknown=True) == 1
