"""Per-agent token buckets on ctx.now, and count caps (SPEC: Bad input, limits)."""

from __future__ import annotations

from hub.protocol.errors import Code, HubError
from hub.protocol.types import AgentName, RoomName

__all__ = ["Bucket", "Buckets", "check_count"]


class Bucket:
    """A token bucket: `rate` per second sustained, up to `burst` at once."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.level = float(burst)
        self.stamp = now

    def _level(self, now: float) -> float:
        elapsed = max(0.0, now - self.stamp)  # a wall clock stepped back refills nothing, and drains nothing
        return min(self.burst, self.level + elapsed * self.rate)

    def check(self, now: float) -> None:
        """Refuse with `rate_limited`, saying when a token will be there, unless one is (changes nothing)."""
        level = self._level(now)
        if level < 1.0:
            retry = (1.0 - level) / self.rate
            raise HubError(
                Code.RATE_LIMITED,
                f"over {self.rate:g} commands/s; retry in {retry:.3f}s",
                {"retry_after": retry},
            )

    def take(self, now: float) -> None:
        """Check, then spend one token."""
        self.check(now)
        self.spend(now)

    def spend(self, now: float) -> None:
        """Take one token (staged: only a command that succeeds spends)."""
        self.level = max(0.0, self._level(now) - 1.0)
        self.stamp = now


class Buckets:
    """Hub-wide: one bucket per (room, agent)."""

    __slots__ = ("of",)

    def __init__(self) -> None:
        self.of: dict[tuple[RoomName, AgentName], Bucket] = {}


def check_count(what: str, count: int, limit: int | None) -> None:
    """Refuse growing `what` past `limit` with `limit_exceeded`."""
    if limit is not None and count >= limit:
        raise HubError(Code.LIMIT_EXCEEDED, f"at most {limit} {what}", {"limit": limit, "what": what})
