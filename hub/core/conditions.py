"""Conditions: the room's CEL context, computed views, subscriptions, and dependency-indexed re-evaluation.

Every event touches context paths (`("state", "_shared", "turn")`, `("agents", "w1")`...). Views and
subscriptions are indexed by the paths they read, in a trie; a touched path re-evaluates only what reads it
or anything below or above it. A subscription fires on the edge: when its value becomes exactly `true`.
The context's roots come from `World.roots` (each concept fills its own), so this module imports none of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import msgspec

from hub.core import agents, cel, delivery, rooms
from hub.core.effects import ArmTimer, Context, Outcome, ShowPresence
from hub.core.limits import check_count
from hub.core.world import Room, SessionInfo, World
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol import results as r
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Trigger, Wake
from hub.protocol.types import AgentName, RoomName, SessionId

__all__ = [
    "Conditions",
    "Sub",
    "Subscriptions",
    "apply_started",
    "apply_touched",
    "apply_view_defined",
    "apply_view_deleted",
    "compile_or_refuse",
    "context",
    "context_of",
    "decide_subscribe",
    "decide_unsubscribe",
    "drop_sub",
    "evaluate_gate",
    "for_reader",
    "plan_sub",
    "react",
    "resolve_views",
    "disarm",
    "value_of",
    "view_cycle",
]

Path = tuple[str, ...]
_MISSING = object()


@functools.lru_cache(maxsize=4096)
def _compiled(expr: str) -> cel.Compiled:
    """A Compiled is immutable, so the same source (a waiter re-armed every turn, many agents waiting on the
    same condition) is compiled once; a BadExpression is raised again each time (exceptions are not cached)."""
    return cel.compile(expr)


def compile_or_refuse(expr: str) -> cel.Compiled:
    """Compile once, refusing with `bad_expression` naming the position."""
    try:
        return _compiled(expr)
    except cel.BadExpression as exc:
        raise HubError(
            Code.BAD_EXPRESSION,
            f"bad expression: {exc}",
            {"expression": expr, "position": exc.position, "reason": exc.reason},
        ) from None


class Sub:
    """A subscription (or a condition waiter) of one session."""

    __slots__ = ("agent", "compiled", "held", "id", "include", "node", "once", "owner", "session", "wait_id")

    def __init__(
        self,
        sid: int,
        session: SessionId,
        compiled: cel.Compiled,
        include: tuple[str, ...],
        agent: AgentName | None,
        wait_id: int | None,
        once: bool = False,
        held: bool = False,
        owner: AgentName | None = None,
    ) -> None:
        self.id = sid
        self.session = session
        self.compiled = compiled
        self.include = include
        self.agent = agent  # shown `waiting` on this condition while it is armed
        self.wait_id = wait_id  # a `wait --condition`: one trigger, then gone
        self.held = held
        self.once = once  # dropped after its first trigger
        self.owner = owner  # the agent it counts against (max_subscriptions_per_agent); None: anonymous
        self.node: _Trie | None = None  # its node in the path index, if it is indexed as an equality there


_ALL = (
    object()
)  # a value no literal's key stands for (a map, a list...): every equality condition is evaluated


def _key(value: Any) -> Any:
    """The index key of a value or an equality condition's literal: equal keys for every pair CEL may find
    equal (an int or uint and a double compare as doubles), so a lookup misses none (it may find more: `true`
    meets `1.0`, and evaluation decides). _MISSING stays _MISSING (no condition equals an absent value)."""
    t = type(value)
    if t is int or t is float:
        try:
            return float(value)
        except OverflowError:  # past any double: let evaluation decide
            return _ALL
    if t is str or t is bool or value is None or value is _MISSING:
        return value
    return _ALL


def _below(value: Any, part: str) -> Any:
    """The context's value one step below `value` (a value of the context, or _MISSING, or _ALL): _MISSING
    where a map lacks `part`; _ALL under anything else but a dict (evaluation decides what that means)."""
    if type(value) is dict:
        return value.get(part, _MISSING)
    return _MISSING if value is _MISSING else _ALL


class _Trie:
    """Items keyed by the paths they read; `hit(path)` finds those reading it, a prefix of it, or below it.

    Equality conditions (`path == literal`, `cel.equality`) are kept apart at their path, by their literal's
    `_key`, with the set of those that hold: a hit given the context finds only those whose literal may equal
    the value now at their path, and those that held (they may stop). The others were false and stay false,
    so with 10 conditions `k == 0` .. `k == 9` a write to `k` evaluates at most 2, not 10.
    """

    __slots__ = ("children", "equal", "held", "items")

    def __init__(self) -> None:
        self.children: dict[str, _Trie] = {}
        self.items: set[Any] = set()
        self.equal: dict[Any, set[Any]] | None = None  # equality conditions here: literal's key → items
        self.held: set[Any] | None = None  # those of them that hold (kept by `react`)

    def node(self, path: Path) -> _Trie:
        node = self
        for part in path:
            node = node.children.setdefault(part, _Trie())
        return node

    def add(self, path: Path, item: Any) -> None:
        self.node(path).items.add(item)

    def add_equal(self, path: Path, literal: Any, item: Any) -> _Trie:
        """Add an equality condition; returns its node (whose `held` set `react` keeps)."""
        node = self.node(path)
        if node.equal is None:
            node.equal, node.held = {}, set()
        node.equal.setdefault(_key(literal), set()).add(item)
        return node

    def remove(self, path: Path, item: Any, literal: Any = _MISSING) -> None:
        """Drop `item` at `path` (an equality condition's: give its literal), pruning nodes left empty (unique
        paths come and go with waiters)."""
        trail: list[tuple[_Trie, str]] = []
        node = self
        for part in path:
            nxt = node.children.get(part)
            if nxt is None:
                return
            trail.append((node, part))
            node = nxt
        if literal is _MISSING:
            node.items.discard(item)
        elif node.equal is not None and node.held is not None:
            key = _key(literal)
            items = node.equal.get(key)
            if items is not None:
                items.discard(item)
                if not items:
                    del node.equal[key]
            node.held.discard(item)
            if not node.equal:
                node.equal = node.held = None
        for parent, part in reversed(trail):
            child = parent.children[part]
            if child.items or child.children or child.equal:
                return
            del parent.children[part]

    def hit(self, path: Path, out: set[Any], ctx: dict[str, Any] | None = None) -> None:
        """Add to `out` the items reading `path`, a prefix of it, or below it; the equality conditions among
        them only where `ctx` (the context, current) may make them change."""
        node = self
        value: Any = ctx  # the context's value at `node`'s path (_MISSING: absent)
        out.update(node.items)
        for part in path:
            nxt = node.children.get(part)
            if nxt is None:
                return
            node = nxt
            value = _below(value, part)
            out.update(node.items)
            if node.equal is not None:
                node.changing(value, out)
        if not node.children:  # a key's node: the common case
            return
        stack = [(n, part, value) for part, n in node.children.items()]
        while stack:
            n, part, above = stack.pop()
            value = _below(above, part)
            out.update(n.items)
            if n.equal is not None:
                n.changing(value, out)
            stack.extend((kid, p, value) for p, kid in n.children.items())

    def changing(self, value: Any, out: set[Any]) -> None:
        """Add this node's equality conditions that may change now that its path holds `value`: those that
        held, and those whose literal may equal it (all, for a value without a key)."""
        equal, held = self.equal, self.held
        assert equal is not None and held is not None
        out.update(held)
        key = _key(value)
        if key is _ALL:
            for items in equal.values():
                out.update(items)
        elif key is not _MISSING:
            found = equal.get(key)
            if found is not None:
                out.update(found)


class Conditions:
    """A room's live context (kept only while something reads it), its views and its subscriptions."""

    __slots__ = ("by_path", "ctx", "evaluations", "now_seen", "subs", "view_index", "view_programs")

    def __init__(self) -> None:
        self.now_seen = 0.0  # the clock its now-readers were last evaluated at
        self.ctx: dict[str, Any] | None = None
        self.subs: dict[int, Sub] = {}
        self.by_path = _Trie()
        self.view_programs: dict[str, cel.Compiled] = {}
        self.view_index = _Trie()
        self.evaluations = 0  # subscription evaluations (not durable; tests and metrics read it)


class Subscriptions:
    """Hub-wide: the last subscription id given, the context paths touched since the last reaction, and how
    many subscriptions each agent holds."""

    __slots__ = ("last_id", "owned", "touched")

    def __init__(self) -> None:
        self.last_id = 0
        self.touched: dict[RoomName, set[Path]] = {}
        self.owned: dict[tuple[RoomName, AgentName], int] = {}  # live subscriptions per owning agent


# -- the context ---------------------------------------------------------------------------------------


def context_of(w: World, room: Room) -> dict[str, Any]:
    """The CEL context of a room, built from scratch, views not resolved (`state._view` absent); `now` is the
    clock the shell last gave (seconds since the epoch)."""
    ctx: dict[str, Any] = {name: whole(w, room) for name, (whole, _) in w.roots.items()}
    ctx["now"] = w.now
    return ctx


def context(w: World, room: Room) -> dict[str, Any]:
    """The live context: built (views resolved) on first use, then kept current by `react`; a derived cache."""
    cond = room.part(Conditions)
    if cond.ctx is None:
        ctx = context_of(w, room)
        ctx["state"]["_view"] = resolve_views(cond.view_programs, ctx)
        cond.ctx = ctx
    cond.ctx["now"] = w.now
    return cond.ctx


def resolve_views(programs: dict[str, cel.Compiled], ctx: dict[str, Any]) -> dict[str, Any]:
    """Every view's value over `ctx` (views over views settle in at most len(programs) passes)."""
    views: dict[str, Any] = {}
    ctx["state"]["_view"] = views
    for _ in range(len(programs) + 1):
        if not any([_resolve(programs, key, ctx) for key in list(programs)]):
            break
    return views


def _resolve(programs: dict[str, cel.Compiled], key: str, ctx: dict[str, Any]) -> bool:
    """Recompute one view in `ctx`; returns whether its value changed.

    `ctx` is the plain context, not a cel.Bound: evaluating a plain mapping converts only the slice the
    expression reads, while a Bound converts a whole root on first read.
    """
    views = ctx["state"].setdefault("_view", {})
    try:
        value = cel.evaluate(programs[key], ctx)
    except cel.EvalError:
        changed = key in views
        views.pop(key, None)
        return changed
    old = views.get(key, _MISSING)
    if old is not _MISSING and old == value and type(old) is type(value):
        return False
    views[key] = value
    return True


def for_reader(room: Room, ctx: dict[str, Any], compiled: cel.Compiled, reader: str | None) -> dict[str, Any]:
    """The context as `reader` sees it: `messages.unread` is the reader's own count (only built for an
    expression that reads `messages`; the shared context has no `unread`)."""
    if reader is None or "messages" not in compiled.roots:
        return ctx
    return delivery.cel_unread(room, ctx, reader)


def value_of(compiled: cel.Compiled, bound: Any) -> Any:
    """A condition's value, or None when evaluation fails (a failing condition never holds)."""
    return cel.value_or_none(compiled, bound)


def evaluate_gate(
    expr: str, ctx: dict[str, Any], room: Room | None = None, writer: str | None = None
) -> None:
    """A CEL write gate: refuse with `precondition_failed` unless it evaluates to exactly true (the writer
    reads its own `messages.unread`)."""
    compiled = compile_or_refuse(expr)
    if room is not None:
        ctx = for_reader(room, ctx, compiled, writer)
    try:
        value = cel.evaluate(compiled, ctx)
    except cel.EvalError as exc:
        raise HubError(
            Code.PRECONDITION_FAILED,
            f"gate failed: {exc}",
            {"expression": expr, "value": None, "error": str(exc)},
        ) from None
    if not cel.is_true(value):
        raise HubError(
            Code.PRECONDITION_FAILED, f"gate is {value!r}: {expr}", {"expression": expr, "value": value}
        )


def view_cycle(room: Room, key: str, compiled: cel.Compiled) -> list[str] | None:
    """A chain of views leading back to `key` if it were defined as `compiled`."""
    programs = room.part(Conditions).view_programs

    def reads(comp: cel.Compiled) -> list[str]:
        out = []
        for p in comp.paths:
            if p == ("state",):  # the whole state holds every view, `key` included
                out.extend([key, *programs])
            elif len(p) >= 2 and p[0] == "state" and p[1] == "_view":
                out.extend([p[2]] if len(p) >= 3 else [key, *programs])
        return out

    stack = [(k, [key, k]) for k in reads(compiled)]
    seen: set[str] = set()
    while stack:
        k, chain = stack.pop()
        if k == key:
            return chain
        if k in seen or k not in programs:
            continue
        seen.add(k)
        stack.extend((n, [*chain, n]) for n in reads(programs[k]))
    return None


# -- subscriptions ----------------------------------------------------------------------------------------


def plan_sub(
    w: World,
    room: Room,
    session: SessionId,
    compiled: cel.Compiled,
    include: tuple[str, ...],
    agent: AgentName | None,
    wait_id: int | None,
    once: bool = False,
    held: bool = False,
    owner: AgentName | None = None,
) -> tuple[int, Callable[[], None]]:
    """A new subscription's id and the change that adds it; `limit_exceeded` past the session's cap, or past
    the cap of `owner`, the agent it counts against (over all its sessions)."""
    info = w.sessions.get(session)
    count = 0 if info is None else len(info.subs)
    check_count("subscriptions per session", count, w.config.max_subscriptions_per_session)
    subs = w.part(Subscriptions)
    if owner is not None:
        held_now = subs.owned.get((room.name, owner), 0)
        check_count("subscriptions per agent", held_now, w.config.max_subscriptions_per_agent)
    sid = subs.last_id + 1
    sub = Sub(sid, session, compiled, include, agent, wait_id, once, held, owner)
    room_name = room.name

    def add() -> None:
        subs.last_id = max(subs.last_id, sid)
        _add(w, w.rooms[room_name], sub)

    return sid, add


def _add(w: World, room: Room, sub: Sub) -> None:
    cond = room.part(Conditions)
    cond.subs[sub.id] = sub
    equal = _equality(sub.compiled)
    if equal is not None:
        sub.node = cond.by_path.add_equal(equal[0], equal[1], sub.id)
        if sub.held:
            sub.node.held.add(sub.id)  # type: ignore[union-attr]
    else:
        sub.node = None
        for p in sub.compiled.paths:
            cond.by_path.add(p, sub.id)
    info = w.sessions.get(sub.session)
    if info is None:
        info = w.sessions[sub.session] = SessionInfo(room.name)
    info.subs.add((room.name, sub.id))
    if sub.owner is not None:
        owned = w.part(Subscriptions).owned
        owned[room.name, sub.owner] = owned.get((room.name, sub.owner), 0) + 1
    if sub.agent is not None:
        room.part(agents.Roster).waiting.setdefault(sub.agent, {})[sub.id] = sub.compiled.source
        show(w, room, sub.agent)


def _equality(compiled: cel.Compiled) -> tuple[Path, Any] | None:
    """(path, literal) of an equality condition the path index keeps by literal: `path == literal` reading
    only that path, not under `messages` (whose `unread` differs by reader: the shared context lacks it)."""
    equal = cel.equality(compiled)
    if equal is None or equal[0][0] == "messages" or compiled.paths != {equal[0]}:
        return None
    return equal


def adopt(w: World, room: Room, sub: Sub) -> None:
    """Carry a live subscription onto a world rebuilt from the log (`sessions.carry`); whether it holds is
    read again there, so its next trigger is an edge of durable state, not of what the log refused."""
    sub.held = cel.is_true(value_of(sub.compiled, context(w, room)))
    _add(w, room, sub)


def drop_sub(w: World, room: Room, sub_id: int) -> None:
    """Remove a subscription (an apply-side change: never raises)."""
    cond = room.part(Conditions)
    sub = cond.subs.pop(sub_id, None)
    if sub is None:
        return
    if sub.node is not None:
        path, literal = _equality(sub.compiled)  # type: ignore[misc]
        cond.by_path.remove(path, sub.id, literal)
        sub.node = None
    else:
        for p in sub.compiled.paths:
            cond.by_path.remove(p, sub.id)
    info = w.sessions.get(sub.session)
    if info is not None:
        info.subs.discard((room.name, sub_id))
    if sub.owner is not None:
        owned = w.part(Subscriptions).owned
        left = owned.pop((room.name, sub.owner), 1) - 1
        if left:
            owned[room.name, sub.owner] = left
    if sub.agent is not None:
        waiting = room.part(agents.Roster).waiting
        mine = waiting.get(sub.agent)
        if mine is not None:
            mine.pop(sub.id, None)
            if not mine:
                del waiting[sub.agent]
        show(w, room, sub.agent)


def decide_subscribe(w: World, cmd: c.Subscribe, ctx: Context) -> Outcome:
    if ctx.session is None:
        raise HubError(Code.BAD_REQUEST, "subscribe needs a session")
    compiled = compile_or_refuse(cmd.expr)
    rooms.check_room(cmd.room)
    reader = agents.reader(w, cmd)
    room = rooms.existing(w, cmd.room)
    for part in cmd.include:
        if part not in cel.ROOTS:
            raise HubError(
                Code.BAD_REQUEST,
                f"include names a context root: {', '.join(sorted(cel.ROOTS))}",
                {"field": "include"},
            )
    agent = None
    if cmd.name is not None:  # showing an agent as `waiting` is acting as it: its token (or the admin's)
        agent = agents.acting_as(w, room, cmd.name, cmd.token, cmd.admin_token).name
    info = w.sessions.get(ctx.session)
    attached = info.agent if info is not None and info.room == room.name else None
    owner = agent or reader.name or attached  # who it counts against (and reads as); None: anonymous
    value = value_of(compiled, for_reader(room, context(w, room), compiled, owner))
    holds = cel.is_true(value)
    out = Outcome()
    if holds and cmd.once:  # already true: one trigger now, and nothing stays armed
        sid = w.part(Subscriptions).last_id + 1
        out.stage(functools.partial(_bump, w, sid))
    else:
        sid, add = plan_sub(w, room, ctx.session, compiled, cmd.include, agent, None, cmd.once, holds, owner)
        out.stage(add)
    out.reply(ctx, cmd.id, r.Subscribed(sub=sid, value=value, holds=holds))
    if holds:
        out.deliver((ctx.session,), _trigger_frame(w, room, sid, compiled, cmd.include, value))
    return out


def _bump(w: World, sid: int) -> None:
    subs = w.part(Subscriptions)
    subs.last_id = max(subs.last_id, sid)


def decide_unsubscribe(w: World, cmd: c.Unsubscribe, ctx: Context) -> Outcome:
    info = w.sessions.get(ctx.session) if ctx.session is not None else None
    found = None if info is None else next((rn for rn, i in info.subs if i == cmd.sub), None)
    if found is None:
        raise HubError(Code.NOT_FOUND, f"no subscription {cmd.sub} on this session", {"what": "subscription"})
    if w.rooms[found].part(Conditions).subs[cmd.sub].wait_id is not None:  # its waiter would never wake
        raise HubError(
            Code.BAD_REQUEST,
            f"subscription {cmd.sub} is a waiter's condition: it ends with its wait",
            {"field": "sub", "reason": "waiter"},
        )
    out = Outcome()
    room_name = found
    out.stage(lambda: drop_sub(w, w.rooms[room_name], cmd.sub))
    out.reply(ctx, cmd.id, r.Unsubscribed(sub=cmd.sub, removed=True))
    return out


def _trigger_frame(
    w: World, room: Room, sid: int, compiled: cel.Compiled, include: tuple[str, ...], value: Any
) -> Trigger:
    parts = {}
    if include:
        ctx = room.part(Conditions).ctx or {}
        parts = msgspec.to_builtins({p: ctx.get(p) for p in include if p in ctx})
    return Trigger(sub=sid, condition=compiled.source, value=value, position=w.position, include=parts)


# -- reacting to what changed -------------------------------------------------------------------------------


def show(w: World, room: Room, agent: AgentName) -> None:
    """An agent's presence changed without an event (it waits, or stops): conditions reading it are
    re-evaluated, and its presence is pushed to tails when the command commits (`push_presence`)."""
    _touch(w, room, ("agents", agent))
    if agent in room.part(agents.Roster).agents:
        w.part(agents.Shown).pending[room.name, agent] = None


def push_presence(w: World, out: Outcome) -> None:
    """The presence records `show` noted, as effects for the tails (after the reactions, so the latest)."""
    pending = w.part(agents.Shown).pending
    if not pending:
        return
    noted = list(pending)
    pending.clear()
    for room_name, name in noted:
        room = w.rooms.get(room_name)
        member = None if room is None else room.part(agents.Roster).agents.get(name)
        if room is not None and member is not None:
            out.effects.append(ShowPresence(room_name, agents.presence(room.part(agents.Roster), member)))


def _touch(w: World, room: Room, path: Path) -> None:
    if room.part(Conditions).ctx is not None:
        w.part(Subscriptions).touched.setdefault(room.name, set()).add(path)


_TOUCH: dict[type, Callable[[Any], Path | None]] = {
    e.StateWritten: lambda ev: ("state", ev.scope, ev.key) if ev.branch is None else None,
    e.StateDeleted: lambda ev: ("state", ev.scope, ev.key) if ev.branch is None else None,
    e.ViewDefined: lambda ev: ("state", "_view", ev.key),
    e.MessageSent: lambda ev: ("messages",),
    e.MessageClaimed: lambda ev: ("messages",),
    e.MessagesRead: lambda ev: ("messages",),
    e.AgentJoined: lambda ev: ("agents", ev.agent),
    e.PresenceChanged: lambda ev: ("agents", ev.agent),
    e.SessionOpened: lambda ev: ("agents", ev.agent),
    e.SessionClosed: lambda ev: ("agents", ev.agent),
    e.ClaimGranted: lambda ev: ("claims", ev.work),
    e.ClaimReleased: lambda ev: ("claims", ev.work),
    e.ClaimLapsed: lambda ev: ("claims", ev.work),
    e.ClaimHandedOff: lambda ev: ("claims", ev.work),
    e.TaskDeclared: lambda ev: ("tasks", ev.task),
    e.TaskUpdated: lambda ev: ("tasks", ev.task),
}


def apply_touched(w: World, ev: Any) -> None:
    """Note the context paths an event changed, for the next reaction (only rooms with a live context)."""
    room = w.rooms.get(ev.room)
    if room is None or room.part(Conditions).ctx is None:
        return
    touch = _TOUCH.get(type(ev))
    path = None if touch is None else touch(ev)
    if path is None:
        return
    touched = w.part(Subscriptions).touched.setdefault(room.name, set())
    touched.add(path)
    actor = ev.sender if type(ev) is e.MessageSent else ev.holder if type(ev) is e.MessageClaimed else None
    if actor is not None and "/" not in actor:  # a heartbeat of the sender / claimer
        touched.add(("agents", actor))
    if type(ev) is e.TaskUpdated and ev.by is not None:
        touched.add(("agents", ev.by))


def apply_started(w: World, ev: e.HubStarted) -> None:
    for room in w.rooms.values():
        room.part(Conditions).ctx = None  # rebuilt on first use


def apply_view_defined(w: World, ev: e.ViewDefined) -> None:
    cond = w.rooms[ev.room].part(Conditions)
    try:
        compiled = cel.compile(ev.expr)
    except cel.BadExpression:  # it compiled when it was decided; an engine change must not stop replay
        return
    old = cond.view_programs.get(ev.key)
    if old is not None:
        for p in old.paths:
            cond.view_index.remove(p, ev.key)
    cond.view_programs[ev.key] = compiled
    for p in compiled.paths:
        cond.view_index.add(p, ev.key)


def apply_view_deleted(w: World, ev: e.StateDeleted) -> None:
    if ev.scope != "_view":  # views have no branches: a `branch` on a view's deletion (refused since) is moot
        return
    cond = w.rooms[ev.room].part(Conditions)
    old = cond.view_programs.pop(ev.key, None)
    if old is not None:
        for p in old.paths:
            cond.view_index.remove(p, ev.key)
    if cond.ctx is not None:
        cond.ctx["state"].get("_view", {}).pop(ev.key, None)


def _refresh(w: World, room: Room, cond: Conditions, ctx: dict[str, Any], out: set[Path]) -> set[Path]:
    """Bring the live context `ctx` up to date for the touched paths `out`; returns them (the same set) plus
    the views that changed."""
    roots = w.roots
    for path in sorted(out) if len(out) > 1 else tuple(out):  # `out` grows: iterate a copy
        root = roots.get(path[0])
        if root is not None and not (path[0] == "state" and len(path) > 1 and path[1] == "_view"):
            wider = root[1](w, room, ctx[path[0]], path)
            if wider is not None:
                out.add(wider)
    programs = cond.view_programs
    if not programs:  # no views: nothing to resolve, and the view index is empty
        return out
    for p in out:
        if len(p) == 3 and p[0] == "state" and p[1] == "_view" and p[2] in programs:
            _resolve(programs, p[2], ctx)
    frontier = set(out)
    for _ in range(len(programs) + 1):  # views over views: propagate until nothing changes
        hit: set[str] = set()
        for p in frontier:
            cond.view_index.hit(p, hit)
        if not hit:
            break
        frontier = {("state", "_view", k) for k in sorted(hit) if _resolve(programs, k, ctx)}
        out |= frontier
    return out


def react(w: World, out: Outcome) -> None:
    """Re-evaluate only the views and conditions that read what changed; push triggers on the edge.

    Runs after a command's events are applied: what it changes (held flags, once-subscriptions dropped,
    condition waiters disarmed) is a consequence of facts already decided, never a refusal. This runs after
    every command, so the loop is written out (one call per condition: `cel.value_or_none`).
    """
    subscriptions = w.part(Subscriptions)
    if _touch_now(w, subscriptions):
        resolution = min(max(w.config.now_resolution, 0.001), 86_400.0)  # the CLI refuses others
        out.effects.append(ArmTimer((w.now // resolution + 1) * resolution))
    for _ in range(8):  # a waiter that wakes changes presence, which may wake others: settles fast
        touched = subscriptions.touched
        if not touched:
            return
        subscriptions.touched = {}
        for room_name, paths in touched.items():
            room = w.rooms.get(room_name)
            if room is None:
                continue
            cond = room.part(Conditions)
            ctx = cond.ctx  # the plain mapping: each condition converts only the slice it reads
            if ctx is None:
                continue
            hit: set[int] = set()
            find = cond.by_path.hit
            for p in _refresh(w, room, cond, ctx, paths):
                find(p, hit, ctx)
            subs = cond.subs
            for sid in sorted(hit) if len(hit) > 1 else hit:
                sub = subs.get(sid)
                if sub is None:
                    continue
                cond.evaluations += 1
                compiled = sub.compiled
                if sub.owner is not None and "messages" in compiled.roots:
                    value = cel.value_or_none(compiled, delivery.cel_unread(room, ctx, sub.owner))
                else:
                    value = cel.value_or_none(compiled, ctx)
                if value is True:  # cel.is_true
                    if not sub.held:
                        sub.held = True
                        if sub.node is not None:
                            sub.node.held.add(sid)  # type: ignore[union-attr]
                        _fire(w, room, sub, value, out)  # may drop it (and its held mark)
                elif sub.held:
                    sub.held = False
                    if sub.node is not None:
                        sub.node.held.discard(sid)  # type: ignore[union-attr]


def reads_now(cond: Conditions) -> bool:
    """Whether a condition or a view of the room reads `now` (the CEL adapter reports the paths read)."""
    return "now" in cond.by_path.children or "now" in cond.view_index.children


def _touch_now(w: World, subscriptions: Subscriptions) -> bool:
    """Mark `now` touched in rooms that read it where the clock moved; returns whether any room reads it
    (the shell then keeps one timer at the next multiple of `now_resolution`; none when nobody reads it)."""
    any_reads = False
    for room_name, room in w.rooms.items():
        cond = room.part(Conditions)
        if cond.ctx is None or not reads_now(cond):
            continue
        any_reads = True
        if cond.now_seen != w.now:
            cond.now_seen = cond.ctx["now"] = w.now
            subscriptions.touched.setdefault(room_name, set()).add(("now",))
    return any_reads


def _fire(w: World, room: Room, sub: Sub, value: Any, out: Outcome) -> None:
    if sub.wait_id is not None:
        waiters = room.part(agents.Waiters).by_name
        waiter = next((wt for wt in waiters.values() if wt.sub == sub.id), None)
        if waiter is not None:
            disarm(w, room, waiter)
        else:
            drop_sub(w, room, sub.id)
        wake = Wake(id=sub.wait_id, reason="condition", condition=sub.compiled.source, value=value)
        out.deliver((sub.session,), wake)
        return
    out.deliver((sub.session,), _trigger_frame(w, room, sub.id, sub.compiled, sub.include, value))
    if sub.once:
        drop_sub(w, room, sub.id)


def disarm(w: World, room: Room, waiter: agents.Waiter) -> None:
    """Remove an armed waiter and its condition (an apply-side change); its owner stops showing it."""
    waiters = room.part(agents.Waiters).by_name
    if waiters.get(waiter.name) is waiter:
        del waiters[waiter.name]
        roster = room.part(agents.Roster)
        if roster.waiter.get(waiter.owner) == waiter.name:
            del roster.waiter[waiter.owner]
            show(w, room, waiter.owner)
    if waiter.sub is not None:
        drop_sub(w, room, waiter.sub)
    info = w.sessions.get(waiter.session)
    if info is not None and info.waiter == (room.name, waiter.name):
        info.waiter = None


def arm(w: World, room: Room, waiter: agents.Waiter) -> None:
    """Arm a waiter (an apply-side change); its owner shows `waiting` with the waiter's name."""
    room.part(agents.Waiters).by_name[waiter.name] = waiter
    if waiter.owner in room.part(agents.Roster).agents:
        room.part(agents.Roster).waiter[waiter.owner] = waiter.name
        show(w, room, waiter.owner)
