"""Bad input over a raw WebSocket: each gets an Error frame with a stable code; that connection, the hub and
the other clients keep working."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from agent_sdk import Agent, Message
from tests.conftest import ThreadHub, hub_config, seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


@pytest.fixture
def small_hub(tmp_path: Path) -> Iterator[ThreadHub]:
    """A hub with small limits: 1000-byte frames, 200-byte bodies, a slow rate, one session per agent."""
    th = ThreadHub(
        hub_config(
            tmp_path / "small.db",
            max_frame_bytes=1000,
            max_body_bytes=200,
            rate_per_agent=1.0,
            rate_burst=3,
            max_sessions_per_agent=1,
        )
    )
    try:
        yield th
    finally:
        th.stop()


class Raw:
    """A raw WebSocket to the hub: send any text, read frames as dicts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = 100

    async def send(self, data: str | bytes) -> None:
        await self.ws.send(data, text=True)

    async def recv(self, within_ms: float = 5_000) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), seconds(within_ms)))

    async def ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a command and return the reply with its id."""
        self.ids += 1
        await self.send(json.dumps({**frame, "id": self.ids}))
        while True:
            reply = await self.recv()
            if reply.get("id") == self.ids:
                return reply

    async def bad(self, data: str | bytes) -> dict[str, Any]:
        """Send a bad frame and return the Error frame it gets."""
        await self.send(data)
        reply = await self.recv()
        assert reply["type"] == "Error", reply
        return reply

    async def still_works(self) -> None:
        reply = await self.ask({"op": "status"})
        assert reply["type"] == "Ok" and reply["result"]["version"]


@pytest.fixture
async def raw(hub) -> AsyncIterator[Raw]:
    async with connect(hub.url, max_size=None) as ws:
        yield Raw(ws)


class Bystander:
    """Another client, connected the whole time: after each bad frame it still sends and receives."""

    def __init__(self, me: Agent, peer: Agent) -> None:
        self.me = me
        self.peer = peer
        self.stream = peer.messages()
        self.sent = 0

    async def check(self) -> None:
        self.sent += 1
        seq = await self.me.send(self.peer.name, f"still here {self.sent}", allow_unknown=True)
        m: Message = await asyncio.wait_for(anext(self.stream), seconds(5_000))
        assert (m.seq, m.body) == (seq, f"still here {self.sent}")


@pytest.fixture
async def bystander(hub) -> AsyncIterator[Bystander]:
    async with Agent("by-a", hub=hub.url) as a, Agent("by-b", hub=hub.url) as b:
        yield Bystander(a, b)


async def test_malformed_json(raw: Raw, bystander: Bystander) -> None:
    """Bytes that are not JSON → bad_frame (id null); the connection and the other client keep working."""
    for data in ("{not json", "", "[1, 2", '{"op": "status"', "\x00\x01"):
        err = await raw.bad(data)
        assert err["code"] == "bad_frame" and err["id"] is None and err["message"]
        await raw.still_works()
        await bystander.check()


async def test_unknown_op(raw: Raw, bystander: Bystander) -> None:
    """An op no command has → unknown_op naming the op."""
    err = await raw.bad(json.dumps({"op": "frobnicate", "id": 3}))
    assert err["code"] == "unknown_op" and err["detail"]["op"] == "frobnicate"
    err = await raw.bad(json.dumps({"op": 42, "id": 4}))
    assert err["code"] in ("unknown_op", "bad_frame")
    await raw.still_works()
    await bystander.check()


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"op": "send", "name": "alice", "to": "bob", "body": "x"}, "$.to"),
        ({"op": "message.list", "limit": "ten"}, "$.limit"),
        ({"op": "join"}, "name"),
        ({"op": "status", "colour": "blue"}, "colour"),
        ({"op": "heartbeat", "name": "alice", "status": "sleepy"}, "$.status"),
        ({"op": "message.claim", "name": "alice", "seq": "one"}, "$.seq"),
    ],
)
async def test_schema_violation_names_the_field(
    raw: Raw, bystander: Bystander, frame: dict[str, Any], field: str
) -> None:
    """A frame of the wrong shape → bad_frame whose message names the field."""
    err = await raw.bad(json.dumps({**frame, "id": 9}))
    assert err["code"] == "bad_frame"
    assert field in err["message"]
    await raw.still_works()
    await bystander.check()


async def test_bad_names_are_bad_request(raw: Raw, bystander: Bystander) -> None:
    """A name that cannot be an address → bad_request naming the field."""
    reply = await raw.ask({"op": "join", "name": "no/slashes"})
    assert reply["type"] == "Error" and reply["code"] == "bad_request" and reply["detail"]["field"] == "name"
    reply = await raw.ask({"op": "join", "name": "ok", "room": "bad room"})
    assert reply["code"] == "bad_request" and reply["detail"]["field"] == "room"
    await raw.still_works()
    await bystander.check()


async def test_a_non_ascii_token_for_a_proven_agent(raw: Raw, bystander: Bystander) -> None:
    """A token that is not ASCII (or holds NUL) for an agent that has one → unauthorized; comparing it with the
    real one never fails, and the connection keeps working."""
    token = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
    for wrong in ("é", "\x00", token + "é", "🦀" * 100):
        reply = await raw.ask({"op": "heartbeat", "name": "alice", "token": wrong})
        assert reply["type"] == "Error" and reply["code"] == "unauthorized", reply
    assert (await raw.ask({"op": "heartbeat", "name": "alice", "token": token}))["type"] == "Ok"
    await bystander.check()


async def test_out_of_range_numbers_are_bad_request(raw: Raw, bystander: Bystander) -> None:
    """An integer past signed 64 bits (a task's order, the request id) or a number past a double → bad_request
    naming the field; the connection keeps working."""
    token = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
    declare = '{"op":"task.declare","name":"alice","token":"%s","task":"t","title":"T","order":%s}'
    for frame, field in (
        (declare % (token, "9" * 30), "order"),
        ('{"op":"status","id":18446744073709551616}', "id"),
        ('{"op":"message.list","after":-1e400}', "after"),
    ):
        err = await raw.bad(frame)
        assert err["code"] == "bad_request" and err["detail"]["field"] == field, err
    await raw.still_works()
    await bystander.check()


async def test_control_characters_in_names_are_bad_request(raw: Raw, bystander: Bystander) -> None:
    """A NUL or another control character in a claim's work, a task id or a key → bad_request naming it."""
    token = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
    me = {"name": "alice", "token": token}
    for frame, field in (
        ({"op": "claim", "work": "a\x00b", "paths": ["src"]}, "work"),
        ({"op": "task.declare", "task": "t\x1b", "title": "T"}, "task"),
        ({"op": "state.set", "key": "k\x00", "value": 1}, "key"),
    ):
        reply = await raw.ask({**frame, **me})
        assert reply["code"] == "bad_request" and reply["detail"]["field"] == field, reply
    await raw.still_works()
    await bystander.check()


async def test_negative_cursors_read_from_the_start(raw: Raw) -> None:
    """A negative `after` on message.list, attach, wait and tail is answered as 0 (from the start)."""
    token = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
    me = {"name": "alice", "token": token}
    await raw.ask({"op": "send", **me, "to": ["alice"], "body": 1})
    listed = await raw.ask({"op": "message.list", "after": -5, "token": token})
    assert [m["seq"] for m in listed["result"]["messages"]] == [1]
    assert (await raw.ask({"op": "attach", **me, "after": -5}))["type"] == "Ok"
    assert (await raw.ask({"op": "tail", "after": -5, "token": token}))["result"]["after"] == 0
    woken = await raw.ask({"op": "wait", "waiter": "w", "for": "alice", "token": token, "after": -5})
    assert woken["type"] == "Ok"


async def test_body_over_max_body_bytes(raw: Raw, bystander: Bystander) -> None:
    """A body over max_body_bytes (default 256 KiB) → too_large with the limit; nothing is stored."""
    token = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
    body = "x" * 300_000
    reply = await raw.ask({"op": "send", "name": "alice", "token": token, "to": ["bob"], "body": body})
    assert reply["type"] == "Error" and reply["code"] == "too_large" and reply["detail"]["limit"] == 262_144
    await raw.still_works()
    listed = await raw.ask({"op": "message.list", "for": "bob"})
    assert listed["result"]["messages"] == []
    await bystander.check()


async def test_wrong_token(raw: Raw, bystander: Bystander) -> None:
    """A mutation with a wrong or missing token → unauthorized (with the command's id); another agent's → forbidden."""
    await raw.ask({"op": "join", "name": "alice"})
    bob_token = (await raw.ask({"op": "join", "name": "bob"}))["result"]["token"]
    reply = await raw.ask({"op": "send", "name": "alice", "token": "st_wrong", "to": ["bob"], "body": 1})
    assert reply["type"] == "Error" and reply["code"] == "unauthorized" and reply["id"] == raw.ids
    reply = await raw.ask({"op": "heartbeat", "name": "alice"})
    assert reply["code"] == "unauthorized"
    reply = await raw.ask({"op": "send", "name": "alice", "token": bob_token, "to": ["bob"], "body": 1})
    assert reply["code"] == "forbidden"
    await raw.still_works()
    await bystander.check()


async def test_acknowledged_messages_survive_bad_input(raw: Raw, bystander: Bystander) -> None:
    """After a run of bad frames, everything acknowledged before is still in the feed."""
    await bystander.check()
    for data in ("{", json.dumps({"op": "nope"}), json.dumps({"op": "send"})):
        await raw.bad(data)
    await bystander.check()
    listed = await bystander.peer.list_messages()  # directed messages are listed to their recipients
    assert [m["body"] for m in listed] == ["still here 1", "still here 2"]


async def test_frame_over_max_frame_bytes(small_hub: ThreadHub) -> None:
    """A frame over max_frame_bytes → too_large; the same connection works afterwards, and so does another."""
    async with (
        connect(small_hub.url, max_size=None) as ws,
        connect(small_hub.url, max_size=None) as other_ws,
    ):
        raw, other = Raw(ws), Raw(other_ws)
        big = json.dumps({"op": "status", "id": 1, "room": "r" * 1500})
        err = await raw.bad(big)
        assert err["code"] == "too_large" and err["detail"]["limit"] == 1000
        wide = json.dumps(
            {"op": "status", "id": 1, "room": "é" * 600}, ensure_ascii=False
        )  # 600 chars, 1200 bytes
        err = await raw.bad(wide)
        assert err["code"] == "too_large" and err["detail"]["limit"] == 1000
        await raw.still_works()
        await other.still_works()
        token = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
        reply = await raw.ask({"op": "send", "name": "alice", "token": token, "to": ["*"], "body": "ok"})
        assert reply["type"] == "Ok" and reply["result"]["seq"] == 1


async def test_body_over_small_limit(small_hub: ThreadHub) -> None:
    """A body over a configured max_body_bytes (within the frame limit) → too_large; a small one is fine."""
    async with connect(small_hub.url, max_size=None) as ws:
        raw = Raw(ws)
        token = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
        reply = await raw.ask(
            {"op": "send", "name": "alice", "token": token, "to": ["bob"], "body": "y" * 300}
        )
        assert reply["code"] == "too_large" and reply["detail"]["limit"] == 200
        reply = await raw.ask({"op": "send", "name": "alice", "token": token, "to": ["*"], "body": "y"})
        assert reply["type"] == "Ok"


async def test_rate_limited(small_hub: ThreadHub) -> None:
    """Over the rate per agent → rate_limited with retry_after; another agent is not affected."""
    async with connect(small_hub.url, max_size=None) as ws:
        raw = Raw(ws)
        alice = (await raw.ask({"op": "join", "name": "alice"}))["result"]["token"]
        bob = (await raw.ask({"op": "join", "name": "bob"}))["result"]["token"]
        replies = [await raw.ask({"op": "heartbeat", "name": "alice", "token": alice}) for _ in range(6)]
        codes = [reply.get("code", "ok") for reply in replies]
        assert codes[:3] == ["ok", "ok", "ok"] and "rate_limited" in codes
        limited = replies[codes.index("rate_limited")]
        assert limited["detail"]["retry_after"] > 0  # and the hub reads this connection again only then
        reply = await raw.ask({"op": "heartbeat", "name": "bob", "token": bob})
        assert reply["type"] == "Ok"


async def test_sessions_per_agent_limit(small_hub: ThreadHub) -> None:
    """A second attached session for one agent over max_sessions_per_agent → limit_exceeded."""
    async with connect(small_hub.url) as ws1, connect(small_hub.url) as ws2:
        first, second = Raw(ws1), Raw(ws2)
        token = (await first.ask({"op": "join", "name": "alice"}))["result"]["token"]
        assert (await first.ask({"op": "attach", "name": "alice", "token": token}))["type"] == "Ok"
        reply = await second.ask({"op": "attach", "name": "alice", "token": token})
        assert reply["code"] == "limit_exceeded" and reply["detail"]["limit"] == 1
        await second.still_works()
