"""Shared fixtures: a real hub on 127.0.0.1 (in-process thread or `python -m hub` subprocess) and the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from hub.config import HubConfig
from hub.core.machine import Machine
from hub.log.store import EventLog

if TYPE_CHECKING:
    from hub.server.hub import Hub

MS = float(os.environ.get("SYNAPSE_TEST_MS", "1")) / 1000.0  # one millisecond, scaled on slow machines
ROOT = Path(__file__).resolve().parent.parent


def seconds(ms: float) -> float:
    """A timeout of `ms` milliseconds, scaled by SYNAPSE_TEST_MS."""
    return ms * MS


HOME_DIRS = (
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_DATA_HOME", ".local/share"),
    ("XDG_STATE_HOME", ".local/state"),
    ("XDG_CACHE_HOME", ".cache"),
)


@pytest.fixture(scope="session", autouse=True)
def isolated_session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home for fixtures that outlive one test (module- and session-scoped ones start before the per-test
    home below): a hub writing a shared history, a browser. Nothing reaches the real home directory."""
    home = tmp_path_factory.mktemp("session-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        for var, sub in HOME_DIRS:
            mp.setenv(var, str(home / sub))
        yield home


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets a home of its own: no token, cursor or log ever lands in the real home directory."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var, sub in HOME_DIRS:
        monkeypatch.setenv(var, str(home / sub))
    for var in (
        "SYNAPSE_HUB",
        "SYNAPSE_NAME",
        "SYNAPSE_TOKEN",
        "SYNAPSE_ROOM",
        "SYNAPSE_ADMIN_TOKEN",
        "SYNAPSE_INVITE",
        "SYNAPSE_RETRIES",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


class ThreadHub:
    """A real Hub serving on its own thread and event loop, so blocking clients can reach it too."""

    def __init__(self, config: HubConfig, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock = clock  # the hub's clock (default: time.time); a test may drive it, as ManualClock
        self.loop = asyncio.new_event_loop()
        self.hub: Hub | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.hub = self.call(self._start())

    async def _start(self) -> Any:
        from hub.server.hub import Hub

        hub = Hub(self.config) if self.clock is None else Hub(self.config, clock=self.clock)
        await hub.start()
        return hub

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the hub's loop and return its result."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    @property
    def url(self) -> str:
        assert self.hub is not None
        return self.hub.url

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if self.hub is not None and not self.hub.stopped.is_set():
            self.call(self.hub.stop())
        # a task left pending on a closed loop warns when it is collected, in whichever test runs then
        self.call(_finish_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _finish_tasks() -> None:
    """Cancel the loop's other tasks (connection handlers still closing, keep-alives) and wait for them."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(3):  # closed transports release their sockets in callbacks a loop pass or two later
        await asyncio.sleep(0)


class ManualClock:
    """A hub clock that moves only when the test says so: TTLs run out without waiting for them."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def fold(db: Path) -> Machine:
    """A fresh Machine folded from every row of the log (read beside the running hub)."""
    log = EventLog(str(db), owner=False)
    try:
        rows = log.read()
    finally:
        log.close()
    machine = Machine()
    machine.fold(rows)
    return machine


def hub_config(db: Path, **kw: Any) -> HubConfig:
    return HubConfig(host="127.0.0.1", port=0, db=str(db), **kw)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


@pytest.fixture
def hub(db_path: Path) -> Iterator[ThreadHub]:
    """A real hub on 127.0.0.1 with an ephemeral port and a real SQLite file."""
    th = ThreadHub(hub_config(db_path))
    try:
        yield th
    finally:
        th.stop()


class HubProcess:
    """`python -m hub hub` as a subprocess (for SIGKILL tests and CLI processes)."""

    def __init__(self, db: Path | str, env: dict[str, str], *args: str) -> None:  # str: a database URL
        self.db = db
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.standby = False

    def start(self, port: int = 0) -> HubProcess:
        """Start it and wait until it listens: serving, or (with --standby) standing by (`standby` True)."""
        cmd = [sys.executable, "-m", "hub", "hub", "--port", str(port), "--db", str(self.db), *self.args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.match(r"(listening|standby) (ws://\S+)", line)
        if not match:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.kill()
            self.close_pipes()
            raise RuntimeError(f"hub did not start: {line!r} {err[-2000:]}")
        self.standby = match.group(1) == "standby"
        self.url = match.group(2)
        return self

    def took_over(self) -> float:
        """Wait (bounded) until a standby says it serves; the monotonic time it said so."""
        assert self.proc is not None and self.proc.stdout is not None and self.standby
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(seconds(30_000))
        assert said and said[0].startswith("listening "), f"the standby did not take over: {said!r}"
        self.standby = False
        return time.monotonic()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def close_pipes(self) -> None:
        """A stopped hub's pipes (start() leaves them open)."""
        assert self.proc is not None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def restart(self, how: str = "kill") -> str:
        """SIGKILL (or SIGTERM, which drains) the hub and start it again on the same log (on a new port);
        returns how it came back: its `hub.restored ... snapshot=...` log line."""
        if how == "kill":
            self.kill()
        else:
            assert self.terminate() == 0
        self.close_pipes()
        self.start()
        assert self.proc is not None and self.proc.stderr is not None
        for _ in range(50):
            line = self.proc.stderr.readline()
            if "hub.restored" in line:
                return line
        raise AssertionError("no hub.restored line")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def timed_hub(db_path: Path, clock: ManualClock) -> Iterator[ThreadHub]:
    """A real hub whose clock moves only when the test advances it (`clock`)."""
    th = ThreadHub(hub_config(db_path), clock=clock)
    try:
        yield th
    finally:
        th.stop()


@pytest.fixture
def client_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose token file lives in the test's own folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def hub_procs(db_path: Path, client_env: dict[str, str]) -> Iterator[Callable[..., HubProcess]]:
    """`python -m hub hub ARGS...` subprocesses on the test's SQLite file (killed, pipes closed, at teardown)."""
    started: list[HubProcess] = []

    def start(*args: str) -> HubProcess:
        hp = HubProcess(db_path, client_env, *args).start()
        started.append(hp)
        return hp

    yield start
    for hp in started:
        hp.kill()
        hp.close_pipes()


@pytest.fixture
def hub_process(db_path: Path, client_env: dict[str, str]) -> Iterator[HubProcess]:
    hp = HubProcess(db_path, client_env).start()
    try:
        yield hp
    finally:
        hp.kill()


class Cli:
    """Runs `synapse` in-process with click's CliRunner against a hub."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env

    def __call__(self, *args: str, input: str | None = None) -> Result:
        from cli.main import synapse

        env = {"SYNAPSE_HUB": self.url, "XDG_CONFIG_HOME": self.env["XDG_CONFIG_HOME"]}
        return CliRunner().invoke(synapse, list(args), env=env, input=input, catch_exceptions=False)


@pytest.fixture
def cli(hub: ThreadHub, client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    return Cli(hub.url, client_env)


def synapse_cmd(*args: str) -> list[str]:
    """The argv of a `synapse` process (for tests that need a real, killable process)."""
    return [sys.executable, "-m", "hub", *args]


def free_port() -> int:
    """A port nothing listens on now (picked by the OS, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Refusing:
    """A plain asyncio server on its own thread that answers every WebSocket upgrade with HTTP 503, as a hub
    standing by does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._answer, "127.0.0.1", 0), self.loop
        ).result(10)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        self.refused = 0

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            self.refused += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def refusing() -> Iterator[Refusing]:
    r = Refusing()
    try:
        yield r
    finally:
        r.close()


class Pair:
    """Two hubs of one deployment, simulated on one SQLite file: hub 1 runs (a subprocess) while hub 2's port
    is kept free; `switch` SIGKILLs hub 1 and starts hub 2 on that port and the same file. `hubs` lists both."""

    def __init__(self, db: Path, env: dict[str, str]) -> None:
        self.one = HubProcess(db, env).start()
        self.two = HubProcess(db, env)
        self.port2 = free_port()
        self.url2 = f"ws://127.0.0.1:{self.port2}"
        self.hubs = f"{self.one.url},{self.url2}"

    def kill(self) -> None:
        """SIGKILL hub 1."""
        self.one.kill()
        self.one.close_pipes()

    def start_two(self) -> None:
        self.two.start(port=self.port2)

    def switch(self) -> None:
        self.kill()
        self.start_two()

    def close(self) -> None:
        for hp in (self.one, self.two):
            if hp.proc is not None:
                hp.kill()
                if hp.proc.stdout is not None and not hp.proc.stdout.closed:
                    hp.close_pipes()


@pytest.fixture
def pair(db_path: Path, client_env: dict[str, str]) -> Iterator[Pair]:
    p = Pair(db_path, client_env)
    try:
        yield p
    finally:
        p.close()
