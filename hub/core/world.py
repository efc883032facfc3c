"""World: what the concept rules share: config, rooms with each concept's typed part, live sessions (STYLE §1).

Concept modules never import each other in a circle: each owns a typed part (`Claims`, `Plan`...) that it
reaches through `room.part(Claims)`, and the CEL context's roots are filled in by functions the Machine
registers in `World.roots`, so the conditions module reads every concept without importing any.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from hub.config import HubConfig
from hub.protocol.types import AgentName, Position, RoomName, SessionId

__all__ = ["Root", "Room", "SessionInfo", "World", "hash_token", "same_secret"]

P = TypeVar("P")


class Room:
    """One room: its name and each concept's typed state, made on first use."""

    __slots__ = ("name", "parts")

    def __init__(self, name: RoomName) -> None:
        self.name = name
        self.parts: dict[type, Any] = {}

    def part(self, kind: type[P]) -> P:
        """This room's state of one concept (`room.part(Claims)`), made empty on first use."""
        found = self.parts.get(kind)
        if found is None:
            found = self.parts[kind] = kind()
        return found


class SessionInfo:
    """A live session's bindings (ephemeral: not in the log)."""

    __slots__ = ("agent", "room", "stream", "subs", "waiter")

    def __init__(self, room: RoomName) -> None:
        self.room = room
        self.agent: AgentName | None = None  # the agent it is attached as
        self.stream = False  # pushed what is addressed to its agent
        self.waiter: tuple[RoomName, AgentName] | None = (
            None  # its armed waiter (a session waits in any room)
        )
        self.subs: set[tuple[RoomName, int]] = set()


# A CEL context root: the whole root for a room, and a refresh of one touched path inside it that returns a
# wider path when more than that one changed (a state scope appearing with its first key or going with its
# last changes what every expression reading into that scope sees: `has(state.s.k)`), else None.
Root = tuple[
    Callable[["World", Room], dict[str, Any]],
    Callable[["World", Room, dict[str, Any], tuple[str, ...]], tuple[str, ...] | None],
]


class World:
    """The hub's state as the rules see it: rooms, sessions, hub-wide parts, the log position."""

    __slots__ = ("config", "now", "parts", "position", "roots", "rooms", "sessions", "started_at")

    def __init__(self, config: HubConfig, roots: dict[str, Root] | None = None) -> None:
        self.config = config
        self.rooms: dict[RoomName, Room] = {}
        self.sessions: dict[SessionId, SessionInfo] = {}
        self.position = Position(0)
        self.started_at = 0.0
        self.now = 0.0  # the clock as the shell last gave it (CEL `now`); never read from the system here
        self.parts: dict[type, Any] = {}
        self.roots: dict[str, Root] = roots or {}

    def part(self, kind: type[P]) -> P:
        """A hub-wide part of one concept (token index, invites, deadlines...), made empty on first use."""
        found = self.parts.get(kind)
        if found is None:
            found = self.parts[kind] = kind()
        return found

    def room(self, name: RoomName) -> Room:
        """The room, made on first use (only folds call this: deciding never creates a room)."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name)
        return room

    @property
    def gated(self) -> bool:
        """Whether the hub has an admin token (then joining, creating rooms and reading need a proof)."""
        return self.config.admin_token is not None

    def is_admin(self, given: str | None) -> bool:
        """Whether `given` is the hub's admin token (never true on a hub without one)."""
        admin = self.config.admin_token
        return admin is not None and given is not None and same_secret(given, admin)

    def admits(self, given: str | None) -> bool:
        """Whether an operator's verb may run: the hub has no admin token, or `given` is it."""
        return not self.gated or self.is_admin(given)


def hash_token(token: str) -> str:
    """The stored form of a token (agents' and invites'): only this reaches the log."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets, any text (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
