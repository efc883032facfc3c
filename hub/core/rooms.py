"""Rooms: names, which rooms exist, invites, and resolving targets across rooms (SPEC: Identity and rooms).

A room exists once a fold made it (a first join on an open hub, `room.create`, an invite); deciding never
creates one, so `name in world.rooms` is the whole test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hub.core.effects import Context, Outcome
from hub.core.world import Room, World, hash_token
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol import results as r
from hub.protocol.errors import Code, HubError
from hub.protocol.types import Address, RoomName

__all__ = [
    "ALL",
    "GROUP",
    "NAME",
    "Invites",
    "admitted_by_invite",
    "apply_created",
    "apply_invite",
    "check_name",
    "check_room",
    "decide_create",
    "decide_invite",
    "existing",
    "need_admin",
    "split_targets",
]

NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
)  # rooms and agents alike: safe in `room/name` and files
GROUP = Address("*")
ALL = Address("all")


class Invites:
    """Hub-wide: live invites by token hash → (room, expires)."""

    __slots__ = ("by_hash",)

    def __init__(self) -> None:
        self.by_hash: dict[str, tuple[RoomName, float | None]] = {}


def check_name(name: str, what: str = "name") -> None:
    """Refuse names that cannot be addresses (`room/name`) or shell-safe file keys."""
    if not NAME.fullmatch(name):
        raise HubError(
            Code.BAD_REQUEST,
            f"bad {what} {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit",
            {"field": what, "reason": "pattern"},
        )


def check_room(name: str) -> RoomName:
    check_name(name, "room")
    return RoomName(name)


def existing(w: World, name: str) -> Room:
    """The room, or `not_found` (a request never creates one)."""
    room = w.rooms.get(RoomName(name))
    if room is None:
        raise HubError(Code.NOT_FOUND, f"no room {name!r}", {"what": "room", "room": name})
    return room


def split_targets(
    room: RoomName, targets: tuple[Address, ...], rooms: Iterable[RoomName]
) -> dict[RoomName, tuple[Address, ...]]:
    """Group targets by the room whose feed receives them, each written relative to that room.

    `name` and `*` stay in `room`; `other/name` and `other/*` go to `other`; `all` goes to every room.
    """
    if len(targets) == 1:  # the common case: one agent, or the room group, in this room
        only = targets[0]
        if only == GROUP or ("/" not in only and only != ALL and NAME.fullmatch(only)):
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
        if name != GROUP and not NAME.fullmatch(name):
            raise HubError(
                Code.BAD_REQUEST,
                f"bad target {target!r}: use name, a,b, room/*, room/name or all",
                {"field": "to", "reason": "pattern"},
            )
        local = out.setdefault(dest, [])
        if name not in local:
            local.append(Address(name))
    return {dest: tuple(names) for dest, names in out.items()}


def need_admin(w: World, given: str | None, what: str) -> None:
    if not w.admits(given):
        raise HubError(Code.UNAUTHORIZED, f"{what} needs the hub's admin token")


def admitted_by_invite(w: World, room: RoomName, invite: str, now: float) -> bool:
    found = w.part(Invites).by_hash.get(hash_token(invite))
    return found is not None and found[0] == room and (found[1] is None or now < found[1])


def decide_create(w: World, cmd: c.CreateRoom, ctx: Context) -> Outcome:
    need_admin(w, cmd.admin_token, "creating a room")
    check_room(cmd.room)
    if cmd.room in w.rooms:
        raise HubError(Code.ALREADY_EXISTS, f"room {cmd.room!r} exists", {"current": cmd.room})
    out = Outcome()
    out.emit(e.RoomCreated(room=cmd.room, at=ctx.now))
    out.reply(ctx, cmd.id, r.RoomMade(room=cmd.room))
    return out


def decide_invite(w: World, cmd: c.InviteRoom, ctx: Context) -> Outcome:
    """A join token for the room (made if need be); only its hash reaches the log."""
    need_admin(w, cmd.admin_token, "inviting to a room")
    check_room(cmd.room)
    if cmd.ttl is not None and not 0 < cmd.ttl <= 366 * 86_400:
        raise HubError(
            Code.BAD_REQUEST, "ttl must be between 0 and 366 days", {"field": "ttl", "reason": "range"}
        )
    if ctx.secret is None:
        raise HubError(Code.UNAVAILABLE, "no source of tokens")
    token = ctx.secret()
    expires = None if cmd.ttl is None else ctx.now + cmd.ttl
    out = Outcome()
    if cmd.room not in w.rooms:
        out.emit(e.RoomCreated(room=cmd.room, at=ctx.now))
    out.emit(e.InviteIssued(room=cmd.room, at=ctx.now, token_hash=hash_token(token), expires=expires))
    out.reply(ctx, cmd.id, r.Invite(room=cmd.room, invite=token, expires=expires))
    return out


def apply_created(w: World, ev: e.RoomCreated) -> None:
    w.room(ev.room)


def apply_invite(w: World, ev: e.InviteIssued) -> None:
    w.room(ev.room)
    w.part(Invites).by_hash[ev.token_hash] = (ev.room, ev.expires)
