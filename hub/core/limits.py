"""Per-agent token buckets on ctx.now, and count caps (SPEC: Bad input, limits)."""

from __future__ import annotations

from hub.config import HubConfig
from hub.core.effects import Outcome
from hub.protocol.errors import Code, HubError
from hub.protocol.types import AgentName, RoomName

__all__ = ["Bucket", "Buckets", "charge", "check_count"]


class Bucket:
    """A token bucket: `rate` per second sustained, up to `burst` at once (of commands, or of `unit`)."""

    __slots__ = ("burst", "level", "rate", "stamp", "unit")

    def __init__(self, rate: float, burst: int, now: float, unit: str = "commands") -> None:
        self.unit = unit
        self.rate = rate
        self.burst = float(burst)
        self.level = float(burst)
        self.stamp = now

    def _level(self, now: float) -> float:
        elapsed = max(0.0, now - self.stamp)  # a wall clock stepped back refills nothing, and drains nothing
        return min(self.burst, self.level + elapsed * self.rate)

    def check(self, now: float, cost: float = 1.0) -> None:
        """Refuse with `rate_limited`, saying when `cost` tokens will be there, unless they are (changes
        nothing). A cost over the burst is charged as the burst: it waits for a full bucket."""
        if self.level >= cost:  # there before any refill (which only adds): the common case, no arithmetic
            return
        level = self._level(now)
        cost = min(cost, self.burst)
        if level < cost:
            retry = (cost - level) / self.rate
            raise HubError(
                Code.RATE_LIMITED,
                f"over {self.rate:.15g} {self.unit}/s; retry in {retry:.3f}s",  # 16777216, not 1.67772e+07
                {"retry_after": retry},
            )

    def take(self, now: float) -> None:
        """Check, then spend one token."""
        self.check(now)
        self.spend(now)

    def spend(self, now: float, cost: float = 1.0) -> None:
        """Take `cost` tokens (staged: only a command that succeeds spends); `_level` and the caps inlined,
        as this runs for every command."""
        level, burst = self.level, self.burst
        elapsed = now - self.stamp
        if elapsed > 0.0:
            level += elapsed * self.rate
            if level > burst:
                level = burst
        level -= cost if cost < burst else burst
        self.level = level if level > 0.0 else 0.0
        self.stamp = now


class Buckets:
    """Hub-wide: per (room, agent), a bucket of commands and one of frame bytes."""

    __slots__ = ("bytes_of", "of")

    def __init__(self) -> None:
        self.of: dict[tuple[RoomName, AgentName], Bucket] = {}
        self.bytes_of: dict[tuple[RoomName, AgentName], Bucket] = {}


def charge(
    buckets: Buckets, key: tuple[RoomName, AgentName], config: HubConfig, now: float, size: int, out: Outcome
) -> None:
    """Refuse with `rate_limited` unless the agent's buckets hold one command and its frame's `size` bytes
    (0: not counted); stage spending both, in one change (this runs for every command). A bucket is made on
    the first spend and never dropped, so one found here is the one spent."""
    rate, rate_bytes = config.rate_per_agent, (config.rate_bytes_per_agent if size else None)
    if rate is None and rate_bytes is None:
        return
    commands = buckets.of.get(key) if rate is not None else None
    if commands is not None:
        commands.check(now)
    frame = buckets.bytes_of.get(key) if rate_bytes is not None else None
    if frame is not None:
        frame.check(now, size)

    def spend() -> None:
        if commands is not None:
            commands.spend(now)
        elif rate is not None:
            _bucket(buckets.of, key, rate, config.rate_burst, now, "commands").spend(now)
        if frame is not None:
            frame.spend(now, size)
        elif rate_bytes is not None:
            _bucket(buckets.bytes_of, key, rate_bytes, config.rate_bytes_burst, now, "bytes").spend(now, size)

    out.stage(spend)


def _bucket(
    of: dict[tuple[RoomName, AgentName], Bucket],
    key: tuple[RoomName, AgentName],
    rate: float,
    burst: int,
    now: float,
    unit: str,
) -> Bucket:
    """The agent's bucket in `of`, made full on first use."""
    bucket = of.get(key)
    if bucket is None:
        bucket = of[key] = Bucket(rate, burst, now, unit)
    return bucket


def check_count(what: str, count: int, limit: int | None) -> None:
    """Refuse growing `what` past `limit` with `limit_exceeded`."""
    if limit is not None and count >= limit:
        raise HubError(Code.LIMIT_EXCEEDED, f"at most {limit} {what}", {"limit": limit, "what": what})
