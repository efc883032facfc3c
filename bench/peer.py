"""Benchmark driver for the peer hub synapse-channel 0.99.38, measured with a raw websockets client."""

# Peer wire protocol (read from synapse_channel/core/protocol.py, hub_connection.py, handlers/*):
#   every frame is one JSON text frame {sender, target, type, payload, timestamp, ...extra}.
#   connect   -> hub sends {"type": "welcome", "protocol_version": 7, "online_agents": [...]} at once
#   join      -> first frame binds the name: {"sender": N, "target": "System", "type": "heartbeat",
#                "payload": "online", "protocol_version": 7}; hub broadcasts
#                {"type": "presence_update", "event": "joined", "agent": N} to every socket.
#   send      -> {"sender": A, "target": B, "type": "chat", "payload": P}
#   deliver   -> the stamped chat (+ hub_id, msg_id, seq) is broadcast to EVERY socket, sender included
#                (directed routing needs --private-directed-messages, off by default; left off here).
#   claim     -> {"type": "claim", "task_id": T, "paths": [...]} -> broadcast
#                {"type": "claim_granted", "task_id": T, "owner": N, "epoch": ...} or private "claim_denied".
#   release   -> {"type": "release", "task_id": T} -> broadcast "release_granted" or private "release_denied".
# The peer's own SDK is NOT used: the bench clients speak the raw protocol with `websockets`.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

PEER_PACKAGE = "synapse-channel"
PEER_VERSION = "0.99.38"
PEER_WHEEL = Path("/tmp/peer/synapse_channel-0.99.38-py3-none-any.whl")
DEFAULT_VENV = "/tmp/synapse-peer-venv"
HOST = "127.0.0.1"  # the only host this bench ever targets
PROTOCOL_VERSION = 7
# permessage-deflate off: the peer's server would otherwise compress every frame per socket.
COMPRESSION: str | None = None

Handler = Callable[[str], Awaitable[None] | None]


# --------------------------------------------------------------------------- peer venv + process


def venv_dir() -> Path:
    return Path(os.environ.get("SYNAPSE_PEER_VENV") or DEFAULT_VENV)


def _installed_version(python: Path) -> str | None:
    probe = "import importlib.metadata as m; print(m.version('synapse-channel'))"
    try:
        out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_venv() -> Path:
    """Create (or reuse) the peer venv and return its bin directory."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    if not python.exists():
        python3 = shutil.which("python3") or sys.executable
        subprocess.run([python3, "-m", "venv", str(venv)], check=True, timeout=300)
    if _installed_version(python) != PEER_VERSION:
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        res = subprocess.run([*pip, f"{PEER_PACKAGE}=={PEER_VERSION}"], timeout=900)
        if res.returncode != 0 and PEER_WHEEL.exists():  # offline fallback: the pre-downloaded wheel
            subprocess.run([*pip, str(PEER_WHEEL)], check=True, timeout=900)
        if _installed_version(python) != PEER_VERSION:
            raise RuntimeError(f"could not install {PEER_PACKAGE}=={PEER_VERSION} into {venv}")
    return venv / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def isolated_env(root: Path) -> dict[str, str]:
    """Environment for peer processes: private HOME/XDG dirs, no inherited Synapse settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYN_", "SYNAPSE_", "VIRTUAL_ENV"))}
    for key, sub in (
        ("HOME", "home"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_RUNTIME_DIR", "run"),
    ):
        path = root / sub
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[key] = str(path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class PeerHub:
    """The peer hub as a subprocess on 127.0.0.1 with a durable SQLite log."""

    def __init__(self, bin_dir: Path | None = None, log_level: str = "WARNING") -> None:
        self.bin_dir = bin_dir or ensure_venv()
        self.log_level = log_level
        self.tmp = Path(tempfile.mkdtemp(prefix="synapse-peer-bench-"))
        self.env = isolated_env(self.tmp)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def uri(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self, port: int) -> list[str]:
        # Flags checked against cli_processes_parsers.py of 0.99.38 (all names exist as briefed):
        #   --db: durable event log; --no-durable-ingress-quota: drop the 100 chats/min/principal quota.
        # Extra, needed for the workloads (open loopback hubs key quotas by remote host, so every bench
        # socket shares one principal):
        #   --max-connections-per-host 0 (default 32 would refuse the 200-agent run),
        #   --max-clients 1024 (default 256), --max-claims-per-agent 1024 (default 128 per principal).
        #   --log-level: the default INFO logs one line per frame; WARNING keeps per-frame log I/O off the hot path.
        return [
            str(self.bin_dir / "synapse"),
            "hub",
            "--host",
            HOST,
            "--port",
            str(port),
            "--db",
            str(self.tmp / "hub.db"),
            "--no-durable-ingress-quota",
            "--max-connections-per-host",
            "0",
            "--max-clients",
            "1024",
            "--max-claims-per-agent",
            "1024",
            "--log-level",
            self.log_level,
        ]

    def start(self, timeout: float = 60.0) -> PeerHub:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # never leave the peer process or its temp dir behind
            raise

    def _start(self, timeout: float) -> PeerHub:
        last = ""
        for _ in range(3):  # retry if the probed free port got taken before the hub bound it
            self.port = _free_port()
            log = open(self.tmp / "hub.log", "ab")  # noqa: SIM115 - handed to the child
            try:
                self.proc = subprocess.Popen(
                    self.command(self.port),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.tmp,
                    start_new_session=True,
                )
            finally:
                log.close()
            if asyncio.run(self._wait_ready(timeout)):
                return self
            last = self.log_tail()
            self._kill()
        raise RuntimeError(f"peer hub did not start:\n{last}")

    async def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                async with connect(self.uri, open_timeout=2, compression=COMPRESSION) as ws:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
                    if frame.get("type") == "welcome":
                        return True
            except (OSError, WebSocketException, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.1)
        return False

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.tmp / "hub.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        try:
            self._kill()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PeerHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def peer_hub(log_level: str = "WARNING") -> Iterator[PeerHub]:
    hub = PeerHub(log_level=log_level)
    try:
        yield hub.start()
    finally:
        hub.stop()


# --------------------------------------------------------------------------- raw protocol client


def _uri(port: int) -> str:
    return f"ws://{HOST}:{port}"


def _frame(sender: str, msg_type: str, target: str = "all", payload: str = "", **extra: Any) -> str:
    return json.dumps({"sender": sender, "target": target, "type": msg_type, "payload": payload, **extra})


class Agent:
    """One raw websocket agent; a reader task drains every frame so the hub never blocks on us."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.handler: Handler | None = None
        self._waiter: tuple[Callable[[str], bool], asyncio.Future[str]] | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, port: int, name: str, timeout: float = 15.0) -> Agent:
        ws = await connect(
            _uri(port), open_timeout=timeout, compression=COMPRESSION, max_queue=None, ping_interval=None
        )
        agent = cls(ws, name)
        try:
            joined = f'"agent": {json.dumps(name)}'
            await agent.request(
                _frame(name, "heartbeat", "System", "online", protocol_version=PROTOCOL_VERSION),
                lambda raw: '"presence_update"' in raw and joined in raw and '"joined"' in raw,
                timeout,
            )
        except BaseException:
            await agent.close()
            raise
        return agent

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if not isinstance(raw, str):
                    continue
                if self.handler is not None:
                    res = self.handler(raw)
                    if res is not None:
                        await res
                waiter = self._waiter
                if waiter is not None and not waiter[1].done() and waiter[0](raw):
                    waiter[1].set_result(raw)
        except ConnectionClosed:
            pass
        finally:
            waiter = self._waiter
            if waiter is not None and not waiter[1].done():
                waiter[1].set_exception(ConnectionError(f"{self.name}: connection closed"))

    async def send(self, raw: str) -> None:
        await self.ws.send(raw)

    async def chat(self, target: str, payload: str) -> None:
        await self.ws.send(_frame(self.name, "chat", target, payload))

    async def request(self, raw: str, pred: Callable[[str], bool], timeout: float = 10.0) -> str:
        """Send ``raw`` and return the first later frame matching ``pred``."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiter = (pred, fut)
        try:
            await self.ws.send(raw)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiter = None

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except (TimeoutError, OSError):
            self.ws.transport.abort()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def _join_many(port: int, names: list[str], concurrency: int = 16) -> list[Agent]:
    sem = asyncio.Semaphore(concurrency)
    agents: list[Agent] = []

    async def one(name: str) -> None:
        async with sem:
            agents.append(await Agent.join(port, name, timeout=60))

    results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await _close_all(agents)
        raise errors[0]
    order = {n: i for i, n in enumerate(names)}
    return sorted(agents, key=lambda a: order[a.name])


async def _close_all(agents: list[Agent]) -> None:
    await asyncio.gather(*(a.close() for a in agents), return_exceptions=True)


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _run(coro: Coroutine[Any, Any, dict[str, float]]) -> dict[str, float]:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- workloads


async def _round_trip(port: int, n: int) -> dict[str, float]:
    tag = _tag()
    a, b = await _join_many(port, [f"rt-a-{tag}", f"rt-b-{tag}"])
    try:

        async def responder(raw: str) -> None:
            if '"rt:' in raw:
                msg = json.loads(raw)
                if msg.get("sender") == a.name and msg.get("target") == b.name:
                    await b.chat(a.name, "re:" + msg["payload"][3:])

        b.handler = responder
        warmup = min(50, max(5, n // 20))
        lat: list[float] = []
        for i in range(warmup + n):
            t0 = time.perf_counter()
            await a.request(_frame(a.name, "chat", b.name, f"rt:{i}"), lambda raw, k=f'"re:{i}"': k in raw)
            if i >= warmup:
                lat.append((time.perf_counter() - t0) * 1e3)
        return {"n": n, "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "mean_ms": statistics.fmean(lat)}
    finally:
        await _close_all([a, b])


def round_trip(port: int, n: int = 2000) -> dict[str, float]:
    """A sends a directed chat to B, B replies to A, A waits for the reply; latency percentiles."""
    return _run(_round_trip(port, n))


async def _flood(port: int, senders: int, per_sender: int, timeout: float) -> dict[str, float]:
    tag = _tag()
    marker = f"fl-{tag}:"
    agents = await _join_many(port, [f"fl-rx-{tag}", *(f"fl-tx{i}-{tag}" for i in range(senders))])
    rx, txs = agents[0], agents[1:]
    total = senders * per_sender
    stamps: list[float] = []
    done = asyncio.Event()

    def count(raw: str) -> None:
        if marker in raw:
            stamps.append(time.perf_counter())
            if len(stamps) >= total:
                done.set()

    rx.handler = count
    try:

        async def blast(tx: Agent) -> None:
            for i in range(per_sender):
                await tx.chat(rx.name, f"{marker}{i}")

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(blast(t) for t in txs)), timeout)
        t_sent = time.perf_counter()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(done.wait(), max(1.0, timeout - (t_sent - t0)))
        got = len(stamps)
        span = stamps[-1] - stamps[0] if got > 1 else float("nan")
        return {
            "senders": senders,
            "sent": total,
            "received": got,
            "msgs_per_s": (got - 1) / span if got > 1 and span > 0 else 0.0,
            "seconds": span,
        }
    finally:
        await _close_all(agents)


def flood(port: int, senders: int = 4, per_sender: int = 5000, timeout: float = 180.0) -> dict[str, float]:
    """``senders`` agents blast directed chats at one receiver; msgs/s from first to last receipt."""
    return _run(_flood(port, senders, per_sender, timeout))


async def _fanout(port: int, subscribers: int, messages: int, timeout: float) -> dict[str, float]:
    tag = _tag()
    marker = f"fo-{tag}:"
    agents = await _join_many(port, [f"fo-src-{tag}", *(f"fo-sub{i}-{tag}" for i in range(subscribers))])
    src, subs = agents[0], agents[1:]
    total = subscribers * messages
    got = 0
    last = 0.0
    done = asyncio.Event()

    def count(raw: str) -> None:
        nonlocal got, last
        if marker in raw:
            got += 1
            last = time.perf_counter()
            if got >= total:
                done.set()

    for sub in subs:
        sub.handler = count
    try:
        t0 = time.perf_counter()
        for i in range(messages):
            await src.chat("all", f"{marker}{i}")
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        span = last - t0
        return {
            "subscribers": subscribers,
            "messages": messages,
            "deliveries": got,
            "deliveries_per_s": got / span if got and span > 0 else 0.0,
            "seconds": span,
        }
    finally:
        await _close_all(agents)


def fanout(port: int, subscribers: int = 20, messages: int = 500, timeout: float = 180.0) -> dict[str, float]:
    """One sender broadcasts ``messages`` chats to ``subscribers``; deliveries/s until the last receipt."""
    return _run(_fanout(port, subscribers, messages, timeout))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _rss_with_agents(port: int, pid: int, agents: int, settle: float) -> dict[str, float]:
    tag = _tag()
    before = rss_kb(pid)
    t0 = time.perf_counter()
    conns = await _join_many(port, [f"rss{i}-{tag}" for i in range(agents)])
    joined = time.perf_counter() - t0
    try:
        await asyncio.sleep(settle)
        after = rss_kb(pid)
        return {
            "agents": agents,
            "rss_mb": after / 1024,
            "rss_before_mb": before / 1024,
            "per_agent_kb": (after - before) / agents,
            "join_s": joined,
        }
    finally:
        await _close_all(conns)


def rss_with_agents(port: int, pid: int, agents: int = 200, settle: float = 1.0) -> dict[str, float]:
    """Hub VmRSS with ``agents`` connected, joined agents (plus the RSS just before they connected)."""
    return _run(_rss_with_agents(port, pid, agents, settle))


def _lease_pred(name: str, task: str, ok: str, denied: str) -> Callable[[str], bool]:
    def pred(raw: str) -> bool:
        if f'"{ok}"' not in raw and f'"{denied}"' not in raw:
            return False
        msg = json.loads(raw)
        if msg.get("task_id") != task:
            return False
        return msg.get("owner") == name if msg.get("type") == ok else msg.get("target") == name

    return pred


async def _lease(agent: Agent, verb: str, task: str, **extra: Any) -> float:
    ok, denied = f"{verb}_granted", f"{verb}_denied"
    t0 = time.perf_counter()
    raw = await agent.request(
        _frame(agent.name, verb, "all", task_id=task, **extra), _lease_pred(agent.name, task, ok, denied)
    )
    dt = (time.perf_counter() - t0) * 1e3
    if json.loads(raw).get("type") != ok:
        raise RuntimeError(f"{verb} {task!r} by {agent.name} refused: {raw[:300]}")
    return dt


async def _claims(port: int, live: int, cycles: int, holders: int) -> dict[str, float]:
    tag = _tag()
    holders = max(1, min(holders, live)) if live else 0
    names = [f"cl-h{i}-{tag}" for i in range(holders)]
    agents = await _join_many(port, [f"cl-c-{tag}", *names])
    claimer, held = agents[0], agents[1:]
    try:
        for i in range(live):  # N live file-scope claims, spread over the holder agents
            await _lease(held[i % holders], "claim", f"held-{tag}-{i}", paths=[f"src/held_{tag}/f{i}.py"])
        task, paths = f"cycle-{tag}", [f"src/cycle_{tag}/edit.py"]
        lat: list[float] = []
        t0 = time.perf_counter()
        for _ in range(cycles):
            lat.append(await _lease(claimer, "claim", task, paths=paths))
            await _lease(claimer, "release", task)
        span = time.perf_counter() - t0
        for i in range(live):
            await _lease(held[i % holders], "release", f"held-{tag}-{i}")
        return {
            "live_claims": live,
            "cycles": cycles,
            "grant_p50_ms": _pct(lat, 0.5),
            "grant_p99_ms": _pct(lat, 0.99),
            "cycles_per_s": cycles / span,
        }
    finally:
        await _close_all(agents)


def claims(port: int, live: int = 100, cycles: int = 500, holders: int = 10) -> dict[str, float]:
    """Claim grant latency and claim+release cycles/s with ``live`` claims held by ``holders`` others."""
    return _run(_claims(port, live, cycles, holders))


def _synapse_bin(bin_dir: Path | None) -> str:
    return str((bin_dir or ensure_venv()) / "synapse")


async def _spawn(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 10)


async def _reap(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    """Wait for ``proc`` (bounded); kill it on timeout or cancellation."""
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        return int(proc.returncode or 0), out.decode(errors="replace")
    except TimeoutError:
        return -9, "timeout"
    finally:
        await _kill(proc)


async def _cli_send_wall(port: int, runs: int, bin_dir: Path | None, root: Path) -> dict[str, float]:
    exe, env = _synapse_bin(bin_dir), isolated_env(root)
    dst = await Agent.join(port, f"cli-dst-{_tag()}")
    try:
        argv = [exe, "send", "--uri", _uri(port), "--target", dst.name, "--wait-seconds", "0"]
        walls: list[float] = []
        failures = 0
        for i in range(runs + 1):  # run 0 warms the page cache and is discarded
            t0 = time.perf_counter()
            rc, out = await _reap(await _spawn([*argv, f"cli ping {i}"], env), 30)
            if i:
                walls.append((time.perf_counter() - t0) * 1e3)
                failures += rc != 0
            if rc != 0 and failures >= 3:
                raise RuntimeError(f"synapse send failed rc={rc}: {out[-500:]}")
        return {
            "runs": runs,
            "wall_p50_ms": statistics.median(walls),
            "wall_min_ms": min(walls),
            "wall_max_ms": max(walls),
            "failures": failures,
        }
    finally:
        await dst.close()


def cli_send_wall(port: int, runs: int = 10, bin_dir: Path | None = None) -> dict[str, float]:
    """Wall time of ``synapse send --target <live agent> --wait-seconds 0 MSG`` as a process (median).

    Directed sends request a delivery receipt by default, so the process exits after the hub confirms.
    """
    root = Path(tempfile.mkdtemp(prefix="synapse-peer-cli-"))
    try:
        return _run(_cli_send_wall(port, runs, bin_dir, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _cli_wait(port: int, runs: int, bin_dir: Path | None, root: Path) -> dict[str, float]:
    exe, env = _synapse_bin(bin_dir), isolated_env(root)
    tag = _tag()
    observer, sender = await _join_many(port, [f"cw-obs-{tag}", f"cw-tx-{tag}"])
    arm: list[float] = []
    wake: list[float] = []
    try:
        for i in range(runs + 1):  # run 0 warms the page cache and is discarded
            name = f"cw-{tag}-{i}"
            # --name == --for makes the peer connect as its canonical "<name>-rx" waiter sidecar.
            argv = [exe, "wait", "--uri", _uri(port), "--name", name, "--for", name, "--directed-only"]
            joined = f'"agent": "{name}-rx"'
            armed = asyncio.get_running_loop().create_future()

            def watch(raw: str, fut: asyncio.Future[float] = armed, key: str = joined) -> None:
                if not fut.done() and '"presence_update"' in raw and '"joined"' in raw and key in raw:
                    fut.set_result(time.perf_counter())

            observer.handler = watch
            t0 = time.perf_counter()
            proc = await _spawn([*argv, "--timeout", "30"], env)
            try:
                t_armed = await asyncio.wait_for(armed, 30)
                t_send = time.perf_counter()
                await sender.chat(name, f"wake {i}")
                rc, out = await _reap(proc, 30)
                t_exit = time.perf_counter()
            finally:
                await _kill(proc)
            if rc != 0:
                raise RuntimeError(f"synapse wait exited rc={rc}: {out[-500:]}")
            if i:
                arm.append((t_armed - t0) * 1e3)
                wake.append((t_exit - t_send) * 1e3)
        return {
            "runs": runs,
            "spawn_to_armed_p50_ms": statistics.median(arm),
            "send_to_exit_p50_ms": statistics.median(wake),
            "send_to_exit_max_ms": max(wake),
        }
    finally:
        observer.handler = None
        await _close_all([observer, sender])


def cli_wait(port: int, runs: int = 5, bin_dir: Path | None = None) -> dict[str, float]:
    """Backgrounded ``synapse wait --for NAME --directed-only``: spawn-to-armed and send-to-exit (medians).

    "Armed" = an observer socket sees the hub's ``presence_update`` joined-frame for the waiter's socket
    (``NAME-rx``). The hub adds a socket to its broadcast set on connect, before it reads the registration
    heartbeat that triggers that frame, and every chat is broadcast to every socket, so a send made after
    the observer saw the join is guaranteed to reach the waiter; its collector keeps frames from then on.
    """
    root = Path(tempfile.mkdtemp(prefix="synapse-peer-cli-"))
    try:
        return _run(_cli_wait(port, runs, bin_dir, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- driver


def run_all(quick: bool = False) -> dict[str, dict[str, float]]:
    """Start the peer hub, run every workload, stop it; return {workload: {metric: value}}."""
    q = quick
    with peer_hub() as hub:
        port, b = hub.port, hub.bin_dir
        steps: dict[str, Callable[[], dict[str, float]]] = {
            "round_trip": lambda: round_trip(port, n=300 if q else 2000),
            "flood_4to1": lambda: flood(port, senders=4, per_sender=1000 if q else 5000),
            "fanout_20": lambda: fanout(port, subscribers=20, messages=100 if q else 500),
            "fanout_200": lambda: fanout(port, subscribers=200, messages=50 if q else 500),
            "rss_200_agents": lambda: rss_with_agents(port, hub.pid, agents=200),
            "claims_100_live": lambda: claims(port, live=100, cycles=100 if q else 500),
            "cli_send": lambda: cli_send_wall(port, runs=3 if q else 10, bin_dir=b),
            "cli_wait": lambda: cli_wait(port, runs=3 if q else 10, bin_dir=b),
        }
        results: dict[str, dict[str, float]] = {}
        for key, step in steps.items():  # one failing workload must not lose the others' numbers
            try:
                results[key] = step()
            except Exception as exc:
                print(f"peer bench: {key} failed: {exc!r}\n{hub.log_tail(5)}", file=sys.stderr)
                results[key] = {"failed": 1.0}
    return results


def _fmt(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller workloads for a smoke run")
    args = ap.parse_args(argv)
    results = run_all(quick=args.quick)
    print(f"peer: {PEER_PACKAGE} {PEER_VERSION} (venv {venv_dir()})")
    for workload, metrics in results.items():
        print(f"{workload:<18}" + "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))
    print(json.dumps({"peer": f"{PEER_PACKAGE}=={PEER_VERSION}", "results": results}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
