"""Versioned entries in scopes (_shared, one per agent, _view), CAS, gates, increments, batches, branches."""

from __future__ import annotations

import re
from typing import Any

from hub.core import agents as agents_
from hub.core import cel
from hub.core import conditions as conditions_
from hub.core import rooms as rooms_
from hub.core.effects import Context, Outcome
from hub.core.limits import check_count
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import encode
from hub.protocol.errors import Code, HubError
from hub.protocol.events import BranchCreated, StateDeleted, StateWritten, ViewDefined
from hub.protocol.types import AgentName

__all__ = ["StateRules", "SHARED", "VIEW", "Branch", "Entry", "State", "check_key", "next_value"]

SHARED = "_shared"
VIEW = "_view"
KEY = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")


class Entry:
    """One entry: its value, its version, and the room's state clock when it last changed."""

    __slots__ = ("at", "by", "changed", "value", "version")

    def __init__(self, value: Any, version: int, changed: int, by: AgentName, at: float) -> None:
        self.value = value
        self.version = version
        self.changed = changed
        self.by = by
        self.at = at

    def view(self, scope: str, key: str) -> dict[str, Any]:
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
    on both sides (a merge conflict).
    """

    __slots__ = ("base", "by", "created_at", "frozen", "name", "overlay", "source")

    def __init__(self, event: BranchCreated) -> None:
        self.name = event.branch
        self.source = event.source
        self.base = event.base
        self.by = event.by
        self.created_at = event.at
        self.overlay: dict[tuple[str, str], Entry | None] = {}
        self.frozen: dict[tuple[str, str], Entry | None] = {}


class State:
    """A room's entries and views (main line) and its branches."""

    __slots__ = ("branches", "clock", "scopes", "views")

    def __init__(self) -> None:
        self.scopes: dict[str, dict[str, Entry]] = {}
        self.views: dict[str, Entry] = {}  # key → Entry whose value is the expression's source
        self.clock = 0  # one step per write command: batches and merges are one step
        self.branches: dict[str, Branch] = {}

    # -- reading -------------------------------------------------------------------------------------

    def branch(self, name: str | None) -> Branch | None:
        if name is None:
            return None
        found = self.branches.get(name)
        if found is None:
            raise HubError(Code.NOT_FOUND, f"no branch {name!r}", {"what": "branch", "branch": name})
        return found

    def lookup(self, scope: str, key: str, branch: Branch | None = None) -> Entry | None:
        spot = (scope, key)
        while branch is not None:
            if spot in branch.overlay:
                return branch.overlay[spot]
            if spot in branch.frozen:
                return branch.frozen[spot]
            branch = self.branches.get(branch.source) if branch.source is not None else None
        return self.scopes.get(scope, {}).get(key)

    def entries(self, branch: Branch | None = None) -> dict[str, dict[str, Entry]]:
        """Every live entry by scope, as seen from `branch` (the main line when None)."""
        if branch is None:
            return {scope: dict(keys) for scope, keys in self.scopes.items() if keys}
        base = self.entries(self.branches.get(branch.source) if branch.source is not None else None)
        for layer in (branch.frozen, branch.overlay):
            for (scope, key), entry in layer.items():
                if entry is None:
                    base.get(scope, {}).pop(key, None)
                else:
                    base.setdefault(scope, {})[key] = entry
        return {scope: keys for scope, keys in base.items() if keys}

    def values(self, branch: Branch | None = None) -> dict[str, dict[str, Any]]:
        """The `state` root of the CEL context (views excluded; the caller resolves them)."""
        return {scope: {k: e.value for k, e in keys.items()} for scope, keys in self.entries(branch).items()}

    # -- folding events ------------------------------------------------------------------------------

    def _freeze(self, line: str | None, scope: str, key: str) -> None:
        """Before `line` (a branch, or the main line) changes a key, its forks keep the entry they forked."""
        spot = (scope, key)
        current: Any = _UNSET
        for fork in self.branches.values():
            if fork.source == line and spot not in fork.frozen:
                if current is _UNSET:
                    current = self.lookup(scope, key, self.branches.get(line) if line is not None else None)
                fork.frozen[spot] = current

    def written(self, event: StateWritten, step: bool = True) -> None:
        if step:
            self.clock += 1
        entry = Entry(event.value, event.version, self.clock, event.by, event.at)
        if self.branches:
            self._freeze(event.branch, event.scope, event.key)
        if event.branch is None:
            self.scopes.setdefault(event.scope, {})[event.key] = entry
        else:
            self.branches[event.branch].overlay[(event.scope, event.key)] = entry

    def deleted(self, event: StateDeleted, step: bool = True) -> None:
        if step:
            self.clock += 1
        if event.scope == VIEW:
            self.views.pop(event.key, None)
            return
        if self.branches:
            self._freeze(event.branch, event.scope, event.key)
        if event.branch is None:
            keys = self.scopes.get(event.scope)
            if keys is not None:
                keys.pop(event.key, None)
                if not keys:
                    del self.scopes[event.scope]
        else:
            self.branches[event.branch].overlay[(event.scope, event.key)] = None

    def view_defined(self, event: ViewDefined) -> None:
        self.clock += 1
        self.views[event.key] = Entry(event.expr, event.version, self.clock, event.by, event.at)

    def branch_created(self, event: BranchCreated) -> None:
        self.branches[event.branch] = Branch(event)


_UNSET = object()


def same(a: Entry | None, b: Entry | None) -> bool:
    """Whether two entries hold the same value (absent equals absent), whatever their versions or writers."""
    if a is None or b is None:
        return a is b
    return bool(a.value == b.value) and type(a.value) is type(b.value)


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


def check_value(value: Any, limit: int | None) -> None:
    if limit is not None:
        size = len(encode(value))
        if size > limit:
            raise HubError(Code.TOO_LARGE, f"value is {size} bytes, over {limit}", {"limit": limit})


def next_value(
    current: Entry | None, scope: str, key: str, value: Any, increment: bool, if_version: int | None
) -> tuple[Any, int]:
    """The value and version a write leaves (SPEC: Shared state): CAS refusals carry the current entry."""
    if if_version is not None:
        have = 0 if current is None else current.version
        if if_version != have:
            now = None if current is None else current.view(scope, key)
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
                {"current": current.view(scope, key) if current else None},
            )
        value = base + value
    return value, (0 if current is None else current.version) + 1


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


__all__ += ["check_branch_name", "check_value", "same"]


_MISSING = object()


class StateRules:
    """Writing and reading shared state, gates, views and eval (SPEC: Shared state and CEL). Mixed into Machine: `self` is the machine."""

    def _writable(self, room: rooms_.Room, agent: agents_.Agent, scope: str, key: str) -> None:
        """`_shared` is everyone's, an agent's own scope only its own, `_view` only through views."""
        check_key(key, scope)
        if scope == VIEW:
            raise HubError(
                Code.BAD_REQUEST, "views are written with `state view KEY EXPR`", {"field": "scope"}
            )
        if scope != SHARED and scope != agent.name:
            raise HubError(Code.FORBIDDEN, f"only {scope} writes scope {scope!r}", {"scope": scope})

    def _gate(self, room: rooms_.Room, expr: str | None, branch: Branch | None) -> None:
        """A CEL write gate: refuse with `precondition_failed` unless it evaluates to exactly true."""
        if expr is None:
            return
        compiled = conditions_.compile_or_refuse(expr)
        context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
        try:
            value = cel.evaluate(compiled, context)  # a plain mapping: only the slice it reads is converted
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

    def _branch_context(self, room: rooms_.Room, branch: Branch) -> dict[str, Any]:
        context = conditions_.context_of(room)
        views: dict[str, Any] = {}
        context["state"] = {**room.state.values(branch), "_view": views}  # views resolve over the branch
        programs = room.conditions.view_programs
        for _ in range(len(programs) + 1):
            bound = context  # plain: each view converts only the slice it reads
            changed = False
            for key, compiled in programs.items():
                try:
                    value = cel.evaluate(compiled, bound)
                except cel.EvalError:
                    changed = views.pop(key, _MISSING) is not _MISSING or changed
                    continue
                old = views.get(key, _MISSING)
                if old is _MISSING or old != value or type(old) is not type(value):
                    views[key] = value
                    changed = True
            if not changed:
                break
        return context

    def _write(
        self,
        out: Outcome,
        room: rooms_.Room,
        agent: agents_.Agent,
        now: float,
        branch: Branch | None,
        scope: str,
        key: str,
        value: Any,
        increment: bool,
        if_version: int | None,
    ) -> dict[str, Any]:
        self._writable(room, agent, scope, key)
        check_value(value, self.config.max_body_bytes)
        current = room.state.lookup(scope, key, branch)
        value, version = next_value(current, scope, key, value, increment, if_version)
        bname = None if branch is None else branch.name
        self._emit(
            out,
            e.StateWritten(
                room=room.name,
                at=now,
                scope=scope,
                key=key,
                value=value,
                version=version,
                by=agent.name,
                branch=bname,
            ),
        )
        return {"scope": scope, "key": key, "value": value, "version": version}

    def _set_state(self, cmd: c.SetState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        self._gate(room, cmd.if_, branch)
        result = self._write(
            out, room, agent, ctx.now, branch, cmd.scope, cmd.key, cmd.value, cmd.increment, cmd.if_version
        )
        self._reply(out, ctx, cmd, result)

    def _init_state(self, cmd: c.InitState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        current = room.state.lookup(cmd.scope, cmd.key, branch)
        if current is not None:
            raise HubError(
                Code.ALREADY_EXISTS,
                f"{cmd.scope}.{cmd.key} exists",
                {"current": current.view(cmd.scope, cmd.key)},
            )
        self._reply(
            out,
            ctx,
            cmd,
            self._write(out, room, agent, ctx.now, branch, cmd.scope, cmd.key, cmd.value, False, None),
        )

    def _delete_state(self, cmd: c.DeleteState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        if cmd.scope == VIEW:
            current = room.state.views.get(cmd.key)
        else:
            self._writable(room, agent, cmd.scope, cmd.key)
            current = room.state.lookup(cmd.scope, cmd.key, branch)
        if current is None:
            raise HubError(Code.NOT_FOUND, f"no entry {cmd.scope}.{cmd.key}", {"what": "key", "key": cmd.key})
        if cmd.if_version is not None and cmd.if_version != current.version:
            raise HubError(
                Code.CONFLICT,
                f"{cmd.scope}.{cmd.key} is at version {current.version}",
                {"current": current.view(cmd.scope, cmd.key)},
            )
        self._emit(
            out,
            e.StateDeleted(
                room=room.name,
                at=ctx.now,
                scope=cmd.scope,
                key=cmd.key,
                by=agent.name,
                branch=None if branch is None else branch.name,
            ),
        )
        self._reply(out, ctx, cmd, {"scope": cmd.scope, "key": cmd.key, "deleted": True})

    def _batch_state(self, cmd: c.BatchState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        if not cmd.writes:
            raise HubError(Code.BAD_REQUEST, "a batch needs at least one write", {"field": "writes"})
        check_count("writes per batch", len(cmd.writes) - 1, 1000)
        self._gate(room, cmd.if_, branch)
        planned: dict[tuple[str, str], Entry | None] = {}
        staged = []
        for w in cmd.writes:  # decide every write before emitting any: all or nothing
            self._writable(room, agent, w.scope, w.key)
            check_value(w.value, self.config.max_body_bytes)
            spot = (w.scope, w.key)
            current = planned[spot] if spot in planned else room.state.lookup(w.scope, w.key, branch)
            value, version = next_value(current, w.scope, w.key, w.value, w.increment, w.if_version)
            planned[spot] = Entry(value, version, 0, agent.name, ctx.now)
            staged.append((w.scope, w.key, value, version))
        bname = None if branch is None else branch.name
        results = []
        for scope, key, value, version in staged:
            self._emit(
                out,
                e.StateWritten(
                    room=room.name,
                    at=ctx.now,
                    scope=scope,
                    key=key,
                    value=value,
                    version=version,
                    by=agent.name,
                    branch=bname,
                ),
            )
            results.append({"scope": scope, "key": key, "value": value, "version": version})
        self._reply(out, ctx, cmd, {"writes": results})

    def _define_view(self, cmd: c.DefineView, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        check_key(cmd.key, VIEW)
        compiled = conditions_.compile_or_refuse(cmd.expr)
        cycle = room.conditions.view_cycle(cmd.key, compiled)
        if cycle:
            raise HubError(
                Code.BAD_EXPRESSION,
                "views form a cycle: " + " → ".join(cycle),
                {"expression": cmd.expr, "cycle": cycle, "position": None},
            )
        current = room.state.views.get(cmd.key)
        version = 1 if current is None else current.version + 1
        room.conditions.context(room)  # views are kept resolved from now on
        self._emit(
            out,
            e.ViewDefined(
                room=room.name, at=ctx.now, key=cmd.key, expr=cmd.expr, version=version, by=agent.name
            ),
        )
        self._react(out)
        value = room.conditions.ctx["state"].get("_view", {}).get(cmd.key) if room.conditions.ctx else None
        self._reply(
            out,
            ctx,
            cmd,
            {"scope": "_view", "key": cmd.key, "expr": cmd.expr, "version": version, "value": value},
        )

    def _get_state(self, cmd: c.GetState, ctx: Context, out: Outcome) -> None:
        room = self._read_room(cmd.room)
        branch = room.state.branch(cmd.branch)
        if cmd.scope == VIEW:
            view = room.state.views.get(cmd.key)
            if view is None:
                raise HubError(Code.NOT_FOUND, f"no view {cmd.key!r}", {"what": "key", "key": cmd.key})
            context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
            value = context["state"].get("_view", {}).get(cmd.key)
            self._reply(
                out,
                ctx,
                cmd,
                {
                    "scope": "_view",
                    "key": cmd.key,
                    "value": value,
                    "version": view.version,
                    "expr": view.value,
                },
            )
            return
        entry = room.state.lookup(cmd.scope, cmd.key, branch)
        if entry is None:
            raise HubError(Code.NOT_FOUND, f"no entry {cmd.scope}.{cmd.key}", {"what": "key", "key": cmd.key})
        self._reply(out, ctx, cmd, entry.view(cmd.scope, cmd.key))

    def _list_state(self, cmd: c.ListState, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        if room is None:
            self._reply(out, ctx, cmd, {"entries": []})
            return
        branch = room.state.branch(cmd.branch)
        entries = [
            e_.view(scope, key)
            for scope, keys in sorted(room.state.entries(branch).items())
            for key, e_ in sorted(keys.items())
            if cmd.scope is None or cmd.scope == scope
        ]
        if cmd.scope in (None, VIEW) and room.state.views:
            context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
            resolved = context["state"].get("_view", {})
            entries += [
                {"scope": "_view", "key": k, "value": resolved.get(k), "version": v.version, "expr": v.value}
                for k, v in sorted(room.state.views.items())
            ]
        self._reply(out, ctx, cmd, {"entries": entries})

    def _eval(self, cmd: c.Eval, ctx: Context, out: Outcome) -> None:
        compiled = conditions_.compile_or_refuse(cmd.expr)
        room = self.rooms.get(cmd.room) or rooms_.Room(cmd.room, self.config.feed_window)
        branch = room.state.branch(cmd.branch)
        context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
        try:
            value = cel.evaluate(compiled, context)
        except cel.EvalError as exc:
            self._reply(out, ctx, cmd, {"value": None, "error": str(exc)})
            return
        self._reply(out, ctx, cmd, {"value": value})
