"""Durable facts, past tense, tagged on `type`: the hub's whole state is a fold over them."""

from __future__ import annotations

import msgspec

from hub.protocol.types import Address, AgentName, RoomName, Seq, SessionId

__all__ = [
    "AgentJoined",
    "BaseEvent",
    "Event",
    "HubStarted",
    "MessageClaimed",
    "MessageSent",
    "PresenceChanged",
    "SessionClosed",
    "SessionOpened",
]


class BaseEvent(msgspec.Struct, tag_field="type", tag=True, frozen=True, kw_only=True, gc=False):
    """Every event: the room it belongs to and `ctx.now` when it was decided."""

    room: RoomName
    at: float


class HubStarted(BaseEvent):
    """The hub (re)started: every session of the previous run is gone."""


class AgentJoined(BaseEvent):
    """An agent joined (or re-joined, rotating its token); only the token's hash is kept."""

    agent: AgentName
    token_hash: str
    role: str | None = None


class PresenceChanged(BaseEvent):
    """An agent's status changed (heartbeat with a status)."""

    agent: AgentName
    status: str


class SessionOpened(BaseEvent):
    """A session attached to an agent: the agent is online while it has one."""

    agent: AgentName
    session: SessionId


class SessionClosed(BaseEvent):
    """A session of an agent ended."""

    agent: AgentName
    session: SessionId


class MessageSent(BaseEvent):
    """A message joined a room's feed at `seq`; `sender` is a name, or `room/name` from another room."""

    seq: Seq
    sender: Address = msgspec.field(name="from")
    to: tuple[Address, ...]
    kind: str
    body: msgspec.Raw
    reply_to: Seq | None = None
    priority: bool = False


class MessageClaimed(BaseEvent):
    """A message was claimed by an agent."""

    seq: Seq
    holder: AgentName


Event = (
    HubStarted | AgentJoined | PresenceChanged | SessionOpened | SessionClosed | MessageSent | MessageClaimed
)
