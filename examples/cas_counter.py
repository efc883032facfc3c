"""StrataDB's CAS coordination (pattern 1): writers share one counter cell, `task:next`, and each takes the
next task number with a compare-and-swap retry loop: read the value and its version, write value + 1 only
if the version is unchanged. A loser gets `conflict` carrying the cell's current value and version, so it
retries without another read. Every number is taken exactly once (its owner key is created with `init`,
which is refused if it exists) and the counter ends at writers x rounds: no update is lost.

Run: python examples/cas_counter.py [--hub URL] [--writers N] [--rounds K] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, Code, HubError  # noqa: E402
from examples._hub import hub_args  # noqa: E402

COUNTER = "task:next"


async def take_next(agent: Agent) -> tuple[int, int]:
    """One CAS loop: returns (the task number taken, how many times the swap lost a race)."""
    cell = await agent.state.get(COUNTER)
    retries = 0
    while True:
        current, version = cell["value"], cell["version"]
        try:
            await agent.state.cas(COUNTER, version, current + 1)
            return current, retries
        except HubError as exc:
            if exc.code != Code.CONFLICT:
                raise
            retries += 1
            cell = exc.detail["current"]  # the conflict says where the cell is now: no re-read needed


async def writer(url: str, room: str, name: str, rounds: int) -> int:
    """Take `rounds` task numbers; record each one's owner. Returns the races lost."""
    lost = 0
    async with Agent(name, room=room, hub=url, save_token=False) as agent:
        try:  # the seed's idempotent `strata state init task:next 0`: the first writer creates it
            await agent.state.init(COUNTER, 0)
        except HubError as exc:
            if exc.code != Code.ALREADY_EXISTS:
                raise
        for _ in range(rounds):
            task, retries = await take_next(agent)
            lost += retries
            # `init` is refused if the key exists: a number handed out twice could not be recorded twice.
            await agent.state.init(f"task:{task}:owner", name)
            await agent.state.set(f"task:{task}:status", "in_progress")
    return lost


async def run(url: str, writers: int, rounds: int) -> None:
    room = f"cas-{uuid.uuid4().hex[:8]}"
    async with Agent("counter-setup", room=room, hub=url, save_token=False) as setup:
        names = [f"agent-{i}" for i in range(writers)]
        lost = await asyncio.gather(*(writer(url, room, n, rounds) for n in names))
        for name, n in zip(names, lost, strict=True):
            print(f"{name}: took {rounds} tasks, lost {n} CAS race(s) and retried")
        final = await setup.state.get(COUNTER)
        entries = {e["key"]: e["value"] for e in await setup.state.list()}
        owners = {int(k.split(":")[1]): v for k, v in entries.items() if k.endswith(":owner")}
        expected = writers * rounds
        assert final["value"] == expected, f"lost update: counter {final['value']}, expected {expected}"
        assert sorted(owners) == list(range(expected)), sorted(owners)
        for name in names:
            assert sum(v == name for v in owners.values()) == rounds, (name, owners)
        print(f"counter {COUNTER} = {final['value']} (version {final['version']}); expected {expected}")
        print(
            f"tasks 0..{expected - 1} each taken exactly once; {sum(lost)} races lost in all, no update lost"
        )


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--writers", type=int, default=8, help="concurrent writers (default 8)")
        parser.add_argument(
            "--rounds", type=int, default=25, help="task numbers each writer takes (default 25)"
        )
        parser.add_argument("--smoke", action="store_true", help="small and fast: 3 writers x 5 rounds")

    with hub_args(__doc__ or "", options) as (url, _env, args):
        writers, rounds = (3, 5) if args.smoke else (args.writers, args.rounds)
        asyncio.run(run(url, writers, rounds))


if __name__ == "__main__":
    main()
