"""Agents: join, tokens, who is acting, presence (status, waiting_on, last_heartbeat) and waiters (SPEC: Identity)."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.core import rooms
from hub.core.effects import Context, Deliver, Outcome
from hub.core.limits import Bucket, Buckets
from hub.core.world import Room, World, hash_token, same_secret
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol import results as r
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Notice
from hub.protocol.types import AgentName, RoomName, SessionId

__all__ = [
    "Agent",
    "Roster",
    "Tokens",
    "Waiter",
    "Waiters",
    "actor",
    "apply_joined",
    "apply_presence",
    "apply_session_closed",
    "apply_session_opened",
    "apply_started",
    "beat",
    "decide_agents",
    "decide_heartbeat",
    "decide_join",
    "member",
    "notify",
    "presence",
    "proven",
    "refresh_root",
    "root",
    "verify",
]

NO_AUTO_HEARTBEAT = frozenset({"done"})


class Agent:
    """One named participant of a room."""

    __slots__ = ("last_heartbeat", "name", "proven", "role", "sessions", "status", "token_hash")

    def __init__(self, name: AgentName, role: str | None, token_hash: str, at: float) -> None:
        self.name = name
        self.role = role
        self.token_hash = token_hash
        self.status = "active"
        self.last_heartbeat = at
        self.sessions: set[SessionId] = set()
        self.proven: str | None = None  # a cache: the token last proven against token_hash (saves a hash)


class Roster:
    """A room's agents, and the conditions each is shown waiting on (presence `waiting`)."""

    __slots__ = ("agents", "waiting")

    def __init__(self) -> None:
        self.agents: dict[AgentName, Agent] = {}
        self.waiting: dict[
            AgentName, dict[int, str]
        ] = {}  # agent → its live subscriptions' sources, oldest first

    def waiting_on(self, name: AgentName) -> str | None:
        subs = self.waiting.get(name)
        return next(reversed(subs.values())) if subs else None


class Tokens:
    """Hub-wide: whose token a hash is (to say `forbidden` rather than `unauthorized` for another's token)."""

    __slots__ = ("owner",)

    def __init__(self) -> None:
        self.owner: dict[str, tuple[RoomName, AgentName]] = {}


class Waiter:
    """An armed waiter of agent `owner` (ephemeral: it lives only as long as its session)."""

    __slots__ = ("directed_only", "for_", "id", "name", "owner", "session", "sub")

    def __init__(
        self,
        session: SessionId,
        cmd_id: int,
        name: AgentName,
        owner: AgentName,
        for_: AgentName | None,
        directed_only: bool,
        sub: int | None,
    ) -> None:
        self.session = session
        self.id = cmd_id
        self.name = name
        self.owner = owner
        self.for_ = for_
        self.directed_only = directed_only
        self.sub = sub  # the condition it also waits on


class Waiters:
    """A room's armed waiters by waiter name: one live waiter per name."""

    __slots__ = ("by_name",)

    def __init__(self) -> None:
        self.by_name: dict[AgentName, Waiter] = {}


# -- who is acting ------------------------------------------------------------------------------------


def verify(w: World, room: Room, name: AgentName, token: str | None) -> Agent:
    """The agent `name` if `token` proves it; `forbidden` if the token is another agent's."""
    agent = room.part(Roster).agents.get(name)
    if agent is None:
        raise HubError(
            Code.NOT_FOUND,
            f"agent {name!r} has not joined room {room.name!r}",
            {"what": "agent", "name": name},
        )
    if token is None:
        raise HubError(Code.UNAUTHORIZED, f"a token is required to act as {name!r}")
    if agent.proven is not None and same_secret(token, agent.proven):
        return agent
    digest = hash_token(token)
    if same_secret(digest, agent.token_hash):
        agent.proven = token
        return agent
    owner = w.part(Tokens).owner.get(digest)
    if owner is not None:
        raise HubError(Code.FORBIDDEN, f"that token belongs to {owner[0]}/{owner[1]}, not {room.name}/{name}")
    raise HubError(Code.UNAUTHORIZED, f"wrong token for {name!r} (re-joining rotates it)")


def member(w: World, room: Room, token: str | None, what: str) -> Agent:
    """The agent of `room` whose token `token` is; `unauthorized` if none is (acting needs a member's token)."""
    if token is None:
        raise HubError(Code.UNAUTHORIZED, f"{what} needs the token of an agent of room {room.name!r}")
    owner = w.part(Tokens).owner.get(hash_token(token))
    agent = room.part(Roster).agents.get(owner[1]) if owner is not None and owner[0] == room.name else None
    if agent is None:
        raise HubError(Code.UNAUTHORIZED, f"{what} needs the token of an agent of room {room.name!r}")
    return agent


def proven(w: World, room: Room, name: str, token: str | None) -> AgentName | None:
    """`name` if it is an agent of the room and `token` is its own, else None."""
    agent = room.part(Roster).agents.get(AgentName(name))
    if agent is None or token is None:
        return None
    try:
        return verify(w, room, agent.name, token).name
    except HubError:
        return None


def actor(w: World, cmd: Any, ctx: Context, out: Outcome) -> tuple[Room, Agent]:
    """The room and agent a mutation acts as, once its token (and session binding) prove it.

    The agent's rate is checked here and spent only if the command succeeds (staged in `out`).
    """
    room = rooms.existing(w, cmd.room)
    info = w.sessions.get(ctx.session) if ctx.session is not None else None
    if info is not None and info.agent is not None and (info.agent != cmd.name or info.room != cmd.room):
        raise HubError(
            Code.FORBIDDEN, f"this session acts as {info.room}/{info.agent}, not {cmd.room}/{cmd.name}"
        )
    agent = verify(w, room, cmd.name, cmd.token)
    rate = w.config.rate_per_agent
    if rate is not None:
        buckets = w.part(Buckets).of
        key = (room.name, agent.name)
        bucket = buckets.get(key)
        if bucket is not None:
            bucket.check(ctx.now)
        now, burst = ctx.now, w.config.rate_burst

        def spend() -> None:
            found = buckets.get(key)
            if found is None:
                found = buckets[key] = Bucket(rate, burst, now)
            found.spend(now)

        out.stage(spend)
    return room, agent


# -- deciding -------------------------------------------------------------------------------------------


def decide_join(w: World, cmd: c.Join, ctx: Context) -> Outcome:
    rooms.check_room(cmd.room)
    rooms.check_name(cmd.name)
    _admit(w, cmd, ctx.now)
    if ctx.secret is None:
        raise HubError(Code.UNAVAILABLE, "no source of tokens")
    token = ctx.secret()
    out = Outcome()
    out.emit(
        e.AgentJoined(room=cmd.room, at=ctx.now, agent=cmd.name, token_hash=hash_token(token), role=cmd.role)
    )
    out.reply(ctx, cmd.id, r.Joined(room=cmd.room, name=cmd.name, token=token, role=cmd.role))
    return out


def _admit(w: World, cmd: c.Join, now: float) -> None:
    """With an admin token, joining needs it, a live invite to the room, or the agent's own token
    (a re-join rotating it) (SPEC: Identity and rooms)."""
    if w.is_admin(cmd.admin_token):
        return
    if cmd.invite is not None:
        if rooms.admitted_by_invite(w, cmd.room, cmd.invite, now):
            return
        raise HubError(
            Code.UNAUTHORIZED,
            f"that invite does not admit to room {cmd.room!r} (wrong, expired, or another room's)",
        )
    room = w.rooms.get(cmd.room)
    if room is not None and cmd.token is not None and cmd.name in room.part(Roster).agents:
        verify(w, room, cmd.name, cmd.token)
        return
    raise HubError(
        Code.UNAUTHORIZED,
        f"joining needs the admin token or an invite to room {cmd.room!r} (synapse room invite {cmd.room})",
    )


def decide_heartbeat(w: World, cmd: c.Heartbeat, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = actor(w, cmd, ctx, out)
    status = cmd.status or agent.status
    if status == "offline" and agent.sessions:
        raise HubError(Code.BAD_REQUEST, "an agent with a live session is not offline", {"field": "status"})
    out.emit(e.PresenceChanged(room=room.name, at=ctx.now, agent=agent.name, status=status))
    roster = room.part(Roster)
    record = presence(roster, agent)
    record.status = "waiting" if roster.waiting_on(agent.name) else status
    record.last_heartbeat = max(agent.last_heartbeat, ctx.now)
    out.reply(ctx, cmd.id, record)
    return out


def decide_agents(w: World, cmd: c.Agents, ctx: Context) -> Outcome:
    room = w.rooms.get(cmd.room)
    listed: list[r.Presence] = []
    if room is not None:
        roster = room.part(Roster)
        waiters = {wt.for_: wt.name for wt in room.part(Waiters).by_name.values() if wt.for_ is not None}
        for agent in roster.agents.values():
            record = presence(roster, agent)
            if agent.name in waiters and agent.status != "offline":
                record.waiter = waiters[agent.name]
            listed.append(record)
    out = Outcome()
    out.reply(ctx, cmd.id, r.AgentList(room=cmd.room, agents=listed))
    return out


# -- reading --------------------------------------------------------------------------------------------


def presence(roster: Roster, agent: Agent) -> r.Presence:
    """The presence record clients see: `waiting` while a condition of its own is armed."""
    waiting = roster.waiting_on(agent.name)
    return r.Presence(
        name=agent.name,
        role=agent.role,
        status="waiting" if waiting else agent.status,
        waiting_on=waiting,
        last_heartbeat=agent.last_heartbeat,
        sessions=len(agent.sessions),
    )


def notify(room: Room, name: AgentName, kind: str, detail: Any) -> Deliver | None:
    """A Notice to every attached session of `name` (streaming or not: a presence connector too)."""
    member = room.part(Roster).agents.get(name)
    if member is None or not member.sessions:
        return None
    plain = msgspec.to_builtins(detail)
    return Deliver(tuple(sorted(member.sessions)), Notice(kind=kind, room=room.name, detail=plain))


def _root_entry(roster: Roster, agent: Agent) -> dict[str, Any]:
    waiting = roster.waiting_on(agent.name)
    return {
        "status": "waiting" if waiting else agent.status,
        "waiting_on": waiting,
        "last_heartbeat": agent.last_heartbeat,
        "role": agent.role,
    }


def root(w: World, room: Room) -> dict[str, Any]:
    """The `agents` root of the CEL context."""
    roster = room.part(Roster)
    return {name: _root_entry(roster, a) for name, a in roster.agents.items()}


def refresh_root(w: World, room: Room, node: dict[str, Any], path: tuple[str, ...]) -> None:
    if len(path) == 2:
        roster = room.part(Roster)
        agent = roster.agents.get(AgentName(path[1]))
        if agent is not None:
            node[agent.name] = _root_entry(roster, agent)


# -- folding --------------------------------------------------------------------------------------------


def beat(room: Room | None, name: str | None, at: float) -> None:
    """Every meaningful action is a heartbeat, except for an agent that said it is done."""
    if room is None or name is None:
        return
    agent = room.part(Roster).agents.get(AgentName(name))
    if agent is not None and agent.status not in NO_AUTO_HEARTBEAT and at > agent.last_heartbeat:
        agent.last_heartbeat = at


def apply_joined(w: World, ev: e.AgentJoined) -> None:
    room = w.room(ev.room)
    owner = w.part(Tokens).owner
    roster = room.part(Roster)
    agent = roster.agents.get(ev.agent)
    if agent is None:
        roster.agents[ev.agent] = Agent(ev.agent, ev.role, ev.token_hash, ev.at)
    else:
        owner.pop(agent.token_hash, None)
        agent.token_hash = ev.token_hash
        agent.proven = None
        if ev.role is not None:
            agent.role = ev.role
        if agent.status == "offline" and not agent.sessions:
            agent.status = "active"
        beat(room, agent.name, ev.at)
    owner[ev.token_hash] = (ev.room, ev.agent)


def apply_presence(w: World, ev: e.PresenceChanged) -> None:
    agent = w.rooms[ev.room].part(Roster).agents[ev.agent]
    agent.status = ev.status
    agent.last_heartbeat = max(agent.last_heartbeat, ev.at)


def apply_session_opened(w: World, ev: e.SessionOpened) -> None:
    room = w.rooms[ev.room]
    agent = room.part(Roster).agents[ev.agent]
    agent.sessions.add(ev.session)
    if agent.status == "offline":
        agent.status = "active"
    beat(room, agent.name, ev.at)


def apply_session_closed(w: World, ev: e.SessionClosed) -> None:
    agent = w.rooms[ev.room].part(Roster).agents[ev.agent]
    agent.sessions.discard(ev.session)
    if not agent.sessions:
        agent.status = "offline"


def apply_started(w: World, ev: e.HubStarted) -> None:
    """Every session of the previous run is gone."""
    w.started_at = ev.at
    for room in w.rooms.values():
        for agent in room.part(Roster).agents.values():
            if agent.sessions:
                agent.sessions.clear()
                agent.status = "offline"
