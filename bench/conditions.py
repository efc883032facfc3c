"""Conditions and shared-state benchmark: trigger latency with 10,000 live subscriptions over 1,000 keys, hub
CPU per write, evals/s of the CEL adapter, and durable state writes/s (single and batched) from 4 clients.

Run: `python bench/conditions.py [--quick]`. Starts real hubs on 127.0.0.1 (ephemeral ports, durable SQLite
log) and prints numbers and ratios against the targets; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

# Run as `python bench/conditions.py`: the project root first, and not this folder (its cel.py would shadow
# the `cel` module of common-expression-language).
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from bench.common import HubProc, RawAgent, cpu_seconds, pct, table  # noqa: E402
from hub.core import cel  # noqa: E402
from hub.protocol import commands as c  # noqa: E402
from hub.protocol.codec import decode_frame  # noqa: E402
from hub.protocol.errors import HubError  # noqa: E402
from hub.protocol.frames import Error, Ok, Trigger  # noqa: E402

TARGETS = {
    "trigger_after_ack_p99_ms": ("≤", 5.0),
    "writes_per_s_4_clients": ("≥", 10_000),
}


class SubAgent(RawAgent):
    """RawAgent that also routes Trigger frames: each subscription's triggers go to its own future."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__(url, name)
        self.waiting: dict[int, asyncio.Future[tuple[float, Trigger]]] = {}
        self.triggers = 0

    async def _read(self) -> None:
        assert self.ws is not None
        async for data in self.ws:
            frame = decode_frame(data)
            kind = type(frame)
            if kind is Trigger:
                self.triggers += 1
                fut = self.waiting.pop(frame.sub, None)  # type: ignore[union-attr]
                if fut is not None and not fut.done():
                    fut.set_result((time.perf_counter(), frame))  # type: ignore[arg-type]
            elif kind is Ok or kind is Error:
                fut = self.pending.pop(frame.id, None)  # type: ignore[union-attr]
                if fut is not None:
                    if kind is Ok:
                        fut.set_result(frame.result)  # type: ignore[union-attr]
                    else:
                        fut.set_exception(HubError(frame.code, frame.message))  # type: ignore[union-attr]

    def set_cmd(self, key: str, value: Any) -> c.SetState:
        return c.SetState(
            id=self.next(), room=self.room, token=self.token, name=self.name, key=key, value=value
        )


async def pipelined(agent: SubAgent, cmds: list[Any], window: int = 256) -> None:
    """Send every command with at most `window` in flight; wait for every reply."""
    sem = asyncio.Semaphore(window)

    async def one(cmd: Any) -> None:
        async with sem:
            await agent.request(cmd)

    await asyncio.gather(*(one(cmd) for cmd in cmds))


async def triggers(
    url: str, pid: int, keys: int, subs_per_key: int, conns: int, samples: int
) -> dict[str, float]:
    """`keys * subs_per_key` subscriptions `state._shared.kI == J` (J < subs_per_key) on `conns` connections;
    each write sets one key to a new J: it re-evaluates that key's subscriptions and triggers exactly one.

    trigger_after_ack is the trigger's arrival (on a watcher's connection) minus the writer's ack arrival:
    the hub releases both when the write's batch commits, so it is about 0 (negative: the trigger came first).
    """
    writer = await SubAgent(url, "writer").open(attach=False)
    watchers = [await SubAgent(url, f"watch-{i}").open(attach=False) for i in range(conns)]
    # Each key starts at -1 (no subscription holds), so subscribing pushes nothing.
    await pipelined(writer, [writer.set_cmd(f"k{i}", -1) for i in range(keys)])
    cpu0 = cpu_seconds(pid)
    await pipelined(writer, [writer.set_cmd(f"k{i % keys}", -1) for i in range(samples)])
    cpu_no_subs = (cpu_seconds(pid) - cpu0) / samples

    sub_of: dict[tuple[int, int], tuple[SubAgent, int]] = {}  # (key, value) → (its connection, its sub id)
    spots = [(i, j) for i in range(keys) for j in range(subs_per_key)]

    async def subscribe_all(w: SubAgent, mine: list[tuple[int, int]]) -> None:
        sem = asyncio.Semaphore(256)

        async def one(i: int, j: int) -> None:
            async with sem:
                r = await w.request(c.Subscribe(id=w.next(), room=w.room, expr=f"state._shared.k{i} == {j}"))
                sub_of[(i, j)] = (w, int(r["sub"]))

        await asyncio.gather(*(one(i, j) for i, j in mine))

    t0 = time.perf_counter()
    await asyncio.gather(*(subscribe_all(w, spots[n::conns]) for n, w in enumerate(watchers)))
    subscribe_s = time.perf_counter() - t0

    rng = random.Random(7)
    current = dict.fromkeys(range(keys), -1)
    after_ack, end_to_end, ack = [], [], []
    for _ in range(samples):
        i = rng.randrange(keys)
        j = rng.choice([v for v in range(subs_per_key) if v != current[i]])
        current[i] = j
        w, sub = sub_of[(i, j)]
        fut: asyncio.Future[tuple[float, Trigger]] = asyncio.get_running_loop().create_future()
        w.waiting[sub] = fut
        sent = time.perf_counter()
        await writer.request(writer.set_cmd(f"k{i}", j))
        acked = time.perf_counter()
        got, _trigger = await asyncio.wait_for(fut, 10)
        ack.append((acked - sent) * 1000)
        after_ack.append((got - acked) * 1000)
        end_to_end.append((got - sent) * 1000)

    # hub CPU per write with every subscription live (pipelined, each write re-evaluates subs_per_key)
    cmds = []
    for _ in range(samples):
        i = rng.randrange(keys)
        j = (current[i] + 1) % subs_per_key
        current[i] = j
        cmds.append(writer.set_cmd(f"k{i}", j))
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    await pipelined(writer, cmds)
    elapsed = time.perf_counter() - t0
    cpu_subs = (cpu_seconds(pid) - cpu0) / samples
    await asyncio.sleep(0.2)  # let the last triggers drain before closing
    for a in (writer, *watchers):
        await a.close()
    return {
        "subscriptions": float(keys * subs_per_key),
        "subscribe_per_s": keys * subs_per_key / subscribe_s,
        "write_ack_p50_ms": pct(ack, 50),
        "trigger_after_ack_p50_ms": pct(after_ack, 50),
        "trigger_after_ack_p99_ms": pct(after_ack, 99),
        "write_to_trigger_p50_ms": pct(end_to_end, 50),
        "write_to_trigger_p99_ms": pct(end_to_end, 99),
        "hub_cpu_us_per_write_no_subs": cpu_no_subs * 1e6,
        "hub_cpu_us_per_write_10k_subs": cpu_subs * 1e6,
        "pipelined_writes_per_s_10k_subs": samples / elapsed,
    }


async def writes(url: str, clients: int, per_client: int, batch: int) -> float:
    """Durable state writes/s from `clients` connections, each writing its own keys; `batch` writes per
    command (1: single SetState)."""
    agents = [await SubAgent(url, f"w{i}").open(attach=False) for i in range(clients)]

    def cmds(a: SubAgent, i: int) -> list[Any]:
        if batch == 1:
            return [a.set_cmd(f"{a.name}-{n % 500}", n) for n in range(per_client)]
        out = []
        for n in range(per_client // batch):
            ws = tuple(c.Write(key=f"{a.name}-{(n * batch + m) % 500}", value=n) for m in range(batch))
            out.append(c.BatchState(id=a.next(), room=a.room, token=a.token, name=a.name, writes=ws))
        return out

    work = [cmds(a, i) for i, a in enumerate(agents)]
    t0 = time.perf_counter()
    await asyncio.gather(*(pipelined(a, w) for a, w in zip(agents, work, strict=True)))
    elapsed = time.perf_counter() - t0
    for a in agents:
        await a.close()
    return clients * (per_client // batch) * batch / elapsed


def evals(n: int) -> dict[str, float]:
    """The adapter in-process: one condition over a 1,000-key room, sliced context vs a shared Bound."""
    ctx: dict[str, Any] = {
        "state": {"_shared": {f"k{i}": i for i in range(1000)}, "_view": {}},
        "agents": {f"a{i}": {"status": "active", "waiting_on": None} for i in range(20)},
        "messages": {"count": 10, "unclaimed": 2},
        "claims": {},
        "tasks": {},
    }
    exprs = {
        "field": cel.compile("state._shared.k500 == 500"),
        "two_fields": cel.compile("state._shared.k1 + state._shared.k2 >= 3 && messages.unclaimed > 0"),
        "agent": cel.compile('agents["a3"].status == "waiting"'),
    }
    out: dict[str, float] = {}
    for name, compiled in exprs.items():
        t0 = time.perf_counter()
        for _ in range(n):
            cel.evaluate(compiled, ctx)
        out[f"evals_per_s_{name}_sliced"] = n / (time.perf_counter() - t0)
    compiled = exprs["field"]
    t0 = time.perf_counter()
    for _ in range(n // 10):  # as the hub reacts: bind once, evaluate the ~10 conditions reading a key
        bound = cel.bind(ctx)
        for _ in range(10):
            cel.evaluate(compiled, bound)
    out["evals_per_s_field_bound_x10"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(n // 10):
        cel.compile(f"state._shared.k{i % 1000} == {i}")
    out["compiles_per_s"] = (n // 10) / (time.perf_counter() - t0)
    return out


async def main_async(quick: bool) -> dict[str, float]:
    keys, per_key, conns = (200, 10, 2) if quick else (1000, 10, 4)
    samples = 300 if quick else 2000
    results: dict[str, float] = {}
    with HubProc("--max-subscriptions-per-session", "100000", "--snapshot-every", "0") as hub:
        results.update(await triggers(hub.url, hub.pid, keys, per_key, conns, samples))
    per_client = 2000 if quick else 20_000
    with HubProc("--snapshot-every", "0") as hub:
        results["writes_per_s_4_clients"] = await writes(hub.url, 4, per_client, 1)
    with HubProc("--snapshot-every", "0") as hub:
        results["batched_writes_per_s_4_clients_x10"] = await writes(hub.url, 4, per_client, 10)
    results.update(evals(20_000 if quick else 200_000))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.quick))
    rows = []
    for key, value in results.items():
        line = f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
        if key in TARGETS:
            op, target = TARGETS[key]
            ok = value <= target if op == "≤" else value >= target
            ratio = value / target
            line += f"   target {op} {target:,}  ({ratio:.2f}x, {'ok' if ok else 'MISSED'})"
        rows.append((key, line))
    print(f"conditions benchmark{' (quick)' if args.quick else ''}, engine {cel.NATIVE.name}:")
    print(table(rows))


if __name__ == "__main__":
    main()
