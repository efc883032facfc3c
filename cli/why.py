"""`synapse why task ID | claim WORK | wait WAITER | condition EXPR`: why something is stuck (reads only)."""

from __future__ import annotations

from typing import Any

import click

from cli.main import client, client_options, settings
from cli.output import clean, emit, fmt_time
from hub.protocol.codec import encode

__all__ = ["register"]

_HOW = {"depends_on": "depends on", "seq": "after (seq)", "child": "child", "task": "task"}


def _value(value: Any) -> str:
    """A CEL value as JSON: a string shows its quotes, so `"1"` and `1` read differently."""
    return clean(encode(value).decode())


def _task_line(link: dict[str, Any]) -> str:
    status = link["status"]
    holder = link.get("holder")
    text = f"{_HOW.get(link['reason'], link['reason'])} {clean(link['id'])}: {clean(status)}"
    if holder:
        text += f", held by {clean(holder)}"
    elif status == "ready":
        text += ", unclaimed"
    if link.get("missing"):
        text += " (never declared)"
    if link.get("repeated"):
        text += " (shown above)"
    if link.get("actionable"):
        text += "  <- act: " + ("claim it" if status == "ready" else f"{clean(holder)} is on it")
    return text


def _head(got: dict[str, Any]) -> str:
    status, holder = got["status"], got.get("holder")
    if got["ready"]:
        return "ready to claim"
    if status == "in_progress":
        return f"in progress, held by {clean(holder)}"
    if status in ("done", "cancelled"):
        return clean(status)
    if status == "ready":
        return "ready in the plan, but blocked by what is below"
    return f"not ready ({clean(status)})"


def _task_text(got: dict[str, Any]) -> str:
    lines = [f"task {clean(got['task'])}: {_head(got)}"]
    stack = [(b, 1) for b in reversed(got["chain"].get("blockers", []))]
    while stack:
        link, depth = stack.pop()
        lines.append("  " * depth + _task_line(link))
        stack.extend((b, depth + 1) for b in reversed(link.get("blockers", [])))
    if got.get("truncated"):
        lines.append("  ... (the chain goes on; shown up to its bound)")
    if not got["ready"] and got["status"] not in ("done", "cancelled"):
        acts = ", ".join(clean(a) for a in got["actionable"]) or "none (blocked, missing or done tasks only)"
        lines.append(f"actionable now: {acts}")
    return "\n".join(lines)


def _claim_text(got: dict[str, Any]) -> str:
    lease = got["lease"]
    until = {
        "session": "held while the holder's session lives",
        "grace": f"its session dropped: lapses at {fmt_time(got.get('expires'))} unless the holder returns",
        "ttl": f"lapses at {fmt_time(got.get('expires'))} unless renewed",
    }.get(lease, lease)
    lines = [
        f"claim {clean(got['work'])}: held by {clean(got['holder'])} since {fmt_time(got['since'])}"
        f" (epoch {got['epoch']})",
        f"  lease: {clean(lease)}, {until}",
        f"  last renewal: {fmt_time(got['renewed_at']) if got.get('renewed_at') else 'never'}",
        f"  holder: {clean(got.get('holder_status') or 'unknown')}, {got['holder_sessions']} session(s),"
        f" last heartbeat {fmt_time(got.get('last_heartbeat'))}",
        "  paths: " + (", ".join(clean(p) for p in got["paths"]) or "(none)"),
    ]
    if got.get("checkpoint"):
        lines.append(f"  checkpoint: {clean(got['checkpoint'])}")
    return "\n".join(lines)


def _wait_text(got: dict[str, Any]) -> str:
    lines = [f"waiter {clean(got['waiter'])} of {clean(got['owner'])}, armed {fmt_time(got.get('since'))}"]
    if got.get("for"):
        only = " (directed only)" if got["directed_only"] else ""
        lines.append(f"  waits for messages to {clean(got['for'])}{only} after seq {got['armed']}")
        lines.append(f"  messages there that would wake it: {got['waking']}")
    if got.get("condition") is not None:
        now = f"error: {clean(got['error'])}" if got.get("error") else _value(got.get("value"))
        lines.append(f"  waits for condition: {clean(got['condition'])}")
        lines.append(f"  its value now: {now}")
    return "\n".join(lines)


def _condition_text(got: dict[str, Any]) -> str:
    lines = [("holds" if got["holds"] else "does not hold") + f": {clean(got['expr'])}"]
    for part in got.get("parts", [])[1:]:
        shown = f"error: {clean(part['error'])}" if part.get("error") else _value(part.get("value"))
        mark = "  <- not true" if part.get("blame") else ""
        lines.append("  " * part["depth"] + f"{clean(part['expr'])} = {shown}{mark}")
    if got.get("error"):
        lines.append(f"  error: {clean(got['error'])}")
    elif not got["holds"]:
        lines.append(f"  value: {_value(got.get('value'))}")
    if got.get("truncated"):
        lines.append("  ... (more sub-expressions than shown)")
    if got.get("false_part") and got["false_part"] != got["expr"]:
        lines.append(f"false because of: {clean(got['false_part'])}")
    return "\n".join(lines)


def register(group: click.Group) -> None:
    @group.group("why")
    def why() -> None:
        """Why something is stuck: a task not ready, a claim in the way, a waiter not woken, a condition not
        true. Reads only (nothing is logged); `--json` prints the hub's whole answer.

        Exit 1 with `not_found` for an unknown task, claim or waiter; `bad_expression` for bad CEL.
        """

    def _show(ctx: click.Context, kind: str, what: str, text: Any) -> None:
        got = client(ctx).why(kind, what)
        emit(settings(ctx).json, got, text(got))

    @why.command("task")
    @click.argument("task_id", metavar="ID")
    @client_options
    @click.pass_context
    def task(ctx: click.Context, task_id: str) -> None:
        """Whether task ID is ready and, if not, the chain of what blocks it: open dependencies (`depends
        on`, transitively), the earlier seq sibling (`after (seq)`) and an epic's open children, each with
        its status and holder, down to the tasks someone can act on now."""
        _show(ctx, "task", task_id, _task_text)

    @why.command("claim")
    @click.argument("work", metavar="WORK")
    @client_options
    @click.pass_context
    def claim(ctx: click.Context, work: str) -> None:
        """Who holds the live claim WORK, since when, its lease (session-bound, grace after its session
        dropped, or TTL) and expiry, its last renewal, the holder's last heartbeat, its epoch and paths."""
        _show(ctx, "claim", work, _claim_text)

    @why.command("wait")
    @click.argument("waiter", metavar="WAITER")
    @client_options
    @click.pass_context
    def wait(ctx: click.Context, waiter: str) -> None:
        """What the armed waiter WAITER (the name given to `synapse wait --waiter`) waits on, since when, its
        owner, how many messages already there would wake it, and its condition's current value."""
        _show(ctx, "wait", waiter, _wait_text)

    @why.command("condition")
    @click.argument("expr", metavar="EXPR")
    @client_options
    @click.pass_context
    def condition(ctx: click.Context, expr: str) -> None:
        """The CEL expression EXPR's value now, with each sub-expression (through &&, || and !, and the
        operands of comparisons) and the value it read, marking the ones that keep it from holding.
        Evaluation errors are shown per sub-expression; at most 50 are shown."""
        _show(ctx, "condition", expr, _condition_text)
