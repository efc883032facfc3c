"""Explanations: why a task is not ready, who holds a claim, what a waiter waits on, what a condition reads,
and a key's versions read back from the log (CLI.md "Explanations"). Reads only: no events.

Each reaches the concepts it explains through their public functions; nothing here is kept between calls.
"""

from __future__ import annotations

from typing import Any

from hub.core import agents, cel, claims, conditions, feed, rooms, state, tasks
from hub.core.effects import Context, HistoryRead, Outcome, ReadHistory
from hub.core.world import Room, World
from hub.protocol import commands as c
from hub.protocol import results as r
from hub.protocol.codec import encode
from hub.protocol.errors import Code, HubError
from hub.protocol.events import StateDeleted, StateWritten, ViewDefined

__all__ = [
    "HISTORY_LIMIT",
    "MAX_LINKS",
    "MAX_PARTS",
    "MAX_SHOWN_BYTES",
    "decide_claim",
    "decide_condition",
    "decide_history",
    "decide_history_read",
    "decide_task",
    "decide_wait",
]

MAX_LINKS = 100  # tasks shown in one `why task` chain
MAX_PARTS = 50  # sub-expressions shown by `why condition`
MAX_SHOWN_BYTES = 1024  # a larger value read by a sub-expression or a waiter's condition is summarised
HISTORY_LIMIT = 1000  # versions one `state history` returns at most


def _room(w: World, cmd: Any, what: str, name: str) -> Room:
    """The room a read explains (the same read rules as every read); `not_found` naming `what` if none."""
    room = agents.reader(w, cmd).room
    if room is None:
        raise HubError(Code.NOT_FOUND, f"no {what} {name!r}", {"what": what, what: name})
    return room


def _shown(value: Any) -> Any:
    """A value as an explanation shows it: as it is, or a summary when it is large."""
    try:
        size = len(encode(value))
    except (TypeError, ValueError, OverflowError):
        return f"<{type(value).__name__}>"
    if size <= MAX_SHOWN_BYTES:
        return value
    if isinstance(value, dict | list):
        return f"<{type(value).__name__} of {len(value)} items, {size} bytes>"
    return f"<{type(value).__name__} of {size} bytes>"


# -- why task ----------------------------------------------------------------------------------------------


def _ready(plan: tasks.Plan, task: tasks.Task) -> bool:
    """Claimable now (SPEC: Plan): ready, not an epic, no earlier seq sibling open."""
    return task.status == "ready" and not task.epic and not plan.seq_blockers(task)


def _blockers(plan: tasks.Plan, task: tasks.Task) -> list[tuple[str, str]]:
    """What keeps `task` from being done or claimable, each with how: open dependencies, seq siblings, and
    for an epic its open children."""
    found = [(d, "depends_on") for d in plan.open_dependencies(task)]
    found += [(b, "seq") for b in plan.seq_blockers(task)]
    if task.epic:
        found += [
            (child, "child")
            for child in plan.children.get(task.id, ())
            if plan.tasks[child].status in tasks.OPEN
        ]
    return found


class _Chain:
    """The walk of one `why task`: tasks seen, links left, actionable tasks found."""

    __slots__ = ("actionable", "left", "plan", "seen", "truncated")

    def __init__(self, plan: tasks.Plan) -> None:
        self.plan = plan
        self.seen: set[str] = set()
        self.left = MAX_LINKS
        self.actionable: list[str] = []
        self.truncated = False

    def link(self, task_id: str, reason: str) -> r.TaskLink:
        task = self.plan.tasks.get(task_id)
        if task is None:
            return r.TaskLink(id=task_id, status="missing", holder=None, reason=reason, missing=True)
        link = r.TaskLink(id=task.id, status=task.status, holder=task.holder, reason=reason, title=task.title)
        if task.id in self.seen:
            link.repeated = True
            return link
        self.seen.add(task.id)
        if task.status not in tasks.OPEN:
            return link
        blockers = _blockers(self.plan, task)
        if not blockers and not task.epic and task.status in ("ready", "in_progress"):
            link.actionable = True
            self.actionable.append(task.id)
        for blocker, how in blockers:
            if self.left <= 0:
                self.truncated = True
                break
            self.left -= 1
            link.blockers.append(self.link(blocker, how))
        return link


def decide_task(w: World, cmd: c.WhyTask, ctx: Context) -> Outcome:
    """Why a task is (not) ready: its open dependencies (transitively), the seq siblings before it and an
    epic's open children, down to the tasks someone can act on now."""
    room = _room(w, cmd, "task", cmd.task)
    plan = room.part(tasks.Plan)
    task = plan.get(cmd.task)
    chain = _Chain(plan)
    root = chain.link(task.id, "task")
    out = Outcome()
    out.reply(
        ctx,
        cmd.id,
        r.TaskWhy(
            task=task.id,
            ready=_ready(plan, task),
            status=task.status,
            holder=task.holder,
            chain=root,
            actionable=chain.actionable,
            truncated=chain.truncated,
        ),
    )
    return out


# -- why claim ---------------------------------------------------------------------------------------------


def decide_claim(w: World, cmd: c.WhyClaim, ctx: Context) -> Outcome:
    """Who holds a live claim, since when, by what lease and until when, at which epoch."""
    room = _room(w, cmd, "claim", cmd.work)
    held = room.part(claims.Claims).current(cmd.work, ctx.now)
    if held is None:
        raise HubError(Code.NOT_FOUND, f"no live claim {cmd.work!r}", {"what": "claim", "work": cmd.work})
    view = held.view()
    roster = room.part(agents.Roster)
    agent = roster.agents.get(held.holder)
    presence = agents.presence(roster, agent) if agent is not None else None
    out = Outcome()
    out.reply(
        ctx,
        cmd.id,
        r.ClaimWhy(
            work=view.work,
            holder=view.holder,
            paths=view.paths,
            lease=view.held_by,
            since=view.granted_at,
            expires=view.expires,
            epoch=view.epoch,
            renewed_at=held.renewed_at,
            last_heartbeat=None if presence is None else presence.last_heartbeat,
            holder_status=None if presence is None else presence.status,
            holder_sessions=0 if presence is None else presence.sessions,
            checkpoint=view.checkpoint,
        ),
    )
    return out


# -- why wait ----------------------------------------------------------------------------------------------


def decide_wait(w: World, cmd: c.WhyWait, ctx: Context) -> Outcome:
    """What an armed waiter waits on, since when, whose it is, what would wake it, its condition's value."""
    room = _room(w, cmd, "waiter", cmd.waiter)
    waiter = room.part(agents.Waiters).by_name.get(cmd.waiter)
    if waiter is None:
        raise HubError(
            Code.NOT_FOUND, f"no armed waiter {cmd.waiter!r}", {"what": "waiter", "waiter": cmd.waiter}
        )
    waking = 0
    if waiter.for_ is not None:
        messages = room.part(feed.Feed)
        waking = sum(
            1
            for ev in feed.matching(messages, waiter.after, waiter.for_, None, False)
            if feed.addressed(ev, waiter.for_, waiter.directed_only)
        )
    result = r.WaitWhy(
        waiter=waiter.name,
        owner=waiter.owner,
        for_=waiter.for_,
        directed_only=waiter.directed_only,
        since=waiter.at,
        armed=waiter.after,
        waking=waking,
    )
    sub = room.part(conditions.Conditions).subs.get(waiter.sub) if waiter.sub is not None else None
    if sub is not None:
        result.condition = sub.compiled.source
        try:
            result.value = _shown(cel.evaluate(sub.compiled, conditions.context(w, room)))
        except cel.EvalError as exc:
            result.error = str(exc)
    out = Outcome()
    out.reply(ctx, cmd.id, result)
    return out


# -- why condition -----------------------------------------------------------------------------------------


def _context(w: World, room: Room | None) -> dict[str, Any]:
    """The CEL context a read evaluates in (an unknown room: every root empty, as `eval` does)."""
    if room is not None:
        return conditions.context(w, room)
    context: dict[str, Any] = {name: {} for name in w.roots}
    context["messages"] = {"count": 0, "unclaimed": 0}
    context["now"] = w.now
    return context


def _part(source: str, depth: int, context: dict[str, Any]) -> r.ConditionPart:
    """One sub-expression evaluated on its own with the same engine; an error is shown, never raised."""
    part = r.ConditionPart(expr=source, depth=depth)
    try:
        part.value = _shown(cel.evaluate(cel.compile(source), context))
    except cel.BadExpression as exc:
        part.error = f"does not compile: {exc}"
    except cel.EvalError as exc:
        part.error = str(exc)
    return part


def _blame(outline: list[cel.SubExpression], parts: list[r.ConditionPart]) -> str | None:
    """Mark the sub-expressions that keep the whole from holding, from the top down, and return the innermost
    single one: through `&&` its first operand that is not true; at `||` every operand (none is true: all are
    marked, the `||` is the answer); a `!` or a relation is the answer itself (its operands are what it read)."""
    kids: dict[int, list[int]] = {}
    for i, sub in enumerate(outline):
        if sub.parent is not None:
            kids.setdefault(sub.parent, []).append(i)
    at: int | None = 0
    last = None
    while at is not None:
        parts[at].blame = True
        last = parts[at].expr
        op, below = outline[at].op, kids.get(at, [])
        if op == "&&":
            at = next((k for k in below if parts[k].value is not True), None)
        elif op == "||" and below:
            for k in below:
                parts[k].blame = True
            at = None
        else:
            at = None
    return last


def decide_condition(w: World, cmd: c.WhyCondition, ctx: Context) -> Outcome:
    """A CEL expression's value and each sub-expression's, and which one keeps it false (at most MAX_PARTS
    shown). A bad expression is refused with `bad_expression`; evaluation errors are shown per part."""
    compiled = conditions.compile_or_refuse(cmd.expr)
    context = _context(w, agents.reader(w, cmd).room)
    result = r.ConditionWhy(expr=cmd.expr, holds=False)
    try:
        value = cel.evaluate(compiled, context)
        result.value, result.holds = _shown(value), cel.is_true(value)
    except cel.EvalError as exc:
        result.error = str(exc)
    try:
        outline, result.truncated = cel.outline(cmd.expr, MAX_PARTS)
    except cel.BadExpression:  # compiled above: cannot happen, but an outline is never worth a refusal
        outline = []
    parts = [
        r.ConditionPart(expr=sub.source, depth=0, value=result.value, error=result.error)
        if i == 0
        else _part(sub.source, sub.depth, context)
        for i, sub in enumerate(outline)
    ]
    if parts and not result.holds:
        result.false_part = _blame(outline, parts)
    result.parts = parts
    out = Outcome()
    out.reply(ctx, cmd.id, result)
    return out


# -- state history -----------------------------------------------------------------------------------------


def decide_history(w: World, cmd: c.StateHistory, ctx: Context) -> Outcome:
    """Every version of a key, newest first, read from the log by the shell (ReadHistory), not from memory.

    The read stops at `limit` versions or at the key's first one; each page comes back as HistoryRead.
    """
    if ctx.session is None:
        raise HubError(Code.BAD_REQUEST, "state history needs a session")
    if not 1 <= cmd.limit <= HISTORY_LIMIT:
        raise HubError(
            Code.BAD_REQUEST,
            f"limit must be between 1 and {HISTORY_LIMIT}",
            {"field": "limit", "reason": "range"},
        )
    state.check_key(cmd.key, cmd.scope)
    room = agents.reader(w, cmd).room
    version = 0 if room is None else room.part(state.State).version(cmd.scope, cmd.key)
    if room is None or not version:
        raise HubError(Code.NOT_FOUND, f"no entry {cmd.scope}.{cmd.key}", {"what": "key", "key": cmd.key})
    out = Outcome()
    out.effects.append(ReadHistory(ctx.session, room.name, w.position + 1, version, cmd))
    return out


def _version(position: int, ev: Any, read: c.StateHistory, version: int) -> r.KeyVersion | None:
    """The event as a version of the key read, or None if it is another key's (or a branch's)."""
    if type(ev) is ViewDefined:
        if read.scope != state.VIEW or ev.key != read.key:
            return None
        return r.KeyVersion(
            version=ev.version,
            value=ev.expr,
            deleted=False,
            by=ev.by,
            at=ev.at,
            op="state.view",
            position=position,
        )
    if type(ev) not in (StateWritten, StateDeleted) or ev.branch is not None:
        return None
    if ev.scope != read.scope or ev.key != read.key:
        return None
    if type(ev) is StateDeleted:  # it deleted the version written before it
        return r.KeyVersion(
            version=version, value=None, deleted=True, by=ev.by, at=ev.at, op=ev.op, position=position
        )
    return r.KeyVersion(
        version=ev.version, value=ev.value, deleted=False, by=ev.by, at=ev.at, op=ev.op, position=position
    )


def decide_history_read(w: World, cmd: HistoryRead, ctx: Context) -> Outcome:
    """One page of state events read back from the log: keep the key's versions; read on, or reply."""
    request = cmd.request
    read: c.StateHistory = request.command
    rooms.existing(w, request.room)
    found = list(request.found)
    version = request.version
    for position, ev in cmd.events:
        if len(found) >= read.limit or version <= 0:
            break
        shown = _version(position, ev, read, version)
        if shown is None:
            continue
        found.append(shown)
        if not shown.deleted:
            version = shown.version - 1
    out = Outcome()
    if len(found) < read.limit and version > 0 and cmd.position > 0:
        out.effects.append(
            ReadHistory(request.session, request.room, cmd.position, version, read, tuple(found))
        )
        return out
    rctx = Context(ctx.now, request.session, ctx.secret)
    out.reply(
        rctx, read.id, r.KeyHistory(scope=read.scope, key=read.key, versions=found, complete=version <= 0)
    )
    return out
