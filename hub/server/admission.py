"""Admission: caps on open connections, in all and per remote address, refused before the WebSocket upgrade.

The cap in all is kept below the process's descriptor limit (raised to its hard limit where allowed), so a
client past it gets a clear HTTP 503 instead of a connection the kernel silently fails to accept.
"""

from __future__ import annotations

import logging
import time

__all__ = ["RESERVED_DESCRIPTORS", "Admission", "raise_descriptor_limit"]

logger = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 64  # for the log, its WAL, the dashboard's files and the threads' own needs
_LOG_EVERY = 1.0  # seconds between two "refused" log lines (a flood of refusals is one line a second)


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one where allowed; returns the soft limit now."""
    try:
        import resource
    except ImportError:  # not on this platform
        return 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Admission:
    """Counts open connections per remote address; says why one more is refused, if it is."""

    __slots__ = ("by_address", "last_log", "per_address", "refused", "total", "total_cap")

    def __init__(self, total: int | None, per_address: int | None, descriptors: int) -> None:
        room = max(descriptors - RESERVED_DESCRIPTORS, 1)
        self.total_cap = room if total is None else min(total, room)
        self.per_address = per_address
        self.by_address: dict[str, int] = {}
        self.total = 0
        self.refused = 0
        self.last_log = 0.0

    def refusal(self, address: str) -> str | None:
        """Why a new connection from `address` is refused (logged at most once a second), or None."""
        reason = None
        if self.total >= self.total_cap:
            reason = f"the hub is at its cap of {self.total_cap} connections"
        elif self.per_address is not None and self.by_address.get(address, 0) >= self.per_address:
            reason = f"{address} is at its cap of {self.per_address} connections"
        if reason is not None:
            self.refused += 1
            now = time.monotonic()
            if now - self.last_log >= _LOG_EVERY:
                self.last_log = now
                logger.warning(
                    "hub.connection_refused address=%s reason=%r refused=%d", address, reason, self.refused
                )
        return reason

    def opened(self, address: str) -> None:
        self.total += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1

    def closed(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.get(address, 0) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)
