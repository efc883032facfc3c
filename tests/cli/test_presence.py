"""`synapse agents`, `heartbeat --status`, `status`: presence and the hub's own numbers."""

from __future__ import annotations

import json


def test_agents_lists_presence(cli) -> None:
    """Every joined agent is listed with status, last heartbeat and role; text has a header line."""
    assert cli("agents").stdout.strip() == "no agents in this room"
    cli("join", "alice", "--role", "api")
    cli("join", "bob")
    listed = json.loads(cli("--json", "agents").stdout)
    assert [(a["name"], a["status"], a["role"]) for a in listed] == [
        ("alice", "active", "api"),
        ("bob", "active", None),
    ]
    assert all(a["last_heartbeat"] > 0 and a["waiting_on"] is None for a in listed)
    lines = cli("agents").stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "STATUS"]
    assert lines[1].split()[:2] == ["alice", "active"] and "api" in lines[1]


def test_agents_are_per_room(cli) -> None:
    """An agent of another room does not show up in this one."""
    cli("join", "alice")
    cli("--room", "lab", "join", "xena")
    assert [a["name"] for a in json.loads(cli("--json", "agents").stdout)] == ["alice"]
    assert [a["name"] for a in json.loads(cli("--room", "lab", "--json", "agents").stdout)] == ["xena"]


def test_heartbeat_status(cli) -> None:
    """`heartbeat --status busy` sets the status and moves the heartbeat; a plain heartbeat keeps it."""
    cli("join", "alice")
    before = json.loads(cli("--json", "agents").stdout)[0]["last_heartbeat"]
    r = cli("heartbeat", "--status", "busy", "--name", "alice")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "alice busy"
    after = json.loads(cli("--json", "agents").stdout)[0]
    assert after["status"] == "busy" and after["last_heartbeat"] >= before
    r = cli("--json", "heartbeat", "--name", "alice")
    assert json.loads(r.stdout)["status"] == "busy"
    assert cli("heartbeat", "--status", "done", "--name", "alice").exit_code == 0
    assert json.loads(cli("--json", "agents").stdout)[0]["status"] == "done"


def test_heartbeat_rejects_unknown_status(cli) -> None:
    """A status outside active|busy|idle|done is a usage error (exit 2); a heartbeat needs --name (exit 2)."""
    assert cli("heartbeat", "--status", "asleep", "--name", "alice").exit_code == 2
    assert cli("heartbeat").exit_code == 2


def test_status(cli) -> None:
    """`status` reports version, uptime, rooms, agents and the log size, in text and JSON."""
    cli("join", "alice")
    cli("--room", "lab", "join", "bob")
    cli("send", "--allow-unknown", "--name", "alice", "--target", "carol", "x")
    doc = json.loads(cli("--json", "status").stdout)
    assert doc["version"] == "0.1.0"
    assert doc["uptime"] >= 0
    assert doc["rooms"] == 2 and doc["agents"] == 2 and doc["agents_online"] == 0
    assert doc["log_events"] == 4  # HubStarted, two joins, one message
    text = cli("status").stdout
    assert {line.split()[0] for line in text.splitlines()} >= {"version", "uptime", "rooms", "log_events"}
