"""Failover under mixed load on PostgreSQL: a primary and a standby (`synapse hub --standby`) on one log, the
owner SIGKILLed 10 times at seeded random moments (each time the standby takes over and the killed hub comes
back as the new standby) while SDK agents and CLI processes, given both addresses, send, claim, plan, write
state and wait: nothing acknowledged is lost or duplicated, no claim is granted twice, and the hub serving at
the end equals a fold of the log. Prints the takeover times (pytest -s)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.chaos_driver import ChaosConfig, run_chaos
from tests.chaos.test_chaos import KINDS
from tests.conftest import seconds
from tests.log.pg import fresh_database

SEED = int(os.environ.get("SYNAPSE_TEST_SEED", "20261206"))
KILLS = 10


def test_ten_failovers_under_mixed_load(tmp_path: Path) -> None:
    with fresh_database("synapse_failover") as url:
        report = run_chaos(
            ChaosConfig(
                workdir=tmp_path / "failover",
                seed=SEED,
                kills=KILLS,
                acks_between=(10, 80),
                settle_timeout=seconds(60_000),
                db=url,
                standby=True,
            )
        )
    summary = "\n".join(report.lines())
    print(summary)
    assert report.violations == [], summary
    assert report.kills == KILLS and len(report.takeovers) == KILLS, summary
    assert report.lost == 0 and report.duplicated == 0, summary
    for kind in KINDS:  # the mix really ran each kind of operation, across the failovers
        assert report.acked[kind] > 0, f"seed {SEED}: no acknowledged {kind}\n{summary}"
    assert all(n >= 1 for n in report.reconnects.values()), summary
