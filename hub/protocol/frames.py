"""Hub → client frames, tagged on `type`: replies (Ok, Error) and pushes (Delivery, Wake)."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.protocol.types import Address, AgentName, RoomName, Seq

__all__ = [
    "Delivery",
    "Error",
    "EventBatch",
    "EventFrame",
    "Frame",
    "Message",
    "Notice",
    "Ok",
    "Trigger",
    "WAKE_CAP",
    "Wake",
]

WAKE_CAP = 100  # messages one wake hands over at most; the rest wait for the next wait (its cursor moves)


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One feed entry as clients see it (relay writes exactly this as an NDJSON line)."""

    room: RoomName
    seq: Seq
    sender: Address = msgspec.field(name="from")
    to: tuple[Address, ...]
    kind: str
    body: Any  # any JSON; the hub passes it through undecoded
    at: float
    reply_to: Seq | None = None
    priority: bool = False
    claimed_by: AgentName | None = None


class Ok(msgspec.Struct, tag=True, kw_only=True):
    """A command succeeded; `result` is its answer."""

    id: int
    result: Any = None


class Error(msgspec.Struct, tag=True, kw_only=True):
    """A command was refused, or a frame could not be read; `detail` lets the caller retry."""

    id: int | None
    code: str
    message: str
    detail: dict[str, Any] = {}


class Delivery(msgspec.Struct, tag=True, kw_only=True):
    """A message pushed to a session attached to an agent it is addressed to."""

    message: Message


class Wake(msgspec.Struct, tag=True, kw_only=True, omit_defaults=True):
    """What woke an armed waiter (`id` is the wait command's); the waiter is disarmed.

    A message wake hands over every message waiting for the waiter, oldest first, at most WAKE_CAP
    (`messages`); `message` is the first of them (what older clients read).
    """

    id: int
    reason: str  # "message" or "condition"
    message: Message | None = None
    condition: str | None = None
    value: Any = None
    messages: list[Message] = []


class Trigger(msgspec.Struct, tag=True, kw_only=True, omit_defaults=True):
    """A subscribed condition became true: its value, the event position that made it so, asked-for parts."""

    sub: int
    condition: str
    value: Any
    position: int
    include: dict[str, Any] = {}


class Notice(msgspec.Struct, tag=True, kw_only=True):
    """News for an agent's sessions about something of its own: `claim.lapsed`, `claim.handed`..."""

    kind: str
    room: RoomName
    detail: dict[str, Any] = {}


class EventFrame(msgspec.Struct, tag=True, kw_only=True):
    """One durable event for a tail: its position in the whole log, its room, the event itself."""

    position: int
    room: str
    event: Any


class EventBatch(msgspec.Struct, tag=True, kw_only=True):
    """Consecutive EventFrames in one frame, for a tail started with `batch` (one per group commit)."""

    events: list[EventFrame]


Frame = Ok | Error | Delivery | Wake | Notice | Trigger | EventFrame | EventBatch
