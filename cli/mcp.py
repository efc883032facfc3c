"""`synapse mcp`: a Model Context Protocol server on stdio exposing the hub's verbs as tools."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from cli.main import client, client_options, settings

__all__ = ["TOOLS", "register"]

PROTOCOL_VERSION = "2024-11-05"

S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
N = {"type": "number"}
B = {"type": "boolean"}
ANY: dict[str, Any] = {}
LIST = {"type": "array", "items": {"type": "string"}}
FENCE = {  # {"WORK": epoch} (a task: "task:ID"): refused with `fenced` unless still held at that epoch
    "type": "object",
    "additionalProperties": {"type": "integer", "minimum": 1},
    "description": 'Claims this write depends on, as {"WORK": epoch} ("task:ID" for a task): refused with '
    "`fenced` unless still held at that epoch.",
}


def _tool(description: str, props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "description": description,
        "inputSchema": {"type": "object", "properties": props, "required": list(required)},
    }


# name → (schema, call(agent, args))
TOOLS: dict[str, tuple[dict[str, Any], Callable[[Any, dict[str, Any]], Any]]] = {
    "send": (
        _tool(
            "Send a message to `target` (name, a,b, room/*, room/name or all); returns its seq.",
            {"target": S, "body": ANY, "kind": S, "reply_to": I, "priority": B, "fence": FENCE},
            ("target", "body"),
        ),
        lambda a, k: a.send(
            k["target"],
            k["body"],
            kind=k.get("kind", "message"),
            reply_to=k.get("reply_to"),
            priority=k.get("priority", False),
            fence=k.get("fence"),
        ),
    ),
    "messages": (
        _tool(
            "Read the feed after a seq, optionally only what is addressed to `for`.",
            {"for": S, "after": I, "kind": S, "unclaimed": B, "limit": I},
        ),
        lambda a, k: a.list_messages(
            for_=k.get("for"),
            after=k.get("after", 0),
            kind=k.get("kind"),
            unclaimed=k.get("unclaimed", False),
            limit=k.get("limit", 100),
        ),
    ),
    "claim_message": (
        _tool("Claim message `seq` atomically.", {"seq": I}, ("seq",)),
        lambda a, k: a.claim_message(k["seq"]),
    ),
    "wait": (
        _tool(
            "Block until a message for `for` arrives after `after`, or `condition` (CEL) is true.",
            {"for": S, "condition": S, "after": I, "timeout": N},
        ),
        lambda a, k: _wait(a, k),
    ),
    "claim": (
        _tool(
            "Lease `work` on file `paths`; refused with claim_overlap naming the holder. Returns its `epoch`.",
            {"work": S, "paths": LIST, "ttl": N, "checkpoint": S},
            ("work", "paths"),
        ),
        lambda a, k: a.claim(k["work"], k["paths"], ttl=k.get("ttl"), checkpoint=k.get("checkpoint")),
    ),
    "release": (
        _tool(
            "Release `work`, leaving a checkpoint for the next claimer.",
            {"work": S, "checkpoint": S, "fence": FENCE},
            ("work",),
        ),
        lambda a, k: a.release(k["work"], checkpoint=k.get("checkpoint"), fence=k.get("fence")),
    ),
    "handoff": (
        _tool("Hand a live claim to another agent.", {"work": S, "to": S, "fence": FENCE}, ("work", "to")),
        lambda a, k: a.handoff(k["work"], k["to"], fence=k.get("fence")),
    ),
    "claims": (_tool("The room's live claims.", {}), lambda a, k: a.claims()),
    "board": (_tool("The plan, live claims and declared intents.", {}), lambda a, k: a.board()),
    "intent": (
        _tool("Declare advisory intent on paths (no lease).", {"paths": LIST, "note": S}, ("paths",)),
        lambda a, k: a.intent(k["paths"], k.get("note")),
    ),
    "task_declare": (
        _tool(
            "Declare a task; ready once its dependencies are done.",
            {"id": S, "title": S, "depends_on": LIST, "parent": S, "mode": S, "order": I, "epic": B},
            ("id", "title"),
        ),
        lambda a, k: a.tasks.declare(
            k["id"],
            k["title"],
            depends_on=k.get("depends_on", ()),
            parent=k.get("parent"),
            mode=k.get("mode", "par"),
            order=k.get("order"),
            epic=k.get("epic", False),
        ),
    ),
    "task_claim": (
        _tool(
            "Take a ready task (conflict, not_ready or seq_blocked otherwise). Returns its `epoch`.",
            {"id": S},
            ("id",),
        ),
        lambda a, k: a.tasks.claim(k["id"]),
    ),
    "task_update": (
        _tool(
            "Update a task with the etag last seen.",
            {"id": S, "status": S, "etag": I, "title": S, "note": S, "fence": FENCE},
            ("id",),
        ),
        lambda a, k: a.tasks.update(
            k["id"],
            status=k.get("status"),
            etag=k.get("etag"),
            title=k.get("title"),
            note=k.get("note"),
            fence=k.get("fence"),
        ),
    ),
    "task_list": (
        _tool("The plan (ready work first).", {"status": S, "ready": B, "parent": S}),
        lambda a, k: a.tasks.list(k.get("status"), k.get("ready", False), k.get("parent")),
    ),
    "state_get": (
        _tool("Read a state entry.", {"key": S, "scope": S}, ("key",)),
        lambda a, k: a.state.get(k["key"], scope=k.get("scope", "_shared")),
    ),
    "state_set": (
        _tool(
            "Write a state entry (CAS with if_version, CEL gate with if, atomic increment).",
            {"key": S, "value": ANY, "scope": S, "if": S, "if_version": I, "increment": B, "fence": FENCE},
            ("key", "value"),
        ),
        lambda a, k: a.state.set(
            k["key"],
            k["value"],
            scope=k.get("scope", "_shared"),
            if_=k.get("if"),
            if_version=k.get("if_version"),
            increment=k.get("increment", False),
            fence=k.get("fence"),
        ),
    ),
    "state_list": (
        _tool("Every state entry (views resolved).", {"scope": S}),
        lambda a, k: a.state.list(k.get("scope")),
    ),
    "eval": (
        _tool("Evaluate a CEL expression against the room.", {"expr": S}, ("expr",)),
        lambda a, k: a.eval(k["expr"]),
    ),
    "agents": (_tool("Presence of every agent in the room.", {}), lambda a, k: a.agents()),
    "heartbeat": (
        _tool("Say this agent is alive, optionally with a status.", {"status": S}),
        lambda a, k: a.heartbeat(k.get("status")),
    ),
}


def _wait(agent: Any, k: dict[str, Any]) -> Any:
    from hub.protocol.codec import to_builtins

    agent.arm(f"{agent.name}-mcp", k.get("for"), after=k.get("after"), condition=k.get("condition"))
    wake = agent.woken(k.get("timeout", 60))
    return to_builtins(wake)


def _answer(id_: Any, result: Any = None, error: dict[str, Any] | None = None) -> None:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_}
    if error is not None:
        msg["error"] = error
    else:
        msg["result"] = result
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def serve(make_agent: Callable[[], Any]) -> None:
    """JSON-RPC 2.0 over stdio, one message per line (the MCP stdio transport)."""
    from hub.protocol.codec import encode
    from hub.protocol.errors import HubError

    agent = None
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        try:
            req = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deeply to parse
            _answer(None, error={"code": -32700, "message": "parse error"})
            continue
        if not isinstance(req, dict):
            _answer(None, error={"code": -32600, "message": "invalid request: not a JSON object"})
            continue
        method, id_ = req.get("method"), req.get("id")
        if id_ is None:
            continue  # a notification (e.g. notifications/initialized)
        if method == "initialize":
            _answer(
                id_,
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "synapse", "version": "0.1.0"},
                },
            )
        elif method == "ping":
            _answer(id_, {})
        elif method == "tools/list":
            _answer(id_, {"tools": [{"name": n, **schema} for n, (schema, _call) in TOOLS.items()]})
        elif method == "tools/call":
            params = req.get("params") or {}
            tool = TOOLS.get(params.get("name"))
            if tool is None:
                _answer(id_, error={"code": -32602, "message": f"unknown tool {params.get('name')!r}"})
                continue
            try:
                agent = agent or make_agent()
                result = tool[1](agent, params.get("arguments") or {})
                text, failed = encode(result).decode(), False
            except (KeyError, TypeError, ValueError) as exc:  # arguments missing or of the wrong kind
                _answer(id_, error={"code": -32602, "message": f"invalid arguments: {exc!r}"[:300]})
                continue
            except HubError as exc:
                text, failed = (
                    encode({"error": {"code": str(exc.code), "message": exc.message, **exc.detail}}).decode(),
                    True,
                )
                if exc.code in ("disconnected", "unreachable"):
                    agent = None
            _answer(id_, {"content": [{"type": "text", "text": text}], "isError": failed})
        else:
            _answer(id_, error={"code": -32601, "message": f"unknown method {method!r}"})


def register(group: click.Group) -> None:
    @group.command("mcp")
    @client_options
    @click.pass_context
    def mcp(ctx: click.Context) -> None:
        """Serve the hub's verbs as Model Context Protocol tools on stdio, acting as --name."""
        if not settings(ctx).name:
            raise click.UsageError("the tools act as an agent: give --name NAME (or set SYNAPSE_NAME)")
        serve(lambda: client(ctx, need_name=True).replies)
