"""Branches of a room's state: fork, list, diff, merge (SPEC: Branches)."""

from __future__ import annotations

from hub.core import agents, rooms
from hub.core.effects import Context, Outcome
from hub.core.state import Branch, State, check_branch_name, same
from hub.core.world import Room, World
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol import results as r
from hub.protocol.errors import Code, HubError

__all__ = ["decide_create", "decide_diff", "decide_list", "decide_merge"]


def decide_create(w: World, cmd: c.CreateBranch, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    check_branch_name(cmd.branch)
    st = room.part(State)
    if cmd.branch in st.branches:
        raise HubError(Code.ALREADY_EXISTS, f"branch {cmd.branch!r} exists", {"current": cmd.branch})
    st.branch(cmd.from_)
    out.emit(
        e.BranchCreated(
            room=room.name, at=ctx.now, branch=cmd.branch, source=cmd.from_, base=st.clock, by=agent.name
        )
    )
    out.reply(ctx, cmd.id, r.BranchMade(branch=cmd.branch, from_=cmd.from_, base=st.clock))
    return out


def decide_list(w: World, cmd: c.ListBranches, ctx: Context) -> Outcome:
    room = agents.reader(w, cmd).room
    branches = [] if room is None else sorted(room.part(State).branches.values(), key=lambda b: b.name)
    listed = [
        r.BranchInfo(
            branch=b.name,
            from_=b.source,
            base=b.base,
            by=b.by,
            created_at=b.created_at,
            changes=len(b.overlay),
        )
        for b in branches
    ]
    out = Outcome()
    out.reply(ctx, cmd.id, r.BranchList(branches=listed))
    return out


def _changes(room: Room, branch: Branch) -> tuple[list[r.BranchChange], list[str], list[tuple[str, str]]]:
    """A branch's changes beside the source's current entries; the keys changed on both sides (three
    ways: the branch's entry, the source's, and the source's at the fork); the keys a merge writes."""
    st = room.part(State)
    source = st.source(branch)
    changes: list[r.BranchChange] = []
    conflicts: list[str] = []
    writes: list[tuple[str, str]] = []
    for (scope, key), mine in sorted(branch.overlay.items()):
        theirs = st.lookup(scope, key, source)
        changes.append(
            r.BranchChange(
                scope=scope,
                key=key,
                value=None if mine is None else mine.value,
                deleted=mine is None,
                source=None if theirs is None else theirs.value,
            )
        )
        spot = (scope, key)
        if spot in branch.frozen:
            moved = not same(theirs, branch.frozen[spot])  # the source changed it since the fork
            mine_moved = not same(mine, branch.frozen[spot])
        else:  # untouched by the source since the fork (or a snapshot too old to say: by the clock)
            moved = theirs is not None and theirs.changed > branch.base
            mine_moved = True
        if same(mine, theirs) or not mine_moved:
            continue  # nothing to bring over: already there, or the branch ended where it began
        if moved:
            conflicts.append(f"{scope}.{key}")
        else:
            writes.append(spot)
    return changes, conflicts, writes


def decide_diff(w: World, cmd: c.DiffBranch, ctx: Context) -> Outcome:
    agents.reader(w, cmd)
    room = rooms.existing(w, cmd.room)
    branch = room.part(State).branch(cmd.branch)
    assert branch is not None
    changes, conflicts, _ = _changes(room, branch)
    out = Outcome()
    out.reply(
        ctx,
        cmd.id,
        r.BranchDiff(branch=branch.name, from_=branch.source, changes=changes, conflicts=conflicts),
    )
    return out


def decide_merge(w: World, cmd: c.MergeBranch, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    st = room.part(State)
    branch = st.branch(cmd.branch)
    assert branch is not None
    _, conflicts, writes = _changes(room, branch)
    if conflicts:
        raise HubError(Code.CONFLICT, f"changed on both sides: {', '.join(conflicts)}", {"keys": conflicts})
    source = st.source(branch)
    out.emit(e.BranchMerged(room=room.name, at=ctx.now, branch=branch.name, by=agent.name))
    for scope, key in writes:  # the keys only the branch changed (three-way: the source kept its own)
        mine = branch.overlay[(scope, key)]
        theirs = st.lookup(scope, key, source)
        if mine is None:
            if theirs is not None:
                out.emit(
                    e.StateDeleted(
                        room=room.name,
                        at=ctx.now,
                        scope=scope,
                        key=key,
                        by=agent.name,
                        branch=branch.source,
                        op="branch.merge",
                    )
                )
            continue
        out.emit(
            e.StateWritten(
                room=room.name,
                at=ctx.now,
                scope=scope,
                key=key,
                value=mine.value,
                version=st.version(scope, key, source) + 1,
                by=agent.name,
                branch=branch.source,
                op="branch.merge",
            )
        )
    out.reply(ctx, cmd.id, r.Merged(branch=branch.name, merged=len(writes)))
    return out
