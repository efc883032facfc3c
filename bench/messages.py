"""Messages benchmark: round trip, 4→1 flood, fan-out, RSS with 200 agents, replay, CLI send/wait wall time.

Run: `python bench/messages.py [--quick] [--sdk-only | --ingest [--pg URL]] [--repeat N] [--loop uvloop|asyncio]`.
Starts real hubs on 127.0.0.1 (ephemeral ports, durable SQLite log) and prints numbers and ratios against the
targets; it asserts nothing. The round trip and the flood run twice, side by side: through a lean raw websockets
client (bench.common.RawAgent) and through the SDK's Agent; `--sdk-only` runs only those, `--repeat N` runs them
N times (each on a fresh hub) and reports the medians. `--ingest` runs only the raw 4→1 flood (acknowledged
sends/s) on an SQLite log (`--sync normal` and `full`) and, with `--pg` or SYNAPSE_TEST_PG_URL, on a fresh
PostgreSQL database of that server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HubProc, RawAgent, median, pct, rss_mb, table  # noqa: E402

TARGETS = {
    "round_trip_p50_ms": ("≤", 0.3),
    "flood_msgs_per_s": ("≥", 15_000),
    "sdk_round_trip_overhead_ms": ("≤", 0.05),
    "sdk_flood_ratio": ("≥", 0.9),
    "fanout20_deliveries_per_s": ("≥", 80_000),
    "wait_send_to_exit_ms": ("≤", 10),
    "wait_arm_ms": ("≤", 150),
    "rss_200_agents_mb": ("≤", 50),
    "restart_with_snapshot_s": ("≤", 1.0),
    "cli_send_ms": ("≤", 120),
}


async def round_trip(url: str, n: int) -> dict[str, float]:
    a = await RawAgent(url, "rt-a").open()
    b = await RawAgent(url, "rt-b").open()

    async def echo() -> None:
        while True:
            m = await b.deliveries.get()
            asyncio.ensure_future(b.send("rt-a", m.body))

    task = asyncio.create_task(echo())
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await a.send("rt-b", i)
        await a.deliveries.get()
        times.append((time.perf_counter() - t0) * 1000)
    task.cancel()
    await a.close()
    await b.close()
    return {"round_trip_p50_ms": pct(times, 50), "round_trip_p99_ms": pct(times, 99)}


async def sdk_round_trip(url: str, n: int) -> dict[str, float]:
    """The round trip through the SDK: Agent.send, echoed by another Agent from its messages()."""
    from agent_sdk import Agent

    async with Agent("rt-a", hub=url, save_token=False) as a, Agent("rt-b", hub=url, save_token=False) as b:
        echoes: set[asyncio.Task[int]] = set()

        async def echo() -> None:
            async for m in b.messages():
                task = asyncio.ensure_future(b.send("rt-a", m.body))
                echoes.add(task)
                task.add_done_callback(echoes.discard)

        task = asyncio.create_task(echo())
        stream = a.messages()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            await a.send("rt-b", i)
            await anext(stream)
            times.append((time.perf_counter() - t0) * 1000)
        task.cancel()
        await asyncio.gather(task, *echoes, return_exceptions=True)
    return {"sdk_round_trip_p50_ms": pct(times, 50), "sdk_round_trip_p99_ms": pct(times, 99)}


async def sdk_flood(url: str, senders: int, per_sender: int, window: int = 200) -> dict[str, float]:
    """The 4→1 flood through the SDK: awaited Agent.send calls (`window` in flight per sender), the receiver
    reading its messages()."""
    from agent_sdk import Agent

    rx = Agent("fl-rx", hub=url, save_token=False)
    await rx.connect()
    txs = [Agent(f"fl-tx{i}", hub=url, save_token=False, stream=False) for i in range(senders)]
    for tx in txs:
        await tx.connect()
    total = senders * per_sender
    received = 0
    done = asyncio.Event()

    async def drain() -> None:
        nonlocal received
        async for _m in rx.messages():
            received += 1
            if received == total:
                done.set()
                return

    async def pump(tx: Agent) -> None:
        sem = asyncio.Semaphore(window)

        async def one(i: int) -> None:
            try:
                await tx.send("fl-rx", i)
            finally:
                sem.release()

        tasks = []
        for i in range(per_sender):
            await sem.acquire()
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)

    reader = asyncio.create_task(drain())
    t0 = time.perf_counter()
    await asyncio.gather(*(pump(tx) for tx in txs))
    await done.wait()
    elapsed = time.perf_counter() - t0
    await reader
    for x in (rx, *txs):
        await x.close()
    return {"sdk_flood_msgs_per_s": total / elapsed}


async def flood(url: str, senders: int, per_sender: int, window: int = 200) -> dict[str, float]:
    rx = await RawAgent(url, "fl-rx").open()
    rx.keep = False
    txs = [await RawAgent(url, f"fl-tx{i}").open(attach=False) for i in range(senders)]
    total = senders * per_sender

    async def pump(tx: RawAgent) -> None:
        sem = asyncio.Semaphore(window)

        async def one(i: int) -> None:
            try:
                await tx.request(tx.send_cmd("fl-rx", i))
            finally:
                sem.release()

        tasks = []
        for i in range(per_sender):
            await sem.acquire()
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)

    t0 = time.perf_counter()
    await asyncio.gather(*(pump(tx) for tx in txs))
    while rx.delivered < total:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    for x in (rx, *txs):
        await x.close()
    return {"flood_msgs_per_s": total / elapsed}


async def fanout(url: str, subscribers: int, messages: int, window: int = 50) -> float:
    subs = [await RawAgent(url, f"fo-{subscribers}-{i}").open() for i in range(subscribers)]
    for s in subs:
        s.keep = False
    tx = await RawAgent(url, f"fo-tx-{subscribers}").open(attach=False)
    sem = asyncio.Semaphore(window)
    expected = subscribers * messages

    async def one(i: int) -> None:
        try:
            await tx.request(tx.send_cmd("*", i))
        finally:
            sem.release()

    t0 = time.perf_counter()
    tasks = []
    for i in range(messages):
        await sem.acquire()
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + 60
    while sum(s.delivered for s in subs) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    got = sum(s.delivered for s in subs)
    for x in (tx, *subs):
        await x.close()
    return got / elapsed


async def rss_with_agents(url: str, pid: int, agents: int) -> float:
    conns = [await RawAgent(url, f"rss-{i}").open() for i in range(agents)]
    await asyncio.sleep(0.5)
    rss = rss_mb(pid)
    for x in conns:
        await x.close()
    return rss


def cli_send(url: str, tmp: str, runs: int = 10) -> float:
    exe = shutil.which("synapse") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "hub"]
    env = dict(os.environ, SYNAPSE_HUB=url, XDG_CONFIG_HOME=tmp)
    subprocess.run([*cmd, "join", "cli-a"], env=env, check=True, capture_output=True)
    times = []  # to cli-b, who never joins
    for i in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [*cmd, "send", "--name", "cli-a", "--target", "cli-b", "--allow-unknown", f"m{i}"],
            env=env,
            check=True,
            capture_output=True,
        )
        times.append((time.perf_counter() - t0) * 1000)
    return pct(times, 50)


async def cli_wait(url: str, tmp: str, runs: int = 5) -> dict[str, float]:
    exe = shutil.which("synapse") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "hub"]
    env = dict(os.environ, SYNAPSE_HUB=url, XDG_CONFIG_HOME=tmp)
    tx = await RawAgent(url, "wt-tx").open(attach=False)
    probe = await RawAgent(url, "wt-probe").open(attach=False)
    from hub.protocol import commands as c

    arm, exits = [], []
    last = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(  # --after: armed exactly after the last wake's message
            *cmd,
            "wait",
            "--name",
            "wt-rx",
            "--for",
            "wt-rx",  # its own messages: waiting for another agent's needs that agent's token
            "--directed-only",
            "--after",
            str(last),
            "--timeout",
            "30",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # armed = the hub lists the waiter on wt-rx's presence
            agents = (await probe.request(c.Agents(id=probe.next())))["agents"]
            if any(a["name"] == "wt-rx" and a.get("waiter") == "wt-rx" for a in agents):
                break
            await asyncio.sleep(0.001)
        else:
            raise RuntimeError("the waiter never armed")
        arm.append((time.perf_counter() - t0) * 1000)
        t1 = time.perf_counter()
        last = await tx.send("wt-rx", "wake")
        await proc.wait()
        exits.append((time.perf_counter() - t1) * 1000)
    await tx.close()
    await probe.close()
    return {"wait_arm_ms": pct(arm, 50), "wait_send_to_exit_ms": pct(exits, 50)}


def replay(events: int) -> dict[str, float]:
    """Restart time over a log of `events` messages, without and with a snapshot near its end."""
    from bench.log import history
    from hub.config import HubConfig
    from hub.core.machine import Machine
    from hub.core.snapshot import SNAPSHOT_VERSION, dump
    from hub.log.store import EventLog

    tmp = tempfile.mkdtemp(prefix="synapse-replay-")
    db = os.path.join(tmp, "log.db")
    log = EventLog(db)
    machine = Machine(HubConfig(rate_per_agent=None))
    rows = history(events, machine)
    for first in range(0, len(rows), 20_000):
        log.append(rows[first : first + 20_000])
    log.close()
    result: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = HubProc("--snapshot-every", "0", db=db).start()
    result["restart_no_snapshot_s"] = time.perf_counter() - t0
    proc.stop()
    log = EventLog(db)
    log.save_snapshot(machine.position, SNAPSHOT_VERSION, dump(machine))
    log.close()
    t0 = time.perf_counter()
    proc = HubProc("--snapshot-every", "0", db=db).start()
    result["restart_with_snapshot_s"] = time.perf_counter() - t0
    proc.stop()
    result["replay_events"] = events
    shutil.rmtree(tmp, ignore_errors=True)
    return result


async def on_hub(fn: Any, *args: Any, hub_args: tuple[str, ...] = (), db: str | None = None) -> Any:
    with HubProc(*hub_args, db=db) as h:
        return await fn(h.url, *args)


async def ingest(quick: bool, repeat: int, pg: str | None) -> dict[str, float]:
    """The raw 4→1 flood (every send acknowledged once its event is committed) per log backend, each run on a
    fresh hub and log, `repeat` times: the medians."""
    from bench.log import postgres_log

    per_sender = 1000 if quick else 5000
    runs: dict[str, list[float]] = {}
    for _ in range(repeat):
        for key, hub_args in (("sqlite", ()), ("sqlite_sync_full", ("--sync", "full"))):
            result = await on_hub(flood, 4, per_sender, hub_args=hub_args)
            runs.setdefault(f"ingest_{key}_msgs_per_s", []).append(result["flood_msgs_per_s"])
        if pg:
            with postgres_log(pg) as url:
                result = await on_hub(flood, 4, per_sender, db=url)
            runs.setdefault("ingest_postgresql_msgs_per_s", []).append(result["flood_msgs_per_s"])
    for key, values in runs.items():
        print(f"{key}: " + ", ".join(f"{v:,.0f}" for v in values), file=sys.stderr)
    return {key: median(values) for key, values in runs.items()}


async def sdk_vs_raw(quick: bool, repeat: int) -> dict[str, float]:
    """Round trip and 4→1 flood, raw and through the SDK, each on a fresh hub, `repeat` times: the medians."""
    n, per_sender = (300, 1000) if quick else (2000, 5000)
    runs: dict[str, list[float]] = {}
    for _ in range(repeat):
        for fn, arg in ((round_trip, n), (sdk_round_trip, n)):
            for key, value in (await on_hub(fn, arg)).items():
                runs.setdefault(key, []).append(value)
        for fn in (flood, sdk_flood):
            for key, value in (await on_hub(fn, 4, per_sender)).items():
                runs.setdefault(key, []).append(value)
    r = {key: median(values) for key, values in runs.items()}
    r["sdk_round_trip_overhead_ms"] = r["sdk_round_trip_p50_ms"] - r["round_trip_p50_ms"]
    r["sdk_flood_ratio"] = r["sdk_flood_msgs_per_s"] / r["flood_msgs_per_s"]
    if repeat > 1:
        for key in ("round_trip_p50_ms", "sdk_round_trip_p50_ms", "flood_msgs_per_s", "sdk_flood_msgs_per_s"):
            print(f"{key}: " + ", ".join(f"{v:,.3f}" for v in runs[key]), file=sys.stderr)
        pairs = zip(runs["sdk_flood_msgs_per_s"], runs["flood_msgs_per_s"], strict=True)
        # each run's own ratio: its raw and SDK floods ran back to back, so under the same load
        print("sdk_flood_ratio per run: " + ", ".join(f"{s / r:.3f}" for s, r in pairs), file=sys.stderr)
    return r


async def main_async(
    quick: bool, sdk_only: bool = False, repeat: int = 1, pg: str | None = None, only_ingest: bool = False
) -> dict[str, float]:
    if only_ingest:
        return await ingest(quick, repeat, pg)
    r = await sdk_vs_raw(quick, repeat)
    if sdk_only:
        return r
    full = await on_hub(flood, 4, 500 if quick else 2000, hub_args=("--sync", "full"))
    r["flood_sync_full_msgs_per_s"] = full["flood_msgs_per_s"]
    r["fanout20_deliveries_per_s"] = await on_hub(fanout, 20, 200 if quick else 2000)
    r["fanout200_deliveries_per_s"] = await on_hub(fanout, 200, 50 if quick else 300)
    with HubProc() as h:
        r["rss_idle_mb"] = rss_mb(h.pid)
        r["rss_200_agents_mb"] = await rss_with_agents(h.url, h.pid, 200)
        r["cli_send_ms"] = cli_send(h.url, h.tmp, 5 if quick else 10)
        r.update(await cli_wait(h.url, h.tmp, 3 if quick else 7))
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark)")
    parser.add_argument("--replay-events", type=int, default=None, help="log length for the replay run")
    parser.add_argument("--sdk-only", action="store_true", help="only the round trip and flood, raw and SDK")
    parser.add_argument("--repeat", type=int, default=1, help="run the raw/SDK pairs N times; report medians")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the client's loop")
    parser.add_argument("--ingest", action="store_true", help="only the raw flood, per log backend")
    parser.add_argument("--pg", default=os.environ.get("SYNAPSE_TEST_PG_URL"), help="a PostgreSQL server URL")
    args = parser.parse_args()
    runner: Any = asyncio.run
    if args.loop == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found]

            runner = uvloop.run
        except ImportError:
            print("uvloop is not installed: asyncio's loop", file=sys.stderr)
    results = runner(main_async(args.quick, args.sdk_only, max(1, args.repeat), args.pg, args.ingest))
    if not (args.sdk_only or args.ingest):
        results.update(replay(args.replay_events or (50_000 if args.quick else 1_000_000)))
    rows = []
    for key, value in results.items():
        target = TARGETS.get(key)
        note = ""
        if target is not None:
            op, goal = target
            ok = value <= goal if op == "≤" else value >= goal
            note = f"   target {op} {goal:g}  {'ok' if ok else 'MISSED'}  (ratio {value / goal:.2f})"
        rows.append((key, f"{value:,.3f}{note}"))
    print(f"synapse-hub messages benchmark (client loop: {runner.__module__.split('.')[0]})")
    print(table(rows))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
