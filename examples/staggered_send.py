"""SYNAPSE's fleet-wide send without a stampede: a broadcast wakes every waiter at once, so a fleet of
turn-based assistants would all call their model provider together. Two ways to spread the wakes:

1. Sender side: directed sends, one per receiver, paced over a window (each `synapse wait --directed-only`
   wakes for its own message only).
2. Receiver side: one `--target all` send, each `synapse wait --wake-jitter S` exits after a random
   0..S seconds (the default is 8 s for broadcasts).

Each receiver is a real `synapse wait` process. Which message woke which receiver is checked; the wake
times are printed (they depend on the machine and on chance: they are figures, not promises).

Run: python examples/staggered_send.py [--hub URL] [--receivers N] [--window S] [--jitter S] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent  # noqa: E402
from examples._hub import hub_args  # noqa: E402


class Waiter:
    """A `synapse wait` process for one receiver; `woke()` is what woke it and when it exited."""

    def __init__(self, env: dict[str, str], name: str, *flags: str) -> None:
        self.env, self.name, self.flags = env, name, flags
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hub", "wait", "--name", f"{self.name}-rx", "--for", self.name),
            *(*self.flags, "--timeout", "60", "--json"),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def woke(self) -> tuple[dict[str, Any], float]:
        assert self.proc is not None
        out, err = await self.proc.communicate()
        at = time.monotonic()
        if self.proc.returncode != 0:
            raise SystemExit(f"{self.name}'s waiter exited {self.proc.returncode}: {err.decode().strip()}")
        return json.loads(out)["message"], at


async def fleet(env: dict[str, str], names: list[str], *flags: str) -> list[Waiter]:
    """Start a waiter per receiver. A message sent after a `synapse wait` process started wakes it even before
    it armed, so nothing is missed; the wake times below include the start-up of a waiter not yet armed (a
    message waiter shows no presence: the sender cannot see when the fleet is armed)."""
    waiters = [Waiter(env, n, *flags) for n in names]
    await asyncio.gather(*(w.start() for w in waiters))
    return waiters


def spread(name: str, at: list[float]) -> str:
    return (
        f"{name}: wakes spread over {max(at) - min(at):.2f} s (first +{min(at):.2f} s, last +{max(at):.2f} s)"
    )


async def sender_side(sender: Agent, env: dict[str, str], names: list[str], window: float) -> int:
    """Returns the last seq sent."""
    waiters = await fleet(env, names, "--directed-only")
    gap = window / max(1, len(names) - 1)
    wakes = [asyncio.ensure_future(w.woke()) for w in waiters]  # each exit timed as it happens
    start = time.monotonic()
    seqs = {}
    for i, name in enumerate(names):
        if i:
            await asyncio.sleep(gap)  # the sender paces itself: this is the stagger
        seqs[name] = await sender.send(name, "rolled main to v2: re-pull")
    woken = await asyncio.gather(*wakes)
    for name, (message, at) in zip(names, woken, strict=True):
        assert message["seq"] == seqs[name] and message["to"] == [name], (name, message)
        print(f"directed: {name} woken by #{message['seq']} (its own) at +{at - start:.2f} s")
    print(spread("directed", [at - start for _, at in woken]))
    return max(seqs.values())


async def receiver_side(
    sender: Agent, env: dict[str, str], names: list[str], jitter: float, after: int
) -> None:
    # Re-armed after the last message it saw (as a `--cursor` would): without it, a waiter started moments
    # after the previous round's message could take that one as new.
    waiters = await fleet(env, names, "--wake-jitter", str(jitter), "--after", str(after))
    wakes = [asyncio.ensure_future(w.woke()) for w in waiters]
    start = time.monotonic()
    seq = await sender.send("all", "prod is green")
    woken = await asyncio.gather(*wakes)
    for name, (message, at) in zip(names, woken, strict=True):
        assert message["seq"] == seq and message["to"] == ["all"], (name, message)
        print(f"broadcast: {name} woken by #{message['seq']} (all) at +{at - start:.2f} s")
    print(spread(f"broadcast with --wake-jitter {jitter:g}", [at - start for _, at in woken]))


async def run(url: str, env: dict[str, str], n: int, window: float, jitter: float) -> None:
    room = f"stagger-{uuid.uuid4().hex[:8]}"
    env = dict(env, SYNAPSE_ROOM=room)
    names = [f"r{i}" for i in range(1, n + 1)]
    for name in names:  # each receiver joins once (its token saved for its `synapse wait`), then goes
        async with Agent(name, room=room, hub=url):
            pass
    async with Agent("release-bot", room=room, hub=url, save_token=False) as sender:
        last = await sender_side(sender, env, names, window)
        await receiver_side(sender, env, names, jitter, last)
    print(f"{n} receivers, each woken exactly once per round, by the message meant for it")


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--receivers", type=int, default=6, help="receivers (default 6)")
        parser.add_argument(
            "--window", type=float, default=4.0, help="sender-side stagger window (default 4 s)"
        )
        parser.add_argument("--jitter", type=float, default=8.0, help="receiver --wake-jitter (default 8 s)")
        parser.add_argument("--smoke", action="store_true", help="small and fast: 3 receivers, 0.5 s spreads")

    with hub_args(__doc__ or "", options) as (url, env, args):
        n, window, jitter = (3, 0.5, 0.5) if args.smoke else (args.receivers, args.window, args.jitter)
        if n < 1:
            raise SystemExit("--receivers must be at least 1")
        os.environ.pop("SYNAPSE_ROOM", None)
        asyncio.run(run(url, env, n, window, jitter))


if __name__ == "__main__":
    main()
