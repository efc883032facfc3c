"""The shared-state examples (turn game, voting, StrataDB leader election) run to completion on a hub they
start themselves, and print what happened."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, seconds


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=seconds(120_000),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_turn_game() -> None:
    """Ten alternating turns, none missed."""
    out = run("turn_game.py").splitlines()
    assert out[-1] == "game over after 10 turns; board version 11; no turn missed"
    assert [line.split(": ")[1].split()[0] for line in out[:10]] == ["white", "black"] * 5


def test_voting() -> None:
    """Five votes, three racing deciders, exactly one decision."""
    out = run("voting.py")
    assert sum(line.endswith(": decided") for line in out.splitlines()) == 1
    assert out.count("too late (precondition_failed") == 2
    assert "outcome approved by d" in out and "3 for, 2 against, quorum_met = True" in out


def test_stratadb_leader() -> None:
    """Five racing nodes, exactly one leader, named by every other node; only it passes the leader gate."""
    lines = run("stratadb_leader.py").splitlines()
    [leader] = [x.split()[0] for x in lines if x.endswith("is now the leader")]
    assert sum(x == f"node-{i} is not the leader (current: {leader})" for x in lines for i in range(5)) == 4
    assert f"{leader}: bumped the epoch as leader" in lines
    assert lines[-1] == f"leader: {leader} (version 1); epoch: 1"


def test_example_takes_a_hub_url(hub) -> None:
    """With --hub an example uses the given hub instead of starting one."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "voting.py"), "--hub", hub.url],
        capture_output=True,
        text=True,
        timeout=seconds(120_000),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outcome approved" in done.stdout
