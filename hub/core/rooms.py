"""Room: one room's agents, feed, sessions and waiters; isolation and resolving targets (SPEC: rooms)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from hub.core import agents as agents_
from hub.core import claims as claims_
from hub.core import conditions as conditions_
from hub.core import state as state_
from hub.core import tasks as tasks_
from hub.core.effects import Context, Outcome
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError
from hub.protocol.events import MessageSent
from hub.protocol.types import Address, AgentName, RoomName, Seq, SessionId

__all__ = ["RoomRules", "ROOM", "Room", "Waiter", "check_room", "split_targets"]

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
        self.agents: dict[AgentName, agents_.Agent] = {}
        self.feed: list[MessageSent] = []  # the newest messages: feed[seq - base - 1]
        self.base = 0  # messages older than the window (still in the log, read from there)
        self.window = window  # how many messages stay in memory (0: all)
        self.marks: list[int] = []  # marks[i]: log position of message i * MARK + 1, to read old ones fast
        self.claimed: dict[Seq, AgentName] = {}
        self.streams: dict[AgentName, set[SessionId]] = {}  # sessions pushed what is addressed to the agent
        self.waiters: dict[AgentName, Waiter] = {}  # by waiter name: one live waiter per name
        self.claims = claims_.Claims()
        self.plan = tasks_.Plan()
        self.state = state_.State()
        self.conditions = conditions_.Conditions()

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
        if only == "*" or ("/" not in only and only != ALL and agents_.NAME.fullmatch(only)):
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
        if name != "*" and not agents_.NAME.fullmatch(name):
            raise HubError(
                Code.BAD_REQUEST,
                f"bad target {target!r}: use name, a,b, room/*, room/name or all",
                {"field": "to", "reason": "pattern"},
            )
        local = out.setdefault(dest, [])
        if name not in local:
            local.append(Address(name))
    return {dest: tuple(names) for dest, names in out.items()}


class RoomRules:
    """Rooms created and listed, invites (SPEC: Identity and rooms). Mixed into Machine: `self` is the machine."""

    def _room_exists(self, name: RoomName) -> bool:
        room = self.rooms.get(name)
        return name in self.created or (room is not None and bool(room.agents or room.seq))

    def _create_room(self, cmd: c.CreateRoom, ctx: Context, out: Outcome) -> None:
        self._need_admin(cmd.admin_token, "creating a room")
        check_room(cmd.room)
        if self._room_exists(cmd.room):
            raise HubError(Code.ALREADY_EXISTS, f"room {cmd.room!r} exists", {"current": cmd.room})
        self._emit(out, e.RoomCreated(room=cmd.room, at=ctx.now))
        self._reply(out, ctx, cmd, {"room": cmd.room})

    def _invite_room(self, cmd: c.InviteRoom, ctx: Context, out: Outcome) -> None:
        """A join token for the room (created if need be); only its hash reaches the log."""
        self._need_admin(cmd.admin_token, "inviting to a room")
        check_room(cmd.room)
        if cmd.ttl is not None and not 0 < cmd.ttl <= 366 * 86_400:
            raise HubError(
                Code.BAD_REQUEST, "ttl must be between 0 and 366 days", {"field": "ttl", "reason": "range"}
            )
        if ctx.secret is None:
            raise HubError(Code.UNAVAILABLE, "no source of tokens")
        token = ctx.secret()
        expires = None if cmd.ttl is None else ctx.now + cmd.ttl
        if not self._room_exists(cmd.room):
            self._emit(out, e.RoomCreated(room=cmd.room, at=ctx.now))
        self._emit(
            out,
            e.InviteIssued(room=cmd.room, at=ctx.now, token_hash=agents_.hash_token(token), expires=expires),
        )
        self._reply(out, ctx, cmd, {"room": cmd.room, "invite": token, "expires": expires})

    def _list_rooms(self, cmd: c.ListRooms, ctx: Context, out: Outcome) -> None:
        self._need_admin(cmd.admin_token, "listing every room")
        rooms = [
            {
                "name": room.name,
                "agents": len(room.agents),
                "online": sum(1 for a in room.agents.values() if a.sessions),
                "messages": room.seq,
                "claims": len(room.claims.live),
                "tasks": len(room.plan.tasks),
            }
            for room in sorted(self.rooms.values(), key=lambda r: r.name)
            if self._room_exists(room.name)
        ]
        self._reply(out, ctx, cmd, {"rooms": rooms})

    def _apply_invite(self, event: e.InviteIssued) -> None:
        self.invites[event.token_hash] = (self.room(event.room).name, event.expires)
