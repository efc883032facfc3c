"""`synapse mcp`: the hub's verbs as Model Context Protocol tools over stdio JSON-RPC."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import ThreadHub, synapse_cmd


def _session(
    hub: ThreadHub, env: dict[str, str], requests: list[dict[str, object]]
) -> list[dict[str, object]]:
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    done = subprocess.run(
        synapse_cmd("mcp", "--name", "assistant", "--hub", hub.url),
        input=lines,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_initialize_list_and_call(hub: ThreadHub, client_env: dict[str, str]) -> None:
    """initialize, tools/list and tools/call answer; a send through the tool lands in the feed."""
    replies = _session(
        hub,
        client_env,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "send", "arguments": {"target": "bob", "body": "hi from mcp"}},
            },
            {
                "jsonrpc": "2.0",
                "id": 4,
                "method": "tools/call",
                "params": {"name": "messages", "arguments": {"for": "bob"}},
            },
        ],
    )
    assert [r["id"] for r in replies] == [1, 2, 3, 4]
    assert replies[0]["result"]["serverInfo"]["name"] == "synapse"
    names = {t["name"] for t in replies[1]["result"]["tools"]}
    assert {"send", "wait", "claim", "task_claim", "state_set", "eval"} <= names
    assert replies[2]["result"]["isError"] is False
    listed = json.loads(replies[3]["result"]["content"][0]["text"])
    assert [m["body"] for m in listed["messages"]] == ["hi from mcp"]


def test_refusal_is_a_tool_error(hub: ThreadHub, client_env: dict[str, str]) -> None:
    """A hub refusal comes back as isError with the stable code; unknown tools are JSON-RPC errors."""
    replies = _session(
        hub,
        client_env,
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "claim", "arguments": {"work": "w", "paths": ["../etc"]}},
            },
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "nope", "arguments": {}}},
        ],
    )
    assert replies[0]["result"]["isError"] is True
    assert json.loads(replies[0]["result"]["content"][0]["text"])["error"]["code"] == "bad_request"
    assert replies[1]["error"]["code"] == -32602


def test_claim_returns_the_epoch_and_a_stale_fence_is_a_tool_error(
    hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """The claim tool returns the epoch; state_set fenced on it lands, and after a release the same fence is
    refused with `fenced`."""

    def call(i: int, name: str, arguments: dict[str, object]) -> dict[str, object]:
        return {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }

    replies = _session(
        hub,
        client_env,
        [
            call(1, "claim", {"work": "w", "paths": ["src/w"]}),
            call(2, "state_set", {"key": "k", "value": 1, "fence": {"w": 1}}),
            call(3, "release", {"work": "w", "fence": {"w": 1}}),
            call(4, "state_set", {"key": "k", "value": 2, "fence": {"w": 1}}),
        ],
    )
    texts = [json.loads(r["result"]["content"][0]["text"]) for r in replies]  # type: ignore[index]
    assert texts[0]["epoch"] == 1 and texts[1]["version"] == 1
    assert [r["result"]["isError"] for r in replies] == [False, False, False, True]  # type: ignore[index]
    assert texts[3]["error"]["code"] == "fenced"
