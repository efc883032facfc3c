"""Plain HTTP GET on the hub's port: /healthz, /readyz (the dashboard and /metrics come with operators)."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from hub.protocol.codec import encode

if TYPE_CHECKING:
    from hub.server.hub import Hub

__all__ = ["respond"]


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(status.value, status.phrase, headers, body)


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
        ok = hub.ready and hub.failed is None and not hub.draining
        body = encode({"ready": ok, "replayed": hub.replayed, "position": hub.machine.position}) + b"\n"
        return _response(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json")
    if path == "/":
        body = b"Synapse Hub: connect a WebSocket client here (see `synapse --help`).\n"
        return _response(HTTPStatus.OK, body, "text/plain; charset=utf-8")
    return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
