"""Retrying refusals: a request refused with `rate_limited` (or `unavailable`) is sent again after a backoff that
honors the hub's retry_after; nothing is applied twice; `retries=0` turns it off. On a real hub with a tiny rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Agent, Code, HubError, SyncAgent
from agent_sdk.base import BACKOFF_FIRST, BACKOFF_MAX, DEFAULT_RETRIES, RETRY_AFTER_MAX, backoff
from tests.conftest import ThreadHub, hub_config

N = 6  # messages sent back to back: more than the burst, so some must wait for the bucket


@pytest.fixture(autouse=True)
def _tokens_here(client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


@pytest.fixture
def slow_hub(tmp_path: Path) -> Iterator[ThreadHub]:
    """A hub allowing each agent 5 commands a second after a burst of 2: a sender with no throttle hits it."""
    th = ThreadHub(hub_config(tmp_path / "log.db", rate_per_agent=5.0, rate_burst=2))
    try:
        yield th
    finally:
        th.stop()


class Retries:
    """Records what the client said before each retry."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float, float, int, int]] = []

    def __call__(self, exc: HubError, delay: float, attempt: int, retries: int) -> None:
        self.seen.append((str(exc.code), float(exc.detail.get("retry_after", 0.0)), delay, attempt, retries))


def _bodies(hub: ThreadHub) -> list[Any]:
    with SyncAgent("reader", hub=hub.url, retries=50) as reader:
        return [m["body"] for m in reader.list_messages(after=0, limit=1000)]


def test_sync_sender_without_throttle_gets_every_message_through(slow_hub: ThreadHub) -> None:
    """N sends back to back: each lands exactly once, in order; the waits honored the hub's retry_after."""
    said = Retries()
    with SyncAgent("alice", hub=slow_hub.url, on_retry=said) as alice:
        seqs = [alice.send("*", i, allow_unknown=True) for i in range(N)]
    assert seqs == sorted(set(seqs))
    assert _bodies(slow_hub) == list(range(N))
    assert said.seen, "the rate must have refused some sends"
    for code, retry_after, delay, attempt, retries in said.seen:
        assert code == "rate_limited"
        assert retry_after > 0 and delay >= retry_after
        assert 1 <= attempt <= retries == DEFAULT_RETRIES


def test_sync_retries_zero_gets_rate_limited(slow_hub: ThreadHub) -> None:
    """retries=0: the refusal comes straight back, with its retry_after; nothing more is applied."""
    said = Retries()
    with SyncAgent("alice", hub=slow_hub.url, retries=0, on_retry=said) as alice:
        sent = 0
        with pytest.raises(HubError) as info:
            for i in range(N):
                alice.send("*", i, allow_unknown=True)
                sent += 1
    assert info.value.code == Code.RATE_LIMITED and info.value.detail["retry_after"] > 0
    assert said.seen == []
    assert _bodies(slow_hub) == list(range(sent))


async def test_async_sender_without_throttle_gets_every_message_through(slow_hub: ThreadHub) -> None:
    """The async Agent retries the same way (its attach spends from the same bucket)."""
    said = Retries()
    async with Agent("alice", hub=slow_hub.url, on_retry=said) as alice:
        seqs = [await alice.send("*", i, allow_unknown=True) for i in range(N)]
    assert seqs == sorted(set(seqs))
    assert _bodies(slow_hub) == list(range(N))
    assert said.seen and all(code == "rate_limited" and d >= ra for code, ra, d, _a, _r in said.seen)


async def test_async_retries_zero_gets_rate_limited(slow_hub: ThreadHub) -> None:
    async with Agent("alice", hub=slow_hub.url, retries=0) as alice:
        with pytest.raises(HubError) as info:
            for i in range(N):
                await alice.send("*", i, allow_unknown=True)
    assert info.value.code == Code.RATE_LIMITED


def test_other_refusals_are_not_retried(hub: ThreadHub) -> None:
    """A refusal that is not about load (`conflict` here) is raised at once: retrying would not help."""
    said = Retries()
    with SyncAgent("alice", hub=hub.url, on_retry=said) as alice:
        alice.state.set("k", 1)
        with pytest.raises(HubError) as info:
            alice.state.set("k", 2, if_version=7)
    assert info.value.code == Code.CONFLICT
    assert said.seen == []


def test_unavailable_is_retried_until_the_hub_takes_it(hub: ThreadHub) -> None:
    """A draining hub refuses with `unavailable` (nothing applied); the send is retried and lands once the hub
    takes commands again."""
    assert hub.hub is not None
    said = Retries()

    def back_on_second(exc: HubError, delay: float, attempt: int, retries: int) -> None:
        said(exc, delay, attempt, retries)
        if attempt == 2:
            hub.hub.draining = False  # type: ignore[union-attr]

    with SyncAgent("alice", hub=hub.url, on_retry=back_on_second) as alice:
        alice.join()
        hub.hub.draining = True  # what `stop` sets first: every command is refused with `unavailable`
        try:
            seq = alice.send("*", "once", allow_unknown=True)
        finally:
            hub.hub.draining = False
    assert [(code, attempt) for code, _ra, _d, attempt, _r in said.seen] == [
        ("unavailable", 1),
        ("unavailable", 2),
    ]
    assert _bodies(hub) == ["once"] and seq == 1


def test_unavailable_is_raised_once_the_retries_are_spent(hub: ThreadHub) -> None:
    assert hub.hub is not None
    said = Retries()
    with SyncAgent("alice", hub=hub.url, retries=2, on_retry=said) as alice:
        alice.join()
        hub.hub.draining = True
        try:
            with pytest.raises(HubError) as info:
                alice.send("*", "never", allow_unknown=True)
        finally:
            hub.hub.draining = False
    assert info.value.code == Code.UNAVAILABLE
    assert [attempt for _c, _ra, _d, attempt, _r in said.seen] == [1, 2]
    assert _bodies(hub) == []


def test_negative_retries_is_refused() -> None:
    with pytest.raises(ValueError):
        SyncAgent("alice", retries=-1)


def test_backoff_doubles_honors_retry_after_and_jitters() -> None:
    """The wait: at least retry_after and at least the doubling step, plus up to half again of jitter."""
    assert backoff(1, None, 0.0) == pytest.approx(BACKOFF_FIRST)
    assert backoff(2, None, 0.0) == pytest.approx(2 * BACKOFF_FIRST)
    assert backoff(3, None, 0.999) == pytest.approx(4 * BACKOFF_FIRST * 1.4995)
    assert backoff(1, 0.75, 0.0) == pytest.approx(0.75)
    assert backoff(1, 0.75, 0.5) == pytest.approx(0.75 * 1.25)
    assert backoff(40, None, 0.0) == pytest.approx(BACKOFF_MAX)
    for nonsense in (-3, float("nan"), float("inf"), "soon", True, None):
        assert backoff(1, nonsense, 0.0) == pytest.approx(BACKOFF_FIRST)
    assert backoff(1, 1e9, 0.0) == pytest.approx(RETRY_AFTER_MAX)
