"""Shared benchmark parts: a hub subprocess on 127.0.0.1, a lean raw WebSocket client, percentiles."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import apply_mask  # type: ignore[attr-defined]  # websockets' C speedup when built

from hub.protocol import commands as c
from hub.protocol.codec import decode_frame, encode
from hub.protocol.errors import HubError
from hub.protocol.frames import Delivery, Error, Ok, Wake

__all__ = ["HubProc", "LeanAgent", "RawAgent", "cpu_seconds", "cpu_times", "pct", "rss_mb", "table"]

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_times(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (or of its thread `tid`)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (or of its thread `tid`), in seconds."""
    return sum(cpu_times(pid, tid))


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


class HubProc:
    """`python -m hub hub` on 127.0.0.1 with an ephemeral port and its own SQLite file (`launcher` replaces
    `-m hub`: a script that runs the command line its own way, e.g. under tracemalloc)."""

    def __init__(self, *args: str, db: str | None = None, launcher: tuple[str, ...] = ("-m", "hub")) -> None:
        self.tmp = tempfile.mkdtemp(prefix="synapse-bench-")
        self.db = db or os.path.join(self.tmp, "log.db")
        self.args = args
        self.launcher = launcher
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, port: int = 0) -> HubProc:
        env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=self.tmp)
        cmd = [
            sys.executable,
            *self.launcher,
            "hub",
            "--port",
            str(port),
            "--db",
            self.db,
            "--log-level",
            "warning",
            "--rate-per-agent",
            "1000000",
            "--rate-burst",
            "1000000",
            *self.args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.match(r"listening (ws://\S+)", line)
        if not m:
            raise RuntimeError(f"hub did not start: {line!r}")
        self.url = m.group(1)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> HubProc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RawAgent:
    """A minimal client: one connection, pipelined requests, deliveries counted or queued."""

    keys: Iterator[int] | None = None  # set (an itertools.count): every send carries a fresh idempotency key

    def __init__(self, url: str, name: str, room: str = "default") -> None:
        self.url = url
        self.name = name
        self.room = room
        self.token: str | None = None
        self.ws: ClientConnection | None = None
        self.ids = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.deliveries: asyncio.Queue[Any] = asyncio.Queue()
        self.delivered = 0
        self.keep = True
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> RawAgent:
        """The WebSocket connection alone (no join) and its reader."""
        self.ws = await connect(self.url, max_size=None, compression=None)
        self.reader = asyncio.create_task(self._read())
        return self

    async def open(self, attach: bool = True) -> RawAgent:
        await self.connect()
        await self.join()
        if attach:
            await self.attach()
        return self

    async def join(self) -> None:
        self.token = (await self.request(c.Join(id=self.next(), room=self.room, name=self.name)))["token"]

    async def attach(self) -> None:
        await self.request(c.Attach(id=self.next(), room=self.room, name=self.name, token=self.token))

    def next(self) -> int:
        self.ids += 1
        return self.ids

    async def _read(self) -> None:
        assert self.ws is not None
        async for data in self.ws:
            self._message(data)

    def _message(self, data: bytes | str) -> None:
        """One frame from the hub: a delivery counted (and queued), a reply or a wake resolves its request."""
        frame = decode_frame(data)
        if type(frame) is Delivery:
            self.delivered += 1
            if self.keep:
                self.deliveries.put_nowait(frame.message)
        elif type(frame) in (Ok, Error):
            fut = self.pending.pop(frame.id, None)  # type: ignore[union-attr]
            if fut is not None and not fut.done():
                if type(frame) is Ok:
                    fut.set_result(frame.result)  # type: ignore[union-attr]
                else:
                    fut.set_exception(HubError(frame.code, frame.message))  # type: ignore[union-attr]
        elif type(frame) is Wake:
            fut = self.pending.pop(-frame.id, None)
            if fut is not None:
                fut.set_result(frame)

    async def request(self, cmd: Any) -> Any:
        assert self.ws is not None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[cmd.id] = fut
        await self.ws.send(encode(cmd), text=True)
        return await fut

    def send_cmd(self, to: str, body: Any) -> c.Send:
        return c.Send(
            id=self.next(),
            room=self.room,
            token=self.token,
            name=self.name,
            to=(to,),
            body=msgspec.Raw(encode(body)),
            key=None if self.keys is None else f"k{next(self.keys)}",
        )

    async def send(self, to: str, body: Any) -> int:
        return int((await self.request(self.send_cmd(to, body)))["seq"])

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            try:
                await self.reader
            except Exception:
                pass


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class LeanAgent(asyncio.Protocol):
    """RawAgent's interface (open, request, send_cmd, delivered, close) over a plain asyncio protocol: the
    RFC 6455 handshake (the 101 and its accept key checked) and frames written by hand, so that a fleet of
    clients on the hub's own cores costs them a fraction of websockets' client (scale.py's connect figure is
    then the hub's, not the clients'). Masked frames out; in: text, binary, continuation, ping (answered),
    pong, close (answered). Not a general client: no extensions, no subprotocols, no TLS."""

    keys: Iterator[int] | None = None

    def __init__(self, url: str, name: str, room: str = "default") -> None:
        self.url = url
        self.name = name
        self.room = room
        self.token: str | None = None
        self.ids = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.deliveries: asyncio.Queue[Any] = asyncio.Queue()
        self.delivered = 0
        self.keep = True
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.accept = b""
        self.upgraded: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] | None = None
        self.parts: list[bytes] = []  # a fragmented message's frames so far

    async def connect(self) -> LeanAgent:
        loop = asyncio.get_running_loop()
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.upgraded = loop.create_future()
        self.lost = loop.create_future()
        await loop.create_connection(lambda: self, host, port)
        key = base64.b64encode(random.randbytes(16))
        self.accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        assert self.transport is not None
        self.transport.write(
            b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host.encode(), port, key)
        )
        await self.upgraded
        return self

    open = RawAgent.open
    join = RawAgent.join
    attach = RawAgent.attach
    next = RawAgent.next
    send_cmd = RawAgent.send_cmd
    send = RawAgent.send
    _message = RawAgent._message

    async def request(self, cmd: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[cmd.id] = fut
        self._write(0x1, encode(cmd))
        return await fut

    def _write(self, opcode: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = random.randbytes(4)
        assert self.transport is not None
        self.transport.write(head + mask + apply_mask(data, mask))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        assert self.upgraded is not None
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if (
                not head.startswith(b"HTTP/1.1 101 ")
                or b"\r\nSec-WebSocket-Accept: " + self.accept not in head
            ):
                self.upgraded.set_exception(ConnectionError(f"upgrade refused: {head[:200]!r}"))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, at = b1 & 0x7F, pos + 2
            if n == 126:
                if size - at < 2:
                    break
                n, at = int.from_bytes(buf[at : at + 2], "big"), at + 2
            elif n == 127:
                if size - at < 8:
                    break
                n, at = int.from_bytes(buf[at : at + 8], "big"), at + 8
            if b1 & 0x80:  # a server does not mask; unmask anyway
                if size - at < 4:
                    break
                mask, at = bytes(buf[at : at + 4]), at + 4
            else:
                mask = b""
            if size - at < n:
                break
            payload = bytes(buf[at : at + n])
            pos = at + n
            self._frame(b0, apply_mask(payload, mask) if mask else payload)
        del buf[:pos]

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode in (0x0, 0x1, 0x2):
            if not b0 & 0x80:
                self.parts.append(payload)
                return
            if self.parts:
                payload, self.parts = b"".join([*self.parts, payload]), []
            self._message(payload)
        elif opcode == 0x9:
            self._write(0xA, payload)
        elif opcode == 0x8:
            self._write(0x8, payload[:2])
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        gone = ConnectionError(f"connection lost: {exc}")
        if self.upgraded is not None and not self.upgraded.done():
            self.upgraded.set_exception(gone)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(gone)
        self.pending.clear()
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    async def close(self) -> None:
        if self.transport is None or self.lost is None or self.transport.is_closing():
            return
        self._write(0x8, (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), 10)
        except TimeoutError:
            self.transport.abort()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def now() -> float:
    return time.perf_counter()
