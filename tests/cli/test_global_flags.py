"""Global flags work before and after the command; every documented exit code (CLI.md) is what it says."""

from __future__ import annotations

import json
import socket

import pytest


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _strip_times(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("at", "uptime")}


def test_flags_before_and_after_give_the_same_result(cli, hub) -> None:
    """`synapse --json --name a send ...` and `synapse send ... --json --name a` do the same thing."""
    before = cli(
        "--json", "--name", "alice", "--room", "lab", "send", "--allow-unknown", "--target", "bob", "hi"
    )
    after = cli(
        "send", "--allow-unknown", "--target", "bob", "hi", "--json", "--name", "alice", "--room", "lab"
    )
    assert before.exit_code == after.exit_code == 0, (before.output, after.output)
    assert json.loads(before.stdout)["seq"] == 1 and json.loads(after.stdout)["seq"] == 2
    listed_before = cli("--json", "--name", "alice", "--room", "lab", "message", "list")
    listed_after = cli("message", "list", "--room", "lab", "--json", "--name", "alice")
    assert listed_before.stdout == listed_after.stdout
    docs = [_strip_times(json.loads(line)) for line in listed_after.stdout.splitlines()]
    assert docs[0] == {**docs[1], "seq": 1}
    assert docs[0]["room"] == "lab" and docs[0]["from"] == "alice"


def test_flags_after_a_subgroup_command(cli) -> None:
    """Flags after `message claim SEQ` are the same as before `message`."""
    cli("send", "--allow-unknown", "--name", "alice", "--target", "bob", "x")
    cli("send", "--allow-unknown", "--name", "alice", "--target", "bob", "y")
    r1 = cli("--json", "--name", "bob", "message", "claim", "1")
    r2 = cli("message", "claim", "2", "--name", "bob", "--json")
    assert json.loads(r1.stdout) == {"seq": 1, "holder": "bob"}
    assert json.loads(r2.stdout) == {"seq": 2, "holder": "bob"}


def test_hub_and_token_flags_after_the_command(cli, hub) -> None:
    """--hub and --token given after the command are used (the environment's hub is overridden)."""
    token = cli("join", "alice").stdout.strip()
    bogus = f"ws://127.0.0.1:{closed_port()}"
    r = cli("--hub", bogus, "status", "--hub", hub.url)  # after wins over before
    assert r.exit_code == 0, r.output
    r = cli("heartbeat", "--name", "alice", "--token", token, "--hub", hub.url)
    assert r.exit_code == 0, r.output
    r = cli("heartbeat", "--name", "alice", "--token", "st_wrong")
    assert r.exit_code == 5


def test_environment_variables(cli, hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYNAPSE_NAME and SYNAPSE_ROOM stand in for --name and --room."""
    monkeypatch.setenv("SYNAPSE_NAME", "alice")
    monkeypatch.setenv("SYNAPSE_ROOM", "lab")
    r = cli("send", "--allow-unknown", "--target", "bob", "via env")
    assert r.exit_code == 0, r.output
    [m] = [json.loads(line) for line in cli("--json", "message", "list").stdout.splitlines()]
    assert (m["room"], m["from"]) == ("lab", "alice")


def test_exit_0_ok(cli) -> None:
    """Success is exit 0."""
    assert cli("status").exit_code == 0


def test_exit_1_refused(cli) -> None:
    """A refusal by the hub is exit 1 with `code: message` on stderr."""
    cli("send", "--allow-unknown", "--name", "alice", "--target", "bob", "x")
    cli("message", "claim", "1", "--name", "bob")
    r = cli("message", "claim", "1", "--name", "carol")
    assert r.exit_code == 1 and r.stderr.split(":")[0] == "already_claimed"


@pytest.mark.parametrize(
    "argv",
    [
        ("send", "--allow-unknown", "--name", "alice", "hello"),  # no --target
        ("send", "--allow-unknown", "--name", "alice", "--target", "bob"),  # no body
        ("send", "--allow-unknown", "--target", "bob", "hello"),  # no --name
        ("message", "claim", "one", "--name", "bob"),  # not a seq
        ("frobnicate",),  # no such command
        ("relay", "out.ndjson", "--for", "bob"),  # no --cursor
    ],
)
def test_exit_2_usage(cli, argv: tuple[str, ...]) -> None:
    """A usage error is exit 2, explained on stderr, and nothing reaches the hub."""
    r = cli(*argv)
    assert r.exit_code == 2
    assert "Usage:" in r.stderr or "Error:" in r.stderr
    assert cli("--json", "message", "list").stdout == ""


@pytest.mark.parametrize(
    "argv",
    [
        ("status",),
        ("agents",),
        ("send", "--allow-unknown", "--name", "alice", "--target", "bob", "x"),
        ("message", "list"),
        ("join", "alice"),
    ],
)
def test_exit_4_unreachable(cli, argv: tuple[str, ...]) -> None:
    """A hub nobody listens for is exit 4 (`unreachable` on stderr, or in JSON with --json)."""
    bogus = f"ws://127.0.0.1:{closed_port()}"
    r = cli(*argv, "--hub", bogus)
    assert r.exit_code == 4
    assert r.stderr.startswith("unreachable: ")
    r = cli("--json", "--hub", bogus, *argv)
    assert r.exit_code == 4
    assert json.loads(r.stderr)["error"]["code"] == "unreachable"


def test_exit_5_unauthorized_and_forbidden(cli) -> None:
    """A wrong token is `unauthorized`, another agent's token is `forbidden`: both exit 5."""
    alice = cli("join", "alice").stdout.strip()
    cli("join", "bob")
    r = cli("message", "claim", "1", "--name", "bob", "--token", "st_nope")
    assert (r.exit_code, r.stderr.split(":")[0]) == (5, "unauthorized")
    r = cli("heartbeat", "--name", "bob", "--token", alice, "--json")
    assert r.exit_code == 5
    assert json.loads(r.stderr)["error"]["code"] == "forbidden"
