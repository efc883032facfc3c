"""Failover bench: two hubs with --standby on one log, the owner SIGKILLed `--kills` times under the chaos mix.

Run: `python bench/failover.py --db postgresql+psycopg://USER@127.0.0.1:PORT/DB [--kills 50] [--seed N]`
(an empty database; without --db an SQLite file in a temporary folder, both hubs on this host). Each kill hits
the hub that owns the log; the standby takes over and the killed one comes back as the new standby. Clients
(SDK agents and CLI processes, bench/chaos_driver.py) are given both addresses and fail over. Prints the
takeover distribution (SIGKILL to the standby serving, and to a client's first acknowledged write), the
acknowledged operations, lost, duplicated and every violation found; exits 1 when a check failed.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="the shared log: an empty PostgreSQL database's URL (default: SQLite)")
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs of the owner (default 50)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seed of the mix and kill moments")
    parser.add_argument("--workers", type=int, default=4, help="SDK agents running the mix (default 4)")
    parser.add_argument("--keep", metavar="DIR", help="keep the hubs' stderr (and an SQLite log) in DIR")
    args = parser.parse_args()
    logging.getLogger("agent_sdk").setLevel(logging.ERROR)  # one `agent.failover` line per agent per kill
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="synapse-failover-"))
    os.environ["XDG_CONFIG_HOME"] = str(workdir / "config")  # no token of this run lands in the real home
    cfg = ChaosConfig(
        workdir=workdir,
        seed=args.seed,
        kills=args.kills,
        sdk_workers=args.workers,
        db=args.db,
        standby=True,
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
