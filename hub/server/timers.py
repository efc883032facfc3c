"""The next deadline the core asked for → a Tick command; the core's own heap is the truth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Timers"]


class Timers:
    """Sleeps until the earliest requested time and calls `fire(now)`; the core then asks for its next one."""

    def __init__(self, clock: Callable[[], float], fire: Callable[[float], None]) -> None:
        self.clock = clock
        self.fire = fire
        self.next: float | None = None
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, at: float) -> None:
        if self.next is not None and self.next <= at:
            return
        self.cancel()
        self.next = at
        delay = max(0.0, at - self.clock())
        self.handle = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        self.handle = None
        self.next = None
        self.fire(self.clock())

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = None
        self.next = None
