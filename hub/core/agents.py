"""Agents: join, token hashes, presence (status, last_heartbeat) and who is acting (SPEC: Identity)."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Any

from hub.protocol.errors import Code, HubError
from hub.protocol.events import AgentJoined, PresenceChanged, SessionClosed, SessionOpened
from hub.protocol.types import AgentName, RoomName, SessionId

if TYPE_CHECKING:
    from hub.core.rooms import Room

__all__ = [
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
    room: Room, name: AgentName, token: str | None, token_owner: dict[str, tuple[RoomName, str]]
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


def apply_joined(room: Room, event: AgentJoined, token_owner: dict[str, tuple[RoomName, str]]) -> None:
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


def apply_presence(room: Room, event: PresenceChanged) -> None:
    agent = room.agents[event.agent]
    agent.status = event.status
    agent.last_heartbeat = max(agent.last_heartbeat, event.at)


def apply_session_opened(room: Room, event: SessionOpened) -> None:
    agent = room.agents[event.agent]
    agent.sessions.add(event.session)
    if agent.status == "offline":
        agent.status = "active"
    agent.beat(event.at)


def apply_session_closed(room: Room, event: SessionClosed) -> None:
    agent = room.agents[event.agent]
    agent.sessions.discard(event.session)
    if not agent.sessions:
        agent.status = "offline"
