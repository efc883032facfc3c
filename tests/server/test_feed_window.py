"""The feed beyond the in-memory window: older messages come from the log, nothing lost or repeated."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_sdk import Agent
from agent_sdk.sync import SyncAgent
from hub.core.feed import Feed
from tests.conftest import ThreadHub, hub_config, seconds

WINDOW = 40


@pytest.fixture
def small(db_path: Path):  # type: ignore[no-untyped-def]
    th = ThreadHub(hub_config(db_path, feed_window=WINDOW, rate_per_agent=None, snapshot_every=150))
    try:
        yield th
    finally:
        th.stop()


def _fill(url: str, n: int) -> str:
    """n messages from a to b and c; returns a's token (a reads what it sent)."""
    with SyncAgent("a", hub=url) as a:
        for i in range(n):
            a.send("b" if i % 3 else "c", i, allow_unknown=True)
        assert a.token is not None
        return a.token


def test_list_reads_behind_the_window(small: ThreadHub) -> None:
    """Listing from seq 0 returns every message in order although only the newest stay in memory."""
    _fill(small.url, 300)
    room = small.hub.machine.world.rooms["default"]
    assert room.part(Feed).base > 0 and len(room.part(Feed).messages) < 300
    with SyncAgent("a", hub=small.url) as r:  # directed messages are listed to their sender
        got = r.list_messages(after=0, limit=1000)
        assert [m["seq"] for m in got] == list(range(1, 301))
        for_b = r.list_messages(for_="b", after=5, limit=1000)
        assert [m["body"] for m in for_b] == [i for i in range(5, 300) if i % 3]
        page = r.list_messages(after=10, limit=7)
        assert [m["seq"] for m in page] == list(range(11, 18))


def test_claim_and_reply_to_an_old_message(small: ThreadHub) -> None:
    """A message that left memory can still be claimed once and replied to."""
    _fill(small.url, 200)
    with SyncAgent("w", hub=small.url, save_token=False) as w:
        assert w.claim_message(1) == "w"
        seq = w.send("a", "re", reply_to=2, allow_unknown=True)
        assert seq == 201
    with SyncAgent("a", hub=small.url) as a:
        old = a.list_messages(after=0, limit=1)[0]
        assert old["claimed_by"] == "w"


async def test_agent_resumes_from_an_old_cursor(small: ThreadHub) -> None:
    """An SDK stream resuming from a cursor behind the window receives every message once, in order."""
    async with Agent("b", hub=small.url, save_token=False) as b:
        b.cursor = 0
        await b.ws.close()  # type: ignore[union-attr]
        _fill(small.url, 250)
        seen = []
        async for m in b.messages():
            seen.append(m.seq)
            if len(seen) == len([i for i in range(250) if i % 3]):
                break
        assert seen == sorted(set(seen)) and len(seen) == 166


def test_wait_with_an_old_cursor_wakes_at_once(small: ThreadHub) -> None:
    """A waiter armed after a seq behind the window wakes for the first message it missed."""
    _fill(small.url, 200)
    with SyncAgent("c", hub=small.url, save_token=False) as w:
        w.arm("c-rx", "c", after=0)
        wake = w.woken(seconds(5000))
        assert wake.message is not None and wake.message.seq == 1
        # it hands over what it missed, oldest first and without a gap (from the log, then the window)
        handed = [m.seq for m in wake.messages]
        assert handed == list(range(1, 201, 3))[: len(handed)] and len(handed) > 1


def test_restart_keeps_the_window_and_the_log(small: ThreadHub, db_path: Path) -> None:
    """After a restart (snapshot + replay) the feed reads the same from any cursor."""
    token = _fill(small.url, 320)
    small.stop()
    again = ThreadHub(hub_config(db_path, feed_window=WINDOW, rate_per_agent=None, snapshot_every=150))
    try:
        with SyncAgent("a", hub=again.url, token=token) as r:  # a new port: the saved token is not found
            got = r.list_messages(after=0, limit=1000)
            assert [m["seq"] for m in got] == list(range(1, 321))
    finally:
        again.stop()
