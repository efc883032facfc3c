"""One connection: frame → decode → handle → submit; a bounded outbox per session; the only `except Exception`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from hub.core.limits import Bucket
from hub.protocol.errors import HubError
from hub.protocol.types import SessionId

__all__ = ["Session"]

logger = logging.getLogger(__name__)

SLOW_CONSUMER_CLOSE = 1008
INTERNAL_ERROR_CLOSE = 1011
HIGH_WATER = 1 << 20  # bytes buffered in the socket before we wait for the peer to read
BAD_FRAMES_PER_S = 100.0  # malformed frames one connection may send per second, sustained...
BAD_FRAMES_BURST = 1_000  # ...and at once, before it is closed (1008)
HELD_FRAMES = 16  # frames held over the rate limit before the socket is not read (websockets' max_queue)


class Session:
    """A live connection and its outbox of encoded frames.

    Frames are read where the socket's bytes are parsed (`frame`, called from the connection's `data_received`
    through websockets' Sans-I/O parser), so a command costs no coroutine switch, message queue or future: it
    is decided in the same loop turn its bytes arrive in. A session over its rate is not served until it may
    send again: its frames wait, in order, in `held`, and past HELD_FRAMES its socket is not read (pings and
    pongs flow until then, as with websockets' own queue).

    Frames are written in one go per flush (the fan-out flushes every session it touched once per durable
    batch), straight through the Sans-I/O protocol, so a broadcast costs one frame build and one transport
    write per session rather than a task switch per frame. Past HIGH_WATER the session waits for the peer;
    past `outbox_frames` or `outbox_bytes` queued it is closed as a slow consumer and resumes from its cursor.
    """

    __slots__ = (
        "bad_frames",
        "blocked",
        "close_info",
        "closing",
        "dispatch",
        "gone",
        "held",
        "id",
        "limit",
        "outbox",
        "parts",
        "pause",
        "unread",
        "pong",
        "queued",
        "tasks",
        "limit_bytes",
        "unpause",
        "ws",
    )

    def __init__(
        self,
        sid: SessionId,
        ws: ServerConnection,
        dispatch: Callable[[Session, bytes | str], None],
        gone: Callable[[Session], None],
        limit: int,
        limit_bytes: int = 8 << 20,
    ) -> None:
        self.id = sid
        self.ws = ws
        self.dispatch = dispatch  # one frame → the hub
        self.gone = gone  # the connection ended → the hub
        self.limit = limit  # frames queued before the session counts as a slow consumer
        self.limit_bytes = limit_bytes  # or bytes queued
        self.outbox: list[bytes] = []  # not a deque: an empty one costs 0.7 KB, held by every idle connection
        self.queued = 0  # bytes in the outbox
        self.bad_frames: Bucket | None = None  # frames no command could be read from, per second
        self.pause = 0.0  # seconds to stop reading after a rate_limited refusal (the socket pushes back)
        self.held: list[Frame] | None = None  # frames read while paused for the rate limit, in order
        self.unpause: asyncio.TimerHandle | None = None
        self.unread = False  # its socket is paused (HELD_FRAMES held)
        self.parts: list[bytes] | None = None  # a fragmented message's frames so far (bounded by max_size)
        self.blocked = False
        self.closing = False
        self.close_info: tuple[int, str] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.pong: asyncio.Future[float] | None = (
            None  # the last keepalive ping's answer (hub.server.keepalive)
        )

    def tolerate_bad_frame(self, now: float) -> bool:
        """Count a frame no command could be read from; False once past BAD_FRAMES_PER_S (burst BAD_FRAMES_BURST):
        a client that keeps sending garbage costs the hub a bounded share of its loop, then its connection."""
        bucket = self.bad_frames
        if bucket is None:
            bucket = self.bad_frames = Bucket(BAD_FRAMES_PER_S, BAD_FRAMES_BURST, now)
        try:
            bucket.take(now)
        except HubError:
            return False
        return True

    def push(self, data: bytes) -> bool:
        """Queue one encoded frame; returns whether the session needs a flush."""
        if self.closing:
            return False
        if len(self.outbox) >= self.limit or self.queued + len(data) > self.limit_bytes:
            self.outbox.clear()  # the peer resumes from its cursor: what it did not read is not kept
            self.queued = 0
            self.close(
                SLOW_CONSUMER_CLOSE,
                f"slow consumer: {self.limit} frames or {self.limit_bytes} bytes behind; resume from your cursor",
            )
            return False
        self.outbox.append(data)
        self.queued += len(data)
        return True

    def flush(self) -> None:
        """Write what is queued to the socket, unless the peer is not keeping up."""
        if self.blocked or not self.outbox:
            return
        ws = self.ws
        protocol = ws.protocol
        if protocol.state is not State.OPEN:
            self.outbox.clear()
            self.queued = 0
            return
        send_text = protocol.send_text
        for data in self.outbox:
            send_text(data)
        self.outbox.clear()
        self.queued = 0
        transport = ws.transport
        transport.write(b"".join(protocol.data_to_send()))  # one syscall for the whole flush
        if transport.get_write_buffer_size() > HIGH_WATER:
            self.blocked = True
            self.spawn(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.drain()
            self.blocked = False
            self.flush()
            if self.closing and self.close_info is not None and not self.outbox:
                await self._close()

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued are written."""
        if self.closing:
            return
        self.closing = True
        self.close_info = (code, reason)
        if self.held is not None:  # waiting for its rate: read again, or its close frame is never seen
            self.held = None
            if self.unpause is not None:
                self.unpause.cancel()
                self.unpause = None
            self._read_gate()
        self.flush()
        if not self.blocked:
            self.spawn(self._close())

    async def _close(self) -> None:
        assert self.close_info is not None
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close(*self.close_info)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def frame(self, frame: Frame) -> None:
        """One data frame off the socket: a whole message is dispatched at once, fragments are joined first
        (websockets' parser bounds the whole message by max_size and refuses a stray continuation)."""
        if self.closing:
            return
        if self.held is not None:
            self.held.append(frame)
            if len(self.held) == HELD_FRAMES:
                self._read_gate()
            return
        if frame.opcode is Opcode.CONT:
            parts = self.parts
            if parts is None:
                return
            parts.append(cast(bytes, frame.data))
            if not frame.fin:
                return
            self.parts = None
            data = b"".join(parts)
        elif not frame.fin:
            self.parts = [cast(bytes, frame.data)]
            return
        else:
            data = cast(bytes, frame.data)  # websockets' parser reads bytes
        try:
            self.dispatch(self, data)
        except Exception:  # a bug costs one session, never the hub
            logger.exception("session.internal_error session=%s", self.id)
            self.close(INTERNAL_ERROR_CLOSE, "internal error")
            return
        if self.pause:  # a client over its rate is not read until it may send again
            delay, self.pause = self.pause, 0.0
            self.held = []
            self.unpause = self.ws.loop.call_later(delay, self._unpause)

    def feed(self, frames: list[Frame]) -> bool:
        """Frames read earlier, in order; False when the rate limit paused the session again (the rest wait)."""
        for at, frame in enumerate(frames):
            self.frame(frame)
            if self.held is not None:
                self.held.extend(frames[at + 1 :])
                return False
        return True

    def _unpause(self) -> None:
        self.unpause = None
        held, self.held = self.held, None
        if held:
            self.feed(held)
        self._read_gate()

    def _read_gate(self) -> None:
        """Pause the socket while HELD_FRAMES frames wait for the rate limit; read it again otherwise."""
        stop = self.held is not None and len(self.held) >= HELD_FRAMES
        if stop is not self.unread:
            self.unread = stop
            transport = self.ws.transport
            if stop:
                transport.pause_reading()
            else:
                transport.resume_reading()

    async def run(self) -> None:
        """Serve until the peer goes (frames arrive through `frame`)."""
        try:
            await self.ws.wait_closed()
        finally:
            self.held = None
            if self.unpause is not None:
                self.unpause.cancel()
            self.gone(self)
            for task in list(self.tasks):
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                    await asyncio.wait_for(task, 5)
