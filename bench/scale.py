"""Fleet scale: N agents spread over client processes; connect time, hub RSS per agent, broadcast, flood.

Run: `python bench/scale.py [--agents 1000,5000,10000] [--procs P] [--broadcasts B] [--senders S]
[--connect-only] [--client lean|websockets]`.
For each N, on a fresh hub (durable SQLite log, rate limits lifted, connection caps raised to N + 64): P client
processes start (imports, loop), then on one signal each open their share of the N agents (join + attach,
`--concurrency` at once per process); it prints the time from that signal until all N are attached, the CPU
the hub and the clients spent meanwhile (µs per agent: they share the cores, so both bound the time), the hub's
RSS before and after and per agent; then (unless `--connect-only`) a broadcast (`*`) of B messages to every
agent (deliveries/s until every agent has all B), and S senders (among the N) each sending `--flood-messages`
awaited messages (200 in flight per sender) to one sink (msgs/s until the sink has them all). The clients are
`bench.common.LeanAgent` (hand-written frames, ≈ 250 µs of CPU per agent connecting) unless `--client
websockets` (`RawAgent`, ≈ 800 µs: on a 2-core machine it, not the hub, then bounds the connect time). Raises
this process's descriptor limit to the hard limit (the hub and the clients inherit it) and says so when N needs
more than it can get. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HubProc, LeanAgent, RawAgent, cpu_seconds, rss_mb, table  # noqa: E402

SINK = "scale-sink"
WINDOW = 200  # awaited sends in flight per flood sender


def raise_fd_limit(need: int) -> str:
    """Raise the soft descriptor limit to the hard one (the hub and the clients inherit it); a line saying what
    we got against what the hub, holding one per agent, needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    verdict = "enough" if soft >= need else f"TOO FEW: runs above {soft - 256} agents will fail to connect"
    return f"descriptors: soft limit {soft} (hard {hard}); the hub needs about {need}: {verdict}"


# -- one client process ---------------------------------------------------------------------------------------


CLIENTS: dict[str, Any] = {"lean": LeanAgent, "websockets": RawAgent}


def client_main(url: str, names: list[str], concurrency: int, pipe: Connection, client: str = "lean") -> None:
    """Open every agent, report, then obey the parent: count broadcasts, flood the sink, close."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_client(url, names, concurrency, pipe, CLIENTS[client]))
    except BaseException as exc:  # the parent is blocked on this pipe: tell it, do not leave it hanging
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise


async def _client(url: str, names: list[str], concurrency: int, pipe: Connection, kind: Any) -> None:
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    pipe.send(("ready", time.time()))  # started: the parent's clock for the connect starts at its "go"
    await loop.run_in_executor(None, pipe.recv)
    cpu0 = time.process_time()

    async def open_one(name: str) -> RawAgent:
        async with sem:
            agent = kind(url, name)
            agent.keep = False  # count deliveries, do not queue them
            return await agent.open()

    agents = await asyncio.gather(*(open_one(n) for n in names))
    pipe.send(("open", (time.time(), time.process_time() - cpu0)))
    while True:
        op, arg = await loop.run_in_executor(None, pipe.recv)
        if op == "count":  # every agent of this process has `arg` more deliveries: say when
            targets = [a.delivered + arg for a in agents]
            pipe.send(
                ("counting", time.time())
            )  # the parent broadcasts only after every client counted its base
            while any(a.delivered < t for a, t in zip(agents, targets, strict=True)):
                await asyncio.sleep(0.001)
            pipe.send(("counted", time.time()))
        elif op == "flood":  # the first `senders` agents each send `messages` to the sink
            senders, messages = arg
            await asyncio.gather(*(_flood(a, messages) for a in agents[:senders]))
            pipe.send(("flooded", time.time()))
        elif op == "close":
            await asyncio.gather(*(a.close() for a in agents))
            pipe.send(("closed", time.time()))
            return


async def _flood(agent: RawAgent, messages: int) -> None:
    sem = asyncio.Semaphore(WINDOW)

    async def one(i: int) -> None:
        try:
            await agent.request(agent.send_cmd(SINK, i))
        finally:
            sem.release()

    tasks = []
    for i in range(messages):
        await sem.acquire()
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)


# -- the parent --------------------------------------------------------------------------------------------------


def answer(pipe: Connection) -> Any:
    """A client's next report (its time); a failed client stops the run with its error."""
    what, value = pipe.recv()
    if what == "failed":
        raise SystemExit(f"a client process failed: {value}")
    return value


async def answers(pipes: list[Connection]) -> list[Any]:
    """Every client's next report, read off the loop: the parent's own agents keep answering the hub's
    keepalive pings meanwhile (a loop blocked on a pipe for two ping intervals gets them closed)."""
    loop = asyncio.get_running_loop()
    return [await loop.run_in_executor(None, answer, p) for p in pipes]


async def ask(pipes: list[Connection], op: str, arg: Any = None) -> list[Any]:
    for p in pipes:
        p.send((op, arg))
    return await answers(pipes)


class Fleet:
    """`n` agents (scale-0 …) spread over `procs` client processes, `concurrency` connecting at once in each."""

    def __init__(self, url: str, n: int, procs: int, concurrency: int, client: str = "lean") -> None:
        self.n = n
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.children: list[Any] = []
        for p in range(procs):
            share = [f"scale-{i}" for i in range(n) if i % procs == p]
            mine, theirs = ctx.Pipe()
            self.children.append(
                ctx.Process(target=client_main, args=(url, share, concurrency, theirs, client))
            )
            self.pipes.append(mine)

    async def start(self) -> None:
        """Start the client processes and wait until each is up (imports, loop), not connecting yet."""
        for child in self.children:
            child.start()
        await answers(self.pipes)

    async def connect(self) -> tuple[float, float]:
        """Open every agent (join + attach): (seconds until the last is attached, the clients' CPU seconds)."""
        t0 = time.time()
        opened = await ask(self.pipes, "go")
        return max(t for t, _ in opened) - t0, sum(cpu for _, cpu in opened)

    async def close(self) -> None:
        await ask(self.pipes, "close")
        for child in self.children:
            child.join(30)


async def run_one(n: int, procs: int, args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    caps = str(n + 64)
    with HubProc("--max-connections", caps, "--max-connections-per-address", caps) as hub:
        await asyncio.sleep(0.2)
        rss0 = rss_mb(hub.pid)
        sink = await RawAgent(hub.url, SINK).open()
        sink.keep = False
        fleet = Fleet(hub.url, n, procs, args.concurrency, args.client)
        pipes = fleet.pipes
        await fleet.start()
        hub_cpu0 = cpu_seconds(hub.pid)
        connect_s, client_cpu = await fleet.connect()
        hub_us = (cpu_seconds(hub.pid) - hub_cpu0) / n * 1e6
        client_us = client_cpu / n * 1e6
        await asyncio.sleep(0.5)
        rss1 = rss_mb(hub.pid)
        rows.append(
            (f"N={n}: connect all (join + attach)", f"{connect_s:.2f} s ({n / connect_s:,.0f} agents/s)")
        )
        rows.append(
            (
                f"N={n}: CPU per agent connecting",
                f"hub {hub_us:.0f} µs, clients {client_us:.0f} µs "
                f"({procs} {args.client} client processes, {args.concurrency} at once each)",
            )
        )
        rows.append(
            (
                f"N={n}: hub RSS",
                f"{rss0:.0f} MB idle → {rss1:.0f} MB; {(rss1 - rss0) * 1024 / n:.1f} KB per agent",
            )
        )

        if args.connect_only:
            await fleet.close()
            await sink.close()
            return rows
        tx = await RawAgent(hub.url, "scale-tx").open(attach=False)
        b = args.broadcasts
        await ask(pipes, "count", b)  # each client notes what it has, then the broadcasts start
        t0 = time.time()
        for i in range(b):
            await tx.send("*", i)
        done = await answers(pipes)
        elapsed = max(done) - t0
        rows.append(
            (f"N={n}: broadcast {b} to all", f"{n * b / elapsed:,.0f} deliveries/s ({elapsed:.2f} s)")
        )

        senders = min(args.senders, n)
        per = [len(range(p, senders, procs)) for p in range(procs)]  # the first `senders` names, round-robin
        expected = senders * args.flood_messages
        before = sink.delivered  # the sink got the broadcasts too
        t0 = time.time()
        for p, k in zip(pipes, per, strict=True):
            p.send(("flood", (k, args.flood_messages)))
        await answers(pipes)
        while sink.delivered - before < expected:
            await asyncio.sleep(0.001)
        elapsed = time.time() - t0
        rows.append(
            (f"N={n}: {senders} senders → 1 sink", f"{expected / elapsed:,.0f} msgs/s ({elapsed:.2f} s)")
        )

        await fleet.close()
        await tx.close()
        await sink.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="1000,5000,10000", help="comma-separated fleet sizes")
    parser.add_argument("--procs", type=int, default=max(2, os.cpu_count() or 2), help="client processes")
    parser.add_argument("--concurrency", type=int, default=64, help="connections opened at once per process")
    parser.add_argument("--broadcasts", type=int, default=20, help="`*` messages sent to every agent")
    parser.add_argument("--senders", type=int, default=48, help="flood senders (among the N agents)")
    parser.add_argument("--flood-messages", type=int, default=500, help="messages per flood sender")
    parser.add_argument("--connect-only", action="store_true", help="measure the connect alone")
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="lean",
        help="the fleet's client: lean (bench.common.LeanAgent: hand-written frames, cheap for the shared cores) "
        "or websockets (bench.common.RawAgent)",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.agents.split(",") if x]
    print(
        raise_fd_limit(max(sizes) + 256), flush=True
    )  # per process: the hub holds one per agent, the clients share theirs
    print(
        f"{args.procs} client processes; {os.cpu_count()} cores on this machine; hub and clients share them",
        flush=True,
    )
    for n in sizes:
        rows = asyncio.run(run_one(n, args.procs, args))
        print(table(rows), flush=True)


if __name__ == "__main__":
    main()
