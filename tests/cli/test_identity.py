"""`synapse join`: the token is printed once, saved 0600, rotated by a re-join; wrong or foreign tokens → 5."""

from __future__ import annotations

import json
import stat
from pathlib import Path


def _tokens(client_env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    path = Path(client_env["XDG_CONFIG_HOME"]) / "synapse" / "tokens.json"
    return path, json.loads(path.read_text())


def test_join_prints_token_once_and_saves_it_private(cli, hub, client_env) -> None:
    """`join NAME` prints only the token; tokens.json holds it under (hub, room, name) with mode 0600."""
    r = cli("join", "alice", "--role", "api")
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert token and "\n" not in token and r.stdout.count(token) == 1
    path, saved = _tokens(client_env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert saved == {f"{hub.url}|default|alice": token}
    agents = json.loads(cli("--json", "agents").stdout)
    assert [(a["name"], a["role"]) for a in agents] == [("alice", "api")]


def test_join_with_json_and_name_flag(cli) -> None:
    """`--json join` with --name prints one object naming room, name and token."""
    r = cli("--json", "join", "--name", "bob")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["room"] == "default" and doc["name"] == "bob" and doc["token"].strip()


def test_rejoin_keeps_the_token_and_rotate_replaces_it(cli, client_env) -> None:
    """A re-join with the saved token keeps it; `--rotate` replaces it: the saved one is the new one and the
    old one gets `unauthorized` (exit 5)."""
    old = cli("join", "alice").stdout.strip()
    assert cli("join", "alice").stdout.strip() == old
    new = cli("join", "alice", "--rotate").stdout.strip()
    assert old != new
    _, saved = _tokens(client_env)
    assert list(saved.values()) == [new]
    r = cli("send", "--allow-unknown", "--name", "alice", "--token", old, "--target", "bob", "hi")
    assert r.exit_code == 5
    assert r.stderr.startswith("unauthorized: ")
    r = cli(
        "send", "--allow-unknown", "--name", "alice", "--target", "bob", "hi"
    )  # the saved (new) token works
    assert r.exit_code == 0, r.output


def test_wrong_token_is_unauthorized_in_json(cli) -> None:
    """A token nobody holds → exit 5 and, with --json, {"error": {"code": "unauthorized"}} on stderr."""
    cli("join", "alice")
    r = cli("--json", "heartbeat", "--name", "alice", "--token", "st_not-a-real-token")
    assert r.exit_code == 5
    assert r.stdout == ""
    assert json.loads(r.stderr)["error"]["code"] == "unauthorized"


def test_acting_with_another_agents_token_is_forbidden(cli) -> None:
    """Alice's token presented as bob → `forbidden` (exit 5); nothing is sent."""
    alice = cli("join", "alice").stdout.strip()
    cli("join", "bob")
    r = cli("send", "--allow-unknown", "--name", "bob", "--token", alice, "--target", "carol", "hi")
    assert r.exit_code == 5
    assert r.stderr.startswith("forbidden: ")
    assert cli("--json", "message", "list").stdout == ""


def test_first_mutation_joins_implicitly(cli, hub, client_env) -> None:
    """A send by a name that never joined joins it and saves the token for the next command."""
    assert cli("send", "--allow-unknown", "--name", "dora", "--target", "eve", "hi").exit_code == 0
    _, saved = _tokens(client_env)
    assert f"{hub.url}|default|dora" in saved
    assert cli("heartbeat", "--name", "dora").exit_code == 0


def test_tokens_are_kept_per_room(cli, hub, client_env) -> None:
    """The same name in two rooms has two tokens, each used in its own room."""
    cli("join", "alice")
    cli("--room", "lab", "join", "alice")
    _, saved = _tokens(client_env)
    assert set(saved) == {f"{hub.url}|default|alice", f"{hub.url}|lab|alice"}
    assert saved[f"{hub.url}|default|alice"] != saved[f"{hub.url}|lab|alice"]
    r = cli("send", "--allow-unknown", "--room", "lab", "--name", "alice", "--target", "bob", "x")
    assert r.exit_code == 0, r.output
