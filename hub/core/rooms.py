"""Room: one room's agents, feed, sessions and waiters; isolation and resolving targets (SPEC: rooms)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from hub.core.agents import NAME, Agent
from hub.core.claims import Claims
from hub.core.conditions import Conditions
from hub.core.state import State
from hub.core.tasks import Plan
from hub.protocol.errors import Code, HubError
from hub.protocol.events import MessageSent
from hub.protocol.types import Address, AgentName, RoomName, Seq, SessionId

__all__ = ["ROOM", "Room", "Waiter", "check_room", "split_targets"]

MARK = 1024  # every MARK-th message's log position is kept, so reading old messages skips most of the log
ROOM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
GROUP = Address("*")
ALL = Address("all")


class Waiter(msgspec.Struct, kw_only=True):
    """An armed waiter (ephemeral: it lives only as long as its session)."""

    session: SessionId
    id: int
    name: AgentName
    for_: AgentName | None
    directed_only: bool
    sub: int | None = None  # the condition it also waits on


class Room:
    """The isolation boundary: its own agents, feed and message claims; sessions and waiters are ephemeral."""

    __slots__ = (
        "agents",
        "base",
        "claimed",
        "claims",
        "conditions",
        "feed",
        "marks",
        "name",
        "plan",
        "state",
        "streams",
        "waiters",
        "window",
    )

    def __init__(self, name: RoomName, window: int = 0) -> None:
        self.name = name
        self.agents: dict[AgentName, Agent] = {}
        self.feed: list[MessageSent] = []  # the newest messages: feed[seq - base - 1]
        self.base = 0  # messages older than the window (still in the log, read from there)
        self.window = window  # how many messages stay in memory (0: all)
        self.marks: list[int] = []  # marks[i]: log position of message i * MARK + 1, to read old ones fast
        self.claimed: dict[Seq, AgentName] = {}
        self.streams: dict[AgentName, set[SessionId]] = {}  # sessions pushed what is addressed to the agent
        self.waiters: dict[AgentName, Waiter] = {}  # by waiter name: one live waiter per name
        self.claims = Claims()
        self.plan = Plan()
        self.state = State()
        self.conditions = Conditions()

    @property
    def seq(self) -> Seq:
        """The seq of the newest message (0 for an empty feed)."""
        return Seq(self.base + len(self.feed))

    def message(self, seq: int) -> MessageSent | None:
        """Message `seq` if it is still in memory (None if only the log holds it); `not_found` if none."""
        if not 1 <= seq <= self.base + len(self.feed):
            raise HubError(
                Code.NOT_FOUND, f"no message {seq} in room {self.name!r}", {"what": "message", "seq": seq}
            )
        return self.feed[seq - self.base - 1] if seq > self.base else None

    def mark_for(self, after: int) -> int:
        """A log position at or before the first message after seq `after` (0: the log's start)."""
        i = after // MARK
        return self.marks[i] - 1 if i < len(self.marks) else 0


def check_room(name: str) -> RoomName:
    if not ROOM.fullmatch(name):
        raise HubError(
            Code.BAD_REQUEST,
            f"bad room {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit",
            {"field": "room", "reason": "pattern"},
        )
    return RoomName(name)


def split_targets(
    room: RoomName, targets: tuple[Address, ...], rooms: Iterable[RoomName]
) -> dict[RoomName, tuple[Address, ...]]:
    """Group targets by the room whose feed receives them, each written relative to that room.

    `name` and `*` stay in `room`; `other/name` and `other/*` go to `other`; `all` goes to every room.
    """
    if len(targets) == 1:  # the common case: one agent, or the room group, in this room
        only = targets[0]
        if only == "*" or ("/" not in only and only != ALL and NAME.fullmatch(only)):
            return {room: targets}
    if not targets:
        raise HubError(
            Code.BAD_REQUEST, "a message needs at least one target", {"field": "to", "reason": "empty"}
        )
    out: dict[RoomName, list[Address]] = {}
    for target in targets:
        if target == ALL:
            for each in sorted({*rooms, room}):  # sorted: a set's order changes between processes
                local = out.setdefault(each, [])
                if ALL not in local:
                    local.append(ALL)
            continue
        where, _, name = target.rpartition("/")
        dest = check_room(where) if where else room
        if name != "*" and not NAME.fullmatch(name):
            raise HubError(
                Code.BAD_REQUEST,
                f"bad target {target!r}: use name, a,b, room/*, room/name or all",
                {"field": "to", "reason": "pattern"},
            )
        local = out.setdefault(dest, [])
        if name not in local:
            local.append(Address(name))
    return {dest: tuple(names) for dest, names in out.items()}
