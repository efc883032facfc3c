"""The verb table: what Agent (async) and SyncAgent (blocking) both offer, with one name, one argument list and
one return type per verb, and the shapers that turn a hub reply into that return value. agent_sdk.parity.drift()
lists where a client departs from the table (tests/sdk/test_parity.py keeps it empty)."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["HANDLES", "TRANSPORT", "VERBS", "Verb"]


class Verb(NamedTuple):
    """A verb's return annotation in Agent (what the coroutine returns, or the async iterator / handle) and
    in SyncAgent when it differs only by blocking (an Iterator for an AsyncIterator, SyncClaim for Claim)."""

    returns: str
    sync_returns: str | None = None


VERBS: dict[str, Verb] = {
    # the agent
    "join": Verb("str"),
    "send": Verb("int"),
    "messages": Verb("AsyncIterator[Message]", "Iterator[Message]"),
    "list_messages": Verb("list[dict[str, Any]]"),
    "claim_message": Verb("str"),
    "ack": Verb("dict[str, Any]"),
    "heartbeat": Verb("dict[str, Any]"),
    "claim": Verb("Claim", "SyncClaim"),
    "release": Verb("None"),
    "handoff": Verb("None"),
    "reoffer_claim": Verb("dict[str, Any]"),
    "reoffer_task": Verb("dict[str, Any]"),
    "claims": Verb("list[dict[str, Any]]"),
    "check_paths": Verb("list[dict[str, Any]]"),  # the git guard
    "intent": Verb("dict[str, Any]"),
    "board": Verb("dict[str, Any]"),
    "notices": Verb("AsyncIterator[Notice]", "Iterator[Notice]"),
    "state_at": Verb("AsyncState", "SyncState"),
    "state": Verb("AsyncState", "SyncState"),
    "eval": Verb("Any"),
    "subscribe": Verb("AsyncIterator[Trigger]", "Iterator[Trigger]"),
    "wait": Verb("list[Message]"),
    "wait_for": Verb("Any"),
    "tasks": Verb("AsyncTasks", "SyncTasks"),
    "agents": Verb("list[dict[str, Any]]"),
    "status": Verb("dict[str, Any]"),
    # explanations (`synapse why`, `synapse state history`)
    "why": Verb("dict[str, Any]"),
    "state.history": Verb("dict[str, Any]"),
    # agent.state / agent.state_at(branch)
    "state.get": Verb("dict[str, Any]"),
    "state.list": Verb("list[dict[str, Any]]"),
    "state.set": Verb("int"),
    "state.init": Verb("int"),
    "state.cas": Verb("int"),
    "state.increment": Verb("Any"),
    "state.batch": Verb("list[dict[str, Any]]"),
    "state.delete": Verb("None"),
    "state.view": Verb("Any"),
    "state.branch_create": Verb("dict[str, Any]"),
    "state.branch_merge": Verb("dict[str, Any]"),
    "state.branch_diff": Verb("dict[str, Any]"),
    "state.branches": Verb("list[dict[str, Any]]"),
    # agent.tasks
    "tasks.declare": Verb("dict[str, Any]"),
    "tasks.claim": Verb("dict[str, Any]"),
    "tasks.update": Verb("dict[str, Any]"),
    "tasks.list": Verb("list[dict[str, Any]]"),
    "tasks.show": Verb("dict[str, Any]"),
}

HANDLES = frozenset({"SyncState", "SyncTasks"})  # a namespace object: neither awaited nor blocking

# Public names that are the transport's, not verbs (besides BaseClient's, shared by both): how each client
# connects and moves frames. The blocking client also serves the CLI: one waiter per connection (`arm`,
# `woken`), raw frames (`post`, `next_frame`), the hub's whole replies (`replies`), an explicit `attach`.
TRANSPORT: dict[str, frozenset[str]] = {
    "Agent": frozenset({"connect", "close", "request"}),
    "SyncAgent": frozenset(
        {"connect", "close", "request", "act", "post", "next_frame", "first_join", "attach", "arm", "woken"}
        | {"failover", "failing_over"}
        | {"replies"}
    ),
}


# -- shapers: a hub reply → the verb's return value (both clients use these) ---------------------------------


def handed(wake: Any) -> list[Any]:
    """The messages a Wake frame hands over (`messages`; only `message` from a hub before the wake governor)."""
    if wake.messages:
        return list(wake.messages)
    return [] if wake.message is None else [wake.message]


def seq(reply: dict[str, Any]) -> int:
    return int(reply["seq"])


def version(reply: dict[str, Any]) -> int:
    return int(reply["version"])


def holder(reply: dict[str, Any]) -> str:
    return str(reply["holder"])


def value(reply: dict[str, Any]) -> Any:
    return reply["value"]


def evaluated(reply: dict[str, Any], expr: str) -> Any:
    """An eval's value; an evaluation error → HubError `bad_request`."""
    if "error" in reply:
        from hub.protocol.errors import Code, HubError

        raise HubError(Code.BAD_REQUEST, f"evaluation failed: {reply['error']}", {"expression": expr})
    return reply["value"]
