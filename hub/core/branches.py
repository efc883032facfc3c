"""Branches of a room's state: fork, diff, merge (SPEC: Branches)."""

from __future__ import annotations

from typing import Any

from hub.core import rooms as rooms_
from hub.core import state as state_
from hub.core.effects import Context, Outcome
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError

__all__ = ["BranchRules"]


class BranchRules:
    """Branches of a room's state: fork, diff, merge (SPEC: Branches). Mixed into Machine: `self` is the machine."""

    def _create_branch(self, cmd: c.CreateBranch, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        state_.check_branch_name(cmd.branch)
        if cmd.branch in room.state.branches:
            raise HubError(Code.ALREADY_EXISTS, f"branch {cmd.branch!r} exists", {"current": cmd.branch})
        room.state.branch(cmd.from_)
        self._emit(
            out,
            e.BranchCreated(
                room=room.name,
                at=ctx.now,
                branch=cmd.branch,
                source=cmd.from_,
                base=room.state.clock,
                by=agent.name,
            ),
        )
        self._reply(out, ctx, cmd, {"branch": cmd.branch, "from": cmd.from_, "base": room.state.clock})

    def _list_branches(self, cmd: c.ListBranches, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        listed = (
            []
            if room is None
            else [
                {
                    "branch": b.name,
                    "from": b.source,
                    "base": b.base,
                    "by": b.by,
                    "created_at": b.created_at,
                    "changes": len(b.overlay),
                }
                for b in sorted(room.state.branches.values(), key=lambda b: b.name)
            ]
        )
        self._reply(out, ctx, cmd, {"branches": listed})

    def _changes(
        self, room: rooms_.Room, branch: state_.Branch
    ) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, str]]]:
        """A branch's changes beside the source's current entries; the keys changed on both sides (three
        ways: the branch's entry, the source's, and the source's at the fork); the keys a merge writes."""
        source = room.state.branches.get(branch.source) if branch.source is not None else None
        changes: list[dict[str, Any]] = []
        conflicts: list[str] = []
        writes: list[tuple[str, str]] = []
        for (scope, key), mine in sorted(branch.overlay.items()):
            theirs = room.state.lookup(scope, key, source)
            changes.append(
                {
                    "scope": scope,
                    "key": key,
                    "value": None if mine is None else mine.value,
                    "deleted": mine is None,
                    "source": None if theirs is None else theirs.value,
                }
            )
            spot = (scope, key)
            if spot in branch.frozen:
                moved = not state_.same(theirs, branch.frozen[spot])  # the source changed it since the fork
                mine_moved = not state_.same(mine, branch.frozen[spot])
            else:  # untouched by the source since the fork (or a snapshot too old to say: by the clock)
                moved = theirs is not None and theirs.changed > branch.base
                mine_moved = True
            if state_.same(mine, theirs) or not mine_moved:
                continue  # nothing to bring over: already there, or the branch ended where it began
            if moved:
                conflicts.append(f"{scope}.{key}")
            else:
                writes.append(spot)
        return changes, conflicts, writes

    def _diff_branch(self, cmd: c.DiffBranch, ctx: Context, out: Outcome) -> None:
        room = self._read_room(cmd.room)
        branch = room.state.branch(cmd.branch)
        assert branch is not None
        changes, conflicts, _ = self._changes(room, branch)
        self._reply(
            out,
            ctx,
            cmd,
            {"branch": branch.name, "from": branch.source, "changes": changes, "conflicts": conflicts},
        )

    def _merge_branch(self, cmd: c.MergeBranch, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        assert branch is not None
        _, conflicts, writes = self._changes(room, branch)
        if conflicts:
            raise HubError(
                Code.CONFLICT, f"changed on both sides: {', '.join(conflicts)}", {"keys": conflicts}
            )
        source = room.state.branches.get(branch.source) if branch.source is not None else None
        self._emit(out, e.BranchMerged(room=room.name, at=ctx.now, branch=branch.name, by=agent.name))
        for scope, key in writes:  # the keys only the branch changed (three-way: the source kept its own)
            mine = branch.overlay[(scope, key)]
            theirs = room.state.lookup(scope, key, source)
            if mine is None:
                if theirs is not None:
                    self._emit(
                        out,
                        e.StateDeleted(
                            room=room.name,
                            at=ctx.now,
                            scope=scope,
                            key=key,
                            by=agent.name,
                            branch=branch.source,
                        ),
                    )
                continue
            version = (0 if theirs is None else theirs.version) + 1
            self._emit(
                out,
                e.StateWritten(
                    room=room.name,
                    at=ctx.now,
                    scope=scope,
                    key=key,
                    value=mine.value,
                    version=version,
                    by=agent.name,
                    branch=branch.source,
                ),
            )
        self._reply(out, ctx, cmd, {"branch": branch.name, "merged": len(writes)})
