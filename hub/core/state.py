"""Versioned entries in scopes (_shared, one per agent, _view), CAS, gates, increments, batches, branches."""

from __future__ import annotations

import re
from typing import Any

from hub.protocol.codec import encode
from hub.protocol.errors import Code, HubError
from hub.protocol.events import BranchCreated, StateDeleted, StateWritten, ViewDefined
from hub.protocol.types import AgentName

__all__ = ["SHARED", "VIEW", "Branch", "Entry", "State", "check_key", "next_value"]

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
