"""Per-agent token bucket on ctx.now, and count caps (SPEC: Bad input, limits)."""

from __future__ import annotations

from hub.protocol.errors import Code, HubError

__all__ = ["Bucket", "check_count"]


class Bucket:
    """A token bucket: `rate` per second sustained, up to `burst` at once."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.level = float(burst)
        self.stamp = now

    def take(self, now: float) -> None:
        """Spend one token or raise `rate_limited` saying when one will be there."""
        elapsed = max(0.0, now - self.stamp)  # a wall clock stepped back refills nothing, and drains nothing
        level = min(self.burst, self.level + elapsed * self.rate)
        self.stamp = now
        if level < 1.0:
            self.level = level
            retry = (1.0 - level) / self.rate
            raise HubError(
                Code.RATE_LIMITED,
                f"over {self.rate:g} commands/s; retry in {retry:.3f}s",
                {"retry_after": retry},
            )
        self.level = level - 1.0


def check_count(what: str, count: int, limit: int | None) -> None:
    """Refuse growing `what` past `limit` with `limit_exceeded`."""
    if limit is not None and count >= limit:
        raise HubError(Code.LIMIT_EXCEEDED, f"at most {limit} {what}", {"limit": limit, "what": what})
