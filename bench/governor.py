"""Wake governor benchmark: what a burst of messages costs a turn-based agent, and how a broadcast's wakes spread.

Run: `python bench/governor.py [--quick] [--messages N] [--turn S] [--gap S]`. Each scenario starts its own hub on
127.0.0.1 (ephemeral port, durable SQLite log). A turn-based agent runs `wait` in a loop: each wake is one turn
(an emulated model call of `--turn` seconds), then it waits again after the last message it was handed. A
sender sends a burst of `--messages` directed messages, `--gap` seconds apart. Printed per scenario: wakes
(= turns taken), messages per wake, and the time from the first send to the last message handed over.

Scenarios:
  one-per-wake   the agent reads only `message` (the first), as a client before the governor did
  burst          the agent reads `messages`: everything waiting when it wakes (settle 0, the default)
  settle         `wait --settle S` (S = 2 x the burst's length): the hub collects the burst, then wakes once
  stagger        20 waiters, one `*` send with --stagger 0 and then 2 s: the spread of their wake times

It prints numbers; it asserts nothing (no timing is promised).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from bench.common import HubProc, RawAgent, table  # noqa: E402
from hub.protocol import commands as c  # noqa: E402


async def wait(agent: RawAgent, after: int | None, settle: float = 0.0) -> Any:
    """Arm a waiter for the agent's own messages after `after`; the Wake frame that ends it."""
    cmd = c.Wait(
        id=agent.next(),
        room=agent.room,
        token=agent.token,
        waiter=agent.name,
        for_=agent.name,
        after=after,
        settle=settle,
    )
    woken: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    agent.pending[-cmd.id] = woken
    await agent.request(cmd)
    return await woken


async def burst(url: str, mode: str, n: int, turn: float, gap: float, settle: float) -> dict[str, float]:
    sender = await RawAgent(url, "lead").open(attach=False)
    agent = await RawAgent(url, "dana").open(attach=False)
    handed, wakes, counts = 0, 0, []
    done = asyncio.Event()
    started = 0.0

    async def turns() -> None:
        nonlocal handed, wakes
        after = 0
        while handed < n:
            wake = await wait(agent, after, settle if mode == "settle" else 0.0)
            got = list(wake.messages) or [wake.message]
            if mode == "one-per-wake":
                got = got[:1]
            wakes += 1
            handed += len(got)
            counts.append(len(got))
            after = got[-1].seq
            if handed < n:
                await asyncio.sleep(turn)  # the model's turn
        done.set()

    task = asyncio.create_task(turns())
    await asyncio.sleep(0.2)  # let the first waiter arm (a bench, not a test: nothing is asserted)
    started = time.perf_counter()
    for i in range(n):
        await sender.send("dana", {"n": i})
        if gap:
            await asyncio.sleep(gap)
    await done.wait()
    elapsed = time.perf_counter() - started
    await task
    await sender.close()
    await agent.close()
    return {"wakes": wakes, "per_wake": handed / wakes, "largest": max(counts), "seconds": elapsed}


async def stagger(url: str, waiters: int, spread: float) -> dict[str, float]:
    """Spread (first to last) and median of the wake times of `waiters` agents after one `*` send."""
    sender = await RawAgent(url, "lead").open(attach=False)
    agents = [await RawAgent(url, f"w{i:02d}").open(attach=False) for i in range(waiters)]
    armed = [asyncio.create_task(wait(a, None)) for a in agents]
    await asyncio.sleep(0.3)  # let every waiter arm
    t0 = time.perf_counter()
    cmd = c.Send(
        id=sender.next(), room=sender.room, token=sender.token, name="lead", to=("*",), stagger=spread
    )
    await sender.request(cmd)
    times: list[float] = []
    for task in asyncio.as_completed(armed):
        await task
        times.append(time.perf_counter() - t0)
    for a in [sender, *agents]:
        await a.close()
    times.sort()
    return {"first": times[0], "median": times[len(times) // 2], "last": times[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20 messages, shorter turns")
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--turn", type=float, default=0.1, help="seconds one turn takes (the model call)")
    parser.add_argument("--gap", type=float, default=0.002, help="seconds between two sends of the burst")
    args = parser.parse_args()
    n, turn = (20, 0.05) if args.quick else (args.messages, args.turn)
    settle = min(max(2 * n * args.gap, 0.2), 60.0)
    print(f"burst of {n} messages, {args.gap * 1000:g} ms apart; a turn takes {turn * 1000:g} ms")
    rows: list[tuple[str, str]] = []
    for mode in ("one-per-wake", "burst", "settle"):
        with HubProc() as hub:
            got = asyncio.run(burst(hub.url, mode, n, turn, args.gap, settle))
        label = f"{mode} ({settle:g} s)" if mode == "settle" else mode
        rows.append(
            (
                label,
                f"wakes/turns {got['wakes']:>4}   messages/wake {got['per_wake']:6.1f} (largest "
                f"{got['largest']:>3})   first send → last handed {got['seconds']:6.2f} s",
            )
        )
    print(table(rows))
    waiters = 5 if args.quick else 20
    print(f"\none `*` send to {waiters} waiters: when they wake (s after the send)")
    rows = []
    for spread in (0.0, 2.0):
        with HubProc() as hub:
            got = asyncio.run(stagger(hub.url, waiters, spread))
        rows.append(
            (
                f"--stagger {spread:g}",
                f"first {got['first']:6.3f}   median {got['median']:6.3f}   last {got['last']:6.3f}",
            )
        )
    print(table(rows))


if __name__ == "__main__":
    main()
