"""`--hub` / SYNAPSE_HUB take a comma-separated list: a one-shot command uses the first hub that answers;
`synapse wait` armed on a hub that dies is armed again on the next and woken there; `synapse relay` goes on
from its cursor on the next hub, each message once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_sdk import SyncAgent
from tests.cli.test_wait import Waiters, finish
from tests.conftest import Cli, Pair, Refusing, ThreadHub, free_port

RETRIES = "30"  # rounds of addresses a command tries after a drop: room for hub 2 to start on a busy machine


@pytest.fixture(autouse=True)
def _tokens_here(client_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


def test_help_says_a_list_is_accepted(cli: Cli) -> None:
    r = cli("send", "--help")
    assert "comma-separated list" in " ".join(r.output.split())


def test_one_shot_commands_use_the_first_hub_that_answers(
    hub: ThreadHub, refusing: Refusing, client_env: dict[str, str]
) -> None:
    """A closed port and a 503 (a standby) before the hub: flag or environment, every command gets through."""
    closed = f"ws://127.0.0.1:{free_port()}"
    listed = Cli(f" {closed} , {refusing.url},{hub.url}", client_env)
    r = listed("send", "--allow-unknown", "--name", "alice", "--target", "bob", "hello")
    assert r.exit_code == 0, r.output
    r = listed("--json", "message", "list", "--name", "alice")
    assert [m["body"] for m in map(json.loads, r.stdout.splitlines())] == ["hello"]
    r = Cli("ws://127.0.0.1:1", client_env)("--json", "status", "--hub", f"{closed},{hub.url}")
    assert r.exit_code == 0, r.output
    assert refusing.refused == 2


@pytest.mark.parametrize("bad", [" , ", "http://127.0.0.1:1", "ws://127.0.0.1:1,ws://"])
def test_a_bad_list_is_a_usage_error(cli: Cli, bad: str) -> None:
    r = cli("status", "--hub", bad)
    assert r.exit_code == 2
    assert "--hub / SYNAPSE_HUB" in r.output


def test_wait_armed_before_the_kill_is_woken_on_hub_2(pair: Pair, client_env: dict[str, str]) -> None:
    """SIGKILL hub 1 under an armed `synapse wait`: it arms again on hub 2 and prints the message sent there,
    once; `wait` then moved bob's read position, so the next wait does not hand it over again."""
    w = Waiters(pair.hubs, {**client_env, "SYNAPSE_RETRIES": RETRIES})
    try:
        proc = w.start("--name", "bob", "--for", "bob", "--timeout", "60", "--json")
        w.armed("bob", "bob")
        pair.switch()
        with SyncAgent("alice", hub=pair.hubs, retries=int(RETRIES)) as alice:
            seq = alice.send("bob", "on hub 2", allow_unknown=True)
        code, out, err = finish(proc, 60_000)
        assert code == 0, err
        woke = json.loads(out)
        assert [(m["seq"], m["body"]) for m in woke["messages"]] == [(seq, "on hub 2")]
        assert f"to={pair.url2}" in err  # agent.failover from=... to=...
        code, out, err = finish(w.start("--name", "bob", "--for", "bob", "--timeout", "0.5"))
        assert code == 3, (out, err)
    finally:
        w.close()


def test_relay_goes_on_from_its_cursor_on_hub_2(
    pair: Pair, client_env: dict[str, str], tmp_path: Path
) -> None:
    """Relay on hub 1, kill it, send on hub 2: a relay with the list appends only the new messages."""
    out, cursor = tmp_path / "bob.ndjson", tmp_path / "bob.cursor"
    listed = Cli(pair.hubs, {**client_env})

    def relay() -> int:
        r = listed("relay", str(out), "--for", "bob", "--cursor", str(cursor), "--retries", RETRIES)
        assert r.exit_code == 0, r.output
        return int(r.stdout.split()[0])

    with SyncAgent("alice", hub=pair.hubs, retries=int(RETRIES)) as alice:
        alice.send("bob", "one", allow_unknown=True)
        assert relay() == 1
        alice.send("bob", "two", allow_unknown=True)
        pair.switch()
        alice.send("bob", "three", allow_unknown=True)  # its own send fails over too
    assert relay() == 2
    assert relay() == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["body"] for m in lines] == ["one", "two", "three"]
    assert int(cursor.read_text()) == lines[-1]["seq"]
