"""Plain HTTP GET on the hub's port: the dashboard (/), its static files, /metrics, /healthz and /readyz."""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

import msgspec
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from hub.protocol.codec import encode
from hub.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

__all__ = ["STATIC", "Health", "is_upgrade", "respond", "switching", "unavailable"]

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page loads only its own files and talks only to its own hub: injected markup could not run a script.
_PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # `/?token=...` must not leak through a Referer
    ("X-Frame-Options", "DENY"),
]


def _response(
    status: HTTPStatus, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None
) -> Response:
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    for name, value in extra or ():
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)


def _static(name: str) -> Response:
    """One file of the dashboard, by exact name: nothing outside the static folder is reachable."""
    path = STATIC / name
    suffix = path.suffix
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _TYPES or not path.is_file():
        return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
    return _response(HTTPStatus.OK, path.read_bytes(), _TYPES[suffix], _PAGE_HEADERS)


class Health(msgspec.Struct, kw_only=True):
    """The hub's health as /healthz and /readyz tell it."""

    alive: bool  # serving, its log writable (or at least not failed)
    ready: bool
    replay_done: bool
    log_writable: bool
    draining: bool
    replayed: int
    position: int
    degraded: str | None = None  # why the log refuses writes (the hub then refuses them too, serves reads)
    standby: bool = False  # following a log another hub owns (--standby): alive, not ready


def is_upgrade(request: Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, as websockets.utils.accept_key uses it
_OTHER = ("sec-websocket-extensions", "sec-websocket-protocol")  # what a plain upgrade does not ask for
_date: tuple[int, str] = (-1, "")  # (second, its Date header): one formatdate a second, not one per upgrade


def switching(request: Request) -> Response | None:
    """The 101 answer to a plain WebSocket upgrade (GET, HTTP/1.1, `Connection: Upgrade`, `Upgrade: websocket`,
    one valid key, version 13, at most one Origin, no extension or subprotocol asked for), with exactly the
    headers websockets' `ServerProtocol.accept` gives it; None for anything else, which `accept` then checks
    (and refuses with its own status) itself. The hub offers no extension or subprotocol, so accepting
    negotiates nothing; this skips accept's general header parsing, the costliest part of an upgrade."""
    global _date
    if request.method != "GET" or request.protocol != "HTTP/1.1":
        return None
    found = request.headers._dict  # name (lower case) → its values; websockets keeps no other index
    connection = found.get("connection")
    upgrade = found.get("upgrade")
    key = found.get("sec-websocket-key")
    version = found.get("sec-websocket-version")
    origin = found.get("origin")
    if (
        connection is None
        or len(connection) != 1
        or connection[0].lower() != "upgrade"
        or upgrade is None
        or len(upgrade) != 1
        or upgrade[0].lower() != "websocket"
        or key is None
        or len(key) != 1
        or version != ["13"]
        or (origin is not None and len(origin) != 1)
        or _OTHER[0] in found
        or _OTHER[1] in found
    ):
        return None
    raw = key[0].encode()
    try:
        if len(base64.b64decode(raw, validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True))
    headers = Headers()
    headers.set_insecure("Date", _date[1])
    headers.set_insecure("Upgrade", "websocket")
    headers.set_insecure("Connection", "Upgrade")
    headers.set_insecure(
        "Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(raw + _GUID).digest()).decode()
    )
    return Response(101, "Switching Protocols", headers)


def unavailable(reason: str) -> Response:
    """A refused upgrade: 503 with the reason, and when to try again."""
    return _response(
        HTTPStatus.SERVICE_UNAVAILABLE,
        encode({"error": {"code": "unavailable", "message": reason}}) + b"\n",
        "application/json",
        [("Retry-After", "1")],
    )


def respond(health: Callable[[], Health], metrics: Callable[[], bytes], request: Request) -> Response | None:
    """Answer a plain GET; None lets a WebSocket upgrade through."""
    if is_upgrade(request):
        return None
    path = request.path.split("?", 1)[0]
    if path == "/healthz":
        ok = health().alive
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        return _response(status, encode({"ok": ok}) + b"\n", "application/json")
    if path == "/readyz":
        h = health()
        body = {
            "ready": h.ready,
            "replay_done": h.replay_done,
            "log_writable": h.log_writable,
            "draining": h.draining,
            "replayed": h.replayed,
            "position": h.position,
            "degraded": h.degraded,
            "standby": h.standby,
        }
        status = HTTPStatus.OK if h.ready else HTTPStatus.SERVICE_UNAVAILABLE
        return _response(status, encode(body) + b"\n", "application/json")
    if path == "/metrics":
        return _response(HTTPStatus.OK, metrics(), METRICS_CONTENT_TYPE)
    if path in ("/", "/index.html"):
        return _static("index.html")
    if path.startswith("/static/"):
        return _static(path[len("/static/") :])
    if path == "/favicon.ico":
        return _response(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
    return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
