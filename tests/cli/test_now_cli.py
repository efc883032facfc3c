"""CEL `now` through a real hub: eval gives the hub's clock, and `wait --condition 'now > X'` is woken by the
hub's timer when the time passes (nothing else is sent meanwhile)."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from tests.cli.test_state_cli import doc, ok
from tests.conftest import seconds, synapse_cmd

Cli = Any


def test_eval_now_is_a_sane_double(cli: Cli) -> None:
    before = time.time()
    now = doc(cli("--json", "eval", "now"))
    assert isinstance(now, float) and before - 5 <= now <= time.time() + 5
    assert ok(cli("eval", "now > 1700000000.0")) == "true\n"


def test_staleness_of_a_heartbeat(cli: Cli) -> None:
    cli("--name", "w", "join")
    assert ok(cli("eval", 'now - agents["w"].last_heartbeat < 600.0')) == "true\n"
    assert ok(cli("eval", 'now - agents["w"].last_heartbeat > 60.0')) == "false\n"


def test_wait_on_now_wakes_when_the_time_passes(cli: Cli, procs: Any) -> None:
    """Only the hub's timer can wake it: no command reaches the hub after the waiter is armed."""
    cli("--name", "w", "join")
    target = doc(cli("--json", "eval", "now")) + 2.0
    cond = f"now > {target!r}"
    proc = procs("wait", "--json", "--name", "w", "--condition", cond, "--timeout", "120")
    out, err = proc.communicate(timeout=seconds(60_000))
    assert proc.returncode == 0, err
    woken = json.loads(out)
    assert woken == {"woken_by": "condition", "condition": cond, "value": True}
    assert time.time() >= target - 0.5  # not woken early (the hub's and our clock are the same machine's)


def test_now_resolution_must_be_positive(client_env: dict[str, str], tmp_path: Any) -> None:
    res = subprocess.run(
        synapse_cmd("hub", "--port", "0", "--db", str(tmp_path / "x.db"), "--now-resolution", "0"),
        env=client_env,
        capture_output=True,
        text=True,
        timeout=seconds(30_000),
    )
    assert res.returncode == 2 and "--now-resolution" in res.stderr
