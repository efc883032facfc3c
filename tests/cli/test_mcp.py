"""`synapse mcp` through the official `mcp` client, over stdio and streamable HTTP, against a real hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import ResourceUpdatedNotification
from mcp.types.version import LATEST_PROTOCOL_VERSION

from agent_sdk.aio import Agent
from cli.mcp import RESOURCES, TOOLS
from tests.conftest import ThreadHub, synapse_cmd

ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS = ["stdio", "http"]


@contextlib.asynccontextmanager
async def served(transport: str, hub: ThreadHub, env: dict[str, str], **client: Any) -> AsyncIterator[Client]:
    """A connected client of `synapse mcp --name assistant` on `transport`."""
    args = ["mcp", "--name", "assistant", "--hub", hub.url]
    if transport == "stdio":
        argv = synapse_cmd(*args)
        async with Client(StdioServerParameters(command=argv[0], args=argv[1:], env=env), **client) as c:
            yield c
        return
    proc = subprocess.Popen(
        synapse_cmd(*args, "--http", "--port", "0"), env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        found = re.search(r"http://127\.0\.0\.1:\d+/mcp", line)
        assert found, f"no URL printed: {line!r}"
        async with Client(found.group(0), **client) as c:
            yield c
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM: a graceful exit
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


async def call(c: Client, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """A tool's JSON result; a tool error fails the test with its text."""
    result = await c.call_tool(name, arguments or {})
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, f"{name}: {text}"
    return json.loads(text)


async def refused(c: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The error of a call that must fail as a tool error."""
    result = await c.call_tool(name, arguments)
    assert result.is_error, result
    return json.loads(result.content[0].text)["error"]  # type: ignore[union-attr,no-any-return]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_lists_tools_and_resources_at_the_latest_version(
    transport: str, hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """Every tool has a description and an object schema naming its required arguments; the room's resources
    are listed; the client and server agree on the newest protocol version the package speaks."""
    async with served(transport, hub, client_env) as c:
        assert c.protocol_version == LATEST_PROTOCOL_VERSION
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == set(TOOLS)
        for t in tools.values():
            assert t.description and len(t.description) > 20
            assert t.input_schema["type"] == "object"
            assert set(t.input_schema["required"]) <= set(t.input_schema["properties"])
        uris = {str(r.uri) for r in (await c.list_resources()).resources}
        assert uris == {f"synapse://default/{kind}" for kind in RESOURCES}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_tool_once(transport: str, hub: ThreadHub, client_env: dict[str, str]) -> None:
    """Each tool is called and does what it says, checked through the hub by a second agent."""
    called: list[str] = []
    async with served(transport, hub, client_env) as c, Agent("bob", hub=hub.url, stream=False) as bob:

        async def run(name: str, arguments: dict[str, Any] | None = None) -> Any:
            called.append(name)
            return await call(c, name, arguments)

        assert (await run("heartbeat", {"status": "busy"}))["status"] == "busy"
        seq = (await run("send", {"target": "all", "body": {"hello": 1}}))["seq"]
        assert [m["body"] for m in (await run("messages"))["messages"]] == [{"hello": 1}]
        assert (await run("message_claim", {"seq": seq}))["holder"] == "assistant"
        assert (await run("message_ack", {"seq": seq}))["upto"] == seq
        assert (await run("messages", {"unread": True}))["messages"] == []
        woke = await run("wait", {"condition": "messages.count >= 1"})  # already true: at once
        assert woke["woken_by"] == "condition" and woke["value"] is True
        await bob.send("assistant", "ping", allow_unknown=True)
        woke = await run("wait", {"for": "assistant", "after": seq, "timeout": 60})
        assert woke["message"]["body"] == "ping" and woke["message"]["from"] == "bob"
        # directed_only skips broadcasts; a condition beside a message wait wakes whichever comes first
        await bob.send("all", "to everyone", allow_unknown=True)
        ping = await bob.send("assistant", "only you", allow_unknown=True)
        burst = await run("wait", {"after": woke["message"]["seq"]})  # one wake hands over both
        assert [m["body"] for m in burst["messages"]] == ["to everyone", "only you"]
        woke = await run("wait", {"after": woke["message"]["seq"], "directed_only": True})
        assert woke["message"]["seq"] == ping
        woke = await run("wait", {"for": "assistant", "after": ping, "condition": "messages.count > 0"})
        assert woke["woken_by"] == "condition"

        assert (await run("claim", {"work": "w", "paths": ["src/w"]}))["epoch"] == 1
        assert [cl["work"] for cl in (await run("claims"))["claims"]] == ["w"]
        await run("intent", {"paths": ["src/x"], "note": "soon"})
        await run("handoff", {"work": "w", "to": "bob"})
        assert [cl["holder"] for cl in await bob.claims()] == ["bob"]
        await call(c, "claim", {"work": "w2", "paths": ["src/w2"]})
        await run("release", {"work": "w2", "checkpoint": "half done"})

        await run("task_declare", {"id": "T1", "title": "first"})
        epoch = (await run("task_claim", {"id": "T1"}))["epoch"]
        await run("task_update", {"id": "T1", "status": "done", "fence": {"task:T1": epoch}})
        assert [t["id"] for t in (await run("task_list"))["tasks"]] == ["T1"]
        assert (await run("task_show", {"id": "T1"}))["status"] == "done"
        board = await run("board")
        assert "src/x" in json.dumps(board)

        assert (await run("state_set", {"key": "a", "value": 1}))["version"] == 1
        assert (await run("state_get", {"key": "a"}))["value"] == 1
        assert (await run("state_init", {"key": "b", "value": "x"}))["version"] == 1
        assert (await run("state_cas", {"key": "a", "version": 1, "value": 2}))["version"] == 2
        assert (await run("state_increment", {"key": "n", "by": 2}))["value"] == 2
        await run(
            "state_batch", {"writes": [{"key": "c", "value": 3}, {"key": "n", "value": 1, "increment": True}]}
        )
        await run("state_delete", {"key": "b"})
        assert (await run("state_view", {"key": "v", "expr": "state._shared.a * 10"}))["value"] == 20
        keys = {(e["scope"], e["key"]) for e in (await run("state_list"))["entries"]}
        assert {("_shared", "a"), ("_shared", "c"), ("_shared", "n"), ("_view", "v")} <= keys
        assert ("_shared", "b") not in keys
        assert (await run("eval", {"expr": "state._shared.n + state._shared.c"}))["value"] == 6

        await run("branch_create", {"branch": "exp"})
        await call(c, "state_set", {"key": "a", "value": 5, "branch": "exp"})
        assert (await call(c, "state_get", {"key": "a"}))["value"] == 2  # the main line is untouched
        assert "exp" in json.dumps(await run("branch_list"))
        assert "a" in json.dumps(await run("branch_diff", {"branch": "exp"}))
        await run("branch_merge", {"branch": "exp"})
        assert (await bob.state.get("a"))["value"] == 5

        assert "assistant" in {a["name"] for a in (await run("agents"))["agents"]}
        assert "version" in json.dumps(await run("status"))

        # explanations
        why = await run("why", {"kind": "condition", "what": "state._shared.a == 1 && true"})
        assert why["holds"] is False and why["false_part"] == "state._shared.a == 1"
        versions = (await run("state_history", {"key": "a", "limit": 2}))["versions"]
        assert [(v["version"], v["value"]) for v in versions] == [(3, 5), (2, 2)]
    assert set(called) == set(TOOLS)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_pending_wait_delays_no_other_call(
    transport: str, hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """Two waits pending at once (a message wait and a condition wait); meanwhile state_get, state_set and
    messages answer, each before either wait is woken; then each wait is woken by its own event."""
    async with served(transport, hub, client_env) as c, Agent("bob", hub=hub.url, stream=False) as bob:
        await call(c, "state_set", {"key": "k", "value": "v"})
        after = (await call(c, "eval", {"expr": "messages.count"}))["value"]
        expr = "state._shared.go == true"
        condition_wait = asyncio.ensure_future(call(c, "wait", {"condition": expr}))
        armed = f"agents['assistant'].waiting_on == {json.dumps(expr)}"  # presence: armed at the hub
        await asyncio.wait_for(bob.wait_for(armed), 60)
        message_wait = asyncio.ensure_future(call(c, "wait", {"for": "assistant", "after": after}))

        started = time.perf_counter()
        got = await call(c, "state_get", {"key": "k"})
        took = time.perf_counter() - started
        print(f"\n{transport}: state_get answered in {took * 1000:.1f} ms while two waits were pending")
        assert got["value"] == "v"
        await call(c, "state_set", {"key": "k2", "value": 1})
        await call(c, "messages", {"after": after})
        assert not message_wait.done() and not condition_wait.done()

        await bob.send("assistant", "wake up", allow_unknown=True)
        woke = await asyncio.wait_for(message_wait, 60)
        assert woke["message"]["body"] == "wake up"
        assert not condition_wait.done()
        await bob.state.set("go", True)
        assert (await asyncio.wait_for(condition_wait, 60))["value"] is True


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refusals_are_tool_errors_with_stable_codes(
    transport: str, hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """A hub refusal carries its code; bad or missing arguments and unknown tools are tool errors too; a stale
    fence is `fenced`; a wait that nothing wakes is `timed_out`. The server keeps serving after each."""
    async with served(transport, hub, client_env) as c:
        assert (await refused(c, "claim", {"work": "w", "paths": ["../etc"]}))["code"] == "bad_request"
        assert (await refused(c, "send", {"body": "no target"}))["code"] == "bad_request"
        assert (await refused(c, "send", {"target": "all", "body": 1, "bogus": 2}))["code"] == "bad_request"
        assert (await refused(c, "state_get", {"key": 7}))["code"] == "bad_request"
        assert (await refused(c, "nope", {}))["code"] == "not_found"
        assert (await refused(c, "state_get", {"key": "absent"}))["code"] == "not_found"
        assert (await refused(c, "eval", {"expr": "1 +"}))["code"] == "bad_expression"
        assert (await refused(c, "wait", {"condition": "false", "timeout": 0.2}))["code"] == "timed_out"
        assert (await refused(c, "wait", {"timeout": 0.2}))["code"] == "timed_out"  # no message for it
        assert (await refused(c, "wait", {"condition": "false", "timeout": -1}))["code"] == "timed_out"
        assert (await refused(c, "wait", {"condition": "nope(", "timeout": 5}))["code"] == "bad_expression"

        assert (await call(c, "claim", {"work": "w", "paths": ["src/w"]}))["epoch"] == 1
        assert (await call(c, "state_set", {"key": "k", "value": 1, "fence": {"w": 1}}))["version"] == 1
        await call(c, "release", {"work": "w", "fence": {"w": 1}})
        assert (await refused(c, "state_set", {"key": "k", "value": 2, "fence": {"w": 1}}))[
            "code"
        ] == "fenced"
        assert (await call(c, "state_get", {"key": "k"}))["value"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_resources_read_and_announce_changes(
    transport: str, hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """Each resource reads as JSON; a listener on synapse://default/state and /feed hears each change another
    agent makes (subscriptions/listen, the newest protocol's way)."""
    async with served(transport, hub, client_env) as c, Agent("bob", hub=hub.url, stream=False) as bob:
        for kind in RESOURCES:
            contents = (await c.read_resource(f"synapse://default/{kind}")).contents
            assert isinstance(json.loads(contents[0].text), dict)  # type: ignore[union-attr]
        state, feed = "synapse://default/state", "synapse://default/feed"
        async with c.listen(resource_subscriptions=[state, feed]) as sub:
            assert set(sub.honored.resource_subscriptions or ()) == {state, feed}
            events = aiter(sub)
            await bob.state.set("score", 42)
            assert (await asyncio.wait_for(anext(events), 60)).uri == state  # type: ignore[union-attr]
            text = (await c.read_resource(state)).contents[0].text  # type: ignore[union-attr]
            assert {e["key"]: e["value"] for e in json.loads(text)["entries"]}["score"] == 42
            await bob.send("all", "news", allow_unknown=True)
            assert (await asyncio.wait_for(anext(events), 60)).uri == feed  # type: ignore[union-attr]
            text = (await c.read_resource(feed)).contents[0].text  # type: ignore[union-attr]
            assert [m["body"] for m in json.loads(text)["messages"]] == ["news"]
        error = None
        try:
            await c.read_resource("synapse://default/nothing")
        except Exception as exc:
            error = exc
        assert error is not None and "no resource" in str(error)


async def test_handshake_era_clients_subscribe_to_resources(
    hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """A client on the initialize handshake gets resources/updated after resources/subscribe."""
    updates: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updates.put_nowait(str(message.params.uri))

    async with (
        served("stdio", hub, client_env, mode="legacy", message_handler=on_message) as c,
        Agent("bob", hub=hub.url, stream=False) as bob,
    ):
        caps = c.server_capabilities
        assert caps.resources is not None and caps.resources.subscribe
        with pytest.warns(Warning):
            await c.subscribe_resource("synapse://default/board")
        await bob.tasks.declare("T9", "a task")
        assert await asyncio.wait_for(updates.get(), 60) == "synapse://default/board"


def _documented_config(doc: str = "docs/mcp.md") -> dict[str, Any]:
    text = (ROOT / doc).read_text()
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block, f"{doc} has no ```json block"
    return json.loads(block.group(1))  # type: ignore[no-any-return]


def test_the_readme_shows_the_documented_config() -> None:
    """README's "Assistants (MCP)" block is the config docs/mcp.md explains (and the next test runs)."""
    assert _documented_config("README.md") == _documented_config()


async def test_the_documented_stdio_config_runs(hub: ThreadHub, client_env: dict[str, str]) -> None:
    """The config block in docs/mcp.md, as an assistant would run it (with this test's hub), serves tools."""
    server = _documented_config()["mcpServers"]["synapse"]
    assert server["command"] == "synapse"
    env = {**client_env, **server.get("env", {}), "SYNAPSE_HUB": hub.url}
    installed = Path(sys.executable).parent / server["command"]  # the venv's `synapse` script
    launcher = (
        [str(installed)]
        if installed.exists()
        else [sys.executable, "-c", "from cli.main import main; main()"]
    )
    argv = [*launcher, *server["args"]]
    async with Client(StdioServerParameters(command=argv[0], args=argv[1:], env=env)) as c:
        assert {"send", "wait", "state_get"} <= {t.name for t in (await c.list_tools()).tools}
        assert (await call(c, "send", {"target": "all", "body": "from the docs"}))["seq"] == 1


def test_stdio_survives_bad_lines(hub: ThreadHub, client_env: dict[str, str]) -> None:
    """Not UTF-8, not JSON, not an object, nested too deeply: the server skips each line (the SDK's stdio
    transport), and the next good request is served; no traceback. (Moved here from test_bad_input_cli.py.)"""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    lines = [
        json.dumps(init).encode(),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode(),
        b"\xff\xfe{}",
        b"not json",
        b"[1, 2]",
        b"[" * 5000 + b"]" * 5000,
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "send", "arguments": {"target": "all", "body": "fine"}},
            }
        ).encode(),
    ]
    proc = subprocess.Popen(
        synapse_cmd("mcp", "--name", "assistant", "--hub", hub.url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b"\n".join(lines) + b"\n")
    proc.stdin.flush()  # and kept open: at end of input the server drops what is still in flight
    replies = []
    while not replies or replies[-1].get("id") != 2:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:]
        replies.append(json.loads(line))
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert b"Traceback" not in stderr, stderr[-3000:]
    assert replies[-1]["result"]["isError"] is False
    assert json.loads(replies[-1]["result"]["content"][0]["text"]) == {"seq": 1}


async def test_an_unreachable_hub_is_a_tool_error(client_env: dict[str, str]) -> None:
    """With no hub to reach, a call is a tool error `unreachable` (the server stays up and says so again)."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = synapse_cmd("mcp", "--name", "assistant", "--hub", f"ws://127.0.0.1:{port}", "--retries", "0")
    async with Client(StdioServerParameters(command=argv[0], args=argv[1:], env=client_env)) as c:
        assert len((await c.list_tools()).tools) == len(TOOLS)
        for _ in range(2):
            assert (await refused(c, "state_get", {"key": "k"}))["code"] == "unreachable"
