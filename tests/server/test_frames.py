"""How the hub reads frames (Session.frame, straight from websockets' parser): fragmented messages, frames a
client sends before the handshake's answer, frames held while a session waits for its rate, text frames that
are not UTF-8. Every command is answered once, in the order it was sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.conftest import ThreadHub, hub_config, seconds

WITHIN = seconds(10_000)


@pytest.fixture
def quick_rate_hub(tmp_path: Path) -> Iterator[ThreadHub]:
    """A hub whose agents may send 3 commands at once, then 20 a second (retry_after ≈ 0.05 s)."""
    th = ThreadHub(hub_config(tmp_path / "rate.db", rate_per_agent=20.0, rate_burst=3))
    try:
        yield th
    finally:
        th.stop()


def _command(cid: int, **fields: Any) -> str:
    return json.dumps({"id": cid, **fields})


async def _replies(ws: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` frames that answer a command (have an id), in arrival order."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), WITHIN))
        if frame.get("id") is not None:
            got.append(frame)
    return got


async def test_fragmented_message_is_one_command(hub: ThreadHub) -> None:
    """A text message sent in fragments is joined, then decided like any other."""
    async with connect(hub.url) as ws:
        frame = _command(1, op="join", name="frag")
        await ws.send([frame[:5], frame[5:20], frame[20:]])
        await ws.send(_command(2, op="status"))
        first, second = await _replies(ws, 2)
        assert (first["id"], first["type"]) == (1, "Ok") and first["result"]["token"]
        assert (second["id"], second["type"]) == (2, "Ok")


async def test_invalid_utf8_text_is_bad_frame(hub: ThreadHub) -> None:
    """A text frame that is not UTF-8 is refused bad_frame; the connection keeps serving."""
    async with connect(hub.url) as ws:
        await ws.send(b'{"op": "status", "id": 1, "x": "\xff"}', text=True)
        reply = json.loads(await asyncio.wait_for(ws.recv(), WITHIN))  # no id: none could be read
        assert reply["type"] == "Error" and reply["code"] == "bad_frame"
        await ws.send(_command(2, op="status"))
        (ok,) = await _replies(ws, 1)
        assert (ok["id"], ok["type"]) == (2, "Ok")


async def test_frames_sent_before_the_handshake_answer(hub: ThreadHub) -> None:
    """A client that writes its first commands with the upgrade request, before the 101: each is answered,
    in order (they wait for the session, then are its first frames)."""
    client = ClientProtocol(parse_uri(hub.url))
    client.send_request(client.connect())
    early = b"".join(client.data_to_send())
    count = 40  # past the 16 frames after which the hub stops reading until the session is served
    for cid in range(1, count + 1):
        early += Frame(Opcode.TEXT, _command(cid, op="status").encode()).serialize(mask=True, extensions=[])
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.hub.port)
    try:
        writer.write(early)
        ids: list[int] = []
        response: Response | None = None
        while len(ids) < count:
            data = await asyncio.wait_for(reader.read(65536), WITHIN)
            assert data, "the hub closed the connection"
            client.receive_data(data)
            for event in client.events_received():
                if isinstance(event, Response):
                    response = event
                elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    reply = json.loads(event.data)
                    assert reply["type"] == "Ok", reply
                    ids.append(reply["id"])
        assert response is not None and response.status_code == 101
        assert ids == list(range(1, count + 1))
    finally:
        writer.close()


async def test_frames_held_for_the_rate_are_answered_in_order(quick_rate_hub: ThreadHub) -> None:
    """Commands pipelined past the rate limit: the session is not served until it may send again (its frames
    held, its socket paused past 16), then goes on; every command is answered once, in order."""
    async with connect(quick_rate_hub.url) as ws:
        await ws.send(_command(1, op="join", name="eager"))
        (joined,) = await _replies(ws, 1)
        token = joined["result"]["token"]
        count = 40
        for cid in range(2, count + 2):
            await ws.send(_command(cid, op="heartbeat", name="eager", token=token))
        replies = await _replies(ws, count)
        assert [r["id"] for r in replies] == list(range(2, count + 2))
        codes = [r.get("code", "ok") for r in replies]
        assert set(codes) <= {"ok", "rate_limited"} and "rate_limited" in codes
        assert codes[:3] == ["ok", "ok", "ok"]
        await ws.send(_command(99, op="status"))
        (last,) = await _replies(ws, 1)
        assert (last["id"], last["type"]) == (99, "Ok")
