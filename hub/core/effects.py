"""Outcome, the effects the shell carries out once an outcome's events are durable, and internal commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from hub.protocol.events import Event
from hub.protocol.frames import Error, Frame
from hub.protocol.types import SessionId

__all__ = [
    "ArmTimer",
    "CloseSession",
    "Context",
    "Deliver",
    "Effect",
    "FollowLog",
    "HistoryRead",
    "LogRead",
    "Outcome",
    "ReadHistory",
    "ReadLog",
    "Reply",
    "SessionGone",
    "Start",
    "Tick",
]


class Context(msgspec.Struct, frozen=True):
    """What the shell tells the core about a command: the time, the session, a source of fresh secrets."""

    now: float
    session: SessionId | None = None
    secret: Callable[[], str] | None = None
    size: int = 0  # the command's frame length (what the byte rate limit counts); 0: not counted


class Start(msgspec.Struct, frozen=True):
    """Internal: the hub finished replaying and starts serving."""


class Tick(msgspec.Struct, frozen=True):
    """Internal: a deadline the core asked for (ArmTimer) has come."""


class SessionGone(msgspec.Struct, frozen=True):
    """Internal: the shell reports that a session's connection ended."""

    session: SessionId


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


class ReadLog(msgspec.Struct, frozen=True):
    """Ask the shell to read one page of a room's messages with `after < seq <= until` from the log,
    scanning from log position `start`, and hand it back as `LogRead` (reads behind the in-memory window).

    `command` is the read it serves; `found` what earlier pages already matched.
    """

    session: SessionId
    room: str
    after: int
    until: int
    start: int
    command: Any
    found: tuple[Any, ...] = ()


class LogRead(msgspec.Struct, frozen=True):
    """Internal: one page the shell read for `request`: messages up to seq `reached`, log read to `position`."""

    request: ReadLog
    messages: tuple[Any, ...]
    reached: int
    position: int


class ReadHistory(msgspec.Struct, frozen=True):
    """Ask the shell to read one page of a room's state events (StateWritten, StateDeleted, ViewDefined) at
    log positions below `before`, newest first, and hand it back as `HistoryRead` (`synapse state history`).

    `command` is the read it serves; `version` the key's version above what is read; `found` what earlier
    pages already matched.
    """

    session: SessionId
    room: str
    before: int
    version: int
    command: Any
    found: tuple[Any, ...] = ()


class HistoryRead(msgspec.Struct, frozen=True):
    """Internal: one page the shell read for `request`, newest first, as (position, event); `position` is the
    lowest position it read (0: the log's start was reached)."""

    request: ReadHistory
    events: tuple[tuple[int, Any], ...]
    position: int


class FollowLog(msgspec.Struct, frozen=True):
    """Ask the shell to stream the durable event feed to `session` from `after` (rooms empty: every room)."""

    session: SessionId
    id: int
    after: int | None
    rooms: frozenset[str]
    batch: bool
    reader: tuple[str, str] | None = None  # (room, agent) the follower's token names: its directed messages
    admin: bool = False  # the admin token: every message; otherwise only those `feed.visible` allows


class ShowPresence(msgspec.Struct, frozen=True):
    """Push an agent's presence, changed without an event (it waits, or stops), to the tails of its room."""

    room: str
    presence: Any  # results.Presence


Effect = Reply | Deliver | CloseSession | ArmTimer | ReadLog | FollowLog | ShowPresence | ReadHistory


class Outcome:
    """What one command decided: events to make durable, staged session-table changes applied with them,
    then effects released in order once the events are durable."""

    __slots__ = ("effects", "events", "staged")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.staged: list[Callable[[], None]] = []
        self.effects: list[Effect] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def stage(self, change: Callable[[], None]) -> None:
        """A change to ephemeral state (waiters, subscriptions, bindings), made only if the command succeeds."""
        self.staged.append(change)

    def reply(self, ctx: Context, cmd_id: int, result: Any = None) -> None:
        if ctx.session is not None:
            self.effects.append(Reply(ctx.session, cmd_id, result))

    def deliver(self, sessions: tuple[SessionId, ...], frame: Frame) -> None:
        if sessions:
            self.effects.append(Deliver(sessions, frame))

    def refuse(self, session: SessionId, cmd_id: int | None, code: str, message: str) -> None:
        """An Error frame to one session (a notice that something of its own was refused or ended)."""
        self.effects.append(Deliver((session,), Error(id=cmd_id, code=code, message=message)))
