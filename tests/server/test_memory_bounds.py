"""Memory per client is bounded in bytes, not only in counts: the feed window, each session's outbox, frame sizes,
and connections in all and per address (refused with HTTP 503 before the upgrade). Real hub, real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent_sdk.sync import SyncAgent
from hub.core.feed import Feed
from tests.conftest import ThreadHub, hub_config, seconds


def _hub(tmp_path: Path, **limits: object) -> Iterator[ThreadHub]:
    th = ThreadHub(hub_config(tmp_path / "log.db", rate_per_agent=None, **limits))
    try:
        yield th
    finally:
        th.stop()


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[ThreadHub]:
    yield from _hub(tmp_path, max_connections=5, max_connections_per_address=3)


async def _refused(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url):
            pass
    response = info.value.response
    assert json.loads(response.body)["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
    return response.status_code


async def _admitted_again(url: str) -> None:
    """Connect until the hub has seen a closed connection go (it counts it when its handler ends)."""
    for _ in range(1_000):
        try:
            async with connect(url) as ws:
                await ws.send(json.dumps({"op": "status", "id": 1}))
                assert json.loads(await ws.recv())["type"] == "Ok"
                return
        except InvalidStatus:
            await asyncio.sleep(0.005)  # polling the hub's own answer, bounded: not a timing assumption
    raise AssertionError("a freed connection slot was never reused")


async def test_connections_past_the_cap_per_address_get_503_before_the_upgrade(capped: ThreadHub) -> None:
    """Three from one address are served; the fourth gets 503 `unavailable`; closing one frees its slot."""
    open_ = [await connect(capped.url) for _ in range(3)]
    try:
        assert await _refused(capped.url) == 503
        for ws in open_:  # the admitted ones still work
            await ws.send(json.dumps({"op": "status", "id": 7}))
            assert json.loads(await ws.recv())["id"] == 7
        await open_.pop().close()
        await _admitted_again(capped.url)
    finally:
        for ws in open_:
            await ws.close()
    assert capped.hub is not None and capped.hub.admission.refused >= 1


async def test_the_total_cap_holds_across_addresses(tmp_path: Path) -> None:
    """With a total cap of 2 and no cap per address, the third connection is refused."""
    for th in _hub(tmp_path, max_connections=2, max_connections_per_address=None):
        a, b = await connect(th.url), await connect(th.url)
        try:
            assert await _refused(th.url) == 503
        finally:
            await a.close()
            await b.close()


def test_the_feed_window_is_bounded_in_bytes(tmp_path: Path) -> None:
    """100 bodies of 10 KB with a 100 KB window: memory keeps about 100 KB; every message still reads back."""
    for th in _hub(tmp_path, feed_window_bytes=100_000):
        with SyncAgent("a", hub=th.url) as a:
            for i in range(100):
                a.send("*", {"i": i, "pad": "x" * 10_000}, allow_unknown=True)
            assert th.hub is not None
            feed = th.hub.machine.world.rooms["default"].part(Feed)
            assert feed.base > 0 and feed.bytes <= 125_000
            assert feed.bytes == sum(len(m.body) for m in feed.messages)
            got = a.list_messages(after=0, limit=1000)
            assert [m["body"]["i"] for m in got] == list(range(100))


async def test_a_reader_that_stops_reading_is_closed_by_bytes_and_others_go_on(tmp_path: Path) -> None:
    """A session with 64 KB of outbox allowed stops reading under 100 KB broadcasts: it is closed 1008 as a
    slow consumer (not grown without bound), and a healthy agent keeps its round trip."""
    for th in _hub(tmp_path, outbox_bytes=64 * 1024, max_body_bytes=None, max_frame_bytes=None):
        async with connect(th.url, max_size=None) as slow, connect(th.url, max_size=None) as healthy:
            await slow.send(json.dumps({"op": "join", "id": 1, "name": "slow"}))
            token = json.loads(await slow.recv())["result"]["token"]
            await slow.send(json.dumps({"op": "attach", "id": 2, "name": "slow", "token": token}))
            assert json.loads(await slow.recv())["id"] == 2
            slow.transport.pause_reading()  # a reader that stops reading; the hub's socket buffer fills
            with SyncAgent("sender", hub=th.url) as sender:
                for i in range(60):  # 6 MB in all: past the socket buffers and the 64 KB outbox
                    sender.send("slow", "x" * 100_000, allow_unknown=True)
                    await healthy.send(json.dumps({"op": "status", "id": 100 + i}))
                    assert (
                        json.loads(await asyncio.wait_for(healthy.recv(), seconds(10_000)))["id"] == 100 + i
                    )
            slow.transport.resume_reading()
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(slow.recv(), seconds(10_000))
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            assert "slow consumer" in info.value.rcvd.reason


async def test_frame_size_counts_bytes_not_characters(tmp_path: Path) -> None:
    """300,000 two-byte characters are 600,000 bytes: over a 500,000-byte frame limit, refused `too_large`."""
    for th in _hub(tmp_path, max_frame_bytes=500_000, max_body_bytes=None):
        async with connect(th.url, max_size=None) as ws:
            await ws.send(json.dumps({"op": "status", "id": 1, "room": "é" * 300_000}, ensure_ascii=False))
            err = json.loads(await ws.recv())
            assert err["code"] == "too_large" and "600" in err["message"]
            await ws.send(json.dumps({"op": "status", "id": 2}))
            assert json.loads(await ws.recv())["id"] == 2


async def test_a_garbage_flood_is_answered_then_closed_and_others_go_on(tmp_path: Path) -> None:
    """Frames no command can be read from get `bad_frame` each, up to a burst of 1,000 (then 100/s): a client
    that keeps sending garbage is closed 1008, and a healthy agent is served throughout."""
    for th in _hub(tmp_path):
        async with connect(th.url) as bad, connect(th.url) as healthy:
            for _ in range(5_000):
                await bad.send("{not json")
            codes = []
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    codes.append(json.loads(await asyncio.wait_for(bad.recv(), seconds(10_000)))["code"])
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            assert "malformed" in info.value.rcvd.reason
            assert 1_000 <= len(codes) < 5_000 and set(codes) == {"bad_frame"}
            await healthy.send(json.dumps({"op": "status", "id": 1}))
            assert json.loads(await healthy.recv())["id"] == 1


async def _ask(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send `frame` and return its reply (pushed frames skipped)."""
    await ws.send(json.dumps(frame))
    while True:
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), seconds(10_000)))
        if reply.get("id") == frame["id"]:
            return reply


async def test_subscriptions_are_capped_per_connection_and_per_agent(tmp_path: Path) -> None:
    """An anonymous connection holds at most its per-session share; an agent's connections share its cap; past
    either a subscribe is `limit_exceeded` (the connection stays open) and nothing is added."""
    for th in _hub(tmp_path, max_subscriptions_per_session=3, max_subscriptions_per_agent=4):
        async with connect(th.url) as anon, connect(th.url) as one, connect(th.url) as two:
            token = (await _ask(one, {"op": "join", "id": 1, "name": "ada"}))["result"]["token"]
            kinds = [
                (await _ask(anon, {"op": "subscribe", "id": i, "expr": "true"}))["type"] for i in range(4)
            ]
            assert kinds == ["Ok", "Ok", "Ok", "Error"]
            refused = await _ask(anon, {"op": "subscribe", "id": 5, "expr": "true"})
            assert refused["detail"] == {"limit": 3, "what": "subscriptions per session"}
            for ws in (one, two):
                assert (await _ask(ws, {"op": "attach", "id": 2, "name": "ada", "token": token}))[
                    "type"
                ] == "Ok"
            kinds = [
                (await _ask(one, {"op": "subscribe", "id": 10 + i, "expr": "true"}))["type"] for i in range(3)
            ]
            kinds += [
                (await _ask(two, {"op": "subscribe", "id": 20 + i, "expr": "true"}))["type"] for i in range(2)
            ]
            assert kinds == ["Ok", "Ok", "Ok", "Ok", "Error"]
            refused = await _ask(two, {"op": "subscribe", "id": 30, "expr": "true"})
            assert refused["code"] == "limit_exceeded"
            assert refused["detail"] == {"limit": 4, "what": "subscriptions per agent"}
            assert (await _ask(two, {"op": "status", "id": 31}))["type"] == "Ok"
            async with connect(th.url) as three:  # not attached: the token it reads with is whose it is
                frame = {"op": "subscribe", "id": 40, "expr": "true", "token": token}
                assert (await _ask(three, frame))["detail"]["what"] == "subscriptions per agent"


async def test_one_agent_cannot_flood_bytes_past_its_byte_rate(tmp_path: Path) -> None:
    """Frame bytes per agent are rate limited apart from commands: 90 KB bodies pass up to the byte burst, then
    `rate_limited` says when enough bytes are back, and the hub reads nothing more from that connection until
    then (what it pipelined waits in its socket); a refused send is not in the feed; others go on meanwhile."""
    for th in _hub(tmp_path, rate_bytes_per_agent=100_000, rate_bytes_burst=200_000, max_body_bytes=None):
        async with connect(th.url) as ws, connect(th.url) as other:
            token = (await _ask(ws, {"op": "join", "id": 1, "name": "flood"}))["result"]["token"]
            frame = {"op": "send", "name": "flood", "token": token, "to": ["flood"], "body": "x" * 90_000}
            kinds = [(await _ask(ws, {**frame, "id": 10 + i}))["type"] for i in range(2)]
            assert kinds == ["Ok", "Ok"]
            await ws.send(json.dumps({**frame, "id": 20}))  # over the burst
            await ws.send(json.dumps({"op": "message.list", "id": 21, "token": token}))  # pipelined behind it
            refused = json.loads(await asyncio.wait_for(ws.recv(), seconds(10_000)))
            assert (
                refused["id"] == 20 and refused["code"] == "rate_limited" and "bytes/s" in refused["message"]
            )
            pause = refused["detail"]["retry_after"]
            assert 0 < pause <= 2.0
            paused_at = asyncio.get_running_loop().time()
            assert (await _ask(other, {"op": "status", "id": 1}))[
                "type"
            ] == "Ok"  # others are served meanwhile
            listed = json.loads(await asyncio.wait_for(ws.recv(), seconds(10_000)))
            assert asyncio.get_running_loop().time() - paused_at >= pause * 0.9  # read only after the pause
            assert listed["id"] == 21 and len(listed["result"]["messages"]) == 2
