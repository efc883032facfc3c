"""Keepalive: one hub-wide pinger instead of websockets' task per connection (a sleeping task, its future and
its timer cost ~1.8 KB for every idle agent). Every connection is pinged once per EVERY seconds, a slice of
them at a time so 10,000 pings never land in one loop turn; one still without its pong a round later is closed
1011 "keepalive ping timeout", as websockets' own keepalive would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from websockets.exceptions import ConnectionClosed

from hub.server.session import Session

__all__ = ["EVERY", "Keepalive"]

EVERY = 20.0  # seconds between two pings of one connection, and how long its pong may take
SLICES = 40  # a round is spread over this many loop timers (0.5 s apart)
TIMEOUT_CLOSE = 1011


class Keepalive:
    """Pings the sessions `live()` lists, round after round, until stopped."""

    def __init__(self, live: Callable[[], Iterable[object]], every: float = EVERY) -> None:
        self.live = live
        self.every = every
        self.round: list[Session] = []
        self.at = 0  # the next session of this round to ping
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.handle = asyncio.get_running_loop().call_later(self.every / SLICES, self._slice)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _slice(self) -> None:
        if not self.round or self.at >= len(self.round):  # a new round: the sessions live now
            self.round = [s for s in self.live() if type(s) is Session]
            self.at = 0
        step = -(-len(self.round) // SLICES)  # ceil: a round takes SLICES slices
        for session in self.round[self.at : self.at + step]:
            self._ping(session)
        self.at += step
        self.start()

    def _ping(self, session: Session) -> None:
        if session.closing:
            return
        pong = session.pong
        if pong is not None and not pong.done():  # no pong for a whole round
            session.close(TIMEOUT_CLOSE, "keepalive ping timeout")
            return
        session.pong = None
        session.spawn(_ping(session))


async def _ping(session: Session) -> None:
    try:
        session.pong = await session.ws.ping()
    except ConnectionClosed:
        pass
