"""What the fault tests share: a filler for a tiny filesystem, a raw wire client, /readyz and /metrics, and
waiting on a condition with a deadline (never on luck)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ThreadHub, seconds

FS_BYTES = 4 << 20  # the log's whole filesystem: small enough to fill in a moment


def fill(where: Path, name: str = "filler", leave: int = 0) -> Path:
    """Write a filler file until the filesystem has no byte left (then give `leave` bytes back); returns it
    (delete it to free the space)."""
    filler = where / name
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                written = out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
                continue
            if written is not None and written < len(chunk):
                chunk = chunk[: max(1, len(chunk) // 2)]
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def immutable(path: Path, on: bool) -> None:
    """chattr +i / -i: even root cannot open the file for writing (chmod does not stop root)."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr on this machine: cannot make the log read-only for root")
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")


def until(what: str, check: Callable[[], Any], ms: float = 10_000) -> Any:
    """Poll `check` until it returns something true (and return it), or fail after `ms` (scaled)."""
    deadline = time.monotonic() + seconds(ms)
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def http_get(th: ThreadHub, path: str) -> tuple[int, bytes]:
    url = th.url.replace("ws://", "http://") + path
    try:
        with urllib.request.urlopen(url, timeout=seconds(5_000)) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def readyz(th: ThreadHub) -> tuple[int, dict[str, Any]]:
    status, body = http_get(th, "/readyz")
    return status, json.loads(body)


def metric(th: ThreadHub, name: str) -> float:
    """One unlabelled sample of /metrics."""
    _, body = http_get(th, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


class Refused(Exception):
    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame['code']}: {frame['message']}")
        self.code: str = frame["code"]
        self.message: str = frame["message"]


class Wire:
    """A raw WebSocket client: JSON commands out, frames in; replies matched by id, the rest kept in order."""

    def __init__(self, url: str) -> None:
        self.stack = contextlib.ExitStack()
        self.ws: ClientConnection = self.stack.enter_context(
            connect(url, open_timeout=seconds(10_000), max_size=None)
        )
        self.ids = itertools.count(1)
        self.frames: deque[dict[str, Any]] = deque()  # frames read while looking for something else
        self.token: str | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.close()

    def send(self, op: str, **fields: Any) -> int:
        cmd_id = next(self.ids)
        if self.token is not None and "token" not in fields:
            fields["token"] = self.token
        self.ws.send(json.dumps({"op": op, "id": cmd_id, **fields}))
        return cmd_id

    def next_frame(self, ms: float = 10_000) -> dict[str, Any]:
        if self.frames:
            return self.frames.popleft()
        frame: dict[str, Any] = json.loads(self.ws.recv(timeout=seconds(ms)))
        return frame

    def answer(self, cmd_id: int, ms: float = 10_000) -> dict[str, Any]:
        """The frame that answers command `cmd_id` (Ok, Error or Wake); others stay queued."""
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                frame = (
                    self.frames.popleft() if self.frames else json.loads(self.ws.recv(timeout=seconds(ms)))
                )
                if frame.get("id") == cmd_id:
                    return frame
                skipped.append(frame)
        finally:
            self.frames.extendleft(reversed(skipped))

    def woken(self, wait_id: int) -> dict[str, Any]:
        """The Wake of wait `wait_id` (its Ok, "armed", comes first); Refused if it is answered with an Error."""
        while True:
            frame = self.answer(wait_id)
            if frame["type"] == "Error":
                raise Refused(frame)
            if frame["type"] == "Wake":
                return frame

    def call(self, op: str, **fields: Any) -> Any:
        """Send and wait for the answer: the result, or Refused."""
        frame = self.answer(self.send(op, **fields))
        if frame["type"] == "Error":
            raise Refused(frame)
        return frame.get("result", frame)

    def join(self, name: str) -> Wire:
        self.token = self.call("join", name=name)["token"]
        return self


class Cluster:
    """A throwaway PostgreSQL cluster of our own on a free loopback port, to stop and start at will (the
    server .ci/run starts is shared: no test may stop it). As root it runs as an unprivileged user."""

    def __init__(self, bindir: Path, where: Path, user: str | None) -> None:
        self.bindir = bindir
        self.data = where / "data"
        self.where = where
        self.user = user
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql+psycopg://synapse@127.0.0.1:{self.port}/postgres"
        self.running = False

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds(60_000))
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "synapse",
            "--auth=trust",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.where} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.where / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        self.running = True

    def start_if_stopped(self) -> None:
        if not self.running:
            self.start()

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def kill(self) -> None:
        """Stop it at once, as a crash would (no checkpoint, every session cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False


def pg_bindir() -> Path | None:
    """The newest PostgreSQL server binaries: on PATH, or where Debian puts them."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return next((d for d in reversed(dirs) if (d / "initdb").exists()), None)
