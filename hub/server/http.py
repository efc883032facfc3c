"""Plain HTTP GET on the hub's port: the dashboard (/), its static files, /metrics, /healthz and /readyz."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from hub.protocol.codec import encode
from hub.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from hub.server.hub import Hub

__all__ = ["STATIC", "respond"]

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


def respond(hub: Hub, connection: ServerConnection, request: Request) -> Response | None:
    """Answer a plain GET; None lets a WebSocket upgrade through."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    path = request.path.split("?", 1)[0]
    if path == "/healthz":
        ok = hub.failed is None
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        return _response(status, encode({"ok": ok}) + b"\n", "application/json")
    if path == "/readyz":
        replayed = hub.ready or hub.draining  # restore finished and the server was started
        log_ok = hub.failed is None and hub.writer is not None
        ok = hub.ready and log_ok and not hub.draining
        body = {
            "ready": ok,
            "replay_done": replayed,
            "log_writable": log_ok,
            "draining": hub.draining,
            "replayed": hub.replayed,
            "position": hub.machine.position,
        }
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        return _response(status, encode(body) + b"\n", "application/json")
    if path == "/metrics":
        return _response(HTTPStatus.OK, hub.metrics.render(), METRICS_CONTENT_TYPE)
    if path in ("/", "/index.html"):
        return _static("index.html")
    if path.startswith("/static/"):
        return _static(path[len("/static/") :])
    if path == "/favicon.ico":
        return _response(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
    return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
