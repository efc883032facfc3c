"""Privacy: a message is pushed only to the sessions of agents it is addressed to; rooms are isolated except
for `room/name`, `room/*` and `all`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from agent_sdk import Agent, Message
from tests.conftest import seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


async def next_message(stream: AsyncIterator[Message]) -> Message:
    return await asyncio.wait_for(anext(stream), seconds(5_000))


class Spy:
    """A second, raw session attached as an agent: every frame the hub pushes to it, undecoded by the SDK."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def attach(cls, ws: ClientConnection, agent: Agent) -> Spy:
        spy = cls(ws)
        await ws.send(
            json.dumps(
                {"op": "attach", "id": 1, "room": agent.room, "name": agent.name, "token": agent.token}
            )
        )
        reply = await spy.next()
        assert reply["type"] == "Ok", reply
        return spy

    async def next(self) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), seconds(5_000)))
        self.frames.append(frame)
        return frame

    async def until_delivery(self, room: str, seq: int) -> list[dict[str, Any]]:
        """Read frames until the Delivery of (room, seq) arrives (a bounded wait); return every Delivery seen."""
        while True:
            frame = await self.next()
            if frame["type"] == "Delivery" and (frame["message"]["room"], frame["message"]["seq"]) == (
                room,
                seq,
            ):
                return [f["message"] for f in self.frames if f["type"] == "Delivery"]


async def test_direct_message_reaches_only_its_target(hub) -> None:
    """a → b reaches b; c's socket never receives a Delivery of it (a later message to c proves the pipe flows)."""
    async with (
        Agent("a", hub=hub.url) as a,
        Agent("b", hub=hub.url) as b,
        Agent("c", hub=hub.url) as c,
        connect(hub.url) as ws,
    ):
        spy = await Spy.attach(ws, c)
        b_stream, c_stream = b.messages(), c.messages()
        secret = await a.send("b", "for b only", allow_unknown=True)
        pair = await a.send("b,a", "for b and a", allow_unknown=True)
        m = await next_message(b_stream)
        assert (m.seq, m.body) == (secret, "for b only")
        assert (await next_message(b_stream)).seq == pair
        later = await a.send("c", "for c", allow_unknown=True)
        seen = await spy.until_delivery("default", later)
        assert [m["seq"] for m in seen] == [later]
        assert not any("for b only" in json.dumps(f) for f in spy.frames)
        assert (await next_message(c_stream)).seq == later
        broadcast = await a.send("default/*", "for the room", allow_unknown=True)
        seen = await spy.until_delivery("default", broadcast)
        assert [m["seq"] for m in seen] == [later, broadcast]


async def test_other_rooms_only_by_room_address(hub) -> None:
    """An agent of another room gets nothing sent by name or to this room's group; `room/name` reaches it."""
    async with (
        Agent("a", hub=hub.url) as a,
        Agent("x", room="lab", hub=hub.url) as x,
        Agent("x", hub=hub.url) as x_here,
        connect(hub.url) as ws,
    ):
        spy = await Spy.attach(ws, x)
        x_stream, here_stream = x.messages(), x_here.messages()
        local = await a.send("x", "for default/x", allow_unknown=True)
        await a.send("default/*", "for the default room", allow_unknown=True)
        crossing = await a.send("lab/x", "for lab/x", allow_unknown=True)
        seen = await spy.until_delivery("lab", 1)
        assert [(m["room"], m["seq"], m["body"]) for m in seen] == [("lab", 1, "for lab/x")]
        assert crossing == 1  # the sender learns the seq in the room the message went to
        m = await next_message(x_stream)
        assert (m.room, m.seq, m.sender, m.to) == ("lab", 1, "default/a", ("x",))
        assert (await next_message(here_stream)).seq == local
        group = await a.send("lab/*", "for the lab", allow_unknown=True)
        everyone = await a.send("all", "for every room", allow_unknown=True)
        seen = await spy.until_delivery("lab", 3)
        assert [(m["room"], m["seq"]) for m in seen] == [("lab", 1), ("lab", 2), ("lab", 3)]
        assert (group, everyone) == (2, 3)
        assert [m["body"] for m in await x.list_messages()] == ["for lab/x", "for the lab", "for every room"]
        assert [m["body"] for m in await a.list_messages(for_="x")] == [
            "for default/x",
            "for the default room",
            "for every room",
        ]
