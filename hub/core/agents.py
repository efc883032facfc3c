"""Agents: join, token hashes, presence (status, last_heartbeat) and who is acting (SPEC: Identity)."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from hub.core import feed
from hub.core import rooms as rooms_
from hub.core.effects import Context, Deliver, Outcome
from hub.core.limits import check_count
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError
from hub.protocol.events import AgentJoined, PresenceChanged, SessionClosed, SessionOpened
from hub.protocol.frames import Delivery
from hub.protocol.types import AgentName, RoomName, SessionId

__all__ = [
    "SessionInfo",
    "AgentRules",
    "Agent",
    "apply_joined",
    "apply_presence",
    "apply_session_closed",
    "apply_session_opened",
    "check_name",
    "hash_token",
    "presence",
    "verify",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
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
        self.proven: str | None = None  # the token last proven against token_hash (memory only, saves a hash)

    def beat(self, at: float) -> None:
        """Every meaningful action is a heartbeat, except for an agent that said it is done."""
        if self.status not in NO_AUTO_HEARTBEAT and at > self.last_heartbeat:
            self.last_heartbeat = at


def check_name(name: str, what: str = "name") -> None:
    """Refuse names that cannot be addresses (`room/name`) or shell-safe file keys."""
    if not NAME.fullmatch(name):
        raise HubError(
            Code.BAD_REQUEST,
            f"bad {what} {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit",
            {"field": what, "reason": "pattern"},
        )


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def verify(
    room: rooms_.Room, name: AgentName, token: str | None, token_owner: dict[str, tuple[RoomName, str]]
) -> Agent:
    """The agent `name` if `token` proves it; `forbidden` if the token is another agent's."""
    agent = room.agents.get(name)
    if agent is None:
        raise HubError(
            Code.NOT_FOUND,
            f"agent {name!r} has not joined room {room.name!r}",
            {"what": "agent", "name": name},
        )
    if token is None:
        raise HubError(Code.UNAUTHORIZED, f"a token is required to act as {name!r}")
    proven = agent.proven
    if proven is not None and hmac.compare_digest(token, proven):
        return agent
    digest = hash_token(token)
    if hmac.compare_digest(digest, agent.token_hash):
        agent.proven = token
        return agent
    owner = token_owner.get(digest)
    if owner is not None:
        raise HubError(Code.FORBIDDEN, f"that token belongs to {owner[0]}/{owner[1]}, not {room.name}/{name}")
    raise HubError(Code.UNAUTHORIZED, f"wrong token for {name!r} (re-joining rotates it)")


def presence(agent: Agent) -> dict[str, Any]:
    """The presence record clients see."""
    return {
        "name": agent.name,
        "role": agent.role,
        "status": agent.status,
        "waiting_on": None,
        "last_heartbeat": agent.last_heartbeat,
        "sessions": len(agent.sessions),
    }


def apply_joined(room: rooms_.Room, event: AgentJoined, token_owner: dict[str, tuple[RoomName, str]]) -> None:
    agent = room.agents.get(event.agent)
    if agent is None:
        room.agents[event.agent] = Agent(event.agent, event.role, event.token_hash, event.at)
        return
    token_owner.pop(agent.token_hash, None)
    agent.token_hash = event.token_hash
    agent.proven = None
    if event.role is not None:
        agent.role = event.role
    if agent.status == "offline" and not agent.sessions:
        agent.status = "active"
    agent.beat(event.at)


def apply_presence(room: rooms_.Room, event: PresenceChanged) -> None:
    agent = room.agents[event.agent]
    agent.status = event.status
    agent.last_heartbeat = max(agent.last_heartbeat, event.at)


def apply_session_opened(room: rooms_.Room, event: SessionOpened) -> None:
    agent = room.agents[event.agent]
    agent.sessions.add(event.session)
    if agent.status == "offline":
        agent.status = "active"
    agent.beat(event.at)


def apply_session_closed(room: rooms_.Room, event: SessionClosed) -> None:
    agent = room.agents[event.agent]
    agent.sessions.discard(event.session)
    if not agent.sessions:
        agent.status = "offline"


class SessionInfo:
    """A live session's bindings (ephemeral: not in the log)."""

    __slots__ = ("agent", "room", "stream", "subs", "waiter", "waiter_room")

    def __init__(self, room: RoomName) -> None:
        self.room = room
        self.agent: AgentName | None = None
        self.stream = False
        self.waiter: AgentName | None = None
        self.waiter_room: RoomName | None = None  # may differ from `room`: a session waits in any room
        self.subs: set[tuple[RoomName, int]] = set()


class AgentRules:
    """Joining, sessions and presence (SPEC: Identity and rooms). Mixed into Machine: `self` is the machine."""

    def _join(self, cmd: c.Join, ctx: Context, out: Outcome) -> None:
        rooms_.check_room(cmd.room)
        check_name(cmd.name)
        self._admit(cmd, ctx.now)
        if ctx.secret is None:
            raise HubError(Code.UNAVAILABLE, "no source of tokens")
        token = ctx.secret()
        digest = hash_token(token)
        self._emit(
            out, e.AgentJoined(room=cmd.room, at=ctx.now, agent=cmd.name, token_hash=digest, role=cmd.role)
        )
        self._reply(out, ctx, cmd, {"room": cmd.room, "name": cmd.name, "token": token, "role": cmd.role})

    def _admit(self, cmd: c.Join, now: float) -> None:
        """With an admin token, joining needs it, a live invite to the room, or the agent's own token
        (a re-join rotating it) (SPEC: Identity and rooms)."""
        if self._is_admin(cmd.admin_token):
            return
        if cmd.invite is not None:
            invite = self.invites.get(hash_token(cmd.invite))
            if invite is not None and invite[0] == cmd.room and (invite[1] is None or now < invite[1]):
                return
            raise HubError(
                Code.UNAUTHORIZED,
                f"that invite does not admit to room {cmd.room!r} (wrong, expired, or another room's)",
            )
        room = self.rooms.get(cmd.room)
        if room is not None and cmd.token is not None and cmd.name in room.agents:
            verify(room, cmd.name, cmd.token, self.token_owner)
            return
        raise HubError(
            Code.UNAUTHORIZED,
            f"joining needs the admin token or an invite to room {cmd.room!r} (synapse room invite {cmd.room})",
        )

    def _is_admin(self, given: str | None) -> bool:
        """Whether `given` is the hub's admin token (or the hub has none); compared in constant time."""
        admin = self.config.admin_token
        if admin is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), admin.encode())

    def _need_admin(self, given: str | None, what: str) -> None:
        if not self._is_admin(given):
            raise HubError(Code.UNAUTHORIZED, f"{what} needs the hub's admin token")

    def _attach(self, cmd: c.Attach, ctx: Context, out: Outcome) -> None:
        if ctx.session is None:
            raise HubError(Code.BAD_REQUEST, "attach needs a session")
        room, agent = self._actor(cmd, ctx)
        info = self.sessions.setdefault(ctx.session, SessionInfo(room.name))
        if info.agent is None:
            check_count("sessions per agent", len(agent.sessions), self.config.max_sessions_per_agent)
            info.agent, info.room = agent.name, room.name
            self._emit(
                out, e.SessionOpened(room=room.name, at=ctx.now, agent=agent.name, session=ctx.session)
            )
            for held in list(room.claims.live.values()):  # back within grace: its claims are its own again
                if (
                    held.holder == agent.name
                    and held.bound
                    and held.session is None
                    and not held.expired(ctx.now)
                ):
                    self._emit(
                        out, e.ClaimRenewed(room=room.name, at=ctx.now, work=held.work, session=ctx.session)
                    )
        if cmd.stream and not info.stream:
            info.stream = True
            room.streams.setdefault(agent.name, set()).add(ctx.session)
        self._reply(out, ctx, cmd, {"seq": room.seq, "presence": presence(agent)})
        if cmd.after is not None:
            backlog = [
                feed.to_message(room, m) for m in feed.matching(room, cmd.after, agent.name, None, False)
            ]
            for message in backlog:
                out.effects.append(Deliver((ctx.session,), Delivery(message=message)))

    def _heartbeat(self, cmd: c.Heartbeat, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        status = cmd.status or agent.status
        if status == "offline" and agent.sessions:
            raise HubError(
                Code.BAD_REQUEST, "an agent with a live session is not offline", {"field": "status"}
            )
        self._emit(out, e.PresenceChanged(room=room.name, at=ctx.now, agent=agent.name, status=status))
        self._reply(out, ctx, cmd, presence(agent))

    def _agents(self, cmd: c.Agents, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        listed = [] if room is None else [presence(a) for a in room.agents.values()]
        waiting = (
            {} if room is None else {w.for_: w.name for w in room.waiters.values() if w.for_ is not None}
        )
        conditions = {} if room is None else room.conditions.waiting
        for record in listed:
            if record["name"] in waiting and record["status"] != "offline":
                record["waiter"] = waiting[record["name"]]
            if record["name"] in conditions:
                record["status"], record["waiting_on"] = "waiting", conditions[record["name"]]
        self._reply(out, ctx, cmd, {"room": cmd.room, "agents": listed})
