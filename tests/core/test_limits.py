"""Tests for hub.core.limits: the per-agent rate limit on ctx.now and the sessions-per-agent cap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hub.config import HubConfig
from hub.core.limits import Bucket, check_count
from hub.core.machine import SessionGone
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError

Script = Any  # the fixture's class lives in tests/core/conftest.py


@pytest.fixture
def limited(script: Script) -> Iterator[Script]:
    """A Script whose hub allows 5 commands/s per agent with a burst of 5, and 2 sessions per agent."""
    s = type(script)(HubConfig(rate_per_agent=5, rate_burst=5, max_sessions_per_agent=2))
    s.join("alice", "bob")
    yield s
    s.check_replay()


def beat(s: Script, name: str = "alice") -> None:
    s.do(name, c.Heartbeat(name=name), session=None)


def test_rate_limit_refuses_past_the_burst(limited: Script) -> None:
    """Five commands at once pass; the sixth is rate_limited with retry_after of one token's time."""
    for _ in range(5):
        beat(limited)
    err = limited.refused("alice", c.Heartbeat(name="alice"), session=None)
    assert err.code == Code.RATE_LIMITED and err.retryable
    assert err.detail["retry_after"] == pytest.approx(0.2)


def test_rate_limit_refills_with_the_clock(limited: Script) -> None:
    """After retry_after has passed on the hub clock one more command passes, then it refuses again."""
    for _ in range(5):
        beat(limited)
    limited.now += 0.1
    err = limited.refused("alice", c.Heartbeat(name="alice"), session=None)
    assert err.detail["retry_after"] == pytest.approx(0.1)
    limited.now += 0.1
    beat(limited)
    assert limited.refused("alice", c.Heartbeat(name="alice"), session=None).code == Code.RATE_LIMITED
    limited.now += 10
    for _ in range(5):  # a long pause refills to the burst, not beyond
        beat(limited)
    assert limited.refused("alice", c.Heartbeat(name="alice"), session=None).code == Code.RATE_LIMITED


def test_rate_limit_is_per_agent(limited: Script) -> None:
    """Alice spending her burst does not limit bob."""
    for _ in range(5):
        beat(limited)
    beat(limited, "bob")


def test_rate_limit_applies_to_every_mutation(limited: Script) -> None:
    """Sends and message claims draw from the same bucket as heartbeats."""
    for _ in range(4):
        limited.do("alice", c.Send(name="alice", to=("bob",)), session=None)
    limited.do("alice", c.ClaimMessage(name="alice", seq=1), session=None)
    err = limited.refused("alice", c.Send(name="alice", to=("bob",)), session=None)
    assert err.code == Code.RATE_LIMITED


def test_rate_limit_off_with_none(script: Script) -> None:
    """rate_per_agent=None switches the limit off."""
    script.join("alice")
    for _ in range(100):
        beat(script)


def test_byte_rate_limit_counts_frame_bytes(script: Script) -> None:
    """Frame bytes have a bucket of their own: past the burst a command is rate_limited saying when enough bytes
    are back; a frame over the whole burst waits for a full bucket (never refused for ever)."""
    s = type(script)(HubConfig(rate_per_agent=None, rate_bytes_per_agent=1_000, rate_bytes_burst=3_000))
    s.join("alice")
    s.size = 1_000
    for _ in range(3):
        beat(s)
    err = s.refused("alice", c.Heartbeat(name="alice"), session=None)
    assert err.code == Code.RATE_LIMITED and err.retryable and "1000 bytes/s" in err.message
    assert err.detail["retry_after"] == pytest.approx(1.0)
    s.now += 1.0
    beat(s)
    s.size = 10_000  # over the burst: charged as the burst
    assert s.refused("alice", c.Heartbeat(name="alice"), session=None).detail["retry_after"] == pytest.approx(
        3.0
    )
    s.now += 3.0
    beat(s)
    s.size = 0  # a command the shell gives no size is not counted
    beat(s)


def test_max_sessions_per_agent(limited: Script) -> None:
    """A third session for the same agent is limit_exceeded with the limit; closing one frees a slot."""
    limited.do("alice", c.Attach(name="alice"), session=1)
    limited.now += 1
    limited.do("alice", c.Attach(name="alice"), session=2)
    limited.now += 1
    err = limited.refused("alice", c.Attach(name="alice"), session=3)
    assert err.code == Code.LIMIT_EXCEEDED and err.detail["limit"] == 2
    limited.do("bob", c.Attach(name="bob"), session=4)
    limited.run(SessionGone(1), session=1)
    limited.now += 1
    limited.do("alice", c.Attach(name="alice"), session=3)


def test_bucket_directly() -> None:
    """The bucket spends one token per take, refills at `rate` and caps at `burst`."""
    bucket = Bucket(rate=2.0, burst=2, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    with pytest.raises(HubError) as info:
        bucket.take(0.0)
    assert info.value.detail["retry_after"] == pytest.approx(0.5)
    bucket.take(0.5)
    with pytest.raises(HubError):
        bucket.take(0.5)


def test_bucket_survives_the_clock_stepping_back() -> None:
    """A wall clock set back an hour neither locks the agent out for an hour nor grants extra tokens."""
    bucket = Bucket(rate=5.0, burst=5, now=10_000.0)
    bucket.take(10_000.0)
    bucket.take(6_400.0)  # NTP stepped the clock back by an hour
    for _ in range(3):
        bucket.take(6_400.0)
    with pytest.raises(HubError) as info:
        bucket.take(6_400.0)
    assert info.value.detail["retry_after"] == pytest.approx(0.2)
    bucket.take(6_400.25)


def test_check_count() -> None:
    """check_count passes below the limit, refuses at it, and ignores None."""
    check_count("things", 1, 2)
    check_count("things", 10**6, None)
    with pytest.raises(HubError) as info:
        check_count("things", 2, 2)
    assert info.value.code == Code.LIMIT_EXCEEDED and info.value.detail == {"limit": 2, "what": "things"}
