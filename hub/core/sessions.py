"""Sessions: a hub (re)start, a session's end and the hub's timer, with what follows for presence, claims and
waiters."""

from __future__ import annotations

from hub.core import claims, conditions, feed, governor
from hub.core.agents import Roster, Waiters
from hub.core.conditions import Conditions, Subscriptions
from hub.core.effects import ArmTimer, Context, Outcome, SessionGone, Start, Tick
from hub.core.feed import Streams
from hub.core.limits import Buckets
from hub.core.world import SessionInfo, World
from hub.protocol import events as e
from hub.protocol.types import RoomName

__all__ = ["carry", "decide_gone", "decide_start", "decide_tick"]


def decide_start(w: World, cmd: Start, ctx: Context) -> Outcome:
    """Every session of the previous run is gone: its claims get the grace period to be re-taken."""
    out = Outcome()
    earliest = claims.restart(w, ctx.now, out)
    out.emit(e.HubStarted(room=RoomName(""), at=ctx.now))
    if earliest is not None:
        out.effects.append(ArmTimer(earliest))
    return out


def decide_tick(w: World, cmd: Tick, ctx: Context) -> Outcome:
    """A deadline came: claims past their TTL or grace lapse, deferred wakes that are due wake; the timer is
    armed again for the earliest deadline left (the shell keeps only one)."""
    out = claims.decide_tick(w, cmd, ctx)
    later = feed.wake_due(w, ctx.now, out)
    if later is not None:
        out.effects.append(ArmTimer(later))
    return out


def decide_gone(w: World, cmd: SessionGone, ctx: Context) -> Outcome:
    """The connection ended: its subscriptions and waiter go; its claims move on or get the grace."""
    out = Outcome()
    info = w.sessions.get(cmd.session)
    if info is None:
        return out
    session = cmd.session

    def forget() -> None:
        gone = w.sessions.pop(session, None)
        if gone is None:
            return
        for room_name, sub_id in sorted(gone.subs):
            conditions.drop_sub(w, w.rooms[room_name], sub_id)
        if gone.waiter is not None:
            waiter_room = w.rooms.get(gone.waiter[0])
            if waiter_room is not None:
                waiter = waiter_room.part(Waiters).by_name.get(gone.waiter[1])
                if waiter is not None and waiter.session == session:
                    conditions.disarm(w, waiter_room, waiter)
        home = w.rooms.get(gone.room)
        if home is not None and gone.agent is not None and gone.stream:
            streams = home.part(Streams).of
            mine = streams.get(gone.agent)
            if mine is not None:
                mine.discard(session)
                if not mine:
                    del streams[gone.agent]

    out.stage(forget)
    room = w.rooms.get(info.room)
    if room is not None and info.agent is not None:
        claims.orphan(w, room, info.agent, session, ctx.now, out)
        out.emit(e.SessionClosed(room=room.name, at=ctx.now, agent=info.agent, session=session))
    return out


def carry(old: World, new: World) -> None:
    """Move the live sessions' ephemeral state onto a world rebuilt from the log after a failed commit.

    Bindings, streams, waiters, subscriptions and spent rates are never in the log, so a rebuild alone would
    forget them while their sessions stay open. A session whose SessionOpened did not reach the log (its
    attach was refused) stays unbound; what belongs to a room the log does not have is dropped. A world
    whose last start is not the old one's (the start itself was refused) takes nothing: the sessions it
    lists are the previous run's, and nothing was bound since; the shell starts the hub again once it can.
    """
    new.now = old.now
    if new.started_at != old.started_at:
        return
    for part in (Buckets, governor.Deferred, governor.Loops):  # rates spent, deferred wakes, loop counters
        if part in old.parts:
            new.parts[part] = old.parts[part]
    new.part(Subscriptions).last_id = old.part(Subscriptions).last_id
    for sid, info in old.sessions.items():
        fresh = new.sessions[sid] = SessionInfo(info.room)
        room = new.rooms.get(info.room)
        if info.agent is None or room is None:
            continue
        agent = room.part(Roster).agents.get(info.agent)
        if agent is None or sid not in agent.sessions:
            continue
        fresh.agent = info.agent
        if info.stream:
            fresh.stream = True
            room.part(Streams).of.setdefault(info.agent, set()).add(sid)
    for room in new.rooms.values():  # ended while its SessionClosed waited in the refused batch: still bound,
        for agent in room.part(Roster).agents.values():  # so the shell's SessionGone can close it
            for sid in agent.sessions:
                if sid not in new.sessions:
                    bound = new.sessions[sid] = SessionInfo(room.name)
                    bound.agent = agent.name
    for name, old_room in old.rooms.items():
        room = new.rooms.get(name)
        if room is None:
            continue
        cond = old_room.parts.get(Conditions)
        for sub in list(cond.subs.values()) if cond is not None else ():
            if sub.session in new.sessions:
                conditions.adopt(new, room, sub)
        waiters = old_room.parts.get(Waiters)
        for waiter in list(waiters.by_name.values()) if waiters is not None else ():
            live = new.sessions.get(waiter.session)
            if live is None:
                continue
            conditions.arm(new, room, waiter)
            live.waiter = (room.name, waiter.name)
