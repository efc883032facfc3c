"""A small HTTP API client on http.client (one connection per instance: give each thread its own)."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from tests.conftest import seconds


class HttpAgent:
    """One keep-alive connection to a hub's HTTP API, optionally with an agent's token."""

    def __init__(self, port: int, token: str | None = None, name: str | None = None, room: str = "default"):
        self.port = port
        self.token = token
        self.name = name
        self.room = room
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds(30_000))

    def close(self) -> None:
        self.conn.close()

    def raw(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body, headers or {})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, dict(r.headers), data

    def call(self, op: str, body: dict[str, Any] | None = None, token: str | None = "") -> tuple[int, Any]:
        """POST /v1/OP; `token` "" means this agent's own (None: no Authorization header)."""
        headers = {"Content-Type": "application/json"}
        token = self.token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if self.room != "default" and body is not None:
            body = {"room": self.room, **body}
        status, _, data = self.raw("POST", f"/v1/{op}", json.dumps(body or {}).encode(), headers)
        return status, json.loads(data)

    def ok(self, op: str, body: dict[str, Any] | None = None, token: str | None = "") -> Any:
        status, result = self.call(op, body, token)
        assert status == 200, (op, status, result)
        return result

    def join(self, name: str, **kw: Any) -> HttpAgent:
        """Join `name` and return an agent holding its token (on a new connection)."""
        result = self.ok("join", {"name": name, "room": self.room, **kw}, token=None)
        return HttpAgent(self.port, result["token"], name, self.room)


def join(port: int, name: str, room: str = "default", **kw: Any) -> HttpAgent:
    lobby = HttpAgent(port, room=room)
    try:
        return lobby.join(name, **kw)
    finally:
        lobby.close()


class EventStream:
    """`GET /v1/events` read as Server-Sent Events over a plain socket."""

    def __init__(self, port: int, token: str, query: str = "", last_event_id: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=seconds(30_000))
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
        self.sock.sendall(
            f"GET /v1/events?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()
        )
        self.file = self.sock.makefile("rb")
        status_line = self.file.readline().decode()
        self.status = int(status_line.split(" ")[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.comments: list[str] = []

    def error(self) -> Any:
        length = int(self.headers["content-length"])
        return json.loads(self.file.read(length))

    def next(self) -> dict[str, Any]:
        """The next event: {"event", "id", "data"} (comments are kept aside)."""
        event: dict[str, Any] = {}
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("the stream ended")
            text = line.decode().rstrip("\n")
            if text == "":
                if event:
                    return event
                continue
            if text.startswith(":"):
                self.comments.append(text[1:].strip())
                continue
            field, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                event["data"] = json.loads(value)
            elif field == "id":
                event["id"] = int(value)
            else:
                event[field] = value

    def close(self) -> None:
        self.file.close()
        self.sock.close()
