"""Claims benchmark: grant latency with 100 / 1,000 / 10,000 live claims held by other agents, claim+release
cycles/s (one agent, sequential; 16 agents at once; 16 agents pipelining 8 cycles each: the
throughput target), and the peer hub's numbers beside ours when it can run.

Run: `python bench/claims.py [--quick] [--no-peer]`. Starts a real hub subprocess on 127.0.0.1 (ephemeral port,
durable SQLite log); prints numbers, targets and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HubProc, RawAgent, pct, table  # noqa: E402
from hub.protocol import commands as c  # noqa: E402

TARGETS = {
    "grant_p50_ms@10000": ("≤", 0.5),
    "cycles_per_s_parallel": ("≥", 5_000),
}
HOLDERS = 10
WINDOW = 256  # requests in flight per agent while filling the live claims


def held_paths(i: int) -> tuple[str, ...]:
    """Claim i's scope: a file, and every tenth one a directory or a glob (disjoint across claims)."""
    pkg, mod = divmod(i, 50)
    paths = [f"src/pkg{pkg}/mod{mod}.py"]
    if i % 10 == 3:
        paths.append(f"docs/pkg{pkg}/mod{mod}/")
    elif i % 10 == 7:
        paths.append(f"tests/pkg{pkg}/test_mod{mod}_*.py")
    return tuple(paths)


def claim_cmd(agent: RawAgent, work: str, paths: tuple[str, ...]) -> c.Claim:
    return c.Claim(
        id=agent.next(), room=agent.room, token=agent.token, name=agent.name, work=work, paths=paths
    )


def release_cmd(agent: RawAgent, work: str) -> c.Release:
    return c.Release(id=agent.next(), room=agent.room, token=agent.token, name=agent.name, work=work)


async def fill(holders: list[RawAgent], start: int, stop: int) -> None:
    """Claims start..stop-1, spread over the holders, pipelined."""

    async def one_holder(k: int, agent: RawAgent) -> None:
        sem = asyncio.Semaphore(WINDOW)

        async def one(i: int) -> None:
            try:
                await agent.request(claim_cmd(agent, f"held-{i}", held_paths(i)))
            finally:
                sem.release()

        tasks = []
        for i in range(start + k, stop, len(holders)):
            await sem.acquire()
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)

    await asyncio.gather(*(one_holder(k, a) for k, a in enumerate(holders)))


async def grant_latency(claimer: RawAgent, live: int, cycles: int, rng: random.Random) -> dict[str, float]:
    """Claim (timed) then release, `cycles` times, on a new file beside the live claims each time."""
    lat = []
    pkgs = max(1, live // 50)
    t0 = time.perf_counter()
    for j in range(cycles):
        paths = (f"src/pkg{rng.randrange(pkgs)}/new_{j % 97}.py",)
        s = time.perf_counter()
        await claimer.request(claim_cmd(claimer, "cycle", paths))
        lat.append((time.perf_counter() - s) * 1000)
        await claimer.request(release_cmd(claimer, "cycle"))
    span = time.perf_counter() - t0
    return {
        f"grant_p50_ms@{live}": pct(lat, 50),
        f"grant_p99_ms@{live}": pct(lat, 99),
        f"cycles_per_s@{live}": cycles / span,
    }


async def parallel_cycles(url: str, agents: int, cycles: int, window: int) -> float:
    """`agents` agents each claim+release their own work `cycles` times, all at once, each keeping up to
    `window` cycles in flight on its connection (the hub answers a connection in order): cycles/s overall."""
    team = [await RawAgent(url, f"par{window}-{i}").open() for i in range(agents)]

    async def run(k: int, a: RawAgent) -> None:
        pending: list[asyncio.Future[object]] = []
        for j in range(cycles):
            work = f"par{window}-{k}"
            pending.append(asyncio.ensure_future(a.request(claim_cmd(a, work, (f"lib/par{k}/f{j % 7}.py",)))))
            pending.append(asyncio.ensure_future(a.request(release_cmd(a, work))))
            if len(pending) >= 2 * window:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(k, a) for k, a in enumerate(team)))
    span = time.perf_counter() - t0
    for a in team:
        await a.close()
    return agents * cycles / span


async def ours(quick: bool) -> dict[str, float]:
    levels = (100, 1_000) if quick else (100, 1_000, 10_000)
    cycles = 300 if quick else 2_000
    rng = random.Random(7)
    r: dict[str, float] = {}
    with HubProc("--snapshot-every", "0") as h:
        holders = [await RawAgent(h.url, f"holder-{i}").open() for i in range(HOLDERS)]
        claimer = await RawAgent(h.url, "claimer").open()
        have = 0
        for live in levels:
            t0 = time.perf_counter()
            await fill(holders, have, live)
            r[f"fill_claims_per_s@{live}"] = (live - have) / (time.perf_counter() - t0)
            have = live
            r.update(await grant_latency(claimer, live, cycles, rng))
        r["cycles_per_s_sequential"] = r[f"cycles_per_s@{levels[-1]}"]
        n = 200 if quick else 1_000
        r["cycles_per_s_16_agents"] = await parallel_cycles(h.url, 16, n, 1)
        r["cycles_per_s_parallel"] = await parallel_cycles(h.url, 16, n, 8)
        for a in (*holders, claimer):
            await a.close()
    return r


def peer(quick: bool) -> dict[str, dict[str, float]] | None:
    """The peer hub's claims workload at the same live-claim levels, or None when it cannot run here."""
    try:
        from bench import peer as peer_bench
    except ImportError as exc:
        print(f"peer: skipped ({exc})", file=sys.stderr)
        return None
    if not hasattr(peer_bench, "claims"):
        print("peer: skipped (bench/peer.py has no claims workload)", file=sys.stderr)
        return None
    # The peer caps claims at 1,024 per principal, and every loopback client is one principal: no 10,000.
    levels = (100, 1_000)
    if not quick:
        print("peer: 10,000 live claims skipped (the peer allows 1,024 per principal)", file=sys.stderr)
    out: dict[str, dict[str, float]] = {}
    try:
        with peer_bench.peer_hub() as hub:
            for live in levels:
                out[str(live)] = peer_bench.claims(
                    hub.port, live=live, cycles=100 if quick else 300, holders=HOLDERS
                )
    except Exception as exc:  # not installable offline, or it broke mid-way: keep what we have
        print(f"peer: stopped ({exc!r})", file=sys.stderr)
    return out or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark)")
    parser.add_argument("--no-peer", action="store_true", help="do not run the peer hub")
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    results = runner(ours(args.quick))
    rows = []
    for key, value in results.items():
        note = ""
        target = TARGETS.get(key)
        if target is not None:
            op, goal = target
            ok = value <= goal if op == "≤" else value >= goal
            note = f"   target {op} {goal:g}  {'ok' if ok else 'MISSED'}  (ratio {value / goal:.2f})"
        rows.append((key, f"{value:,.3f}{note}"))
    print("synapse-hub claims benchmark")
    print(table(rows))
    theirs = None if args.no_peer else peer(args.quick)
    if theirs:
        print(
            "beside the peer (synapse-channel 0.99.38; ratio = peer / ours for latency, ours / peer for rates)"
        )
        side: list[tuple[str, str]] = []
        for live, m in theirs.items():
            if "grant_p50_ms" not in m:
                continue
            for metric, mine_key, lower_better in (
                ("grant_p50_ms", f"grant_p50_ms@{live}", True),
                ("grant_p99_ms", f"grant_p99_ms@{live}", True),
                ("cycles_per_s", f"cycles_per_s@{live}", False),
            ):
                mine = results.get(mine_key)
                if mine is None:
                    continue
                ratio = m[metric] / mine if lower_better else mine / m[metric]
                side.append((f"{metric}@{live}", f"ours {mine:,.3f}  peer {m[metric]:,.3f}  x{ratio:,.1f}"))
        print(table(side))
    print(json.dumps({"ours": results, "peer": theirs}))


if __name__ == "__main__":
    main()
