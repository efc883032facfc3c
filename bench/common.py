"""Shared benchmark parts: a hub subprocess on 127.0.0.1, a lean raw WebSocket client, percentiles."""

from __future__ import annotations

import asyncio
import os
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

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from hub.protocol import commands as c
from hub.protocol.codec import decode_frame, encode
from hub.protocol.errors import HubError
from hub.protocol.frames import Delivery, Error, Ok, Wake

__all__ = ["HubProc", "RawAgent", "cpu_seconds", "cpu_times", "pct", "rss_mb", "table"]

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
            frame = decode_frame(data)
            if type(frame) is Delivery:
                self.delivered += 1
                if self.keep:
                    self.deliveries.put_nowait(frame.message)
            elif type(frame) in (Ok, Error):
                fut = self.pending.pop(frame.id, None)  # type: ignore[union-attr]
                if fut is not None:
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


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def now() -> float:
    return time.perf_counter()
