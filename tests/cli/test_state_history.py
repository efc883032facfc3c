"""`synapse state history KEY` against a real hub: every version newest first with writer, time and op, read
from the log (so it survives a restart), paged through a busy log, bounded by --limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_sdk import SyncAgent
from hub.config import HubConfig
from hub.protocol.errors import HubError
from tests.cli.test_state_cli import doc, ok, refused
from tests.conftest import Cli, ThreadHub, hub_config
from tests.server.http_api import join


def test_history_newest_first_with_writer_and_op(cli: Cli) -> None:
    """set, increment, delete, init: each version with who wrote it and which command; text and --json."""
    ok(cli("--name", "alice", "state", "set", "turn", "1"))
    ok(cli("--name", "bob", "state", "set", "turn", "2"))
    ok(cli("--name", "alice", "state", "delete", "turn"))
    ok(cli("--name", "bob", "state", "init", "turn", '"back"'))
    got = doc(cli("--json", "state", "history", "turn"))
    rows = [(v["version"], v.get("value"), v["deleted"], v["by"], v["op"]) for v in got["versions"]]
    assert rows == [
        (3, "back", False, "bob", "state.init"),
        (2, None, True, "alice", "state.delete"),
        (2, 2, False, "bob", "state.set"),
        (1, 1, False, "alice", "state.set"),
    ]
    assert got["complete"] is True and all(v["at"] > 0 for v in got["versions"])
    lines = ok(cli("state", "history", "turn")).splitlines()
    assert lines[0] == "_shared.turn: 4 version(s), newest first"
    assert lines[1].startswith("  v3  ") and lines[1].endswith("  bob  state.init  back")
    assert lines[2].endswith("  alice  state.delete  (deleted)")


def test_history_survives_a_restart(db_path: Path, client_env: dict[str, str], monkeypatch: Any) -> None:
    """The versions come from the log: after the hub restarts they are all still there, and new ones follow."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    first = ThreadHub(hub_config(db_path))
    port = first.hub.port if first.hub is not None else 0  # the same address again: the saved token is for it
    try:
        cli = Cli(first.url, client_env)
        ok(cli("--name", "alice", "state", "set", "k", "1"))
        ok(cli("--name", "alice", "state", "set", "k", "2"))
    finally:
        first.stop()
    second = ThreadHub(HubConfig(host="127.0.0.1", port=port, db=str(db_path)))
    try:
        cli = Cli(second.url, client_env)
        ok(cli("--name", "alice", "state", "set", "k", "3"))
        got = doc(cli("--json", "state", "history", "k"))
        assert [(v["version"], v["value"]) for v in got["versions"]] == [(3, 3), (2, 2), (1, 1)]
        assert got["complete"] is True
    finally:
        second.stop()


def test_history_pages_through_a_busy_log(hub: Any, cli: Cli) -> None:
    """Six thousand writes of other keys between two versions: the hub reads back page after page and still
    finds the first version; --limit 1 stops at the newest."""
    with SyncAgent("alice", hub=hub.url) as alice:
        alice.join()
        alice.state.set("k", "old")
        for batch in range(6):
            alice.state.batch([{"key": f"other-{batch}-{i}", "value": i} for i in range(1000)])
        alice.state.set("k", "new")
        got = alice.state.history("k")
        assert [(v["version"], v["value"], v["op"]) for v in got["versions"]] == [
            (2, "new", "state.set"),
            (1, "old", "state.set"),
        ]
        assert got["complete"] is True
    got = doc(cli("--json", "state", "history", "k", "--limit", "1"))
    assert [v["value"] for v in got["versions"]] == ["new"] and got["complete"] is False


def test_history_refusals(hub: Any, cli: Cli) -> None:
    """An unknown key is not_found (exit 1); --limit past 1000 is a usage error, and the hub refuses it too."""
    refused(cli("--json", "state", "history", "never"), "not_found")
    ok(cli("--name", "alice", "state", "set", "k", "1"))
    assert cli("state", "history", "k", "--limit", "1001").exit_code == 2
    with SyncAgent("alice", hub=hub.url) as alice, pytest.raises(HubError) as info:
        alice.state.history("k", limit=1001)
    assert info.value.code == "bad_request" and info.value.detail["field"] == "limit"


def test_history_help_says_what_it_costs(cli: Cli) -> None:
    text = " ".join(ok(cli("state", "history", "--help")).split())
    assert "--limit" in text and "Read from the hub's event log" in text and "pages of 5000" in text


def test_history_and_why_over_http(hub: Any) -> None:
    """POST /v1/state.history reads the log like the WebSocket read; /v1/why.task answers the same JSON."""
    assert hub.hub is not None
    alice = join(hub.hub.port, "alice")
    try:
        alice.ok("state.set", {"name": "alice", "key": "k", "value": 1})
        alice.ok("state.set", {"name": "alice", "key": "k", "value": 2})
        got = alice.ok("state.history", {"key": "k"})
        assert [(v["version"], v["value"], v["op"]) for v in got["versions"]] == [
            (2, 2, "state.set"),
            (1, 1, "state.set"),
        ]
        alice.ok("task.declare", {"name": "alice", "task": "a", "title": "a"})
        assert alice.ok("why.task", {"task": "a"})["ready"] is True
        status, error = alice.call("why.claim", {"work": "nope"})
        assert status == 404 and error["error"]["code"] == "not_found"
    finally:
        alice.close()
