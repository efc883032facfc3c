"""One connection: read → decode → handle → submit; an outbox per session; the only `except Exception`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from hub.protocol.types import SessionId

if TYPE_CHECKING:
    from hub.server.hub import Hub

__all__ = ["Session"]

logger = logging.getLogger(__name__)

SLOW_CONSUMER_CLOSE = 1008
INTERNAL_ERROR_CLOSE = 1011


class Session:
    """A live connection and its bounded outbox of encoded frames."""

    __slots__ = ("_close_info", "closing", "hub", "id", "outbox", "wake", "ws")

    def __init__(self, hub: Hub, sid: SessionId, ws: ServerConnection) -> None:
        self.hub = hub
        self.id = sid
        self.ws = ws
        self.outbox: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closing = False

    def push(self, data: bytes) -> None:
        """Queue one encoded frame; a session too far behind is closed (it resumes from its cursor)."""
        if self.closing:
            return
        if len(self.outbox) >= self.hub.config.outbox_frames:
            self.close(
                SLOW_CONSUMER_CLOSE,
                f"slow consumer: {len(self.outbox)} frames behind; resume from your cursor",
            )
            return
        self.outbox.append(data)
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued are written."""
        if self.closing:
            return
        self.closing = True
        self.outbox.append(b"")  # the marker: close here
        self.wake.set()
        self._close_info = (code, reason)

    async def run(self) -> None:
        """Read frames until the peer goes; write the outbox alongside."""
        writer = asyncio.create_task(self._write())
        try:
            async for data in self.ws:
                if self.closing:
                    break
                try:
                    self.hub.dispatch(self, data)
                except Exception:  # a bug costs one session, never the hub
                    logger.exception("session.internal_error session=%s", self.id)
                    self.close(INTERNAL_ERROR_CLOSE, "internal error")
        except ConnectionClosed:
            pass
        finally:
            self.hub.gone(self)
            if not self.closing:
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    async def _write(self) -> None:
        ws, outbox, wake = self.ws, self.outbox, self.wake
        while True:
            await wake.wait()
            wake.clear()
            while outbox:
                data = outbox.popleft()
                if not data:
                    code, reason = self._close_info
                    await ws.close(code, reason)
                    return
                await ws.send(data, text=True)
