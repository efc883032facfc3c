"""HTTP/1.1 on the hub's port: `POST /v1/OP` runs one wire command, `/v1/wait` long-polls, `/v1/events` is SSE.

A `Sniffer` (the server's connection factory) reads the first bytes of a connection: a GET outside `/v1/`
stays with websockets (the upgrade, /healthz, the dashboard); anything else goes to `Http`, a bounded
HTTP/1.1 parser (16 KiB head, Content-Length bodies only, keep-alive, one request at a time). Each request is
an `Exchange`: a session registered with the hub like a WebSocket one, so the same dispatch, authorization,
limits and durability run (a reply is released only once its events are durable: a 200 means durable).
"""

from __future__ import annotations

import asyncio
import logging
import math
import typing
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request

from hub.core.agents import Tokens
from hub.core.limits import Bucket
from hub.core.world import hash_token
from hub.protocol import commands, results
from hub.protocol.codec import encode
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Error, Message, Notice, Trigger, Wake

__all__ = ["HEAD_LIMIT", "STATUS", "Api", "Sniffer", "openapi"]

logger = logging.getLogger(__name__)

HEAD_LIMIT = 16 << 10  # bytes of request line and headers
HEAD_SECONDS = 10.0  # a request's head and body must arrive within this once it starts (slowloris: 408)
IDLE_SECONDS = 75.0  # a keep-alive connection with no request in flight is closed after this
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often, so proxies and clients see the stream is alive
MAX_WAIT = 300.0  # the longest long-poll
DEFAULT_WAIT = 30.0
MAX_RATE_PAUSE = 1.0  # seconds a rate-limited connection goes unread at most (as a WebSocket session)
BAD_REQUESTS_PER_S = 100.0  # requests no command could be read from, per connection (as Session's frames)
BAD_REQUESTS_BURST = 1_000

STATUS: dict[str, int] = {
    Code.BAD_FRAME: 400,
    Code.BAD_REQUEST: 400,
    Code.BAD_EXPRESSION: 400,
    Code.UNAUTHORIZED: 401,
    Code.FORBIDDEN: 403,
    Code.NAME_TAKEN: 403,
    Code.NOT_FOUND: 404,
    Code.UNKNOWN_OP: 404,
    Code.UNKNOWN_RECIPIENT: 404,
    Code.CONFLICT: 409,
    Code.CLAIM_OVERLAP: 409,
    Code.ALREADY_CLAIMED: 409,
    Code.ALREADY_EXISTS: 409,
    Code.FENCED: 409,
    Code.NOT_READY: 409,
    Code.SEQ_BLOCKED: 409,
    Code.TAKEN_OVER: 409,
    Code.LIMIT_EXCEEDED: 409,
    Code.PRECONDITION_FAILED: 412,
    Code.TOO_LARGE: 413,
    Code.RATE_LIMITED: 429,
    Code.UNAVAILABLE: 503,
    Code.TIMED_OUT: 408,
}
_RESERVED = ("op", "id", "token")  # the path names the op, the hub numbers it, the header carries the token


class _Frame(msgspec.Struct):
    """The parts of a hub frame an HTTP session reads (the rest stays raw)."""

    type: str
    id: int | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    code: str = ""
    message: Any = None
    detail: msgspec.Raw = msgspec.Raw(b"{}")


class _Seq(msgspec.Struct):
    seq: int


_FRAME = msgspec.json.Decoder(_Frame)
_SEQ = msgspec.json.Decoder(_Seq)
_BODY = msgspec.json.Decoder(dict[str, msgspec.Raw])
_FLOAT = msgspec.json.Decoder(float)
_ANY = msgspec.json.Decoder()


def _error_body(code: str, message: str, detail: bytes = b"{}") -> bytes:
    return b'{"error":{"code":%s,"message":%s,"detail":%s}}\n' % (encode(code), encode(message), detail)


class _Problem(Exception):
    """A request refused before it reaches the hub: an HTTP status, a code, a message."""

    def __init__(self, status: int, code: str, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close


class Api:
    """The hub's HTTP side: its open connections and what they need from the hub."""

    def __init__(self, hub: Any) -> None:  # hub.server.hub.Hub (not imported: no cycle)
        self.hub = hub
        self.connections: set[Http] = set()
        self._openapi: bytes | None = None

    def factory(self, *args: Any, **kw: Any) -> Sniffer:
        """The `create_connection` websockets' serve calls for every accepted connection."""
        return Sniffer(self, *args, **kw)

    def owner(self, token: str) -> tuple[str, str] | None:
        """(room, name) of the agent a token belongs to."""
        found = self.hub.machine.world.part(Tokens).owner.get(hash_token(token))
        return None if found is None else (str(found[0]), str(found[1]))

    def openapi(self) -> bytes:
        if self._openapi is None:
            self._openapi = encode(openapi()) + b"\n"
        return self._openapi

    def close(self) -> None:
        """The hub stops: every HTTP connection goes (an exchange in flight got its 503 already)."""
        for conn in list(self.connections):
            conn.shut()


class _Unread:
    """Stands in for websockets' per-connection Assembler (≈ 1 KB): the hub reads frames in process_event."""

    __slots__ = ()

    def close(self) -> None:
        pass


_UNREAD: Any = _Unread()
_DATA = frozenset((Opcode.TEXT, Opcode.BINARY, Opcode.CONT))
EARLY_FRAMES = 16  # frames a client sends before its session is served, after which it is not read until then


class Sniffer(ServerConnection):
    """A server connection that looks at the first bytes before websockets does, and keeps HTTP/1.1 API
    requests (anything but a GET outside /v1/) for `Http`."""

    # Slots: added to the instance dict, these would push ServerConnection's past what a key-sharing dict
    # holds (about 1.5 KB more per connection).
    __slots__ = ("api", "early", "head_timer", "http", "mode", "raw_transport", "session", "sniffed")

    def __init__(self, api: Api, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.api = api
        self.mode = ""  # "" until the first bytes are read, then "ws" or "http"
        self.sniffed = bytearray()
        self.http: Http | None = None
        self.head_timer: asyncio.TimerHandle | None = None
        self.raw_transport: asyncio.Transport | None = None
        self.session: Any = None  # hub.server.session.Session, once the hub serves the upgraded connection
        self.early: list[Frame] | None = None  # data frames that came before it (a client that did not wait)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw_transport = typing.cast(asyncio.Transport, transport)
        self.head_timer = self.loop.call_later(HEAD_SECONDS, self.raw_transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.mode == "ws":
            super().data_received(data)
            return
        if self.http is not None:
            self.http.feed(data)
            return
        buf = self.sniffed
        buf += data
        probe = bytes(buf[:8])
        if len(probe) < 8 and b"GET /v1/".startswith(probe):
            return  # not enough to tell yet
        assert self.raw_transport is not None and self.head_timer is not None
        self.head_timer.cancel()
        if probe.startswith(b"GET ") and not probe.startswith(b"GET /v1/"):
            self.mode = "ws"
            super().connection_made(self.raw_transport)
            self.recv_messages = _UNREAD  # frames go to the session (process_event), never to an Assembler
            super().data_received(bytes(buf))
            buf.clear()
            return
        self.mode = "http"
        self.http = Http(self.api, self.raw_transport)
        self.http.feed(bytes(buf))
        buf.clear()

    def process_event(self, event: Any) -> None:
        """A data frame goes straight to the session (see Session.frame); the handshake, pings, pongs and
        the close stay with websockets."""
        if type(event) is Frame and event.opcode in _DATA:
            session = self.session
            if session is not None:
                session.frame(event)
                return
            early = self.early
            if early is None:
                early = self.early = []
            early.append(event)
            if len(early) == EARLY_FRAMES and self.raw_transport is not None:
                self.raw_transport.pause_reading()
            return
        super().process_event(event)

    def serve(self, session: Any) -> None:
        """The hub serves this connection as `session` from now on: frames read before are its first."""
        self.session = session
        early, self.early = self.early, None
        if early and session.feed(early) and len(early) >= EARLY_FRAMES and self.raw_transport is not None:
            self.raw_transport.resume_reading()

    def eof_received(self) -> bool | None:
        if self.mode == "ws":
            return super().eof_received()
        if self.http is not None:
            self.http.eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.mode == "ws":
            super().connection_lost(exc)
            return
        if self.head_timer is not None:
            self.head_timer.cancel()
        if self.http is not None:
            self.http.lost()

    def pause_writing(self) -> None:
        if self.mode == "ws":
            super().pause_writing()

    def resume_writing(self) -> None:
        if self.mode == "ws":
            super().resume_writing()


class Http:
    """One HTTP/1.1 connection: parse a bounded request, answer it, then read the next (pipelined ones wait
    in the buffer; the socket is not read while a request is in flight)."""

    def __init__(self, api: Api, transport: asyncio.Transport) -> None:
        self.api = api
        self.hub = api.hub
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.busy = False  # a request is being answered
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_kind = ""
        self.exchange: Exchange | Stream | None = None
        self.bad: Bucket | None = None
        self.keep = True  # the current request lets the connection live on
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        api.connections.add(self)
        self.hub.admission.opened(self.address)
        self.refused = self.hub.refusal(self.address)

    # -- the socket -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        if self.busy:  # still read (a client that goes is seen going: its waiter is disarmed), up to a bound
            if len(self.buf) > HEAD_LIMIT:
                self.transport.pause_reading()
            return
        self._next()

    def eof(self) -> None:
        if not self.busy:
            self.shut()

    def lost(self) -> None:
        self.closed = True
        self._cancel_timer()
        self.api.connections.discard(self)
        self.hub.admission.closed(self.address)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.dropped()

    def shut(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_timer()
            self.transport.close()

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    # -- timers -----------------------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.timer_kind = ""

    def _arm(self, kind: str, seconds: float) -> None:
        if self.timer_kind == kind:
            return
        self._cancel_timer()
        self.timer_kind = kind
        self.timer = self.loop.call_later(seconds, self._expired, kind)

    def _expired(self, kind: str) -> None:
        self.timer = None
        self.timer_kind = ""
        if self.closed or self.busy:
            return
        if kind == "head":
            self.reply(408, _error_body("timed_out", "the request did not arrive in time"), close=True)
        else:
            self.shut()

    # -- requests ---------------------------------------------------------------------------------

    def _next(self) -> None:
        """Parse and start the next request in the buffer, if a whole one is there."""
        if self.closed or self.busy:
            return
        buf = self.buf
        if not buf:
            self._arm("idle", IDLE_SECONDS)
            return
        self._arm("head", HEAD_SECONDS)
        end = buf.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
        if end < 0:
            if len(buf) > HEAD_LIMIT:
                self.reply(431, _error_body("too_large", f"request head over {HEAD_LIMIT} bytes"), close=True)
            return
        try:
            method, target, version, headers = _parse_head(bytes(buf[:end]))
            length = self._body_length(headers)
        except _Problem as p:
            self.reply(p.status, _error_body(p.code, p.message), close=True)
            return
        start = end + 4
        if len(buf) < start + length:
            return
        body = bytes(buf[start : start + length])
        del buf[: start + length]
        self._cancel_timer()
        self.busy = True
        self.keep = _keep_alive(version, headers)
        try:
            self._handle(method, target, headers, body)
        except _Problem as p:
            self.reply(p.status, _error_body(p.code, p.message), close=p.close)
        except Exception:  # a bug costs one connection, never the hub (as Session.run)
            logger.exception("api.internal_error target=%r", target[:200])
            if self.busy and self.exchange is None:
                self.reply(500, _error_body("internal", "internal error"), close=True)
            else:
                self.shut()

    def _body_length(self, headers: Headers) -> int:
        if "Transfer-Encoding" in headers:
            raise _Problem(411, "bad_request", "chunked bodies are not taken: send a Content-Length", True)
        lengths = headers.get_all("Content-Length")
        if not lengths:
            return 0
        if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
            raise _Problem(400, "bad_request", "a bad Content-Length", True)
        length = int(lengths[0])
        limit = self.hub.config.max_frame_bytes
        if limit is not None and length > limit:
            raise _Problem(413, "too_large", f"body is {length} bytes, over {limit}", True)
        return length

    def _handle(self, method: str, target: str, headers: Headers, body: bytes) -> None:
        if self.refused is not None:
            raise _Problem(503, "unavailable", self.refused, True)
        path, _, query = target.partition("?")
        if not path.startswith("/v1/"):
            if method in ("GET", "HEAD"):  # a plain page on a kept-alive connection
                self._plain(Request(target, headers))
                return
            raise _Problem(404, "not_found", f"no {method} {path} here; the API is under /v1/")
        op = path[len("/v1/") :]
        if method == "GET" and op == "openapi.json":
            self.reply(200, self.api.openapi())
            return
        if method == "GET" and op == "events":
            self._events(headers, query)
            return
        if method != "POST":
            raise _Problem(405, "bad_request", f"{method} {path}: commands are POSTed")
        self._command(op, headers, body)

    def _plain(self, request: Request) -> None:
        response = self.hub.plain(request)
        head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
        head += [f"{k}: {v}" for k, v in response.headers.raw_items()]
        self.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        self.done()

    def _token(self, headers: Headers) -> str | None:
        auth = headers.get_all("Authorization")
        if not auth:
            return None
        scheme, _, token = auth[0].partition(" ")
        if len(auth) > 1 or scheme.lower() != "bearer" or not token.strip():
            raise _Problem(401, "unauthorized", "Authorization must be `Bearer TOKEN`")
        return token.strip()

    def _command(self, op: str, headers: Headers, body: bytes) -> None:
        if body.strip():
            media = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                raise _Problem(415, "bad_request", "the body must be JSON (Content-Type: application/json)")
            try:
                fields = _BODY.decode(body)
            except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
                raise _Problem(400, "bad_frame", f"the body must be a JSON object: {exc}") from None
        else:
            fields = {}
        for name in _RESERVED:
            if name in fields:
                raise _Problem(400, "bad_request", f"`{name}` is not a body field over HTTP")
        timeout = None
        if op == "wait":
            timeout = DEFAULT_WAIT
            raw = fields.pop("timeout", None)
            if raw is not None:
                try:
                    timeout = _FLOAT.decode(raw)
                except msgspec.DecodeError:
                    timeout = -1.0
                if not 0 <= timeout <= MAX_WAIT:
                    raise _Problem(400, "bad_request", f"`timeout` is seconds from 0 to {MAX_WAIT:g}")
        token = self._token(headers)
        if token is not None:
            fields["token"] = msgspec.Raw(encode(token))
        frame = encode({"op": op, "id": 1, **fields})
        exchange = Exchange(self, timeout)
        exchange.start(frame)

    def _events(self, headers: Headers, query: str) -> None:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=64)
        token = self._token(headers)
        if token is None:
            raise _Problem(401, "unauthorized", "the event stream needs `Authorization: Bearer TOKEN`")
        owner = self.api.owner(token)
        name = params.get("name", [owner[1] if owner else ""])[0]
        room = params.get("room", [owner[0] if owner else "default"])[0]
        if not name:
            raise _Problem(401, "unauthorized", "that token is no agent's")
        after_text = headers.get("Last-Event-ID") or params.get("after", [""])[0]
        after: int | None = None
        if after_text:
            try:
                after = int(after_text)
            except ValueError:
                raise _Problem(400, "bad_request", "Last-Event-ID (or after) must be a seq") from None
        frames = [
            encode({"op": "attach", "id": 1, "room": room, "name": name, "token": token, "after": after})
        ]
        for i, expr in enumerate(params.get("expr", [])[:16]):
            frames.append(
                encode(
                    {"op": "subscribe", "id": 2 + i, "room": room, "expr": expr, "name": name, "token": token}
                )
            )
        Stream(self, len(frames)).start(frames)

    # -- answers ----------------------------------------------------------------------------------

    def reply(
        self,
        status: int,
        body: bytes,
        extra: list[tuple[str, str]] | None = None,
        close: bool = False,
        pause: float = 0.0,
    ) -> None:
        """Write one whole response; then read the next request (or close)."""
        close = close or not self.keep or self.hub.draining
        phrase = HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        )
        for name, value in extra or ():
            head += f"{name}: {value}\r\n"
        if close:
            head += "Connection: close\r\n"
        self.write(head.encode("latin-1") + b"\r\n" + body)
        if close:
            self.shut()
        else:
            self.done(pause)

    def done(self, pause: float = 0.0) -> None:
        """The request is answered: read on (after `pause`, for a client over its rate)."""
        self.busy = False
        self.exchange = None
        if self.closed:
            return
        if pause > 0:
            self.loop.call_later(pause, self._resume)
        else:
            self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self.closed or self.busy:
            return
        self.transport.resume_reading()
        self._next()

    def tolerate_bad_frame(self, now: float) -> bool:
        bucket = self.bad
        if bucket is None:
            bucket = self.bad = Bucket(BAD_REQUESTS_PER_S, BAD_REQUESTS_BURST, now)
        try:
            bucket.take(now)
        except HubError:
            return False
        return True


class _Session:
    """What the hub needs of a session, for one HTTP request: an id, its connection's bad-frame budget."""

    __slots__ = ("closing", "conn", "id", "pause", "tasks")

    def __init__(self, conn: Http) -> None:
        self.conn = conn
        self.id = conn.hub.new_session_id()
        self.closing = False  # answered or closed: later frames are dropped
        self.pause = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    def _register(self) -> None:
        self.conn.exchange = self
        self.conn.hub.sessions[self.id] = self  # type: ignore[assignment]

    def tolerate_bad_frame(self, now: float) -> bool:
        return self.conn.tolerate_bad_frame(now)

    def _gone(self) -> None:
        self.conn.hub.gone(self)  # type: ignore[arg-type]


class Exchange(_Session):
    """One request as a hub session: its command goes in, its reply (or, for wait, its wake) comes out."""

    __slots__ = ("retry_after", "timeout", "timer")

    def __init__(self, conn: Http, timeout: float | None) -> None:
        super().__init__(conn)
        self.retry_after = 1.0
        self.timeout = timeout  # a long-poll's (wait) seconds; None for one reply
        self.timer: asyncio.TimerHandle | None = None

    def start(self, frame: bytes) -> None:
        self._register()
        if self.timeout is not None:
            self.timer = self.conn.loop.call_later(self.timeout, self._timed_out)
        self.conn.hub.dispatch(self, frame)  # type: ignore[arg-type]

    def push(self, data: bytes) -> bool:
        if self.closing:
            return False
        frame = _FRAME.decode(data)
        if frame.type == "Error" and frame.id in (1, None):
            if frame.code == Code.RATE_LIMITED:
                retry = _ANY.decode(frame.detail).get("retry_after", 1.0)
                self.retry_after = retry if isinstance(retry, (int, float)) else 1.0
                self.pause = min(self.retry_after, MAX_RATE_PAUSE)
            self._answer(STATUS.get(frame.code, 400), _error(frame))
        elif frame.type == "Ok" and frame.id == 1 and self.timeout is None:
            self._answer(200, bytes(frame.result) + b"\n")
        elif frame.type == "Wake" and frame.id == 1:
            woke = _ANY.decode(data)
            woke.pop("type", None)
            woke.pop("id", None)
            self._answer(200, encode(woke) + b"\n")
        return False

    def flush(self) -> None:
        """Answers are written as they come."""

    def close(self, code: int, reason: str) -> None:
        """The hub ends this session (stopping, taken over): answer 503 unless answered already."""
        if not self.closing:
            self._answer(503, _error_body("unavailable", reason), close=True)

    def _timed_out(self) -> None:
        self.timer = None
        if not self.closing:
            self._answer(408, _error_body("timed_out", f"nothing woke the waiter in {self.timeout:g} s"))

    def _answer(self, status: int, body: bytes, close: bool = False) -> None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        extra = None
        if status == 429:
            extra = [("Retry-After", str(max(1, math.ceil(self.retry_after))))]
        self.conn.loop.call_soon(self._gone)
        if self.conn.exchange is self:  # a client over its rate is not read again until it may send again
            self.conn.exchange = None
            self.conn.reply(status, body, extra, close=close, pause=self.pause)

    def dropped(self) -> None:
        """The client went before the answer: the session goes (a waiter is disarmed)."""
        if not self.closing:
            self.closing = True
            if self.timer is not None:
                self.timer.cancel()
            self._gone()


class Stream(_Session):
    """`GET /v1/events`: a session attached as the token's agent, its messages and triggers as SSE."""

    __slots__ = ("expect", "keepalive", "open", "outbox", "queued")

    def __init__(self, conn: Http, expect: int) -> None:
        super().__init__(conn)
        self.expect = expect  # replies (attach, subscribes) still to come before the stream opens
        self.open = False
        self.outbox: deque[bytes] = deque()
        self.queued = 0
        self.keepalive: asyncio.TimerHandle | None = None

    def start(self, frames: list[bytes]) -> None:
        self._register()
        for frame in frames:
            self.conn.hub.dispatch(self, frame)  # type: ignore[arg-type]

    def push(self, data: bytes) -> bool:
        if self.closing:
            return False
        frame = _FRAME.decode(data)
        kind = frame.type
        if kind == "Error" and not self.open:
            self.closing = True
            status = STATUS.get(frame.code, 400)
            self.conn.exchange = None
            self.conn.reply(status, _error(frame), close=True)
            self.conn.loop.call_soon(self._gone)
            return False
        if kind == "Ok" and not self.open:
            self.expect -= 1
            if self.expect == 0:
                self._open()
            return False
        if kind == "Delivery":
            message = _ANY.decode(data)["message"]
            seq = message["seq"]
            out = b"id: %d\nevent: message\ndata: %s\n\n" % (seq, encode(message))
        elif kind == "Trigger":
            out = b"event: trigger\ndata: %s\n\n" % data
        elif kind == "Notice":
            out = b"event: notice\ndata: %s\n\n" % data
        else:
            return False
        config = self.conn.hub.config
        if len(self.outbox) >= config.outbox_frames or self.queued + len(out) > config.outbox_bytes:
            self.close(1008, "slow reader")
            return False
        self.outbox.append(out)
        self.queued += len(out)
        return self.open

    def _open(self) -> None:
        self.open = True
        self.conn.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            b"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n: attached\n\n"
        )
        self.flush()
        self._tick()

    def _tick(self) -> None:
        if self.closing:
            return
        self.conn.write(b": keep-alive\n\n")
        self.keepalive = self.conn.loop.call_later(KEEPALIVE_SECONDS, self._tick)

    def flush(self) -> None:
        if not self.open or self.closing or not self.outbox:
            return
        data = b"".join(self.outbox)
        self.outbox.clear()
        self.queued = 0
        self.conn.write(data)
        if self.conn.transport.get_write_buffer_size() > self.conn.hub.config.outbox_bytes:
            self.close(1008, "slow reader")  # it resumes with Last-Event-ID; nothing is kept for it

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        if self.keepalive is not None:
            self.keepalive.cancel()
        if not self.open:
            self.conn.exchange = None
            self.conn.reply(503, _error_body("unavailable", reason), close=True)
        elif code == 1008:
            self.conn.transport.abort()  # a slow reader: what is buffered for it is dropped
        else:
            self.conn.shut()
        self.conn.loop.call_soon(self._gone)

    def dropped(self) -> None:
        if not self.closing:
            self.closing = True
            if self.keepalive is not None:
                self.keepalive.cancel()
            self._gone()


def _error(frame: _Frame) -> bytes:
    return _error_body(frame.code, str(frame.message), bytes(frame.detail))


def _parse_head(head: bytes) -> tuple[str, str, str, Headers]:
    """Request line and headers, or a _Problem (400; 505 for a version other than 1.x)."""
    try:
        text = head.decode("latin-1")
    except UnicodeError:  # pragma: no cover - latin-1 decodes any byte
        raise _Problem(400, "bad_request", "an unreadable request head", True) from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith("/"):
        raise _Problem(400, "bad_request", "a bad request line", True)
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _Problem(505, "bad_request", "HTTP/1.0 or HTTP/1.1 only", True)
    headers = Headers()
    if len(lines) > 101:
        raise _Problem(431, "too_large", "more than 100 headers", True)
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or not name.isascii():
            raise _Problem(400, "bad_request", "a bad header line", True)
        headers[name] = value.strip()
    return method, unquote(target) if "%" in target.partition("?")[0] else target, version, headers


def _keep_alive(version: str, headers: Headers) -> bool:
    connection = headers.get("Connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


# -- OpenAPI ----------------------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 for the HTTP API, generated from the wire command and result types."""
    command_types = [_schemable(t) for t in typing.get_args(commands.Command)]
    result_types = [getattr(results, name) for name in results.__all__]
    result_types = [t for t in result_types if isinstance(t, type) and issubclass(t, msgspec.Struct)]
    extra = [Error, Wake, Trigger, Notice, Message]
    schemas, components = msgspec.json.schema_components(
        [*command_types, *result_types, *extra], ref_template="#/components/schemas/{name}"
    )
    refs = dict(zip([*command_types, *result_types, *extra], schemas, strict=True))
    error_schema = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "enum": sorted(str(c) for c in Code)},
                    "message": {"type": "string"},
                    "detail": {"type": "object"},
                },
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }
    components["HttpError"] = error_schema
    any_result = {"anyOf": [refs[t] for t in result_types]}
    errors = {
        str(status): {
            "description": ", ".join(sorted(str(c) for c, s in STATUS.items() if s == status)),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HttpError"}}},
        }
        for status in sorted(set(STATUS.values()))
    }
    paths: dict[str, Any] = {}
    for cmd in command_types:
        tag = str(cmd.__struct_config__.tag)
        name = cmd.__name__
        body = components[name]
        props = {k: v for k, v in body.get("properties", {}).items() if k not in _RESERVED}
        request = {**body, "properties": props}
        request["required"] = [k for k in body.get("required", []) if k not in _RESERVED]
        if tag == "wait":
            props["timeout"] = {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": DEFAULT_WAIT}
        components[f"{name}Body"] = request
        ok: dict[str, Any] = {"description": "the wire `ok` result"}
        ok["content"] = {"application/json": {"schema": refs[Wake] if tag == "wait" else any_result}}
        paths[f"/v1/{tag}"] = {
            "post": {
                "operationId": tag.replace(".", "_"),
                "summary": (cmd.__doc__ or tag).strip().splitlines()[0],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}Body"}}},
                },
                "responses": {"200": ok, **errors},
            }
        }
    paths["/v1/events"] = {
        "get": {
            "operationId": "events",
            "summary": "Server-Sent Events: the messages (`id:` = seq) and triggers for the token's agent",
            "parameters": [
                {"name": "room", "in": "query", "schema": {"type": "string"}},
                {"name": "name", "in": "query", "schema": {"type": "string"}},
                {"name": "after", "in": "query", "schema": {"type": "integer"}},
                {"name": "expr", "in": "query", "schema": {"type": "string"}},
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
            ],
            "responses": {
                "200": {"description": "an event stream", "content": {"text/event-stream": {}}},
                **errors,
            },
        }
    }
    paths["/v1/openapi.json"] = {
        "get": {"operationId": "openapi", "responses": {"200": {"description": "this document"}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Synapse Hub HTTP API", "version": _version()},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


def _schemable(cmd: Any) -> Any:
    """The command itself, or (a Raw default, which JSON Schema cannot show) a twin with a null default."""
    fields = msgspec.structs.fields(cmd)
    if not any(type(f.default) is msgspec.Raw for f in fields):
        return cmd
    config = cmd.__struct_config__
    spec: list[Any] = []
    for f in fields:
        if f.required:
            default = msgspec.field(name=f.encode_name)
        elif f.default is msgspec.NODEFAULT:
            default = msgspec.field(default_factory=f.default_factory, name=f.encode_name)
        else:
            value = None if type(f.default) is msgspec.Raw else f.default
            default = msgspec.field(default=value, name=f.encode_name)
        spec.append((f.name, f.type, default))
    return msgspec.defstruct(
        cmd.__name__,
        spec,
        tag_field=config.tag_field,
        tag=config.tag,
        kw_only=True,
        forbid_unknown_fields=True,
        module=cmd.__module__,
    )


def _version() -> str:
    from hub.version import __version__

    return str(__version__)
