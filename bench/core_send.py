"""The core's send path alone: µs per Send command through `Machine.handle` + `commit`, in-process, no sockets.

Run: `python bench/core_send.py [--messages 20000] [--repeat 5] [--rate 1000000] [--profile]`.

The flood's shape (bench/messages.py): 4 senders, not attached, each send directed to one receiver whose session
streams (attached); the rate buckets as the bench hubs set them (`--rate` commands/s with as large a burst; 0:
no command rate), the byte rate at its default, each command's frame length in ctx.size, the clock moving 1 µs
per command, the cyclic GC set as the hub sets it. Each run is a fresh Machine; it prints every run's µs per command and their median. `--profile`
runs cProfile over one more run and prints its top functions. It asserts nothing.

On a shared machine even CPU time moves with the others' load; instructions do not: under
`valgrind --tool=cachegrind --cache-sim=no`, a `--repeat 1` run's instructions minus a `--build-only` run's
(same `--messages`), divided by the messages, are the instructions per send.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402

from hub.config import HubConfig  # noqa: E402
from hub.core.machine import Context, Machine  # noqa: E402
from hub.protocol import commands as c  # noqa: E402
from hub.protocol.codec import encode  # noqa: E402
from hub.protocol.types import SessionId  # noqa: E402

SENDERS = 4
RECEIVER = SessionId(1)


class InProcess:
    """A Machine driven in-process: agents joined (a token is its name) and commands run at a clock of its own
    that moves `step` seconds per command."""

    machine: Machine
    now = 1_000.0
    step = 0.0

    def _join(self, name: str) -> str:
        out = self.machine.handle(
            c.Join(id=0, room="default", name=name), Context(self.now, None, lambda: name)
        )
        self.machine.commit(out)
        return name

    def run(self, cmd: object, session: SessionId) -> None:
        self.now += self.step
        out = self.machine.handle(cmd, Context(self.now, session))
        self.machine.commit(out)


class Flood(InProcess):
    """A fresh Machine with the flood's agents, and its sends built in advance (not timed)."""

    def __init__(self, messages: int, rate: float) -> None:
        config = HubConfig(rate_per_agent=rate or None, rate_burst=int(rate) or 1)
        self.machine = Machine(config)
        self.now = 1_000.0
        self.tokens = {name: self._join(name) for name in ("rx", *(f"tx{i}" for i in range(SENDERS)))}
        self.run(c.Attach(id=0, room="default", name="rx", token=self.tokens["rx"]), RECEIVER)
        self.sends: list[tuple[c.Send, SessionId, int]] = []
        for i in range(messages):
            name = f"tx{i % SENDERS}"
            cmd = c.Send(
                id=i,
                room="default",
                token=self.tokens[name],
                name=name,
                to=("rx",),
                body=msgspec.Raw(encode(i)),
            )
            self.sends.append((cmd, SessionId(2 + i % SENDERS), len(encode(cmd))))

    def flood(self) -> float:
        """Handle and commit every send; CPU seconds taken (robust to a shared machine's load)."""
        machine, now = self.machine, self.now
        t0 = time.process_time()
        for cmd, session, size in self.sends:
            now += 1e-6
            machine.commit(machine.handle(cmd, Context(now, session, None, size)))
        return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1_000_000, help="commands/s per agent (0: no rate)")
    parser.add_argument("--profile", action="store_true", help="cProfile one more run")
    parser.add_argument(
        "--build-only", action="store_true", help="build one run's Machine and sends, run none"
    )
    args = parser.parse_args()
    if args.build_only:  # its instructions subtracted from a run's: the sends' own (load-independent)
        Flood(args.messages, args.rate)
        return
    gc.freeze()  # as the hub does after replay (hub/server/hub.py)
    gc.set_threshold(50_000, 50, 1_000)
    runs = []
    for _ in range(args.repeat):
        flood = Flood(args.messages, args.rate)
        runs.append(flood.flood() / args.messages * 1e6)
    print(
        "µs per send: "
        + "  ".join(f"{us:.2f}" for us in runs)
        + f"   median {statistics.median(runs):.2f}  min {min(runs):.2f}"
    )
    if args.profile:
        flood = Flood(args.messages, args.rate)
        profiler = cProfile.Profile()
        profiler.runcall(flood.flood)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(60)


if __name__ == "__main__":
    main()
