"""Plan benchmark: task claims/s of N agents racing over a backlog of 10,000 tasks, and the time for one `done`
that readies 1,000 dependents (in-process on the core Machine, and end to end through a real hub).

Run: `python bench/tasks.py [--quick]`. Starts a real hub subprocess on 127.0.0.1 (ephemeral port, durable
SQLite log); prints numbers, targets and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HubProc, RawAgent, pct, table  # noqa: E402
from hub.config import HubConfig  # noqa: E402
from hub.core.machine import Context, Machine  # noqa: E402
from hub.protocol import commands as c  # noqa: E402
from hub.protocol.errors import Code, HubError  # noqa: E402

TARGETS = {
    "task_claims_per_s": ("≥", 5_000),
    "ready_1000_core_ms": ("≤", 20),
    "ready_1000_e2e_ms": ("≤", 20),
}
WINDOW = 16  # claims in flight per agent


def declare_cmd(a: RawAgent, task: str, depends_on: tuple[str, ...] = ()) -> c.DeclareTask:
    return c.DeclareTask(
        id=a.next(), room=a.room, token=a.token, name=a.name, task=task, title=task, depends_on=depends_on
    )


async def pipelined(a: RawAgent, cmds: list[Any], window: int = 256) -> list[Any]:
    """Send `cmds` on one connection with up to `window` in flight; results (or HubErrors) in order."""
    sem = asyncio.Semaphore(window)

    async def one(cmd: Any) -> Any:
        try:
            return await a.request(cmd)
        except HubError as exc:
            return exc
        finally:
            sem.release()

    futures = []
    for cmd in cmds:
        await sem.acquire()
        futures.append(asyncio.ensure_future(one(cmd)))
    return await asyncio.gather(*futures)


async def race(url: str, tasks: int, agents: int, same_order: bool) -> dict[str, float]:
    """`agents` agents claim from one backlog of `tasks` ready tasks until every task is taken."""
    room = f"race-{'same' if same_order else 'spread'}"
    lead = await RawAgent(url, "lead", room=room).open(attach=False)
    ids = [f"t{i:05}" for i in range(tasks)]
    await pipelined(lead, [declare_cmd(lead, t) for t in ids])
    team = [await RawAgent(url, f"w{k}", room=room).open() for k in range(agents)]
    won: dict[str, int] = {}
    attempts = 0

    async def worker(k: int, a: RawAgent) -> None:
        nonlocal attempts
        order = ids if same_order else ids[k * tasks // agents :] + ids[: k * tasks // agents]
        sem = asyncio.Semaphore(WINDOW)

        async def one(task: str) -> None:
            nonlocal attempts
            try:
                await a.request(c.ClaimTask(id=a.next(), room=room, token=a.token, name=a.name, task=task))
                won[task] = won.get(task, 0) + 1
            except HubError as exc:
                if exc.code != Code.CONFLICT:
                    raise
            finally:
                attempts += 1
                sem.release()

        futures = []
        for task in order:
            if len(won) >= tasks:
                break
            await sem.acquire()
            futures.append(asyncio.ensure_future(one(task)))
        await asyncio.gather(*futures)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k, a) for k, a in enumerate(team)))
    span = time.perf_counter() - t0
    for a in (lead, *team):
        await a.close()
    assert len(won) == tasks and set(won.values()) == {1}, "a task was claimed twice or not at all"
    key = "same_order" if same_order else "spread"
    return {
        f"task_claims_per_s_{key}": tasks / span,
        f"claim_attempts_per_s_{key}": attempts / span,
        f"conflicts_per_claim_{key}": (attempts - tasks) / tasks,
    }


def core_readiness(dependents: int, runs: int) -> dict[str, float]:
    """In-process: one UpdateTask(done) on a root with `dependents` pending dependents, decided and committed on
    the Machine."""
    machine = Machine(HubConfig(rate_per_agent=None))
    machine.run(c.Join(name="lead"), Context(1.0, None, lambda: "tok"))
    times = []
    for r in range(runs):
        machine.run(c.DeclareTask(name="lead", token="tok", task=f"root{r}", title="root"), Context(2.0))
        for i in range(dependents):
            cmd = c.DeclareTask(
                name="lead", token="tok", task=f"d{r}-{i}", title="d", depends_on=(f"root{r}",)
            )
            machine.run(cmd, Context(2.0))
        t0 = time.perf_counter()
        out = machine.run(
            c.UpdateTask(name="lead", token="tok", task=f"root{r}", status="done"), Context(3.0)
        )
        times.append((time.perf_counter() - t0) * 1000)
        assert len(out.events) == dependents + 1
    return {"ready_1000_core_ms": statistics.median(times), "ready_1000_core_max_ms": max(times)}


async def e2e_readiness(url: str, dependents: int, runs: int) -> dict[str, float]:
    """Through the hub: the round trip of the `done` update, which is answered once all events are durable."""
    lead = await RawAgent(url, "lead", room="ready").open(attach=False)
    times = []
    for r in range(runs):
        await pipelined(
            lead,
            [declare_cmd(lead, f"root{r}")]
            + [declare_cmd(lead, f"d{r}-{i}", (f"root{r}",)) for i in range(dependents)],
        )
        t0 = time.perf_counter()
        await lead.request(
            c.UpdateTask(
                id=lead.next(), room="ready", token=lead.token, name="lead", task=f"root{r}", status="done"
            )
        )
        times.append((time.perf_counter() - t0) * 1000)
    shown = await lead.request(c.ShowTask(id=lead.next(), room="ready", task=f"d{runs - 1}-0"))
    assert shown["status"] == "ready"
    await lead.close()
    return {"ready_1000_e2e_ms": statistics.median(times), "ready_1000_e2e_p99_ms": pct(times, 99)}


async def ours(quick: bool) -> dict[str, float]:
    tasks = 2_000 if quick else 10_000
    r: dict[str, float] = {}
    with HubProc("--snapshot-every", "0") as h:
        spread = await race(h.url, tasks, 8, same_order=False)
        r["task_claims_per_s"] = spread["task_claims_per_s_spread"]
        r.update(spread)
        r.update(await race(h.url, tasks, 8, same_order=True))
        r.update(await e2e_readiness(h.url, 1_000, 3 if quick else 10))
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark)")
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    results = runner(ours(args.quick))
    results.update(core_readiness(1_000, 5 if args.quick else 20))
    rows = []
    for key, value in results.items():
        note = ""
        target = TARGETS.get(key)
        if target is not None:
            op, goal = target
            ok = value <= goal if op == "≤" else value >= goal
            note = f"   target {op} {goal:g}  {'ok' if ok else 'MISSED'}  (ratio {value / goal:.2f})"
        rows.append((key, f"{value:,.3f}{note}"))
    print(f"synapse-hub plan benchmark ({2_000 if args.quick else 10_000} tasks, 8 agents racing)")
    print(table(rows))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
