"""The core's condition-write path alone: µs per state write through `Machine.handle` + `commit` with 10,000 live
subscriptions, in-process, no sockets.

Run: `python bench/core_write.py [--writes 20000] [--repeat 5] [--keys 1000] [--per-key 10] [--profile]`.

profile_hub's conditions workload, in-process: a writer and 4 watchers joined (not attached), every key
`k0..k{keys-1}` set to -1, then `keys × per_key` subscriptions `state._shared.kI == J` spread over the 4
watchers' sessions; each write sets one key (`(w × 7919) mod keys`) to its next value, so it re-evaluates that
key's `per_key` subscriptions and triggers exactly one. The hub's default limits (the subscription cap per
session raised, as profile_hub does), each command's frame length in ctx.size, the clock moving 1 ms per write
(under the default rate), the cyclic GC set as the hub sets it. Each run is a fresh Machine; it prints every
run's µs per write and their median, and checks the triggers (one per write). `--profile` runs cProfile over
one more run and prints its top functions.

On a shared machine even CPU time moves with the others' load; instructions do not: under
`valgrind --tool=cachegrind --cache-sim=no`, a `--repeat 1` run's instructions minus a `--build-only` run's
(same arguments), divided by the writes, are the instructions per write.
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

from bench.core_send import InProcess  # noqa: E402
from hub.config import HubConfig  # noqa: E402
from hub.core.effects import Deliver  # noqa: E402
from hub.core.machine import Context, Machine  # noqa: E402
from hub.protocol import commands as c  # noqa: E402
from hub.protocol.codec import encode  # noqa: E402
from hub.protocol.frames import Trigger  # noqa: E402
from hub.protocol.types import SessionId  # noqa: E402

WATCHERS = 4
WRITER = SessionId(1)


class Writes(InProcess):
    """A fresh Machine with the workload's agents, keys and subscriptions, and its writes built in advance."""

    step = 0.001

    def __init__(self, writes: int, keys: int, per_key: int) -> None:
        config = HubConfig(max_subscriptions_per_session=100_000, max_subscriptions_per_agent=None)
        self.machine = Machine(config)
        self.now = 1_000.0
        self.token = self._join("writer")
        for i in range(WATCHERS):
            self._join(f"watch-{i}")
        for i in range(keys):
            self.run(self._set(i, f"k{i}", -1), WRITER)
        spots = [(i, j) for i in range(keys) for j in range(per_key)]
        for n, (i, j) in enumerate(spots):
            sub = c.Subscribe(id=n, room="default", expr=f"state._shared.k{i} == {j}")
            self.run(sub, SessionId(2 + n % WATCHERS))
        current = dict.fromkeys(range(keys), -1)
        self.writes: list[tuple[c.SetState, int]] = []
        for w in range(writes):
            i = (w * 7919) % keys
            current[i] = (current[i] + 1) % per_key
            cmd = self._set(w, f"k{i}", current[i])
            self.writes.append((cmd, len(encode(cmd))))
        self.triggers = 0

    def _set(self, n: int, key: str, value: int) -> c.SetState:
        return c.SetState(id=n, room="default", token=self.token, name="writer", key=key, value=value)

    def write(self) -> float:
        """Handle and commit every write, counting the triggers; CPU seconds taken (robust to a shared
        machine's load). No outcome is kept (the hub keeps none: kept ones would feed the cyclic GC)."""
        machine, now = self.machine, self.now
        triggers = 0
        t0 = time.process_time()
        for cmd, size in self.writes:
            now += 0.001
            out = machine.handle(cmd, Context(now, WRITER, None, size))
            machine.commit(out)
            for fx in out.effects:
                if type(fx) is Deliver and type(fx.frame) is Trigger:
                    triggers += 1
        taken = time.process_time() - t0
        self.triggers = triggers
        return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--per-key", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="cProfile one more run")
    parser.add_argument(
        "--build-only", action="store_true", help="build one run's Machine and writes, run none"
    )
    args = parser.parse_args()
    gc.freeze()  # as the hub does after replay (hub/server/hub.py)
    gc.set_threshold(50_000, 50, 1_000)
    if args.build_only:  # its instructions subtracted from a run's: the writes' own (load-independent)
        Writes(args.writes, args.keys, args.per_key)
        return
    runs = []
    for _ in range(args.repeat):
        writes = Writes(args.writes, args.keys, args.per_key)
        runs.append(writes.write() / args.writes * 1e6)
        if writes.triggers != args.writes:
            sys.exit(f"expected {args.writes} triggers, got {writes.triggers}")
    print(
        "µs per write: "
        + "  ".join(f"{us:.2f}" for us in runs)
        + f"   median {statistics.median(runs):.2f}  min {min(runs):.2f}"
    )
    if args.profile:
        writes = Writes(args.writes, args.keys, args.per_key)
        profiler = cProfile.Profile()
        profiler.runcall(writes.write)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
