"""A minimal blocking WebSocket client (RFC 6455) for SyncAgent: stdlib only, so a CLI process starts fast.

Text frames out (masked, as clients must), text/binary/continuation frames in; pings are answered, a close
frame ends the connection. TLS (wss://) through an ssl context the caller builds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["Closed", "Socket"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CONT, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_MAX_HEADER = 65_536


class Closed(Exception):
    """The connection ended; `code` and `reason` come from the hub's close frame when it sent one."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code} {reason}".strip() if code is not None else reason)
        self.code = code
        self.reason = reason


def _split(url: str) -> tuple[bool, str, int, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    netloc, _, path = rest.partition("/")
    secure = scheme == "wss"
    if netloc.startswith("["):
        host, _, port = netloc[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = netloc.partition(":")
    if not host:
        raise ValueError(f"no host in {url!r}")
    return secure, host, int(port) if port else (443 if secure else 80), "/" + path


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class Socket:
    """One client connection: `send` text, `recv` the next message (TimeoutError when none came in time)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.parts: list[bytes] = []
        self.closed: Closed | None = None
        self.broken: Closed | None = None  # a send failed; what the hub sent before it may still be read

    @classmethod
    def open(cls, url: str, timeout: float, ssl_context: Callable[[], Any] | None = None) -> Socket:
        """Connect and complete the opening handshake. Raises OSError, TimeoutError or ValueError."""
        secure, host, port, path = _split(url)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if secure:
                context = ssl_context() if ssl_context is not None else None
                if context is None:
                    import ssl

                    context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=host)
            key = base64.b64encode(os.urandom(16))
            where = f"[{host}]" if ":" in host else host
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {where}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            sock.sendall(request.encode())
            conn = cls(sock)
            head = conn._read_head()
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                raise ValueError(
                    f"the server refused the WebSocket upgrade: {status.decode(errors='replace')}"
                )
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            if accept.lower() not in head.lower():
                raise ValueError("the server's handshake did not accept our key")
            sock.settimeout(None)
            return conn
        except BaseException:
            sock.close()
            raise

    def _read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection during the handshake")
            self.buf += chunk
            if len(self.buf) > _MAX_HEADER:
                raise ValueError("the server's handshake is too long")
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return head

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65_536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        key = os.urandom(4)
        self.sock.sendall(header + key + _mask(payload, key))

    def send(self, data: bytes | str) -> None:
        """Send one text message. Raises Closed once the connection has ended (`recv` may then still return
        what the hub sent before, its close frame included: why it closed)."""
        if self.closed is not None:
            raise self.closed
        if self.broken is not None:
            raise self.broken
        try:
            self._frame(_TEXT, data.encode() if isinstance(data, str) else data)
        except OSError as exc:
            self.broken = Closed(None, f"connection lost: {exc}")
            raise self.broken from None

    def recv(self, timeout: float | None = None) -> bytes:
        """The next whole message; TimeoutError after `timeout` seconds (the stream stays consistent)."""
        while True:
            message = self._parse()
            if message is not None:
                return message
            if self.closed is not None:
                raise self.closed
            if timeout is not None and timeout <= 0:
                raise TimeoutError("no message in time")
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(65_536)
            except TimeoutError:
                raise
            except OSError as exc:
                self.closed = Closed(None, f"connection lost: {exc}")
                raise self.closed from None
            if not chunk:
                self.closed = Closed(None, "connection closed without a close frame")
                raise self.closed
            self.buf += chunk

    def _parse(self) -> bytes | None:
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return None
                n, at = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return None
                n, at = struct.unpack_from("!Q", buf, 2)[0], 10
            key = b""
            if b1 & 0x80:  # servers do not mask; tolerate it anyway
                if len(buf) < at + 4:
                    return None
                key, at = bytes(buf[at : at + 4]), at + 4
            if len(buf) < at + n:
                return None
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            if key:
                payload = _mask(payload, key)
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode == _PING:
                try:
                    self._frame(_PONG, payload)
                except OSError:
                    pass  # the next recv finds the connection gone
            elif opcode == _CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.closed = Closed(code, payload[2:].decode(errors="replace"))
                try:
                    self._frame(_CLOSE, payload[:2])
                except OSError:
                    pass
                return None
            elif opcode in (_TEXT, _BINARY, _CONT):
                self.parts.append(payload)
                if fin:
                    message = b"".join(self.parts)
                    self.parts = []
                    return message
        return None

    def close(self) -> None:
        """Say goodbye (1000) and drop the connection without waiting for the hub's answer."""
        if self.closed is None:
            try:
                self._frame(_CLOSE, struct.pack("!H", 1000))
            except OSError:
                pass
            self.closed = Closed(1000, "closed by the client")
        self.sock.close()
