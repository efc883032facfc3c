"""Chaos under mixed load: 20 SIGKILLs of a `python -m hub` subprocess at seeded random moments while SDK agents
and CLI processes send, claim, plan, write state and wait; nothing acknowledged is lost or duplicated, nothing
is granted twice, counters are the sum of what landed, and the restarted hub equals a fold of its log. The
checks themselves are shown to fail on tampered logs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.chaos_checks import Ledger, check_claims, check_counters, check_ledger, check_tasks
from bench.chaos_driver import ChaosConfig, run_chaos
from tests.conftest import seconds

SEED = int(os.environ.get("SYNAPSE_TEST_SEED", "20261206"))
KINDS = (
    "send",
    "message.claim",
    "claim",
    "release",
    "handoff",
    "task.declare",
    "task.claim",
    "task.update",
    "state.increment",
    "state.set",
    "state.cas",
    "state.batch",
    "ring",
)


def test_twenty_kills_under_mixed_load(tmp_path: Path) -> None:
    """Every acknowledged operation survives 20 SIGKILLs; SDK agents reconnect and resume; waiters are woken
    once per arm; session-bound claims are restored and the abandoned one lapses by the grace rule."""
    report = run_chaos(
        ChaosConfig(
            workdir=tmp_path / "chaos",
            seed=SEED,
            kills=20,
            acks_between=(10, 80),
            settle_timeout=seconds(60_000),
        )
    )
    summary = "\n".join(report.lines())
    print(summary)  # the figures (pytest -s shows them)
    assert report.violations == [], summary
    assert report.kills == 20 and report.lost == 0 and report.duplicated == 0, summary
    for kind in KINDS:  # the mix really ran each kind of operation
        assert report.acked[kind] > 0, f"seed {SEED}: no acknowledged {kind}\n{summary}"
    assert sum(n for k, n in report.acked.items() if k.startswith("cli.")) >= 20, summary
    assert all(n >= 1 for n in report.reconnects.values()), summary
    assert all(n > 0 for n in report.wakes.values()), summary


# -- the checks can fail -------------------------------------------------------------------------------


def sent(seq: int, body: str, to: tuple[str, ...] = ("a1",), sender: str = "a0") -> dict[str, Any]:
    return {"type": "MessageSent", "seq": seq, "from": sender, "to": list(to), "body": {"id": body}}


def granted(pos: int, work: str, holder: str, epoch: int, at: float = 1.0, **kw: Any) -> dict[str, Any]:
    ev = {"type": "ClaimGranted", "work": work, "holder": holder, "paths": [f"src/{work}/"], "epoch": epoch}
    return ev | {"pos": pos, "at": at, "session": kw.get("session"), "expires": kw.get("expires")}


def test_a_lost_or_duplicated_message_is_caught() -> None:
    """An acknowledged send missing from the log is lost; a body twice in the feed is duplicated."""
    ledger = Ledger()
    ledger.attempted_sends |= {"a0-1", "a0-2"}
    ledger.sends.update({"a0-1": 1, "a0-2": 2})
    ok = check_ledger([sent(1, "a0-1"), sent(2, "a0-2")], ledger, {}, [], {})
    assert ok.violations == [] and ok.lost == ok.duplicated == 0
    lost = check_ledger([sent(1, "a0-1")], ledger, {}, [], {})
    assert lost.lost == 1
    dup = check_ledger([sent(1, "a0-1"), sent(2, "a0-2"), sent(3, "a0-2")], ledger, {}, [], {})
    assert dup.duplicated == 1


def test_a_stream_that_repeats_or_skips_is_caught() -> None:
    """A resumed stream handed a message twice, or skipped a directed one."""
    ledger = Ledger()
    rows = [sent(1, "x"), sent(2, "y")]
    ledger.attempted_sends |= {"x", "y"}
    assert check_ledger(rows, ledger, {"a1": [1, 2]}, [], {}).violations == []
    assert check_ledger(rows, ledger, {"a1": [1, 1, 2]}, [], {}).violations
    assert check_ledger(rows, ledger, {"a1": [2]}, [], {}).violations


def test_a_claim_granted_twice_is_caught() -> None:
    """Two live holders of one work, or an epoch that does not increase."""
    ledger = Ledger()
    assert (
        check_claims([granted(1, "w", "a", 1), {"type": "ClaimReleased", "work": "w", "pos": 2}], ledger)
        == []
    )
    twice = check_claims([granted(1, "w", "a", 1), granted(2, "w", "b", 2)], ledger)
    assert any("while a holds it" in v for v in twice)
    rows = [
        granted(1, "w", "a", 2),
        {"type": "ClaimReleased", "work": "w", "pos": 2},
        granted(3, "w", "b", 2),
    ]
    assert any("epoch 2 after 2" in v for v in check_claims(rows, ledger))


def test_a_lapse_before_its_grace_is_caught() -> None:
    """An orphaned claim lapsing before its expiry, or though its holder came back within the grace."""
    orphaned = {"type": "ClaimOrphaned", "work": "w", "expires": 10.0, "pos": 2}
    early = [granted(1, "w", "a", 1), orphaned, {"type": "ClaimLapsed", "work": "w", "at": 9.0, "pos": 3}]
    assert any("before its expiry" in v for v in check_claims(early, Ledger()))
    back = [
        granted(1, "w", "a", 1),
        orphaned,
        {"type": "SessionOpened", "agent": "a", "at": 5.0, "pos": 3},
        {"type": "ClaimLapsed", "work": "w", "at": 10.0, "pos": 4},
    ]
    assert any("came back within its grace" in v for v in check_claims(back, Ledger()))


def test_a_task_claimed_twice_is_caught() -> None:
    def claimed(holder: str, epoch: int) -> dict[str, Any]:
        return {"type": "TaskUpdated", "task": "T", "status": "in_progress", "holder": holder, "epoch": epoch}

    assert check_tasks([claimed("a", 1)], Ledger()) == []
    assert check_tasks([claimed("a", 1), claimed("b", 2)], Ledger())


def test_a_counter_that_is_not_the_sum_of_its_increments_is_caught() -> None:
    """An acknowledged increment missing, or one in doubt landed twice."""

    def wrote(value: int, by: str = "a0") -> dict[str, Any]:
        return {"type": "StateWritten", "scope": "_shared", "key": "ctr0", "value": value, "by": by}

    ledger = Ledger()
    ledger.increments[("ctr0", "a0")] = [(1, True), (2, False), (3, True)]
    for rows, fine in (
        ([wrote(1), wrote(4)], True),  # the one in doubt did not land
        ([wrote(1), wrote(3), wrote(6)], True),  # it landed once
        ([wrote(1), wrote(3), wrote(5), wrote(8)], False),  # it landed twice
        ([wrote(1)], False),  # an acknowledged one is missing
    ):
        violations: list[str] = []
        check_counters(rows, ledger, violations)
        assert (violations == []) is fine, (rows, violations)
