"""`--retries N` / SYNAPSE_RETRIES: the CLI sends a refused (rate_limited, unavailable) request again after a
backoff and says on stderr what it waits for; 0 turns it off. On a real hub with a tiny rate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import main
from tests.conftest import Cli, ThreadHub, hub_config

N = 6
RETRYING = re.compile(r"^rate_limited: retrying in \d+\.\d\ds \((\d+)/(\d+)\)$")


@pytest.fixture
def slow_cli(tmp_path: Path, client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The CLI against a hub allowing each agent 5 commands a second after a burst of 2."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    th = ThreadHub(hub_config(tmp_path / "log.db", rate_per_agent=5.0, rate_burst=2))
    try:
        yield Cli(th.url, client_env)
    finally:
        th.stop()


def _feed(cli: Cli) -> list[object]:
    r = cli("--json", "message", "list", "--limit", "1000")
    return [json.loads(line)["body"] for line in r.stdout.splitlines()]


def test_sends_without_throttle_all_succeed_and_say_what_they_wait_for(slow_cli: Cli) -> None:
    """N `synapse send` back to back: every one exits 0, each message lands once; the waits are on stderr."""
    waits: list[str] = []
    for i in range(N):
        r = slow_cli("send", "--allow-unknown", "--name", "alice", "--target", "all", str(i))
        assert r.exit_code == 0, r.output
        waits += r.stderr.splitlines()
    assert waits, "the rate must have refused some sends"
    for line in waits:
        found = RETRYING.match(line)
        assert found, line
        assert int(found.group(2)) == main.DEFAULT_RETRIES
    assert _feed(slow_cli) == list(range(N))


def test_retries_zero_gets_rate_limited(slow_cli: Cli) -> None:
    """--retries 0: a refused send exits 1 with `rate_limited: ...` and nothing about retrying."""
    codes = []
    for i in range(N):
        r = slow_cli(
            "send", "--allow-unknown", "--name", "alice", "--target", "all", str(i), "--retries", "0"
        )
        codes.append(r.exit_code)
        if r.exit_code:
            assert r.stderr.startswith("rate_limited: ") and "retrying" not in r.stderr, r.stderr
    assert 1 in codes and set(codes) <= {0, 1}
    assert _feed(slow_cli) == [i for i, code in enumerate(codes) if code == 0]


def test_env_retries_zero_and_json_notes(slow_cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNAPSE_RETRIES=0 turns retrying off; with --json the waits are JSON lines on stderr."""
    monkeypatch.setenv("SYNAPSE_RETRIES", "0")
    codes = [
        slow_cli("send", "--allow-unknown", "--name", "alice", "-t", "all", str(i)).exit_code
        for i in range(N)
    ]
    assert 1 in codes
    monkeypatch.setenv("SYNAPSE_RETRIES", "9")
    notes = []
    for i in range(N):
        r = slow_cli("--json", "send", "--allow-unknown", "--name", "alice", "-t", "all", str(i))
        assert r.exit_code == 0, r.output
        notes += [json.loads(line)["retrying"] for line in r.stderr.splitlines()]
    assert notes and all(n["code"] == "rate_limited" and n["of"] == 9 and n["in"] > 0 for n in notes)


@pytest.mark.parametrize("bad", ["-1", "many"])
def test_bad_retries_is_a_usage_error(cli: Cli, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    r = cli("send", "--allow-unknown", "--name", "alice", "-t", "all", "x", "--retries", bad)
    assert r.exit_code == 2 and "--retries" in r.stderr
    monkeypatch.setenv("SYNAPSE_RETRIES", bad)
    r = cli("send", "--allow-unknown", "--name", "alice", "-t", "all", "x")
    assert r.exit_code == 2 and "SYNAPSE_RETRIES" in r.stderr


def test_cli_default_is_the_sdks() -> None:
    from agent_sdk.base import DEFAULT_RETRIES

    assert main.DEFAULT_RETRIES == DEFAULT_RETRIES
