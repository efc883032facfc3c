"""Chaos bench: the mixed load of tests/chaos against a hub SIGKILLed `--kills` times at random moments.

Run: `python bench/chaos.py [--kills 200] [--seed N] [--workers 4] [--db URL] [--keep DIR]`. Starts
`python -m hub` on 127.0.0.1 with its own SQLite file (or the empty PostgreSQL database --db names), drives SDK
agents and CLI processes (bench/chaos_driver.py), and prints kills, acknowledged operations by kind, lost,
duplicated, restart p50/p99 and every violation found. Exits 1 when a check failed, so it can run unattended.
bench/failover.py runs the same with a standby.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos_driver import ChaosConfig, run_chaos  # noqa: E402


def main(doc: str = __doc__, kills: int = 200, standby: bool = False) -> int:
    """Parse the flags, run one chaos run (with a standby: failover), print its report."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--kills", type=int, default=kills, help=f"SIGKILLs of the hub (default {kills})")
    parser.add_argument(
        "--seed", type=int, default=int(time.time()), help="seed of the mix and the kill moments"
    )
    parser.add_argument("--workers", type=int, default=4, help="SDK agents running the mix (default 4)")
    parser.add_argument(
        "--cli-workers", type=int, default=1, help="CLI agents, one process per op (default 1)"
    )
    parser.add_argument("--grace", type=float, default=5.0, help="the hub's --claim-grace (default 5 s)")
    parser.add_argument("--db", help="the log: an empty PostgreSQL database's URL (default: an SQLite file)")
    parser.add_argument("--keep", metavar="DIR", help="keep the hubs' stderr (and an SQLite log) in DIR")
    args = parser.parse_args()
    logging.getLogger("agent_sdk").setLevel(logging.ERROR)  # no `agent.failover` line per agent per kill
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="synapse-chaos-"))
    os.environ["XDG_CONFIG_HOME"] = str(workdir / "config")  # no token of this run lands in the real home
    cfg = ChaosConfig(
        workdir=workdir,
        seed=args.seed,
        kills=args.kills,
        sdk_workers=args.workers,
        cli_workers=args.cli_workers,
        claim_grace=args.grace,
        db=args.db,
        standby=standby,
    )
    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}, log: {'PostgreSQL' if args.db else 'SQLite'}"
    )
    report = run_chaos(cfg)
    print("\n".join(report.lines()))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
