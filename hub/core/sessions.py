"""Sessions: a hub (re)start, a session's end and the hub's timer, with what follows for presence, claims and
waiters."""

from __future__ import annotations

from hub.core import claims, conditions, feed
from hub.core.agents import Waiters
from hub.core.effects import ArmTimer, Context, Outcome, SessionGone, Start, Tick
from hub.core.feed import Streams
from hub.core.world import World
from hub.protocol import events as e
from hub.protocol.types import RoomName

__all__ = ["decide_gone", "decide_start", "decide_tick"]


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
