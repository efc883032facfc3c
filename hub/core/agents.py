"""Agents: join, tokens, who is acting, presence (status, waiting_on, last_heartbeat) and waiters (SPEC: Identity)."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.core import rooms
from hub.core.effects import CloseSession, Context, Deliver, Outcome
from hub.core.limits import Buckets, charge
from hub.core.world import Room, World, hash_token, same_secret
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol import results as r
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Notice
from hub.protocol.types import AgentName, RoomName, SessionId

__all__ = [
    "Agent",
    "Reader",
    "Roster",
    "Tokens",
    "Waiter",
    "Waiters",
    "acting_as",
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
    "decide_reset_token",
    "existing",
    "member",
    "notify",
    "presence",
    "proven",
    "reader",
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
    """A room's agents, and the conditions and waiters each is shown waiting on (presence `waiting`)."""

    __slots__ = ("agents", "waiter", "waiting")

    def __init__(self) -> None:
        self.agents: dict[AgentName, Agent] = {}
        self.waiting: dict[
            AgentName, dict[int, str]
        ] = {}  # agent → its live subscriptions' sources, oldest first
        self.waiter: dict[AgentName, AgentName] = {}  # agent → the name of its armed waiter

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

    __slots__ = (
        "after",
        "at",
        "directed_only",
        "due",
        "for_",
        "id",
        "name",
        "owner",
        "pending",
        "session",
        "settle",
        "sub",
    )

    def __init__(
        self,
        session: SessionId,
        cmd_id: int,
        name: AgentName,
        owner: AgentName,
        for_: AgentName | None,
        directed_only: bool,
        sub: int | None,
        settle: float = 0.0,
        at: float | None = None,
        after: int = 0,
    ) -> None:
        self.session = session
        self.id = cmd_id
        self.name = name
        self.owner = owner
        self.for_ = for_
        self.directed_only = directed_only
        self.sub = sub  # the condition it also waits on
        self.settle = settle  # seconds to collect a burst after the first message (wake governor)
        self.due: float | None = None  # a deferred wake is due then (settle or stagger), collecting `pending`
        self.pending: list[Any] = []  # the messages (frames.Message) that deferred wake hands over
        self.at = at  # when it was armed (`synapse why wait`)
        self.after = after  # the feed's seq when it was armed: a message after it for `for_` wakes it


class Shown:
    """Hub-wide: the agents whose presence changed without an event (waiting), to push to tails at commit."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[tuple[RoomName, AgentName], None] = {}  # insertion-ordered set


class Waiters:
    """A room's armed waiters by waiter name: one live waiter per name."""

    __slots__ = ("by_name",)

    def __init__(self) -> None:
        self.by_name: dict[AgentName, Waiter] = {}


# -- who is acting ------------------------------------------------------------------------------------


def existing(room: Room, name: AgentName) -> Agent:
    """The agent `name` of the room; `not_found` if it never joined."""
    agent = room.part(Roster).agents.get(name)
    if agent is None:
        raise HubError(
            Code.NOT_FOUND,
            f"agent {name!r} has not joined room {room.name!r}",
            {"what": "agent", "name": name},
        )
    return agent


def verify(w: World, room: Room, name: AgentName, token: str | None) -> Agent:
    """The agent `name` if `token` proves it; `forbidden` if the token is another agent's."""
    agent = existing(room, name)
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


def acting_as(w: World, room: Room, name: AgentName, token: str | None, admin_token: str | None) -> Agent:
    """The agent `name`, if `token` proves it or `admin_token` is the hub's (which may act as any agent)."""
    return existing(room, name) if w.is_admin(admin_token) else verify(w, room, name, token)


def member(w: World, room: Room, token: str | None, what: str) -> Agent:
    """The agent of `room` whose token `token` is; `unauthorized` if none is (acting needs a member's token)."""
    if token is None:
        raise HubError(Code.UNAUTHORIZED, f"{what} needs the token of an agent of room {room.name!r}")
    owner = w.part(Tokens).owner.get(hash_token(token))
    agent = room.part(Roster).agents.get(owner[1]) if owner is not None and owner[0] == room.name else None
    if agent is None:
        raise HubError(Code.UNAUTHORIZED, f"{what} needs the token of an agent of room {room.name!r}")
    return agent


class Reader(msgspec.Struct, frozen=True):
    """Who reads: the room (None: it does not exist), the token's agent there (if any), the admin token."""

    room: Room | None
    name: AgentName | None
    admin: bool


def reader(w: World, cmd: Any) -> Reader:
    """Who a read is by; on a hub with an admin token a read needs a member's token of the room, or the admin
    token (SPEC: Identity and rooms). A read never makes a room."""
    admin = w.is_admin(cmd.admin_token)
    room = w.rooms.get(cmd.room)
    name = None
    if room is not None and cmd.token is not None:
        owner = w.part(Tokens).owner.get(hash_token(cmd.token))
        if owner is not None and owner[0] == room.name:
            name = owner[1]
    if w.gated and not admin and name is None:
        raise HubError(
            Code.UNAUTHORIZED,
            f"reading room {cmd.room!r} needs the token of one of its agents, or the admin token",
        )
    return Reader(room, name, admin)


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
    agent = acting_as(w, room, cmd.name, cmd.token, cmd.admin_token)  # the admin token may act as anyone
    charge(w.part(Buckets), (room.name, agent.name), w.config, ctx.now, ctx.size, out)
    return room, agent


# -- deciding -------------------------------------------------------------------------------------------


def decide_join(w: World, cmd: c.Join, ctx: Context) -> Outcome:
    """Join a new name, or re-join one's own (SPEC: Identity; CLI.md "Identity and authorization")."""
    rooms.check_room(cmd.room)
    rooms.check_name(cmd.name)
    if ctx.secret is None:
        raise HubError(Code.UNAVAILABLE, "no source of tokens")
    if cmd.force and w.gated:
        raise HubError(
            Code.FORBIDDEN,
            "join --force works only on a hub without an admin token; "
            f"here the admin gives a name a new token: synapse admin reset-token {cmd.name}",
        )
    admin = w.is_admin(cmd.admin_token)
    room = w.rooms.get(cmd.room)
    if room is None and w.gated and not admin:  # there, only the admin token (or `room create`) makes rooms
        raise _needs_admission(cmd.room)
    agent = room.part(Roster).agents.get(cmd.name) if room is not None else None
    out = Outcome()
    if agent is None:
        invited = cmd.invite is not None and rooms.admitted_by_invite(w, cmd.room, cmd.invite, ctx.now)
        if w.gated and not admin and not invited:
            if cmd.invite is not None:
                raise HubError(
                    Code.UNAUTHORIZED,
                    f"that invite does not admit to room {cmd.room!r} (wrong, expired, or another room's)",
                )
            raise _needs_admission(cmd.room)
        return _joined(cmd, ctx, ctx.secret(), out)
    assert room is not None
    mine = cmd.token is not None and proven(w, room, cmd.name, cmd.token) is not None
    if mine and not cmd.rotate:
        assert cmd.token is not None
        return _joined(cmd, ctx, cmd.token, out)  # the same token: a re-join changes presence and role
    if mine:
        return _joined(cmd, ctx, ctx.secret(), out)
    if admin or cmd.force:
        _take_over(room, agent, "the admin token" if admin else "join --force", out)
        return _joined(cmd, ctx, ctx.secret(), out, forced=True)
    raise HubError(
        Code.NAME_TAKEN,
        f"{cmd.name!r} is taken in room {cmd.room!r}: re-joining needs its token"
        + (
            f" (or the admin token: synapse admin reset-token {cmd.name})"
            if w.gated
            else f", or take it over with: synapse join {cmd.name} --force"
        ),
        {"name": cmd.name, "room": cmd.room},
    )


def decide_reset_token(w: World, cmd: c.ResetToken, ctx: Context) -> Outcome:
    """The admin token gives an existing agent a new token; its sessions are told and closed."""
    if not w.is_admin(cmd.admin_token):
        raise HubError(Code.UNAUTHORIZED, "resetting a token needs the hub's admin token")
    if ctx.secret is None:
        raise HubError(Code.UNAVAILABLE, "no source of tokens")
    room = rooms.existing(w, cmd.room)
    agent = existing(room, cmd.name)
    out = Outcome()
    _take_over(room, agent, "the admin token", out)
    joined = c.Join(room=cmd.room, name=cmd.name, id=cmd.id)
    return _joined(joined, ctx, ctx.secret(), out, forced=True)


def _needs_admission(room: str) -> HubError:
    return HubError(
        Code.UNAUTHORIZED,
        f"joining needs the admin token or an invite to room {room!r} (synapse room invite {room})",
    )


def _joined(cmd: c.Join, ctx: Context, token: str, out: Outcome, forced: bool = False) -> Outcome:
    out.emit(
        e.AgentJoined(
            room=cmd.room,
            at=ctx.now,
            agent=cmd.name,
            token_hash=hash_token(token),
            role=cmd.role,
            forced=forced,
        )
    )
    out.reply(ctx, cmd.id, r.Joined(room=cmd.room, name=cmd.name, token=token, role=cmd.role))
    return out


TAKEN_OVER_CLOSE = 4010  # the WebSocket close code of a session whose agent's name was taken over


def _take_over(room: Room, agent: Agent, by: str, out: Outcome) -> None:
    """The old holder of a name learns it was taken over (by `by`), and its sessions and waiters close."""
    sessions = set(agent.sessions)
    sessions.update(wt.session for wt in room.part(Waiters).by_name.values() if wt.owner == agent.name)
    if not sessions:
        return
    detail = {"name": agent.name, "room": room.name, "by": by}
    out.deliver(tuple(sorted(sessions)), Notice(kind="agent.taken_over", room=room.name, detail=detail))
    for session in sorted(sessions):
        out.effects.append(CloseSession(session, TAKEN_OVER_CLOSE, f"{agent.name} was taken over by {by}"))


def decide_heartbeat(w: World, cmd: c.Heartbeat, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = actor(w, cmd, ctx, out)
    status = cmd.status or agent.status
    if status == "offline" and agent.sessions:
        raise HubError(Code.BAD_REQUEST, "an agent with a live session is not offline", {"field": "status"})
    out.emit(e.PresenceChanged(room=room.name, at=ctx.now, agent=agent.name, status=status))
    roster = room.part(Roster)
    record = presence(roster, agent)
    record.status = "waiting" if roster.waiting_on(agent.name) or agent.name in roster.waiter else status
    record.last_heartbeat = max(agent.last_heartbeat, ctx.now)
    out.reply(ctx, cmd.id, record)
    return out


def decide_agents(w: World, cmd: c.Agents, ctx: Context) -> Outcome:
    room = reader(w, cmd).room
    listed: list[r.Presence] = []
    if room is not None:
        roster = room.part(Roster)
        listed.extend(presence(roster, agent) for agent in roster.agents.values())
    out = Outcome()
    out.reply(ctx, cmd.id, r.AgentList(room=cmd.room, agents=listed))
    return out


# -- reading --------------------------------------------------------------------------------------------


def presence(roster: Roster, agent: Agent) -> r.Presence:
    """The presence record clients see: `waiting` while a condition or a waiter of its own is armed."""
    waiting = roster.waiting_on(agent.name)
    waiter = roster.waiter.get(agent.name)
    return r.Presence(
        name=agent.name,
        role=agent.role,
        status="waiting" if waiting or waiter else agent.status,
        waiting_on=waiting,
        last_heartbeat=agent.last_heartbeat,
        sessions=len(agent.sessions),
        waiter=waiter,
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
        "status": "waiting" if waiting or agent.name in roster.waiter else agent.status,
        "waiting_on": waiting,
        "last_heartbeat": agent.last_heartbeat,
        "role": agent.role,
    }


def root(w: World, room: Room) -> dict[str, Any]:
    """The `agents` root of the CEL context."""
    roster = room.part(Roster)
    return {name: _root_entry(roster, a) for name, a in roster.agents.items()}


def refresh_root(w: World, room: Room, node: dict[str, Any], path: tuple[str, ...]) -> tuple[str, ...] | None:
    if len(path) == 2:
        roster = room.part(Roster)
        agent = roster.agents.get(AgentName(path[1]))
        if agent is not None:
            node[agent.name] = _root_entry(roster, agent)
    return None


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
