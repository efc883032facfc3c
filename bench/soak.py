"""Soak: the chaos mix (no kills) at a steady rate for `--minutes`, with 200 agents connecting and disconnecting
meanwhile; then 1,000 connect/disconnect cycles.

Run: `python bench/soak.py [--minutes 30] [--rate 20] [--churn 200]`. Starts `python -m hub` on 127.0.0.1 with
its own SQLite file and samples its /metrics every `--every` seconds: RSS, open file descriptors, asyncio tasks,
messages held in memory (the feed window) and connections. Prints the first and the last window (5 minutes, or
a third of a shorter run) side by side, then the descriptors and RSS before and after the 1,000 cycles. A hub
that leaks shows it as drift between the columns. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from agent_sdk import Agent, HubError  # noqa: E402
from bench.chaos_driver import ChaosConfig, Run  # noqa: E402

GAUGES = {
    "process_resident_memory_bytes": ("RSS (MB)", 1 / 1e6),
    "process_open_fds": ("open fds", 1.0),
    "synapse_asyncio_tasks": ("asyncio tasks", 1.0),
    "synapse_feed_messages": ("feed in memory (messages)", 1.0),
    "synapse_feed_bytes": ("feed in memory (KB)", 1 / 1e3),
    "synapse_connections": ("connections", 1.0),
}


def scrape(url: str) -> dict[str, float]:
    http = url.replace("ws://", "http://", 1) + "/metrics"
    with urllib.request.urlopen(http, timeout=30) as r:
        text = r.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        hub_args = ("--feed-window", str(args.feed_window)) if args.feed_window else ()
        cfg = ChaosConfig(
            workdir=workdir, seed=args.seed, kills=0, rate=args.rate, task_ids=50, hub_args=hub_args
        )
        self.run = Run(cfg)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.cycles = 0
        self.churn_errors = 0

    async def sample(self) -> dict[str, float]:
        return await asyncio.to_thread(scrape, self.run.hub.url)

    async def churn(self, names: list[str], stop: asyncio.Event, pause: float) -> None:
        """Agents come and go: connect (joining the first time), send and write once, disconnect."""
        rng = random.Random(self.args.seed)
        tokens: dict[str, str] = {}
        while not stop.is_set():
            name = rng.choice(names)
            try:
                agent = Agent(
                    name, hub=self.run.hub.url, token=tokens.get(name), save_token=False, stream=False
                )
                await agent.connect()
                try:
                    tokens[name] = agent.token or ""
                    await agent.send(rng.choice(self.run.names), {"churn": name})
                    await agent.state.set("last-churn", name)
                finally:
                    await agent.close()
                self.cycles += 1
            except HubError:
                self.churn_errors += 1
            if pause:
                await asyncio.sleep(pause)

    async def main(self) -> None:
        run, args = self.run, self.args
        await asyncio.to_thread(run.hub.start)
        run.up.set()
        run.names = [f"a{i}" for i in range(run.cfg.sdk_workers)]
        for name in ["cw", "cli0"]:
            await run.cli("join", name)
        run.workers = [await run.connect(n) for n in run.names]
        waiters = [await run.connect(f"waiter{i}") for i in range(run.cfg.waiters)]
        for a in [*run.workers, *waiters]:
            run.streams[a.name or ""] = []
            run.wakes[a.name or ""] = []
        for i in range(run.cfg.waiters):
            await run.workers[0].state.set(f"ring{i}", 0)
        await run.workers[0].state.set("race", "")
        rng = random.Random(args.seed)
        tasks = [asyncio.create_task(run.worker(a, random.Random(rng.random()))) for a in run.workers]
        tasks += [asyncio.create_task(run.waiter(a, i)) for i, a in enumerate(waiters)]
        tasks += [asyncio.create_task(self.drop_streams(a)) for a in [*run.workers, *waiters]]
        tasks.append(asyncio.create_task(run.cli_worker("cli0", random.Random(rng.random()))))
        churn_stop = asyncio.Event()
        names = [f"c{i:03d}" for i in range(args.churn)]
        tasks.append(asyncio.create_task(self.churn(names, churn_stop, 1 / args.churn_rate)))
        started = time.monotonic()
        end = started + args.minutes * 60
        while (now := time.monotonic()) < end:
            self.samples.append((now - started, await self.sample()))
            print(self.line(self.samples[-1]), flush=True)
            await asyncio.sleep(min(args.every, max(0.0, end - time.monotonic())))
        self.samples.append((time.monotonic() - started, await self.sample()))
        churn_stop.set()
        run.stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for a in [*run.workers, *waiters]:
            await a.close()
        load_ops = sum(run.ledger.acked.values())
        await self.settle()
        before = await self.sample()
        cycles = time.monotonic()
        tokens: dict[str, str | None] = {}
        for i in range(
            args.cycles
        ):  # ten names, each re-attached with its token: no new agent after the first ten
            name = f"cycle{i % 10}"
            agent = Agent(name, hub=run.hub.url, token=tokens.get(name), save_token=False, stream=False)
            await agent.connect()
            tokens[name] = agent.token
            await agent.close()
        cycles = time.monotonic() - cycles
        await self.settle()
        after = await self.sample()
        await asyncio.to_thread(run.hub.stop)
        self.report(load_ops, before, after, cycles)

    async def drop_streams(self, agent: Agent) -> None:
        async for _message in agent.messages():
            pass  # read, so the client's queue stays empty; the chaos checks are not run here

    async def settle(self) -> None:
        """Until the hub has noticed every close (connections back to 0), for at most 30 s."""
        deadline = time.monotonic() + 30
        while (await self.sample()).get("synapse_connections", 0) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    @staticmethod
    def line(sample: tuple[float, dict[str, float]]) -> str:
        t, m = sample
        cells = [f"{label} {m.get(name, 0) * scale:,.0f}" for name, (label, scale) in GAUGES.items()]
        return f"t={t:6.0f}s  " + "  ".join(cells)

    def report(
        self, load_ops: int, before: dict[str, float], after: dict[str, float], cycles_s: float
    ) -> None:
        args = self.args
        total = self.samples[-1][0]
        window = min(300.0, total / 3)
        first = [m for t, m in self.samples if t <= window]
        last = [m for t, m in self.samples if t >= total - window]
        print()
        print(
            f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
        )
        print(
            f"soak: {args.minutes:g} min, {len(self.run.names)} SDK agents at {args.rate:g} ops/s each + 1 CLI agent, "
            f"{load_ops:,} acknowledged operations; {self.cycles:,} churn connections of {args.churn} agents "
            f"({self.churn_errors} refused or cut)"
        )
        print(
            f"{'median over the window':<28}{'first ' + f'{window / 60:.1f} min':>16}{'last ' + f'{window / 60:.1f} min':>16}"
        )
        for name, (label, scale) in GAUGES.items():
            a = statistics.median(m.get(name, 0) for m in first) * scale
            b = statistics.median(m.get(name, 0) for m in last) * scale
            print(f"{label:<28}{a:>16,.1f}{b:>16,.1f}")
        print()
        print(
            f"{args.cycles:,} connect/disconnect cycles in {cycles_s:.1f} s (connections back to 0 before each reading)"
        )
        print(f"{'':<28}{'before':>16}{'after':>16}")
        for name in ("process_open_fds", "process_resident_memory_bytes", "synapse_asyncio_tasks"):
            label, scale = GAUGES[name]
            print(f"{label:<28}{before.get(name, 0) * scale:>16,.1f}{after.get(name, 0) * scale:>16,.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the mixed load (default 30)")
    parser.add_argument("--rate", type=float, default=20.0, help="operations/s per SDK agent (default 20)")
    parser.add_argument(
        "--churn", type=int, default=200, help="agents that connect and disconnect (default 200)"
    )
    parser.add_argument(
        "--churn-rate", type=float, default=10.0, help="churn connections per second (default 10)"
    )
    parser.add_argument(
        "--cycles", type=int, default=1000, help="connect/disconnect cycles at the end (1000)"
    )
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--feed-window", type=int, help="the hub's --feed-window (default: the hub's 20,000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="synapse-soak-"))
    os.environ["XDG_CONFIG_HOME"] = str(workdir / "config")
    asyncio.run(Soak(args, workdir).main())


if __name__ == "__main__":
    main()
