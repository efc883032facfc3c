"""One heap of deadlines → Tick commands to the core."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

__all__ = ["Timers"]


class Timers:
    """The core asks to be woken at `at` (hub clock); the shell sleeps until the earliest and calls `fire`."""

    def __init__(self, clock: Callable[[], float], fire: Callable[[float], None]) -> None:
        self.clock = clock
        self.fire = fire
        self.heap: list[float] = []
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, at: float) -> None:
        if self.heap and self.heap[0] <= at and self.handle is not None:
            heapq.heappush(self.heap, at)
            return
        heapq.heappush(self.heap, at)
        self._schedule()

    def _schedule(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.heap:
            delay = max(0.0, self.heap[0] - self.clock())
            self.handle = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        self.handle = None
        now = self.clock()
        fired = False
        while self.heap and self.heap[0] <= now:
            heapq.heappop(self.heap)
            fired = True
        if fired:
            self.fire(now)
        self._schedule()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
