"""Status: the hub's version, uptime and counts, and every room with its counts (SPEC: Operators)."""

from __future__ import annotations

import msgspec

from hub.core import rooms
from hub.core.agents import Roster
from hub.core.claims import Claims
from hub.core.conditions import Conditions
from hub.core.effects import Context, Outcome
from hub.core.feed import Feed
from hub.core.tasks import Plan
from hub.core.world import World
from hub.protocol import commands as c
from hub.protocol import results as r
from hub.version import __version__

__all__ = ["Counts", "counts", "decide_rooms", "decide_status"]


class Counts(msgspec.Struct, kw_only=True):
    """Hub-wide counts (status, metrics)."""

    rooms: int
    agents: int
    online: int
    sessions: int
    claims: int
    subscriptions: int
    messages: int
    feed_messages: int = 0  # messages held in memory (each room's feed window), not in the log only
    feed_bytes: int = 0  # and their bodies' bytes


def counts(w: World) -> Counts:
    rosters = [room.part(Roster).agents for room in w.rooms.values()]
    feeds = [room.part(Feed) for room in w.rooms.values()]
    return Counts(
        rooms=len(w.rooms),
        agents=sum(len(agents) for agents in rosters),
        online=sum(1 for agents in rosters for a in agents.values() if a.sessions),
        sessions=len(w.sessions),
        claims=sum(len(room.part(Claims).live) for room in w.rooms.values()),
        subscriptions=sum(len(room.part(Conditions).subs) for room in w.rooms.values()),
        messages=sum(feed.seq for feed in feeds),
        feed_messages=sum(len(feed.messages) for feed in feeds),
        feed_bytes=sum(feed.bytes for feed in feeds),
    )


def decide_status(w: World, cmd: c.Status, ctx: Context) -> Outcome:
    n = counts(w)
    out = Outcome()
    out.reply(
        ctx,
        cmd.id,
        r.HubStatus(
            version=__version__,
            uptime=max(0.0, ctx.now - w.started_at),
            rooms=n.rooms,
            agents=n.agents,
            agents_online=n.online,
            sessions=n.sessions,
            log_events=w.position,
        ),
    )
    return out


def decide_rooms(w: World, cmd: c.ListRooms, ctx: Context) -> Outcome:
    rooms.need_admin(w, cmd.admin_token, "listing every room")
    listed = []
    for room in sorted(w.rooms.values(), key=lambda each: each.name):
        agents = room.part(Roster).agents
        listed.append(
            r.RoomInfo(
                name=room.name,
                agents=len(agents),
                online=sum(1 for a in agents.values() if a.sessions),
                messages=room.part(Feed).seq,
                claims=len(room.part(Claims).live),
                tasks=len(room.part(Plan).tasks),
            )
        )
    out = Outcome()
    out.reply(ctx, cmd.id, r.RoomList(rooms=listed))
    return out
