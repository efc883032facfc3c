"""Failover bench: two hubs with --standby on one log, the owner SIGKILLed `--kills` times under the chaos mix.

Run: `python bench/failover.py --db postgresql+psycopg://USER@127.0.0.1:PORT/DB [--kills 50] [--seed N]`
(an empty database; without --db an SQLite file in a temporary folder, both hubs on this host). Each kill hits
the hub that owns the log; the standby takes over and the killed one comes back as the new standby. Clients
(SDK agents and CLI processes, bench/chaos_driver.py) are given both addresses and fail over. Prints the
takeover distribution (SIGKILL to the standby serving, and to a client's first acknowledged write), the
acknowledged operations, lost, duplicated and every violation found; exits 1 when a check failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.chaos import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(__doc__, kills=50, standby=True))
