"""The hub's instructions per connected agent (join + attach): a count the machine's load does not move.

Run: `python bench/connect_instructions.py [--agents 1000] [--root DIR]` (needs valgrind's callgrind and
callgrind_control). The hub (from `--root`, default this checkout) runs under callgrind; its counters are
zeroed once it listens and its clients are up, and dumped once scale.py's fleet (2 LeanAgent processes, 64 at
once each) has every agent attached. It prints the instructions per agent. Slow: ≈ 1 min per 1,000 agents.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import Fleet, raise_fd_limit  # noqa: E402


def totals(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


async def connect(url: str, pid: int, n: int) -> float:
    fleet = Fleet(url, n, 2, 64, "lean")
    await fleet.start()
    await asyncio.sleep(1)
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    seconds, _ = await fleet.connect()
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    await fleet.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose hub is measured")
    args = parser.parse_args()
    n = args.agents
    raise_fd_limit(n + 256)
    tmp = tempfile.mkdtemp(prefix="synapse-callgrind-")
    caps = str(n + 64)
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", sys.executable, "-m", "hub",
           "hub", "--port", "0", "--db", f"{tmp}/log.db", "--log-level", "warning", "--rate-per-agent", "1000000",
           "--rate-burst", "1000000", "--max-connections", caps, "--max-connections-per-address", caps]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=args.root, XDG_CONFIG_HOME=tmp)
    hub = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=args.root
    )
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline()
        m = re.match(r"listening (ws://\S+)", line)
        if not m:
            raise SystemExit(f"hub did not start: {line!r}")
        seconds = asyncio.run(connect(m.group(1), hub.pid, n))
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(300)
        except subprocess.TimeoutExpired:
            hub.kill()
    dump = next(d for d in sorted(glob.glob(f"{tmp}/cg.out*")) if d.endswith(".1"))
    print(f"{args.root}: {n:,} agents connected in {seconds:.1f} s under callgrind; "
          f"hub {totals(dump) / n / 1000:.1f}k instructions per agent")  # fmt: skip


if __name__ == "__main__":
    main()
