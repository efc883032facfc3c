"""Versioned entries in scopes (_shared, one per agent, _view): set, init, CAS, gates, increments, batches,
views, eval, and the branches' copy-on-write overlays (SPEC: Shared state and CEL).

A key's version never goes back: deleting leaves a tombstone with the last version, so re-creating it
continues the numbering and a stale `if_version` can never succeed (leader election has no ABA).
"""

from __future__ import annotations

import re
from typing import Any

from hub.core import agents, cel, conditions, fences, rooms
from hub.core.effects import Context, Outcome
from hub.core.limits import check_count
from hub.core.world import Room, World
from hub.protocol import commands as c
from hub.protocol import results as r
from hub.protocol.codec import encode
from hub.protocol.errors import Code, HubError
from hub.protocol.events import BranchCreated, StateDeleted, StateWritten, ViewDefined
from hub.protocol.types import AgentName
from hub.protocol.values import check_value

__all__ = [
    "SHARED",
    "VIEW",
    "Branch",
    "Entry",
    "State",
    "apply_branch_created",
    "apply_deleted",
    "apply_view_defined",
    "apply_written",
    "check_branch_name",
    "check_key",
    "context_for",
    "decide_batch",
    "decide_delete",
    "decide_eval",
    "decide_get",
    "decide_init",
    "decide_list",
    "decide_set",
    "decide_view",
    "next_value",
    "refresh_root",
    "root",
    "same",
]

SHARED = "_shared"
VIEW = "_view"
KEY = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,256}")  # no control character: C0 (NUL too), DEL, C1
BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
Spot = tuple[str, str]


class Entry:
    """One entry: its value, its version, and the room's state clock when it last changed."""

    __slots__ = ("at", "by", "changed", "value", "version")

    def __init__(self, value: Any, version: int, changed: int, by: AgentName, at: float) -> None:
        self.value = value
        self.version = version
        self.changed = changed
        self.by = by
        self.at = at

    def view(self, scope: str, key: str) -> r.EntryView:
        return r.EntryView(
            scope=scope, key=key, value=self.value, version=self.version, by=self.by, at=self.at
        )

    def plain(self, scope: str, key: str) -> dict[str, Any]:
        """The view as plain data, for an error's `current`."""
        return {
            "scope": scope,
            "key": key,
            "value": self.value,
            "version": self.version,
            "by": self.by,
            "at": self.at,
        }


class Branch:
    """A copy-on-write fork: its own writes (None = deleted) over its source, forked at state clock `base`.

    `frozen` keeps, for every key its source changed since the fork, the source's entry at fork time: the
    branch keeps reading what it forked (isolation), and a key both in `overlay` and in `frozen` was changed
    on both sides (a merge conflict). `gone` holds the last version of keys deleted on the branch.
    """

    __slots__ = ("base", "by", "created_at", "frozen", "gone", "name", "overlay", "source")

    def __init__(self, event: BranchCreated) -> None:
        self.name = event.branch
        self.source = event.source
        self.base = event.base
        self.by = event.by
        self.created_at = event.at
        self.overlay: dict[Spot, Entry | None] = {}
        self.frozen: dict[Spot, Entry | None] = {}
        self.gone: dict[Spot, int] = {}


class State:
    """A room's entries and views (main line), tombstones of deleted keys, and its branches."""

    __slots__ = ("branches", "clock", "gone", "scopes", "views")

    def __init__(self) -> None:
        self.scopes: dict[str, dict[str, Entry]] = {}
        self.views: dict[str, Entry] = {}  # key → Entry whose value is the expression's source
        self.clock = 0  # one step per write event
        self.branches: dict[str, Branch] = {}
        self.gone: dict[Spot, int] = {}  # (scope, key) → its version when it was deleted (views: scope _view)

    def branch(self, name: str | None) -> Branch | None:
        if name is None:
            return None
        found = self.branches.get(name)
        if found is None:
            raise HubError(Code.NOT_FOUND, f"no branch {name!r}", {"what": "branch", "branch": name})
        return found

    def source(self, branch: Branch) -> Branch | None:
        return self.branches.get(branch.source) if branch.source is not None else None

    def lookup(self, scope: str, key: str, branch: Branch | None = None) -> Entry | None:
        spot = (scope, key)
        while branch is not None:
            if spot in branch.overlay:
                return branch.overlay[spot]
            if spot in branch.frozen:
                return branch.frozen[spot]
            branch = self.source(branch)
        return self.scopes.get(scope, {}).get(key)

    def version(self, scope: str, key: str, branch: Branch | None = None) -> int:
        """The key's current version, or the last one it had before it was deleted (0: never written)."""
        entry = self.views.get(key) if scope == VIEW else self.lookup(scope, key, branch)
        if entry is not None:
            return entry.version
        spot = (scope, key)
        last = self.gone.get(spot, 0)
        while branch is not None:  # the highest tombstone on the way: never lower than the truth
            last = max(last, branch.gone.get(spot, 0))
            branch = self.source(branch)
        return last

    def entries(self, branch: Branch | None = None) -> dict[str, dict[str, Entry]]:
        """Every live entry by scope, as seen from `branch` (the main line when None)."""
        if branch is None:
            return {scope: dict(keys) for scope, keys in self.scopes.items() if keys}
        base = self.entries(self.source(branch))
        for layer in (branch.frozen, branch.overlay):
            for (scope, key), entry in layer.items():
                if entry is None:
                    base.get(scope, {}).pop(key, None)
                else:
                    base.setdefault(scope, {})[key] = entry
        return {scope: keys for scope, keys in base.items() if keys}

    def values(self, branch: Branch | None = None) -> dict[str, dict[str, Any]]:
        """The `state` root of the CEL context (views excluded)."""
        return {
            scope: {k: en.value for k, en in keys.items()} for scope, keys in self.entries(branch).items()
        }


def same(a: Entry | None, b: Entry | None) -> bool:
    """Whether two entries hold the same value (absent equals absent), whatever their versions or writers."""
    if a is None or b is None:
        return a is b
    return bool(a.value == b.value) and type(a.value) is type(b.value)


# -- checks ------------------------------------------------------------------------------------------------


def check_key(key: str, scope: str) -> None:
    if not KEY.fullmatch(key):
        raise HubError(
            Code.BAD_REQUEST,
            "a key is 1..256 characters without control characters",
            {"field": "key", "reason": "pattern"},
        )
    if not KEY.fullmatch(scope):
        raise HubError(Code.BAD_REQUEST, "bad scope", {"field": "scope", "reason": "pattern"})


def check_branch_name(name: str) -> None:
    if not BRANCH.fullmatch(name):
        raise HubError(
            Code.BAD_REQUEST, f"bad branch name {name!r}", {"field": "branch", "reason": "pattern"}
        )


def _check_size(value: Any, limit: int | None) -> None:
    if limit is not None:
        size = len(encode(value))
        if size > limit:
            raise HubError(Code.TOO_LARGE, f"value is {size} bytes, over {limit}", {"limit": limit})


def _writable(agent: agents.Agent, scope: str, key: str) -> None:
    """`_shared` is everyone's, an agent's own scope only its own, `_view` only through views."""
    check_key(key, scope)
    if scope == VIEW:
        raise HubError(Code.BAD_REQUEST, "views are written with `state view KEY EXPR`", {"field": "scope"})
    if scope != SHARED and scope != agent.name:
        raise HubError(Code.FORBIDDEN, f"only {scope} writes scope {scope!r}", {"scope": scope})


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def next_value(
    current: Entry | None,
    last: int,
    scope: str,
    key: str,
    value: Any,
    increment: bool,
    if_version: int | None,
) -> tuple[Any, int]:
    """The value and version a write leaves (SPEC: Shared state): CAS refusals carry the current entry.

    `last` is the key's version (a deleted key's last one): `if_version` 0 means "absent", whatever it was.
    """
    if if_version is not None:
        have = 0 if current is None else current.version
        if if_version != have:
            now = None if current is None else current.plain(scope, key)
            what = "absent" if if_version == 0 else f"at version {if_version}"
            raise HubError(Code.CONFLICT, f"{scope}.{key} is not {what} (version {have})", {"current": now})
    if increment:
        if not _number(value):
            raise HubError(Code.BAD_REQUEST, "increment needs a number", {"field": "value", "reason": "type"})
        base = 0 if current is None else current.value
        if not _number(base):
            raise HubError(
                Code.CONFLICT,
                f"{scope}.{key} holds a {type(base).__name__}, not a number",
                {"current": current.plain(scope, key) if current else None},
            )
        value = base + value
        check_value(value, "value")  # an overflowing sum is refused like an overflowing value
    return value, last + 1


def context_for(w: World, room: Room, branch: Branch | None) -> dict[str, Any]:
    """The CEL context over the main line (the live one) or over a branch (views resolved over it)."""
    if branch is None:
        return conditions.context(w, room)
    context = conditions.context_of(w, room)
    context["state"] = room.part(State).values(branch)
    conditions.resolve_views(room.part(conditions.Conditions).view_programs, context)
    return context


# -- deciding ----------------------------------------------------------------------------------------------


def _write(
    w: World,
    room: Room,
    agent: agents.Agent,
    now: float,
    branch: Branch | None,
    write: c.Write | c.SetState | c.InitState,
    increment: bool,
    if_version: int | None,
    planned: dict[Spot, tuple[Entry | None, int]] | None = None,
    op: str = "state.set",
) -> StateWritten:
    """Decide one write; `planned` carries the earlier writes of the same batch."""
    scope, key = write.scope, write.key
    _writable(agent, scope, key)
    check_value(write.value)
    _check_size(write.value, w.config.max_body_bytes)
    st = room.part(State)
    spot = (scope, key)
    if planned is not None and spot in planned:
        current, last = planned[spot]
    else:
        current = st.lookup(scope, key, branch)  # `_writable` refused VIEW: the version is the entry's
        last = current.version if current is not None else st.version(scope, key, branch)
    value, version = next_value(current, last, scope, key, write.value, increment, if_version)
    if planned is not None:
        planned[spot] = (Entry(value, version, 0, agent.name, now), version)
    return StateWritten(
        room=room.name,
        at=now,
        scope=scope,
        key=key,
        value=value,
        version=version,
        by=agent.name,
        branch=None if branch is None else branch.name,
        op=op,
    )


def _written(ev: StateWritten) -> r.EntryView:
    return r.EntryView(scope=ev.scope, key=ev.key, value=ev.value, version=ev.version)


def decide_set(w: World, cmd: c.SetState, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    fences.check(room, agent.name, cmd.fence, ctx.now)
    branch = room.part(State).branch(cmd.branch)
    if cmd.if_ is not None:
        conditions.evaluate_gate(cmd.if_, context_for(w, room, branch), room, agent.name)
    written = _write(w, room, agent, ctx.now, branch, cmd, cmd.increment, cmd.if_version)
    out.emit(written)
    out.reply(ctx, cmd.id, _written(written))
    return out


def decide_init(w: World, cmd: c.InitState, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    fences.check(room, agent.name, cmd.fence, ctx.now)
    st = room.part(State)
    branch = st.branch(cmd.branch)
    current = st.lookup(cmd.scope, cmd.key, branch)
    if current is not None:
        raise HubError(
            Code.ALREADY_EXISTS,
            f"{cmd.scope}.{cmd.key} exists",
            {"current": current.plain(cmd.scope, cmd.key)},
        )
    written = _write(w, room, agent, ctx.now, branch, cmd, False, None, op="state.init")
    out.emit(written)
    out.reply(ctx, cmd.id, _written(written))
    return out


def decide_delete(w: World, cmd: c.DeleteState, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    fences.check(room, agent.name, cmd.fence, ctx.now)
    st = room.part(State)
    branch = st.branch(cmd.branch)
    if cmd.scope == VIEW:
        if branch is not None:  # a view is defined on the main line and resolved over every branch
            raise HubError(Code.BAD_REQUEST, "views have no branches", {"field": "branch", "reason": "view"})
        current = st.views.get(cmd.key)
    else:
        _writable(agent, cmd.scope, cmd.key)
        current = st.lookup(cmd.scope, cmd.key, branch)
    if current is None:
        raise HubError(Code.NOT_FOUND, f"no entry {cmd.scope}.{cmd.key}", {"what": "key", "key": cmd.key})
    if cmd.if_version is not None and cmd.if_version != current.version:
        raise HubError(
            Code.CONFLICT,
            f"{cmd.scope}.{cmd.key} is at version {current.version}",
            {"current": current.plain(cmd.scope, cmd.key)},
        )
    out.emit(
        StateDeleted(
            room=room.name,
            at=ctx.now,
            scope=cmd.scope,
            key=cmd.key,
            by=agent.name,
            branch=None if branch is None else branch.name,
            op="state.delete",
        )
    )
    out.reply(ctx, cmd.id, r.Deleted(scope=cmd.scope, key=cmd.key, deleted=True, version=current.version))
    return out


def decide_batch(w: World, cmd: c.BatchState, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    fences.check(room, agent.name, cmd.fence, ctx.now)
    branch = room.part(State).branch(cmd.branch)
    if not cmd.writes:
        raise HubError(Code.BAD_REQUEST, "a batch needs at least one write", {"field": "writes"})
    check_count("writes per batch", len(cmd.writes) - 1, 1000)
    if cmd.if_ is not None:
        conditions.evaluate_gate(cmd.if_, context_for(w, room, branch), room, agent.name)
    planned: dict[Spot, tuple[Entry | None, int]] = {}
    writes = [  # every write decided before any is emitted: all or nothing
        _write(w, room, agent, ctx.now, branch, each, each.increment, each.if_version, planned, "state.batch")
        for each in cmd.writes
    ]
    out.events.extend(writes)
    out.reply(ctx, cmd.id, r.Writes(writes=[_written(ev) for ev in writes]))
    return out


def decide_view(w: World, cmd: c.DefineView, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    check_key(cmd.key, VIEW)
    compiled = conditions.compile_or_refuse(cmd.expr)
    cycle = conditions.view_cycle(room, cmd.key, compiled)
    if cycle:
        raise HubError(
            Code.BAD_EXPRESSION,
            "views form a cycle: " + " → ".join(cycle),
            {"expression": cmd.expr, "cycle": cycle, "position": None},
        )
    version = room.part(State).version(VIEW, cmd.key) + 1
    value = conditions.value_of(compiled, conditions.context(w, room))  # views are kept resolved from now on
    out.emit(
        ViewDefined(room=room.name, at=ctx.now, key=cmd.key, expr=cmd.expr, version=version, by=agent.name)
    )
    out.reply(ctx, cmd.id, r.EntryView(scope=VIEW, key=cmd.key, value=value, version=version, expr=cmd.expr))
    return out


def decide_get(w: World, cmd: c.GetState, ctx: Context) -> Outcome:
    agents.reader(w, cmd)
    room = rooms.existing(w, cmd.room)
    st = room.part(State)
    branch = st.branch(cmd.branch)
    out = Outcome()
    if cmd.scope == VIEW:
        view = st.views.get(cmd.key)
        if view is None:
            raise HubError(Code.NOT_FOUND, f"no view {cmd.key!r}", {"what": "key", "key": cmd.key})
        value = context_for(w, room, branch)["state"].get(VIEW, {}).get(cmd.key)
        out.reply(
            ctx,
            cmd.id,
            r.EntryView(scope=VIEW, key=cmd.key, value=value, version=view.version, expr=view.value),
        )
        return out
    entry = st.lookup(cmd.scope, cmd.key, branch)
    if entry is None:
        raise HubError(Code.NOT_FOUND, f"no entry {cmd.scope}.{cmd.key}", {"what": "key", "key": cmd.key})
    out.reply(ctx, cmd.id, entry.view(cmd.scope, cmd.key))
    return out


def decide_list(w: World, cmd: c.ListState, ctx: Context) -> Outcome:
    out = Outcome()
    room = agents.reader(w, cmd).room
    if room is None:
        out.reply(ctx, cmd.id, r.EntryList(entries=[]))
        return out
    st = room.part(State)
    branch = st.branch(cmd.branch)
    entries = [
        en.view(scope, key)
        for scope, keys in sorted(st.entries(branch).items())
        for key, en in sorted(keys.items())
        if cmd.scope is None or cmd.scope == scope
    ]
    if cmd.scope in (None, VIEW) and st.views:
        resolved = context_for(w, room, branch)["state"].get(VIEW, {})
        entries += [
            r.EntryView(scope=VIEW, key=k, value=resolved.get(k), version=v.version, expr=v.value)
            for k, v in sorted(st.views.items())
        ]
    out.reply(ctx, cmd.id, r.EntryList(entries=entries))
    return out


def decide_eval(w: World, cmd: c.Eval, ctx: Context) -> Outcome:
    compiled = conditions.compile_or_refuse(cmd.expr)
    who = agents.reader(w, cmd)
    room = who.room
    out = Outcome()
    if room is None:
        context: dict[str, Any] = {name: {} for name in w.roots}
        context["messages"] = {"count": 0, "unclaimed": 0}
        context["now"] = w.now
    else:
        context = context_for(w, room, room.part(State).branch(cmd.branch))
        context = conditions.for_reader(room, context, compiled, who.name)
    try:
        value = cel.evaluate(compiled, context)
    except cel.EvalError as exc:
        out.reply(ctx, cmd.id, r.Evaluated(value=None, error=str(exc)))
        return out
    out.reply(ctx, cmd.id, r.Evaluated(value=value))
    return out


# -- reading -----------------------------------------------------------------------------------------------


def root(w: World, room: Room) -> dict[str, Any]:
    """The `state` root of the CEL context (views are resolved into `_view` by the conditions)."""
    return room.part(State).values()


def refresh_root(w: World, room: Room, node: dict[str, Any], path: tuple[str, ...]) -> tuple[str, ...] | None:
    """Bring one key up to date; the scope's path when the scope itself appeared or went (see `Root`)."""
    if len(path) != 3:
        return None
    entry = room.part(State).lookup(path[1], path[2])
    scope = node.get(path[1])
    if entry is None:
        if scope is None or path[2] not in scope:
            return None
        del scope[path[2]]
        if scope:
            return None
        del node[path[1]]  # as `root`: no empty scopes
        return path[:2]
    if scope is None:
        node[path[1]] = {path[2]: entry.value}
        return path[:2]
    scope[path[2]] = entry.value
    return None


# -- folding -------------------------------------------------------------------------------------------------


def _freeze(st: State, line: str | None, scope: str, key: str) -> None:
    """Before `line` (a branch, or the main line) changes a key, its forks keep the entry they forked."""
    spot = (scope, key)
    for fork in st.branches.values():
        if fork.source == line and spot not in fork.frozen:
            fork.frozen[spot] = st.lookup(scope, key, st.branches.get(line) if line is not None else None)


def apply_written(w: World, ev: StateWritten) -> None:
    st = w.rooms[ev.room].part(State)
    st.clock += 1
    entry = Entry(ev.value, ev.version, st.clock, ev.by, ev.at)
    if st.branches:
        _freeze(st, ev.branch, ev.scope, ev.key)
    spot = (ev.scope, ev.key)
    if ev.branch is None:
        st.scopes.setdefault(ev.scope, {})[ev.key] = entry
        st.gone.pop(spot, None)
    else:
        branch = st.branches[ev.branch]
        branch.overlay[spot] = entry
        branch.gone.pop(spot, None)


def apply_deleted(w: World, ev: StateDeleted) -> None:
    st = w.rooms[ev.room].part(State)
    st.clock += 1
    spot = (ev.scope, ev.key)
    if ev.scope == VIEW:
        old = st.views.pop(ev.key, None)
        if old is not None:
            st.gone[spot] = old.version
        return
    branch = st.branches.get(ev.branch) if ev.branch is not None else None
    old = st.lookup(ev.scope, ev.key, branch)
    if st.branches:
        _freeze(st, ev.branch, ev.scope, ev.key)
    if branch is None:
        keys = st.scopes.get(ev.scope)
        if keys is not None:
            keys.pop(ev.key, None)
            if not keys:
                del st.scopes[ev.scope]
        if old is not None:
            st.gone[spot] = old.version
    else:
        branch.overlay[spot] = None
        if old is not None:
            branch.gone[spot] = old.version


def apply_view_defined(w: World, ev: ViewDefined) -> None:
    st = w.rooms[ev.room].part(State)
    st.clock += 1
    st.views[ev.key] = Entry(ev.expr, ev.version, st.clock, ev.by, ev.at)
    st.gone.pop((VIEW, ev.key), None)


def apply_branch_created(w: World, ev: BranchCreated) -> None:
    w.rooms[ev.room].part(State).branches[ev.branch] = Branch(ev)
