"""Outcome and the effects the shell carries out once the outcome's events are durable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from hub.protocol.events import Event
from hub.protocol.frames import Frame
from hub.protocol.types import SessionId

__all__ = ["ArmTimer", "CloseSession", "Context", "Deliver", "Effect", "Outcome", "Reply"]


class Context(msgspec.Struct, frozen=True):
    """What the shell tells the core about a command: the time, the session, a source of fresh secrets."""

    now: float
    session: SessionId | None = None
    secret: Callable[[], str] | None = None


class Reply(msgspec.Struct, frozen=True):
    """Answer command `id` on `session`."""

    session: SessionId
    id: int
    result: Any = None


class Deliver(msgspec.Struct, frozen=True):
    """Push one frame, encoded once, to every session listed (and only those)."""

    sessions: tuple[SessionId, ...]
    frame: Frame


class CloseSession(msgspec.Struct, frozen=True):
    """Close a session with a WebSocket close code and a reason its client can show."""

    session: SessionId
    code: int
    reason: str


class ArmTimer(msgspec.Struct, frozen=True):
    """Ask the shell to send a Tick at `at` (hub clock)."""

    at: float


Effect = Reply | Deliver | CloseSession | ArmTimer


class Outcome(msgspec.Struct):
    """What one command decided: events to make durable, then effects to release in order."""

    events: list[Event] = msgspec.field(default_factory=list)
    effects: list[Effect] = msgspec.field(default_factory=list)
