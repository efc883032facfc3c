"""`synapse mcp`: the hub's verbs as Model Context Protocol tools and the room as resources, on the official
`mcp` package, over stdio or streamable HTTP. Calls run concurrently: a pending `wait` delays nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import click

from cli.main import Settings, client_options, settings

__all__ = ["RESOURCES", "TOOLS", "Bridge", "register"]

POLL = 0.5  # seconds between reads of a subscribed resource (a changed one is announced)
WAIT_LIMIT = 3600.0  # the longest a `wait` call blocks (its `timeout`, if given, is capped at this)

S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
N = {"type": "number"}
B = {"type": "boolean"}
ANY: dict[str, Any] = {"description": "Any JSON value."}
LIST = {"type": "array", "items": {"type": "string"}}
SCOPE = {"type": "string", "description": 'The scope: "_shared" (default), an agent\'s own name, or "_view".'}
BRANCH = {"type": "string", "description": "Act on this state branch instead of the main line."}
FENCE = {
    "type": "object",
    "additionalProperties": {"type": "integer", "minimum": 1},
    "description": 'Claims this write depends on, as {"WORK": epoch} ("task:ID" for a task): refused with '
    "`fenced` unless still held at that epoch.",
}

Call = Callable[[Any, dict[str, Any]], Awaitable[Any]]


def _schema(props: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


TOOLS: dict[str, tuple[str, dict[str, Any], Call]] = {}


def tool(name: str, description: str, props: dict[str, Any], required: tuple[str, ...] = ()) -> Any:
    """Register `call(agent, args)` as the tool `name`."""

    def add(call: Call) -> Call:
        TOOLS[name] = (description, _schema(props, required), call)
        return call

    return add


def _state(agent: Any, k: dict[str, Any]) -> Any:
    return agent.state_at(k["branch"]) if k.get("branch") else agent.state


def _kw(k: dict[str, Any], *names: str) -> dict[str, Any]:
    """The optional arguments given (`if` is the SDK's `if_`)."""
    return {("if_" if n == "if" else n): k[n] for n in names if k.get(n) is not None}


# -- messages -------------------------------------------------------------------------------------------------


@tool(
    "send",
    "Send a message. `target` is an agent name, `a,b`, `room/*`, `room/name` or `all`; `body` any JSON. "
    "Returns its `seq` (pass it as `after` to `wait` or `messages` to see what comes next). `key`: an "
    "idempotency key (sending again with it returns the first seq, sends nothing); `allow_unknown`: send to a "
    "name that has not joined yet (else `unknown_recipient`).",
    {
        "target": S,
        "body": ANY,
        "kind": S,
        "reply_to": I,
        "priority": B,
        "fence": FENCE,
        "key": S,
        "allow_unknown": B,
    },
    ("target", "body"),
)
async def _send(a: Any, k: dict[str, Any]) -> Any:
    names = ("kind", "reply_to", "priority", "fence", "key", "allow_unknown")
    return {"seq": await a.send(k["target"], k["body"], **_kw(k, *names))}


@tool(
    "message_ack",
    "Mark everything addressed to this agent up to `seq` read (the read position never moves back); returns "
    "the position `upto` and how many messages are still `unread`.",
    {"seq": I},
    ("seq",),
)
async def _message_ack(a: Any, k: dict[str, Any]) -> Any:
    return await a.ack(k["seq"])


@tool(
    "messages",
    "Read the room's feed after seq `after` (default 0): broadcasts and this agent's directed messages, "
    "optionally only those addressed to `for`, of one `kind`, or not yet claimed; at most `limit` (100). "
    "`unread`: only what is addressed to this agent after its read position (see `message_ack`).",
    {"for": S, "after": I, "kind": S, "unclaimed": B, "limit": I, "unread": B},
)
async def _messages(a: Any, k: dict[str, Any]) -> Any:
    return {
        "messages": await a.list_messages(
            for_=k.get("for"),
            after=k.get("after", 0),
            kind=k.get("kind"),
            unclaimed=k.get("unclaimed", False),
            limit=k.get("limit", 100),
            unread=k.get("unread", False),
        )
    }


@tool(
    "message_claim",
    "Claim message `seq` for this agent, atomically; a second claimer gets `already_claimed` naming the holder.",
    {"seq": I},
    ("seq",),
)
async def _message_claim(a: Any, k: dict[str, Any]) -> Any:
    return {"holder": await a.claim_message(k["seq"])}


@tool(
    "wait",
    "Block until a message for `for` (default: this agent) arrives after seq `after` (default: after this "
    "call; `directed_only`: not broadcasts), or until the CEL `condition` is true (at once if it already "
    "is), whichever comes first; returns what woke it (a message wake: `messages`, every one waiting, up to "
    "100, and `message`, the first). Gives up with `timed_out` after `timeout` seconds. "
    "Other calls keep working while it waits.",
    {"for": S, "condition": S, "after": I, "directed_only": B, "timeout": N},
)
async def _wait(a: Any, k: dict[str, Any]) -> Any:
    raise AssertionError("served by Bridge.wait, which needs the bridge's settings")


# -- claims ---------------------------------------------------------------------------------------------------


@tool(
    "claim",
    "Lease `work` on file `paths` (renew: `renew` true). Refused with `claim_overlap` naming the holder, its "
    "work and paths. Returns the claim with its fencing `epoch`.",
    {"work": S, "paths": LIST, "ttl": N, "checkpoint": S, "renew": B},
    ("work",),
)
async def _claim(a: Any, k: dict[str, Any]) -> Any:
    claim = await a.claim(k["work"], k.get("paths", ()), **_kw(k, "ttl", "checkpoint", "renew"))
    return claim.view


@tool(
    "release",
    "Release the claim on `work`, leaving `checkpoint` for whoever claims it next.",
    {"work": S, "checkpoint": S, "fence": FENCE},
    ("work",),
)
async def _release(a: Any, k: dict[str, Any]) -> Any:
    await a.release(k["work"], **_kw(k, "checkpoint", "fence"))
    return {"released": k["work"]}


@tool(
    "handoff",
    "Hand this agent's live claim on `work` (and its checkpoint) to agent `to`.",
    {"work": S, "to": S, "fence": FENCE},
    ("work", "to"),
)
async def _handoff(a: Any, k: dict[str, Any]) -> Any:
    await a.handoff(k["work"], k["to"], **_kw(k, "fence"))
    return {"handed": k["work"], "to": k["to"]}


@tool("claims", "The room's live claims: holder, work, paths, expiry, checkpoint, epoch.", {})
async def _claims(a: Any, k: dict[str, Any]) -> Any:
    return {"claims": await a.claims()}


@tool(
    "intent",
    "Declare advisory intent to touch `paths` (no lease; empty paths clear it), shown on the board.",
    {"paths": LIST, "note": S},
    ("paths",),
)
async def _intent(a: Any, k: dict[str, Any]) -> Any:
    from hub.protocol import commands as c

    return await a.request(lambda: a.mutation(c.DeclareIntent, paths=tuple(k["paths"]), note=k.get("note")))


# -- the plan -------------------------------------------------------------------------------------------------


@tool(
    "task_declare",
    "Declare task `id` with `title`; it is ready once the tasks in `depends_on` are done. `parent` nests it; "
    'a parent with mode "seq" runs its children in `order`.',
    {"id": S, "title": S, "depends_on": LIST, "parent": S, "mode": S, "order": I, "epic": B},
    ("id", "title"),
)
async def _task_declare(a: Any, k: dict[str, Any]) -> Any:
    return await a.tasks.declare(
        k["id"], k["title"], **_kw(k, "depends_on", "parent", "mode", "order", "epic")
    )


@tool(
    "task_claim",
    "Take ready task `id` (refused with `conflict` if taken, `not_ready`, `seq_blocked`). Returns the task with "
    'its fencing `epoch` (fence later writes with {"task:ID": epoch}).',
    {"id": S},
    ("id",),
)
async def _task_claim(a: Any, k: dict[str, Any]) -> Any:
    return await a.tasks.claim(k["id"])


@tool(
    "task_update",
    "Update task `id`: `status` (pending, ready, in_progress, blocked, done, cancelled), `title`, `note`. Pass "
    "the `etag` last seen: a stale one gets `conflict` with the current task.",
    {"id": S, "status": S, "etag": I, "title": S, "note": S, "fence": FENCE},
    ("id",),
)
async def _task_update(a: Any, k: dict[str, Any]) -> Any:
    return await a.tasks.update(k["id"], **_kw(k, "status", "etag", "title", "note", "fence"))


@tool(
    "task_list",
    "The plan, ready work first; optionally only one `status`, only `ready` tasks, or a `parent`'s children.",
    {"status": S, "ready": B, "parent": S},
)
async def _task_list(a: Any, k: dict[str, Any]) -> Any:
    return {"tasks": await a.tasks.list(k.get("status"), k.get("ready", False), k.get("parent"))}


@tool("task_show", "One task in full: status, holder, dependencies, etag, notes.", {"id": S}, ("id",))
async def _task_show(a: Any, k: dict[str, Any]) -> Any:
    return await a.tasks.show(k["id"])


@tool("board", "The plan, live claims and declared intents in one view.", {})
async def _board(a: Any, k: dict[str, Any]) -> Any:
    return await a.board()


# -- state ----------------------------------------------------------------------------------------------------


@tool(
    "state_get",
    "Read state entry `key`: its value and version.",
    {"key": S, "scope": SCOPE, "branch": BRANCH},
    ("key",),
)
async def _state_get(a: Any, k: dict[str, Any]) -> Any:
    return await _state(a, k).get(k["key"], **_kw(k, "scope"))


@tool(
    "state_set",
    "Write state entry `key` = `value`. Only if the CEL gate `if` is true (else `precondition_failed`), only "
    "at version `if_version` (else `conflict` with the current entry). Returns the new version.",
    {"key": S, "value": ANY, "scope": SCOPE, "if": S, "if_version": I, "fence": FENCE, "branch": BRANCH},
    ("key", "value"),
)
async def _state_set(a: Any, k: dict[str, Any]) -> Any:
    return {
        "version": await _state(a, k).set(
            k["key"], k["value"], **_kw(k, "scope", "if", "if_version", "fence")
        )
    }


@tool(
    "state_init",
    "Create state entry `key` = `value` only if it is absent (else `already_exists`). Returns its version.",
    {"key": S, "value": ANY, "scope": SCOPE, "fence": FENCE, "branch": BRANCH},
    ("key", "value"),
)
async def _state_init(a: Any, k: dict[str, Any]) -> Any:
    return {"version": await _state(a, k).init(k["key"], k["value"], **_kw(k, "scope", "fence"))}


@tool(
    "state_cas",
    "Compare and set: write `value` only if `key` is at `version` (0: must be absent); else `conflict` "
    "carrying the current entry. Returns the new version.",
    {"key": S, "version": I, "value": ANY, "scope": SCOPE, "fence": FENCE, "branch": BRANCH},
    ("key", "version", "value"),
)
async def _state_cas(a: Any, k: dict[str, Any]) -> Any:
    return {"version": await _state(a, k).cas(k["key"], k["version"], k["value"], **_kw(k, "scope", "fence"))}


@tool(
    "state_increment",
    "Add `by` (default 1) to the number at `key`, atomically (absent counts as 0). Returns the new value.",
    {"key": S, "by": N, "scope": SCOPE, "fence": FENCE, "branch": BRANCH},
    ("key",),
)
async def _state_increment(a: Any, k: dict[str, Any]) -> Any:
    return {"value": await _state(a, k).increment(k["key"], k.get("by", 1), **_kw(k, "scope", "fence"))}


WRITE = {
    "type": "object",
    "properties": {"key": S, "value": ANY, "scope": SCOPE, "increment": B, "if_version": I},
    "required": ["key"],
    "additionalProperties": False,
}


@tool(
    "state_batch",
    "Several writes in one step, all or nothing, optionally gated by the CEL `if`. Each write is "
    '{"key", "value", "scope"?, "if_version"?, "increment"?} (increment: add `value` to the number).',
    {"writes": {"type": "array", "items": WRITE}, "if": S, "fence": FENCE, "branch": BRANCH},
    ("writes",),
)
async def _state_batch(a: Any, k: dict[str, Any]) -> Any:
    return {"writes": await _state(a, k).batch(k["writes"], **_kw(k, "if", "fence"))}


@tool(
    "state_delete",
    "Delete state entry `key` (only at `if_version`, if given).",
    {"key": S, "scope": SCOPE, "if_version": I, "fence": FENCE, "branch": BRANCH},
    ("key",),
)
async def _state_delete(a: Any, k: dict[str, Any]) -> Any:
    await _state(a, k).delete(k["key"], **_kw(k, "scope", "if_version", "fence"))
    return {"deleted": k["key"]}


@tool(
    "state_view",
    "Store a computed view `key` in scope `_view`: the CEL `expr`, kept up to date. Returns its value now.",
    {"key": S, "expr": S, "branch": BRANCH},
    ("key", "expr"),
)
async def _state_view(a: Any, k: dict[str, Any]) -> Any:
    return {"value": await _state(a, k).view(k["key"], k["expr"])}


@tool(
    "state_list",
    "Every state entry (of one `scope`, if given), views resolved.",
    {"scope": SCOPE, "branch": BRANCH},
)
async def _state_list(a: Any, k: dict[str, Any]) -> Any:
    return {"entries": await _state(a, k).list(k.get("scope"))}


@tool(
    "eval",
    "Evaluate a CEL expression against the room (state.<scope>.<key>, agents[name].status, messages.count, "
    "claims[work].holder, tasks[id].status) and return its value.",
    {"expr": S, "branch": BRANCH},
    ("expr",),
)
async def _eval(a: Any, k: dict[str, Any]) -> Any:
    return {"value": await a.eval(k["expr"], k.get("branch"))}


# -- branches -------------------------------------------------------------------------------------------------


@tool(
    "branch_create",
    "Create state branch `branch` (from branch `from`, else the main line).",
    {"branch": S, "from": S},
    ("branch",),
)
async def _branch_create(a: Any, k: dict[str, Any]) -> Any:
    return await a.state.branch_create(k["branch"], k.get("from"))


@tool("branch_list", "The room's state branches.", {})
async def _branch_list(a: Any, k: dict[str, Any]) -> Any:
    return {"branches": await a.state.branches()}


@tool("branch_diff", "What branch `branch` changed against its source.", {"branch": S}, ("branch",))
async def _branch_diff(a: Any, k: dict[str, Any]) -> Any:
    return await a.state.branch_diff(k["branch"])


@tool(
    "branch_merge",
    "Merge branch `branch` into its source; refused with `conflict` listing keys changed on both sides.",
    {"branch": S},
    ("branch",),
)
async def _branch_merge(a: Any, k: dict[str, Any]) -> Any:
    return await a.state.branch_merge(k["branch"])


# -- agents ---------------------------------------------------------------------------------------------------


@tool("agents", "Presence of every agent in the room: status, waiting_on, last_heartbeat, role.", {})
async def _agents(a: Any, k: dict[str, Any]) -> Any:
    return {"agents": await a.agents()}


@tool(
    "heartbeat",
    "Say this agent is alive, optionally with a `status` (active, busy, idle, done).",
    {"status": S},
)
async def _heartbeat(a: Any, k: dict[str, Any]) -> Any:
    return await a.heartbeat(k.get("status"))


@tool("status", "The hub: version, uptime, rooms, agents online, log size.", {})
async def _status(a: Any, k: dict[str, Any]) -> Any:
    return await a.status()


# -- explanations (`synapse why`, `synapse state history`) ------------------------------------------------------


@tool(
    "why",
    "Explain why something is stuck, before guessing. `kind` task: whether task `what` (an id) is ready and, "
    "if not, the chain of open dependencies and seq siblings blocking it with each one's status and holder, "
    "down to `actionable` (the tasks someone can act on now: claim a ready one, or ask its holder). claim: "
    "who holds claim `what` (a work name), since when, lease (session, grace or ttl), expiry, last renewal "
    "and heartbeat, epoch, paths. wait: what the armed waiter `what` waits on, since when, whose it is. "
    "condition: the CEL expression `what` with each sub-expression's value; `false_part` names the one that "
    "keeps it false. Reads only. Errors: not_found, bad_expression.",
    {"kind": {"type": "string", "enum": ["task", "claim", "wait", "condition"]}, "what": S},
    ("kind", "what"),
)
async def _why(a: Any, k: dict[str, Any]) -> Any:
    return await a.why(k["kind"], k["what"])


@tool(
    "state_history",
    "Every version of state entry `key`, newest first: version, value (or deleted), who wrote it (`by`), when "
    "(`at`) and the command (`op`); read from the hub's log, so it costs a scan back to the oldest version "
    "returned. `limit` 1..1000 (default 20); `complete` says whether the first version was reached.",
    {"key": S, "scope": SCOPE, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}},
    ("key",),
)
async def _state_history(a: Any, k: dict[str, Any]) -> Any:
    return await a.state.history(k["key"], **_kw(k, "scope", "limit"))


# -- resources ------------------------------------------------------------------------------------------------

RESOURCES: dict[str, tuple[str, Call]] = {
    "feed": ("The room's latest 100 messages (broadcasts and this agent's directed ones).", _messages),
    "board": ("The plan, live claims and declared intents.", _board),
    "plan": ("Every task of the plan, ready work first.", _task_list),
    "agents": ("Presence of every agent in the room.", _agents),
    "state": ("Every state entry, views resolved.", _state_list),
}


async def _feed_tail(a: Any, k: dict[str, Any]) -> Any:
    """The latest 100 messages: the feed read from 100 before its newest seq."""
    newest = await a.eval("messages.count")
    after = max(0, int(newest) - 100) if isinstance(newest, int) else 0
    return await _messages(a, {"after": after, "limit": 100})


RESOURCES["feed"] = (RESOURCES["feed"][0], _feed_tail)


class Bridge:
    """One agent session to the hub shared by every MCP call, and the MCP server around it."""

    def __init__(self, s: Settings) -> None:
        self.settings = s
        self.agent: Any = None
        self.lock = asyncio.Lock()
        self.watchers: dict[str, tuple[int, asyncio.Task[None] | None]] = {}  # uri → (subscribers, task)
        self.sessions: dict[str, set[Any]] = {}  # uri → sessions subscribed the handshake-era way
        from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler

        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)

    @property
    def prefix(self) -> str:
        return f"synapse://{self.settings.room}/"

    async def connected(self) -> Any:
        """The agent, connected on first use (it reconnects by itself; a first connection that failed is tried
        again on the next call)."""
        async with self.lock:
            if self.agent is None:
                from agent_sdk.aio import Agent

                s = self.settings
                agent = Agent(
                    s.name or "",
                    token=s.token,
                    admin_token=s.admin_token,
                    invite=s.invite,
                    stream=False,  # nothing reads the message stream here: it would only grow
                    **s.agent_options(),
                )
                await agent.connect()
                self.agent = agent
            return self.agent

    async def close(self) -> None:
        for _count, task in self.watchers.values():
            if task is not None:
                task.cancel()
        self.listen.close()
        if self.agent is not None:
            await self.agent.close()

    # -- tools --------------------------------------------------------------------------------------------

    async def call(self, name: str, args: dict[str, Any]) -> tuple[Any, bool]:
        """(result, failed): a hub refusal or bad arguments are a tool error with a stable code."""
        from hub.protocol.errors import HubError

        entry = TOOLS.get(name)
        if entry is None:
            return _error("not_found", f"no tool {name!r}; tools/list names them"), True
        why = _invalid(entry[1], args)
        if why is not None:
            return _error("bad_request", f"{name}: {why} (see its inputSchema)"), True
        try:
            if name == "wait":
                return await self.wait(args), False
            return await entry[2](await self.connected(), args), False
        except HubError as exc:
            return _error(str(exc.code), exc.message, exc.detail), True
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # arguments of the wrong kind
            return _error("bad_request", f"{name}: invalid arguments: {exc}"[:500]), True

    async def wait(self, k: dict[str, Any]) -> Any:
        """The first of: messages for `for` after `after` (all those waiting), the CEL `condition` true. One subscription on the
        shared session at a time (dropped when the call ends or is cancelled): a wait holds up no other call."""
        from hub.protocol.errors import Code, HubError

        agent = await self.connected()
        timeout = min(max(float(k.get("timeout", WAIT_LIMIT)), 0.0), WAIT_LIMIT)  # also past a float's range
        try:
            return await asyncio.wait_for(self._wake(agent, k), timeout)
        except TimeoutError:
            raise HubError(Code.TIMED_OUT, f"nothing woke the wait in {timeout}s") from None

    async def _wake(self, agent: Any, k: dict[str, Any]) -> Any:
        """Read the feed for a message addressed to `for` past the cursor (default: the newest seq now); if none
        fits, wait until the feed grows past what was read (or the condition holds), and read again."""
        condition: str | None = k.get("condition")
        for_ = k.get("for") or (self.settings.name if condition is None else None)
        directed_only = bool(k.get("directed_only", False))
        cursor: int | None = k.get("after")
        while True:
            grown = None
            if for_ is not None:
                newest = int(await agent.eval("messages.count"))  # before the read: nothing slips between
                cursor = newest if cursor is None else cursor
                page = await agent.list_messages(for_=for_, after=cursor, limit=100)
                found = [m for m in page if not directed_only or for_ in m["to"] or m.get("priority")]
                if found:  # every message waiting (up to a page): one turn reads the whole burst
                    return {"woken_by": "message", "message": found[0], "messages": found}
                if len(page) == 100:
                    cursor = page[-1]["seq"]
                    continue
                cursor = max(cursor, newest)
                grown = f"messages.count > {cursor}"
            if condition is None:
                await agent.wait_for(grown)
                continue
            if grown is None:
                return {
                    "woken_by": "condition",
                    "condition": condition,
                    "value": await agent.wait_for(condition),
                }
            await agent.wait_for(f"({condition}) || {grown}")
            value = await agent.eval(condition)
            if value is True:
                return {"woken_by": "condition", "condition": condition, "value": value}

    # -- resources ----------------------------------------------------------------------------------------

    def kind_of(self, uri: str) -> str | None:
        kind = uri[len(self.prefix) :] if uri.startswith(self.prefix) else None
        return kind if kind in RESOURCES else None

    async def read(self, uri: str) -> str:
        from hub.protocol.codec import encode

        kind = self.kind_of(uri)
        if kind is None:
            from mcp.shared.exceptions import MCPError
            from mcp.types import INVALID_PARAMS

            raise MCPError(INVALID_PARAMS, f"no resource {uri!r}; resources/list names them")
        return encode(await RESOURCES[kind][1](await self.connected(), {})).decode()

    async def watch(self, uri: str) -> None:
        """Announce changes of `uri` from now on: its content now is read before this returns, so a change
        made after the subscription is acknowledged is never taken for the starting point."""
        count, task = self.watchers.get(uri, (0, None))
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._watch(uri, await self._digest(uri)))
        self.watchers[uri] = (count + 1, task)

    def unwatch(self, uri: str) -> None:
        count, task = self.watchers.get(uri, (0, None))
        if count <= 1:
            self.watchers.pop(uri, None)
            if task is not None:
                task.cancel()
        else:
            self.watchers[uri] = (count - 1, task)

    async def _digest(self, uri: str) -> bytes | None:
        from hub.protocol.errors import HubError

        try:
            return hashlib.sha256((await self.read(uri)).encode()).digest()
        except HubError:  # the hub is away: nothing to compare until it is back
            return None

    async def _watch(self, uri: str, seen: bytes | None) -> None:
        """Read the resource every POLL seconds while someone listens; announce each change."""
        from mcp.server.subscriptions import ResourceUpdated

        while True:
            await asyncio.sleep(POLL)
            digest = await self._digest(uri)
            if digest is None:
                continue
            if seen is not None and digest != seen:
                await self.bus.publish(ResourceUpdated(uri=uri))
                for session in list(self.sessions.get(uri, ())):
                    try:
                        await session.send_resource_updated(uri)
                    except Exception:  # a session that went away: forget it
                        self.sessions.get(uri, set()).discard(session)
            seen = digest

    # -- the MCP server -----------------------------------------------------------------------------------

    def server(self) -> Any:
        from mcp import types
        from mcp.server.lowlevel import Server

        from hub.version import __version__

        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(
                tools=[
                    types.Tool(name=n, description=d, input_schema=schema)
                    for n, (d, schema, _c) in TOOLS.items()
                ]
            )

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            from hub.protocol.codec import encode

            result, failed = await self.call(params.name, dict(params.arguments or {}))
            text = encode(result).decode()
            structured = json.loads(text) if not failed and isinstance(result, dict) else None
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=text)],
                structured_content=structured,
                is_error=failed,
            )

        async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
            return types.ListResourcesResult(
                resources=[
                    types.Resource(
                        uri=f"{self.prefix}{kind}", name=kind, description=d, mime_type="application/json"
                    )
                    for kind, (d, _c) in RESOURCES.items()
                ]
            )

        async def read_resource(
            ctx: Any, params: types.ReadResourceRequestParams
        ) -> types.ReadResourceResult:
            from mcp.shared.exceptions import MCPError
            from mcp.types import INTERNAL_ERROR

            from hub.protocol.errors import HubError

            uri = str(params.uri)
            try:
                text = await self.read(uri)
            except HubError as exc:
                raise MCPError(INTERNAL_ERROR, f"{exc.code}: {exc.message}") from None
            return types.ReadResourceResult(
                contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
            )

        async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
            uri = str(params.uri)
            if self.kind_of(uri) is not None and ctx.session not in self.sessions.setdefault(uri, set()):
                self.sessions[uri].add(ctx.session)
                await self.watch(uri)
            return types.EmptyResult()

        async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
            uri = str(params.uri)
            if ctx.session in self.sessions.get(uri, set()):
                self.sessions[uri].discard(ctx.session)
                self.unwatch(uri)
            return types.EmptyResult()

        async def listen(ctx: Any, params: types.SubscriptionsListenRequestParams) -> Any:
            uris: list[str] = []
            try:
                for uri in dict.fromkeys(params.notifications.resource_subscriptions or ()):
                    if self.kind_of(uri) is not None:
                        await self.watch(uri)
                        uris.append(uri)
                return await self.listen(ctx, params)
            finally:
                for uri in uris:
                    self.unwatch(uri)

        return Server(
            "synapse",
            version=__version__,
            instructions=f"Synapse Hub room {self.settings.room!r}, acting as agent {self.settings.name!r}: "
            "messages, claims, the plan, shared state and CEL conditions. Tools refuse with a stable error "
            'code in {"error": {"code", "message", ...}}.',
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources,
            on_read_resource=read_resource,
            on_subscribe_resource=subscribe,
            on_unsubscribe_resource=unsubscribe,
            on_subscriptions_listen=listen,
        )


KINDS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _invalid(schema: dict[str, Any], args: dict[str, Any]) -> str | None:
    """Why `args` do not fit the tool's schema at the top level (the hub checks what lies deeper), or None."""
    props = schema["properties"]
    missing = [r for r in schema["required"] if r not in args]
    if missing:
        return f"missing {', '.join(missing)}"
    unknown = sorted(set(args) - set(props))
    if unknown:
        return f"unknown argument {', '.join(unknown)[:200]}"
    for key, value in args.items():
        kind = props[key].get("type")
        if kind is None:  # any JSON value
            continue
        wrong = isinstance(value, bool) and kind != "boolean"  # JSON true is no number
        if wrong or not isinstance(value, KINDS[kind]):
            return f"{key} must be of type {kind}"
    return None


def _error(code: str, message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **(detail or {})}}


async def serve_stdio(bridge: Bridge) -> None:
    from mcp.server.stdio import stdio_server

    server = bridge.server()
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await bridge.close()


async def serve_http(bridge: Bridge, host: str, port: int) -> None:
    """Streamable HTTP at http://HOST:PORT/mcp; prints that URL once it listens."""
    import socket

    import uvicorn

    class _Web(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """SIGTERM or SIGINT shuts down gracefully and exits 0 (uvicorn's own raises the signal again)."""
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    server = bridge.server()
    app = server.streamable_http_app(host=host)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    web = _Web(config)

    async def announce() -> None:
        while not web.started:
            await asyncio.sleep(0.01)
        click.echo(f"synapse mcp listening on http://{shown}:{bound}/mcp", err=False)
        sys.stdout.flush()

    announcer = asyncio.get_running_loop().create_task(announce())
    try:
        await web.serve(sockets=[sock])
    finally:
        announcer.cancel()
        await bridge.close()


def register(group: click.Group) -> None:
    @group.command("mcp")
    @click.option("--http", "http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
    @click.option(
        "--host", default="127.0.0.1", show_default=True, help="With --http: the address to listen on."
    )
    @click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=8877,
        show_default=True,
        help="With --http (0: any free).",
    )
    @client_options
    @click.pass_context
    def mcp(ctx: click.Context, http: bool, host: str, port: int) -> None:
        """Serve the hub's verbs as Model Context Protocol tools, and the room's feed, board, plan, agents and
        state as resources (synapse://ROOM/feed ...), acting as --name; stdio unless --http."""
        s = settings(ctx)
        if not s.name:
            raise click.UsageError("the tools act as an agent: give --name NAME (or set SYNAPSE_NAME)")
        bridge = Bridge(s)
        try:
            asyncio.run(serve_http(bridge, host, port) if http else serve_stdio(bridge))
        except KeyboardInterrupt:
            pass
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
