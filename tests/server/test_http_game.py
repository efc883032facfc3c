"""tests/scripts/http_game.sh: two agents play a turn-based game through the HTTP API with curl and jq only."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, ThreadHub, seconds

SCRIPT = ROOT / "tests" / "scripts" / "http_game.sh"


@pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("jq") and shutil.which("bash")), reason="curl/jq"
)
def test_two_agents_take_turns_with_curl(hub: ThreadHub, tmp_path: Path) -> None:
    assert hub.hub is not None
    base = f"http://127.0.0.1:{hub.hub.port}"
    run = subprocess.run(
        ["bash", str(SCRIPT), base, "10"],
        capture_output=True,
        text=True,
        timeout=seconds(120_000),
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    moves = json.loads(lines[-1])
    assert [n for _, n in moves] == list(range(1, 11))
    assert [who for who, _ in moves] == ["alice", "bob"] * 5  # strictly alternating turns
    assert "alice saw 10" in lines and "bob reached 10" in lines
