"""Dashboard cost: throughput of the 4→1 message flood (bench/messages.py) with 5 dashboards open vs none.

A "dashboard" here is a raw WebSocket client doing exactly what the page does (hub/server/static/dashboard.js):
a batched `tail` of the room, the read commands that load it (agents, claims, board, task.list, message.list, state.list),
then, for every event, a re-query of the part that event touches (one query of a part in flight, at most one
per 200 ms). They run in their own process, as browsers would. Each run starts a fresh hub on 127.0.0.1; runs
alternate (none, with) and the medians are compared. Target: with dashboards ≤ 5 % lower.

Run: `python bench/dashboard.py [--quick] [--runs N] [--dashboards N]`. It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.common import HubProc, table  # noqa: E402
from bench.messages import flood  # noqa: E402

__all__ = ["Dashboard", "main"]

MIN_GAP = 0.2  # seconds between two re-queries of one part (the page's MIN_GAP_MS)
TOUCHES = {  # the page's TOUCHES: event type → parts re-queried
    "MessageSent": ("agents",),
    "MessageClaimed": ("feed", "agents"),
    "AgentJoined": ("agents",),
    "PresenceChanged": ("agents",),
    "SessionOpened": ("agents", "claims"),
    "SessionClosed": ("agents", "claims"),
    "ClaimGranted": ("claims", "plan"),
    "ClaimRenewed": ("claims",),
    "ClaimOrphaned": ("claims",),
    "ClaimReleased": ("claims", "plan"),
    "ClaimLapsed": ("claims", "plan"),
    "ClaimHandedOff": ("claims", "plan"),
    "IntentDeclared": ("plan",),
    "TaskDeclared": ("plan",),
    "TaskUpdated": ("plan", "agents"),
    "StateWritten": ("state",),
    "StateDeleted": ("state",),
    "ViewDefined": ("state",),
    "HubStarted": ("agents", "claims", "plan", "feed", "state"),
}


class Dashboard:
    """One open dashboard page, as the hub sees it."""

    def __init__(self, url: str, room: str = "default") -> None:
        self.url = url
        self.room = room
        self.ws: Any = None
        self.ids = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.inflight: set[str] = set()
        self.dirty: set[str] = set()
        self.last: dict[str, float] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.events = 0
        self.queries = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.parts = {
            "agents": self._agents,
            "claims": self._claims,
            "plan": self._plan,
            "feed": self._feed,
            "state": self._state,
        }

    async def open(self) -> Dashboard:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, max_size=None, compression=None)
        self.reader = asyncio.create_task(self._read())
        await self.request("tail", rooms=[self.room], after=None, batch=True)
        await asyncio.gather(*(self._run(part) for part in self.parts))
        return self

    async def request(self, op: str, **fields: Any) -> Any:
        self.ids += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.ids] = fut
        self.queries += 1
        await self.ws.send(json.dumps({"op": op, "id": self.ids, "room": self.room, **fields}))
        return await fut

    async def _read(self) -> None:
        async for data in self.ws:
            frame = json.loads(data)  # the page parses every frame too
            kind = frame.get("type")
            if kind in ("Ok", "Error"):
                fut = self.pending.pop(frame.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(frame.get("result"))
            elif kind == "EventBatch":
                for one in frame["events"]:
                    self.events += 1
                    for part in TOUCHES.get(one["event"].get("type"), ()):
                        self._schedule(part)

    def _schedule(self, part: str) -> None:
        if part in self.inflight:
            self.dirty.add(part)
            return
        wait = self.last.get(part, 0.0) + MIN_GAP - time.monotonic()
        if wait > 0:
            if part not in self.timers:
                self.timers[part] = asyncio.get_running_loop().call_later(wait, self._fire, part)
            return
        self._fire(part)

    def _fire(self, part: str) -> None:
        self.timers.pop(part, None)
        if self.closing:
            return
        task = asyncio.ensure_future(self._run(part))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, part: str) -> None:
        if part in self.inflight:
            self.dirty.add(part)
            return
        self.inflight.add(part)
        self.dirty.discard(part)
        self.last[part] = time.monotonic()
        try:
            await self.parts[part]()
        except ConnectionClosed:
            pass
        finally:
            self.inflight.discard(part)
            if part in self.dirty:
                self._schedule(part)

    async def _agents(self) -> None:
        await self.request("agents")

    async def _claims(self) -> None:
        await self.request("claims")

    async def _plan(self) -> None:
        await asyncio.gather(self.request("task.list"), self.request("board"))

    async def _feed(self) -> None:
        head = (await self.request("message.list", after=0, limit=1))["head"]
        await self.request("message.list", after=max(0, head - 50), limit=50)

    async def _state(self) -> None:
        await self.request("state.list")

    async def close(self) -> None:
        self.closing = True
        for handle in self.timers.values():
            handle.cancel()
        await self.ws.close()
        for task in list(self.tasks):
            task.cancel()


def _dashboards_process(url: str, count: int, conn: Connection, nice: bool) -> None:
    """Child process: open `count` dashboards, say so, keep them live until told to stop; report counts.

    `nice`: at the lowest CPU priority, standing in for browsers on other machines, so that on a small box the
    numbers show what the dashboards cost the hub rather than what this simulation of them costs the CPU.
    """
    if nice:
        os.nice(19)

    async def run() -> None:
        boards = [await Dashboard(url).open() for _ in range(count)]
        conn.send("open")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send({"events": sum(b.events for b in boards), "queries": sum(b.queries for b in boards)})
        for b in boards:
            await b.close()

    asyncio.run(run())


async def one_run(dashboards: int, per_sender: int, nice: bool = True) -> dict[str, float]:
    """A fresh hub, `dashboards` pages open on it (in another process), one 4→1 flood."""
    with HubProc() as hub:
        child = None
        parent: Connection | None = None
        if dashboards:
            parent, theirs = multiprocessing.Pipe()
            child = multiprocessing.get_context("spawn").Process(
                target=_dashboards_process, args=(hub.url, dashboards, theirs, nice), daemon=True
            )
            child.start()
            if not await asyncio.get_running_loop().run_in_executor(None, parent.poll, 30):
                raise RuntimeError("the dashboards did not open")
            assert parent.recv() == "open"
        result = await flood(hub.url, 4, per_sender)
        metrics = urllib.request.urlopen(hub.url.replace("ws://", "http://") + "/metrics", timeout=10).read()
        tails = next(
            float(line.split()[1])
            for line in metrics.decode().splitlines()
            if line.startswith("synapse_tails ")
        )
        out = {"msgs_per_s": result["flood_msgs_per_s"], "tails": tails}
        if child is not None and parent is not None:
            parent.send("stop")
            counts = parent.recv()
            out.update(events_seen=counts["events"], queries=counts["queries"])
            child.join(10)
        return out


async def main_async(runs: int, dashboards: int, per_sender: int, nice: bool = True) -> dict[str, Any]:
    none: list[float] = []
    with_: list[float] = []
    last: dict[str, float] = {}
    for _ in range(runs):
        none.append((await one_run(0, per_sender))["msgs_per_s"])
        last = await one_run(dashboards, per_sender, nice)
        with_.append(last["msgs_per_s"])
    base, loaded = statistics.median(none), statistics.median(with_)
    return {
        "flood_no_dashboard_msgs_per_s": base,
        f"flood_{dashboards}_dashboards_msgs_per_s": loaded,
        "ratio": loaded / base,
        "drop_percent": (1 - loaded / base) * 100,
        "runs_no_dashboard": none,
        "runs_with_dashboards": with_,
        "last_run_tails": last.get("tails", 0),
        "last_run_events_seen_by_dashboards": last.get("events_seen", 0),
        "last_run_dashboard_queries": last.get("queries", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark)")
    parser.add_argument(
        "--runs", type=int, default=None, help="alternating runs of each (default 5; quick 1)"
    )
    parser.add_argument("--dashboards", type=int, default=5)
    parser.add_argument(
        "--same-priority",
        action="store_true",
        help="run the simulated dashboards at normal CPU priority (they then compete with the hub for the CPU)",
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    per_sender = 1000 if args.quick else 5000
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    results = runner(main_async(runs, args.dashboards, per_sender, not args.same_priority))
    drop = results["drop_percent"]
    rows = [
        ("flood, no dashboard (msgs/s)", f"{results['flood_no_dashboard_msgs_per_s']:,.0f}"),
        (
            f"flood, {args.dashboards} dashboards (msgs/s)",
            f"{results[f'flood_{args.dashboards}_dashboards_msgs_per_s']:,.0f}",
        ),
        ("ratio (with / without)", f"{results['ratio']:.3f}"),
        ("drop", f"{drop:.1f} %   target ≤ 5 %  {'ok' if drop <= 5 else 'MISSED'}"),
        ("runs", f"{runs} of each, 4 senders × {per_sender} messages, medians compared"),
        (
            "dashboards' CPU priority",
            "normal" if args.same_priority else "lowest (nice 19: browsers elsewhere)",
        ),
        ("events seen by the dashboards (last run)", f"{results['last_run_events_seen_by_dashboards']:,.0f}"),
        ("read queries they sent (last run)", f"{results['last_run_dashboard_queries']:,.0f}"),
    ]
    print("synapse-hub dashboard cost benchmark")
    print(table(rows))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
