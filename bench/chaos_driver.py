"""Chaos under mixed load: SDK agents and CLI processes drive a seeded random mix against a `python -m hub`
subprocess that is SIGKILLed at random moments and restarted on the same SQLite file and port; a client-side
ledger of every acknowledged result is checked against the log afterwards.

Shared by tests/chaos/test_chaos.py (20 kills, CI) and bench/chaos.py (`--kills 200`, prints the figures).
The kill moments are random (after a seeded random number of acknowledgements), the checks hold for any
moment: an operation whose reply never came ("in doubt") may have landed once, never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_sdk import Agent, Code, HubError
from bench.chaos_checks import CLI_WAITER, COUNTERS, LEAVER_WORK, Ledger, check_ledger, compare_live, read_log
from bench.common import pct

__all__ = ["ChaosConfig", "ChaosHub", "Report", "Run", "run_chaos"]

ROOT = Path(__file__).resolve().parent.parent
DOUBT = frozenset({Code.DISCONNECTED, Code.TIMED_OUT})  # sent, and the reply never came: landed once or not
# `unreachable`: never sent (no connection, or none came back in time): counted apart, nothing landed
# refusals that mean the driver itself sent something wrong: any of them fails the run
UNEXPECTED = frozenset(
    {
        Code.BAD_FRAME,
        Code.UNKNOWN_OP,
        Code.BAD_REQUEST,
        Code.TOO_LARGE,
        Code.UNAUTHORIZED,
        Code.BAD_EXPRESSION,
    }
)
# file-claim works: each odd one is a file inside the directory of the even one before it, so they overlap
WORKS = {f"w{k}": (f"src/m{k // 2}/" if k % 2 == 0 else f"src/m{k // 2}/f{k}.py",) for k in range(8)}


@dataclass
class ChaosConfig:
    """One run: `kills` SIGKILLs, each after a random number of acknowledgements in `acks_between`."""

    workdir: Path
    seed: int = 20261206
    kills: int = 20
    sdk_workers: int = 4
    waiters: int = 2
    cli_workers: int = 1
    acks_between: tuple[int, int] = (15, 120)
    claim_grace: float = 5.0
    snapshot_every: int = 1000
    settle_timeout: float = 60.0  # how long the final drain may wait for a wake or a resumed stream
    rate: float = 0.0  # operations per second per SDK agent (0: as fast as replies come; the soak paces)
    task_ids: int = 0  # task ids per agent, reused (0: always new; the soak keeps the plan bounded)
    hub_args: tuple[str, ...] = ()  # more `synapse hub` flags
    db: str | None = None  # the log: a PostgreSQL URL, or None for an SQLite file in workdir
    standby: bool = False  # two hubs with --standby: each kill hits the owner, the standby takes over, and
    # the killed one comes back as the new standby; clients get both addresses


class ChaosHub:
    """`python -m hub hub` on one port and one log; SIGKILL and restart it there."""

    def __init__(self, db: Path | str, env: dict[str, str], stderr: Path, *args: str) -> None:
        self.db = db
        self.env = env
        self.args = args
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.standby = False
        self.serving = threading.Event()  # it said `listening` (a standby: once it took over)
        self.stderr = open(stderr, "a")  # noqa: SIM115 (closed in stop)

    def start(self) -> str:
        """Start on the first free port, then on the same one (clients reconnect to one URL); a hub started
        with --standby may come up standing by (`standby`), `serving` is set when it serves."""
        for _attempt in range(20):
            cmd = [sys.executable, "-m", "hub", "hub", "--port", str(self.port), "--db", str(self.db)]
            self.proc = subprocess.Popen(
                [*cmd, *self.args],
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                text=True,
                env=self.env,
                cwd=ROOT,
            )
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            match = re.match(r"(listening|standby) (ws://\S+)", line)
            if match:
                self.standby = match.group(1) == "standby"
                self.serving.clear()
                if not self.standby:
                    self.serving.set()
                self.url = match.group(2)
                self.port = int(self.url.rsplit(":", 1)[1])
                threading.Thread(target=_drain, args=(self.proc.stdout, self.serving), daemon=True).start()
                return self.url
            self.proc.wait(10)  # the port is taken for a moment (a client's ephemeral port): try again
            self.proc.stdout.close()
            time.sleep(0.2)
        raise RuntimeError(f"the hub did not start on port {self.port}: see {self.stderr.name}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM (the hub drains) and wait; the exit code."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        self.stderr.close()
        return code


def _drain(pipe: Any, serving: threading.Event) -> None:
    """Read the hub's stdout to its end (a full pipe would block it), then close it; a standby's `listening`
    line sets `serving`."""
    with contextlib.suppress(ValueError, OSError), pipe:
        for line in pipe:
            if line.startswith("listening "):
                serving.set()


@dataclass
class Report:
    """The run's figures and every violation found (empty when the hub kept its promises)."""

    seed: int
    kills: int
    restarts: list[float]
    acked: Counter[str]
    refused: Counter[str]
    doubt: Counter[str]
    unreachable: Counter[str]
    lost: int
    duplicated: int
    violations: list[str]
    reconnects: dict[str, int]
    wakes: dict[str, int]
    events: int
    seconds: float
    landed_in_doubt: int = 0
    takeovers: list[float] = field(default_factory=list)  # failover: SIGKILL to a client's first write

    def lines(self) -> list[str]:
        if self.takeovers:
            times = [
                f"takeover (SIGKILL of the owner to the standby listening) {_spread(self.restarts)}",
                f"failover (SIGKILL to a client's first acknowledged write) {_spread(self.takeovers)}",
            ]
        else:
            xs = self.restarts or [0.0]
            times = [
                f"restart (SIGKILL to listening) p50 {pct(xs, 50):.2f} s, p99 {pct(xs, 99):.2f} s, max "
                f"{max(xs):.2f} s"
            ]
        out = [
            f"seed {self.seed}: {self.kills} kills in {self.seconds:.1f} s, {self.events} events in the log",
            *times,
            f"acknowledged operations: {sum(self.acked.values())}",
        ]
        for kind in sorted(set(self.acked) | set(self.refused) | set(self.doubt) | set(self.unreachable)):
            out.append(
                f"  {kind:<16} acked {self.acked[kind]:>6}  refused {self.refused[kind]:>5}  "
                f"in doubt {self.doubt[kind]:>3}  unreachable {self.unreachable[kind]:>3}"
            )
        out += [
            f"in doubt: {sum(self.doubt.values())} (landed once: {self.landed_in_doubt}, twice: never allowed)",
            f"lost: {self.lost}  duplicated: {self.duplicated}  violations: {len(self.violations)}",
            f"SDK reconnects: {sum(self.reconnects.values())} ({len(self.reconnects)} agents); "
            f"waiter wakes: {sum(self.wakes.values())}",
        ]
        out += [f"  VIOLATION {v}" for v in self.violations[:50]]
        return out


def _spread(xs: list[float]) -> str:
    """p50, p90, max of durations in seconds."""
    return f"p50 {pct(xs, 50):.3f} s, p90 {pct(xs, 90):.3f} s, max {max(xs):.3f} s"


class Run:
    """One chaos run: hub, agents, CLI processes, kill loop, final drain and the checks."""

    def __init__(self, cfg: ChaosConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        self.db: Path | str = cfg.db or cfg.workdir / "log.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_")}
        self.env.update(
            XDG_CONFIG_HOME=str(cfg.workdir / "config"),
            XDG_DATA_HOME=str(cfg.workdir / "data"),
            PYTHONPATH=str(ROOT),
        )
        self.hubs = [
            ChaosHub(self.db, self.env, cfg.workdir / f"hub-{letter}.log", *self.hub_args(cfg))
            for letter in ("ab" if cfg.standby else "a")
        ]
        self.hub = self.hubs[0]  # the one that owns the log now
        self.takeovers: list[
            float
        ] = []  # failover: SIGKILL of the owner to a client's first acknowledged write
        self.ledger = Ledger()
        self.ledger.cli_needed = min(1, cfg.cli_workers)
        self.stop = asyncio.Event()
        self.up = asyncio.Event()
        self.restarts: list[float] = []
        self.workers: list[Agent] = []
        self.names: list[str] = []
        self.streams: dict[str, list[int]] = {}
        self.wakes: dict[str, list[int]] = {}
        self.cli_wakes: list[int] = []
        self.cli_waiter_after = 0
        self.violations: list[str] = []
        self.progress = asyncio.Condition()  # notified on every streamed message and every wake

    @staticmethod
    def hub_args(cfg: ChaosConfig) -> list[str]:
        return [
            "--claim-grace",
            str(cfg.claim_grace),
            "--snapshot-every",
            str(cfg.snapshot_every),
            "--rate-per-agent",
            "1000000",
            "--rate-burst",
            "1000000",
            *(["--standby"] if cfg.standby else []),
            *cfg.hub_args,
        ]

    @property
    def url(self) -> str:
        """What clients are given: the hub's address, or every hub's, comma-separated (failover)."""
        return ",".join(hub.url for hub in self.hubs)

    async def moved(self) -> None:
        async with self.progress:
            self.progress.notify_all()

    async def until(self, done: Callable[[], bool], what: str) -> None:
        """Wait (on progress, never on a clock) until `done()` holds; a violation after settle_timeout."""
        try:
            async with self.progress:
                await asyncio.wait_for(self.progress.wait_for(done), self.cfg.settle_timeout)
        except TimeoutError:
            self.violations.append(what)

    # -- one operation, recorded ------------------------------------------------------------------

    async def op(self, kind: str, call: Callable[[], Awaitable[Any]]) -> tuple[str, Any]:
        """Run one client call; record it as acknowledged, refused (with its code) or in doubt."""
        try:
            result = await call()
        except HubError as exc:
            if exc.code in DOUBT:
                await self.ledger.note(kind, "doubt")
                return "doubt", exc
            if exc.code == Code.UNREACHABLE:
                await self.ledger.note(kind, "unreachable")
                return "refused", exc
            if exc.code in UNEXPECTED:
                await self.ledger.note(kind, "unexpected", f"{exc.code}: {exc.message}")
            else:
                await self.ledger.note(kind, "refused")
            return "refused", exc
        await self.ledger.note(kind, "acked")
        return "acked", result

    # -- SDK workers --------------------------------------------------------------------------------

    async def worker(self, agent: Agent, rng: random.Random) -> None:
        name = agent.name
        assert name is not None
        n = 0
        held: dict[str, int] = {}  # works this agent was granted (as far as it knows)
        etags: dict[str, int] = {}  # tasks this agent claimed → etag
        L = self.ledger
        while not self.stop.is_set():
            await L.room()
            if self.cfg.rate:
                await asyncio.sleep(1 / self.cfg.rate)
            n += 1
            roll = rng.random()
            if (
                roll < 0.25
            ):  # send: to a peer, two peers, the room, or (rarely: one process a wake) the CLI waiter
                body = f"{name}-{n}"
                to = rng.choice(
                    [rng.choice(self.names), f"{rng.choice(self.names)},{rng.choice(self.names)}"] * 4
                    + ["default/*", "default/*", CLI_WAITER]
                )
                L.attempted_sends.add(body)
                how, res = await self.op("send", lambda to=to, body=body: agent.send(to, {"id": body}))
                if how == "acked":
                    L.sends[body] = int(res)
                    L.acked_seqs.append(int(res))
            elif roll < 0.32 and L.acked_seqs:  # claim a message
                seq = rng.choice(L.acked_seqs[-50:])
                how, res = await self.op("message.claim", lambda seq=seq: agent.claim_message(seq))
                if how == "acked":
                    L.message_claims[seq].append(name)
            elif roll < 0.50:  # file claims: claim, renew, release, handoff
                work, mark = rng.choice(sorted(WORKS)), f"{name}-{n}"
                action = rng.choice(("claim", "claim", "renew", "release", "handoff"))
                if action in ("renew", "release", "handoff") and held:
                    work = rng.choice(sorted(held))
                if action == "claim":
                    how, res = await self.op(
                        "claim",
                        lambda work=work, mark=mark: agent.claim(work, list(WORKS[work]), checkpoint=mark),
                    )
                    if how == "acked":
                        held[work] = res.epoch
                        L.grants.append((work, name, res.epoch))
                elif action == "renew":
                    how, res = await self.op("claim.renew", lambda work=work: agent.claim(work, renew=True))
                elif action == "release":
                    how, res = await self.op(
                        "release", lambda work=work, mark=mark: agent.release(work, checkpoint=mark)
                    )
                    if how != "refused" or res.code == Code.NOT_FOUND:
                        held.pop(work, None)
                else:
                    to = rng.choice([x for x in self.names if x != name])
                    how, res = await self.op("handoff", lambda work=work, to=to: agent.handoff(work, to))
                    held.pop(work, None)
                    if how == "acked":
                        L.handoffs.append((work, name, to))
                if how == "refused" and res.code in (Code.FORBIDDEN, Code.NOT_FOUND):
                    held.pop(work, None)
            elif roll < 0.62:  # the plan: declare, claim a task anyone declared, finish one of mine
                action = rng.random()
                if action < 0.3 or not L.tasks:
                    task = f"T-{name}-{n % self.cfg.task_ids if self.cfg.task_ids else n}"
                    L.tasks.append(task)
                    await self.op("task.declare", lambda task=task: agent.tasks.declare(task, f"task {task}"))
                elif action < 0.7 or not etags:
                    task = rng.choice(L.tasks[-30:])
                    how, res = await self.op("task.claim", lambda task=task: agent.tasks.claim(task))
                    if how == "acked":
                        L.task_claims[task].append((name, int(res["epoch"])))
                        etags[task] = int(res["etag"])
                else:
                    task = rng.choice(sorted(etags))
                    etag = etags.pop(task)
                    await self.op(
                        "task.update",
                        lambda task=task, etag=etag: agent.tasks.update(task, status="done", etag=etag),
                    )
            elif roll < 0.80:  # counters: increment by a number unique to this writer
                key = rng.choice(COUNTERS)
                by = n
                ledger = L.increments[(key, name)]
                ledger.append((by, False))
                how, _res = await self.op(
                    "state.increment", lambda key=key, by=by: agent.state.increment(key, by)
                )
                if how == "acked":
                    ledger[-1] = (by, True)
                elif how == "refused":
                    ledger.pop()
            elif roll < 0.88:  # set one of my keys
                key, value = f"k-{name}-{rng.randrange(8)}", n
                how, res = await self.op(
                    "state.set", lambda key=key, value=value: agent.state.set(key, value)
                )
                if how == "acked":
                    L.writes.append(("_shared", key, int(res), value))
            elif roll < 0.93:  # compare-and-swap on a key everyone races for
                how, cur = await self.op("state.get", lambda: agent.state.get("race"))
                if how == "acked":
                    value = f"{name}-{n}"
                    how, res = await self.op(
                        "state.cas",
                        lambda v=int(cur["version"]), value=value: agent.state.cas("race", v, value),
                    )
                    if how == "acked":
                        L.writes.append(("_shared", "race", int(res), value))
            elif roll < 0.97:  # a batch: two of my keys and a counter, all or nothing
                key = rng.choice(COUNTERS)
                by = n
                writes = [
                    {"key": f"b-{name}-0", "value": n},
                    {"key": f"b-{name}-1", "value": -n},
                    {"key": key, "value": by, "increment": True},
                ]
                ledger = L.increments[(key, name)]
                ledger.append((by, False))
                how, res = await self.op("state.batch", lambda writes=writes: agent.state.batch(writes))
                if how == "acked":
                    ledger[-1] = (by, True)
                    for w in res:
                        if w["key"] != key:
                            L.writes.append((w["scope"], w["key"], int(w["version"]), w["value"]))
                elif how == "refused":
                    ledger.pop()
            else:  # ring a waiter's bell
                i = rng.randrange(self.cfg.waiters)
                await self.op("ring", lambda i=i: agent.state.increment(f"ring{i}", 1))

    async def stream(self, agent: Agent) -> None:
        """Every message pushed to this agent, across reconnects."""
        got = self.streams[agent.name or ""]
        async for message in agent.messages():
            got.append(int(message.seq))
            await self.moved()

    async def waiter(self, agent: Agent, i: int) -> None:
        """Wait on `ring{i} >= r` for r = 1, 2, ...: each wait returns once; across kills it is re-armed."""
        wakes = self.wakes[agent.name or ""]
        r = 1
        while True:
            try:
                await agent.wait_for(f"state._shared.ring{i} >= {r}")
            except HubError as exc:
                if exc.code in DOUBT or exc.code == Code.UNREACHABLE:  # in flight at a kill: arm it again
                    continue
                raise
            wakes.append(r)
            await self.moved()
            r += 1

    # -- CLI processes ---------------------------------------------------------------------------------

    async def cli(self, *args: str, timeout: float = 120.0) -> tuple[int, Any]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "--hub",
            self.url,
            "--json",
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=ROOT,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException:  # cancelled (the run is over) or hung: the process goes too
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        text = (out if proc.returncode == 0 else err).decode().strip().splitlines()
        doc: Any = None
        for line in text:
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
        return int(proc.returncode or 0), doc

    async def cli_op(self, kind: str, *args: str) -> tuple[str, Any]:
        code, doc = await self.cli(*args)
        if code == 0:
            await self.ledger.note(kind, "acked")
            return "acked", doc
        error = (doc or {}).get("error", {}) if isinstance(doc, dict) else {}
        if code == 4 and error.get("code") == Code.UNREACHABLE:  # started while the hub was down
            await self.ledger.note(kind, "unreachable")
            return "refused", doc
        if code == 4:
            await self.ledger.note(kind, "doubt")
            return "doubt", doc
        if code in (1, 5) and error.get("code") not in {str(c) for c in UNEXPECTED}:
            await self.ledger.note(kind, "refused")
            return "refused", doc
        await self.ledger.note(kind, "unexpected", f"exit {code}: {doc}")
        return "unexpected", doc

    async def cli_worker(self, name: str, rng: random.Random) -> None:
        """A turn-based agent: one `python -m hub ...` process per operation (claims held by TTL)."""
        L = self.ledger
        n = 0
        while not self.stop.is_set():
            await self.up.wait()
            n += 1
            roll = rng.random()
            if roll < 0.3:
                body = f"{name}-{n}"
                L.attempted_sends.add(body)
                to = rng.choice([*self.names, CLI_WAITER])
                how, doc = await self.cli_op(
                    "cli.send", "send", "--name", name, "--target", to, json.dumps({"id": body})
                )
                if how == "acked":
                    L.sends[body] = int(doc["seq"])
                    L.acked_seqs.append(int(doc["seq"]))
            elif roll < 0.55:
                key, by = rng.choice(COUNTERS), 100_000 + n
                ledger = L.increments[(key, name)]
                ledger.append((by, False))
                how, _doc = await self.cli_op(
                    "cli.increment", "state", "set", key, str(by), "--increment", "--name", name
                )
                if how == "acked":
                    ledger[-1] = (by, True)
                elif how != "doubt":
                    ledger.pop()
            elif roll < 0.8:
                work = f"cli-{rng.randrange(3)}"
                renew = rng.random() < 0.3
                args = ["claim", work, "--name", name, "--ttl", "600"]
                args += ["--renew"] if renew else ["--paths", f"cli/{work}/"]
                how, doc = await self.cli_op("cli.claim", *args)
                if how == "acked" and not doc.get("already_held"):
                    L.grants.append((work, name, int(doc["epoch"])))
            elif roll < 0.9:
                work = f"cli-{rng.randrange(3)}"
                await self.cli_op("cli.release", "release", work, "--name", name)
            elif L.tasks:
                task = rng.choice(L.tasks[-30:])
                how, doc = await self.cli_op("cli.task.claim", "task", "claim", task, "--name", name)
                if how == "acked":
                    L.task_claims[task].append((name, int(doc["epoch"])))

    async def cli_waiter(self) -> None:
        """`synapse wait --for cw --after SEQ`, re-armed after every wake (and after the hub went away)."""
        while True:
            await self.up.wait()
            code, doc = await self.cli(
                "wait", "--name", CLI_WAITER, "--for", CLI_WAITER, "--after", str(self.cli_waiter_after),
                "--directed-only", "--wake-jitter", "0", "--timeout", "30",
            )  # fmt: skip
            if code == 0:
                seq = int(doc["message"]["seq"])
                self.cli_wakes.append(seq)
                self.cli_waiter_after = seq
                await self.moved()
            elif code != 3 and code != 4:  # 4: the hub went away; re-armed once it is back
                self.violations.append(f"cli wait exited {code}: {doc}")
                return

    # -- the run ---------------------------------------------------------------------------------------

    async def connect(self, name: str, stream: bool = True) -> Agent:
        agent = Agent(name, hub=self.url, save_token=False, request_timeout=60.0, stream=stream)
        await agent.connect()
        return agent

    async def run(self) -> Report:
        t0 = time.monotonic()
        for hub in self.hubs:
            await asyncio.to_thread(hub.start)
        if self.hub.standby or any(not hub.standby for hub in self.hubs[1:]):
            raise RuntimeError("the first hub should own the log and every other one stand by")
        self.up.set()
        cfg = self.cfg
        self.names = [f"a{i}" for i in range(cfg.sdk_workers)]
        auditor = await self.connect("auditor")
        for i in range(cfg.waiters):
            await auditor.state.set(f"ring{i}", 0)
        await auditor.state.set("race", "")
        for name in [CLI_WAITER, *(f"cli{i}" for i in range(cfg.cli_workers))]:
            code, doc = await self.cli("join", name)  # before the first kill: a lost join reply loses a token
            assert code == 0, doc
        self.workers = [await self.connect(n) for n in self.names]
        waiters = [await self.connect(f"waiter{i}") for i in range(cfg.waiters)]
        for a in [*self.workers, *waiters]:
            self.streams[a.name or ""] = []
        for a in waiters:
            self.wakes[a.name or ""] = []
        # a leaver: claims session-bound and goes away for good; the claim must lapse by the rules
        probe = None  # failover: an agent that times a client's first write after each kill
        if cfg.standby:
            probe = await self.connect("probe", stream=False)
        leaver = await self.connect("leaver")
        await leaver.claim(LEAVER_WORK, ["leave/"])
        await leaver.close()

        busy = [asyncio.create_task(self.worker(a, random.Random(self.rng.random()))) for a in self.workers]
        busy += [
            asyncio.create_task(self.cli_worker(f"cli{i}", random.Random(self.rng.random())))
            for i in range(cfg.cli_workers)
        ]
        tasks = [asyncio.create_task(self.stream(a)) for a in [*self.workers, *waiters]]
        tasks += [asyncio.create_task(self.waiter(a, i)) for i, a in enumerate(waiters)]
        tasks += busy
        cli_wait = asyncio.create_task(self.cli_waiter())
        try:
            for _k in range(cfg.kills):
                target = self.rng.randint(*cfg.acks_between)
                self.ledger.ceiling = 2 * target  # SDK agents pause there until the restart: no idle load
                await _guarded(self.ledger.wait_acks(target), busy + [cli_wait])
                self.up.clear()
                started = time.monotonic()
                self.hub.kill()
                if probe is not None:
                    await self.fail_over(started, probe, _k)
                else:
                    await asyncio.to_thread(self.hub.start)
                    self.restarts.append(time.monotonic() - started)
                await self.ledger.restarted()
                self.up.set()
            self.ledger.ceiling = 0
            await _guarded(
                self.ledger.wait_acks(cfg.acks_between[0]), busy + [cli_wait]
            )  # life after the last
            self.stop.set()
            await asyncio.wait_for(asyncio.gather(*busy), cfg.settle_timeout)
            await self.settle(auditor, waiters)
        finally:
            self.stop.set()
            for t in [*tasks, cli_wait]:
                t.cancel()
            await asyncio.gather(*tasks, cli_wait, return_exceptions=True)
        reconnects = {a.name or "": a.reconnects for a in [*self.workers, *waiters]}
        for a in [*self.workers, *waiters]:
            if not a.connected.is_set():
                self.violations.append(f"{a.name} is not connected at the end")
            if a.reconnects < 1:
                self.violations.append(f"{a.name} never reconnected ({cfg.kills} kills)")
            await a.close()
        report = await self.check(auditor)
        await auditor.close()
        if probe is not None:
            await probe.close()
        for hub in self.hubs:
            code = await asyncio.to_thread(hub.stop)
            if code != 0:
                report.violations.append(f"a hub exited {code} on SIGTERM")
        report.takeovers = self.takeovers
        report.reconnects = reconnects
        report.seconds = time.monotonic() - t0
        return report

    async def fail_over(self, killed: float, probe: Agent, k: int) -> None:
        """The owner was SIGKILLed at `killed`: time the standby's takeover (to its `listening`) and a client's
        first acknowledged write (the probe fails over like every agent), then bring the killed hub back as the
        new standby."""
        dead, heir = self.hub, next(hub for hub in self.hubs if hub is not self.hub)
        await self.until_true(lambda: heir.serving.wait(0.05), "the standby did not take over")
        self.restarts.append(time.monotonic() - killed)
        deadline = time.monotonic() + self.cfg.settle_timeout
        while True:  # sent on the dead connection before the agent saw it drop: in doubt, sent again
            try:
                await asyncio.wait_for(probe.state.set("probe", k), self.cfg.settle_timeout)
                break
            except HubError as exc:
                if exc.code not in DOUBT or time.monotonic() > deadline:
                    raise
        self.takeovers.append(time.monotonic() - killed)
        self.hub = heir
        await asyncio.to_thread(dead.start)
        if not dead.standby:
            self.violations.append(f"kill {k + 1}: the killed hub came back owning the log, not standing by")

    async def until_true(self, done: Callable[[], bool], what: str) -> None:
        """Poll a blocking check in a thread until it holds; raise after settle_timeout."""
        deadline = time.monotonic() + self.cfg.settle_timeout
        while not await asyncio.to_thread(done):
            if time.monotonic() > deadline:
                raise RuntimeError(what)

    async def settle(self, auditor: Agent, waiters: list[Agent]) -> None:
        """After the load: every waiter wakes for its bell's last value, every stream and the CLI waiter catch
        up with what was sent to them (event waits with a deadline, never a fixed sleep)."""
        for i, w in enumerate(waiters):
            last = int((await auditor.state.get(f"ring{i}"))["value"])
            wakes = self.wakes[w.name or ""]
            await self.until(
                lambda wakes=wakes, last=last: len(wakes) >= last,
                f"{w.name}: woken {len(wakes)}, rung {last}",
            )
        position = int((await auditor.status())["log_events"])
        rows = await asyncio.to_thread(read_log, self.db, position)
        sent = [ev for ev in rows if ev["type"] == "MessageSent"]
        for agent in [*self.workers, *waiters]:
            name = agent.name or ""
            mine = [int(m["seq"]) for m in sent if name in m["to"]]
            got = self.streams[name]
            if mine:
                await self.until(
                    lambda got=got, m=mine[-1]: bool(got) and got[-1] >= m,
                    f"{name}: its stream stopped short",
                )
        for_cw = [int(m["seq"]) for m in sent if CLI_WAITER in m["to"]]
        if for_cw:
            await self.until(lambda: self.cli_waiter_after >= for_cw[-1], "cw: the CLI waiter stopped short")
        # the leaver's claim lapses by the rules (its grace restarted by every restart)
        try:
            await auditor.wait_for(f'!("{LEAVER_WORK}" in claims)', self.cfg.settle_timeout)
        except HubError as exc:
            self.violations.append(f"{LEAVER_WORK} did not lapse: {exc.code}")

    async def check(self, auditor: Agent) -> Report:
        """Every acknowledged result against the log, and the live hub against a fold of the log."""
        for _attempt in range(10):  # a consistent view: the log position did not move during the reads
            before = int((await auditor.status())["log_events"])
            live_claims = await auditor.claims()
            live_tasks = await auditor.tasks.list()
            live_state = await auditor.state.list("_shared")
            after = int((await auditor.status())["log_events"])
            if before == after:
                break
        rows = await asyncio.to_thread(read_log, self.db, after)
        verdict = check_ledger(rows, self.ledger, self.streams, self.cli_wakes, self.wakes)
        v = self.violations + verdict.violations + compare_live(rows, live_claims, live_tasks, live_state)
        L = self.ledger
        return Report(
            seed=self.cfg.seed,
            kills=len(self.restarts),
            restarts=self.restarts,
            acked=L.acked,
            refused=L.refused,
            doubt=L.doubt,
            unreachable=L.unreachable,
            lost=verdict.lost,
            duplicated=verdict.duplicated,
            violations=v,
            reconnects={},
            wakes={n: len(w) for n, w in self.wakes.items()} | {CLI_WAITER: len(self.cli_wakes)},
            events=len(rows),
            seconds=0.0,
            landed_in_doubt=verdict.landed_in_doubt,
        )


async def _guarded(wait: Awaitable[None], workers: list[asyncio.Task[Any]]) -> None:
    """Wait, but fail at once if a worker died (a bug in the driver, or a hub that never comes back)."""
    waiting = asyncio.ensure_future(wait)
    done, _ = await asyncio.wait([waiting, *workers], return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        waiting.cancel()
        for t in done:
            t.result()
        raise RuntimeError("a worker stopped")


def run_chaos(cfg: ChaosConfig) -> Report:
    """One seeded chaos run (blocking); no hub outlives it, even when it fails."""
    run = Run(cfg)
    try:
        return asyncio.run(run.run())
    finally:
        for hub in run.hubs:
            hub.kill()
