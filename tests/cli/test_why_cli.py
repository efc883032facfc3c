"""`synapse why task|claim|wait|condition` against a real hub: the text tree, `--json`, the exit codes, and
the same through the SDK (both clients); reads log nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Agent, SyncAgent
from hub.protocol.errors import HubError
from tests.cli.test_state_cli import doc, ok, refused
from tests.conftest import fold

Cli = Any  # tests/conftest.py's Cli


def plan(cli: Cli) -> None:
    """deploy ← test ← (build held by alice, lint ready)."""
    for task, deps in (("build", ""), ("lint", ""), ("test", "build,lint"), ("deploy", "test")):
        ok(cli("--name", "lead", "task", "declare", task, "--title", task, "--depends-on", deps))
    ok(cli("--name", "alice", "task", "claim", "build"))


def test_why_task_tree_and_json(cli: Cli) -> None:
    """The text is an indented tree down to the actionable tasks; --json the whole chain."""
    plan(cli)
    text = ok(cli("why", "task", "deploy"))
    assert text.splitlines() == [
        "task deploy: not ready (pending)",
        "  depends on test: pending",
        "    depends on build: in_progress, held by alice  <- act: alice is on it",
        "    depends on lint: ready, unclaimed  <- act: claim it",
        "actionable now: build, lint",
    ]
    got = doc(cli("--json", "why", "task", "deploy"))
    assert got["ready"] is False and got["actionable"] == ["build", "lint"]
    assert got["chain"]["blockers"][0]["blockers"][0]["holder"] == "alice"
    assert ok(cli("why", "task", "lint")).startswith("task lint: ready to claim")


def test_why_reads_log_nothing(cli: Cli, db_path: Path) -> None:
    """Every `why` is a read: the log's length is the same before and after."""
    plan(cli)
    ok(cli("--name", "alice", "claim", "api", "src/api/"))
    before = fold(db_path).position
    ok(cli("why", "task", "deploy"))
    ok(cli("why", "claim", "api"))
    ok(cli("why", "condition", "size(tasks) > 10"))
    assert fold(db_path).position == before


def test_why_claim(cli: Cli) -> None:
    """Holder, lease and epoch in text; --json the whole claim with its timing."""
    ok(cli("--name", "alice", "claim", "api", "src/api/", "--ttl", "600"))
    text = ok(cli("why", "claim", "api"))
    assert text.startswith("claim api: held by alice since ") and "(epoch 1)" in text
    assert "  lease: ttl, lapses at " in text and "  last renewal: never" in text
    assert "  paths: src/api" in text
    got = doc(cli("--json", "why", "claim", "api"))
    assert (got["holder"], got["lease"], got["epoch"], got["paths"]) == ("alice", "ttl", 1, ["src/api"])
    assert got["expires"] == got["since"] + 600


def test_why_wait_with_an_armed_waiter(hub: Any, cli: Cli) -> None:
    """A waiter armed by a real connection: owner, what it waits for, its condition's value now."""
    ok(cli("--name", "alice", "state", "set", "go", "false"))
    with SyncAgent("bob", hub=hub.url) as bob:
        bob.join()
        armed = bob.arm("bob-rx", "bob", condition="state._shared.go == true")
        text = ok(cli("why", "wait", "bob-rx"))
        assert text.splitlines()[1:] == [
            f"  waits for messages to bob after seq {armed}",
            "  messages there that would wake it: 0",
            "  waits for condition: state._shared.go == true",
            "  its value now: false",
        ]
        got = doc(cli("--json", "why", "wait", "bob-rx"))
        assert (got["owner"], got["for"], got["value"], got["waking"]) == ("bob", "bob", False, 0)


def test_why_condition_names_the_false_part(cli: Cli) -> None:
    """Each sub-expression with the value it read; the false one marked and named."""
    ok(cli("--name", "alice", "state", "set", "turn", "alice"))
    expr = 'state._shared.turn == "bob" && size(agents) > 0'
    lines = ok(cli("why", "condition", expr)).splitlines()
    assert lines == [
        f"does not hold: {expr}",
        '  state._shared.turn == "bob" = false  <- not true',
        '    state._shared.turn = "alice"',
        "  size(agents) > 0 = true",
        "    size(agents) = 1",
        "  value: false",
        'false because of: state._shared.turn == "bob"',
    ]
    got = doc(cli("--json", "why", "condition", "state._shared.nope == 1"))
    assert got["holds"] is False and got["error"] and got["parts"][1]["error"]


def test_why_refusals(cli: Cli) -> None:
    """Unknown task, claim, waiter: not_found (exit 1); bad CEL: bad_expression (exit 1)."""
    ok(cli("--name", "alice", "state", "set", "x", "1"))
    for kind, what in (("task", "nope"), ("claim", "nope"), ("wait", "nobody")):
        error = refused(cli("--json", "why", kind, what), "not_found")
        assert error["what"] == {"wait": "waiter"}.get(kind, kind)
    refused(cli("--json", "why", "condition", "state._shared.x =="), "bad_expression")
    result = cli("why", "task", "nope")
    assert result.exit_code == 1 and result.stderr.startswith("not_found: ")


def test_why_help_explains_each_kind(cli: Cli) -> None:
    text = ok(cli("why", "--help"))
    for kind in ("task", "claim", "wait", "condition"):
        assert kind in text
    assert "someone can act on now" in " ".join(ok(cli("why", "task", "--help")).split())


def test_why_through_both_sdk_clients(hub: Any, cli: Cli) -> None:
    """Agent.why and SyncAgent.why give the hub's explanation; a bad kind is bad_request."""
    plan(cli)
    with SyncAgent("carol", hub=hub.url) as carol:
        carol.join()
        assert carol.why("task", "deploy")["actionable"] == ["build", "lint"]

    async def run() -> dict[str, Any]:
        async with Agent("dave", hub=hub.url) as dave:
            await dave.join()
            return await dave.why("condition", "size(tasks) == 4")

    got = asyncio.run(run())
    assert got["holds"] is True
    with SyncAgent("carol", hub=hub.url) as carol, pytest.raises(HubError) as info:
        carol.why("nonsense", "x")
    assert info.value.code == "bad_request" and info.value.detail["field"] == "kind"
