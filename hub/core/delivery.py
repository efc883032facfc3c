"""Delivery: send keys (idempotency), unknown recipients, read positions and unread counts (CLI.md
"Additions: Delivery").

A send with a key is remembered per sender (the newest `send_keys_per_agent` keys; older ones are forgotten):
sending again with the same key returns the first send's seqs and sends nothing. A member's read position
only moves forward (`message.ack`, and `wait`/`relay` after they hand a message over); its unread count is
what is addressed to it after that position, kept by counters so no read scans the feed:
`group` (broadcasts in the room) + `addressed[name]` (directed messages naming it, minus its own broadcasts)
- `counted[name]` (those at or before its position). The feed window is passed in by the feed module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.core import agents, rooms
from hub.core.world import Room, World
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError
from hub.protocol.types import Address, AgentName, RoomName, Seq
from hub.protocol.values import check_name

__all__ = [
    "KEY_LIMIT",
    "Keys",
    "Reads",
    "apply_read",
    "apply_sent",
    "check_key",
    "count_after",
    "first_send",
    "refuse_unknown",
    "start",
    "unread",
]

KEY_LIMIT = 128  # characters in a send key


class Keys:
    """A room's send keys: sender → key → the seqs of its first send (room → seq), oldest key first."""

    __slots__ = ("by_sender",)

    def __init__(self) -> None:
        self.by_sender: dict[AgentName, dict[str, dict[str, int]]] = {}


class Reads:
    """A room's read positions and the counters its members' unread counts come from (members only)."""

    __slots__ = ("acked", "addressed", "counted", "group", "upto")

    def __init__(self) -> None:
        self.group = 0  # broadcasts (`*`, `all`) in the room's feed
        self.addressed: dict[AgentName, int] = {}  # directed messages naming it, minus its own broadcasts
        self.upto: dict[AgentName, int] = {}  # its read position (the window's start when it joined)
        self.counted: dict[AgentName, int] = {}  # messages addressed to it at or before `upto`
        self.acked: set[AgentName] = set()  # moved its position itself: a `wait` resumes after it


# -- keys ---------------------------------------------------------------------------------------------------


def check_key(key: str | None) -> None:
    """`bad_request` for a key that is empty, over KEY_LIMIT characters or holds a control character."""
    if key is not None:
        check_name(key, "key", KEY_LIMIT)


def first_send(room: Room, sender: AgentName, key: str | None) -> dict[str, int] | None:
    """The seqs (room → seq) of `sender`'s send with `key`, if it is remembered."""
    if key is None:
        return None
    return room.part(Keys).by_sender.get(sender, {}).get(key)


def _remember(w: World, ev: e.MessageSent) -> None:
    """Note a keyed message under its sender in the sender's room (a send to other rooms logs one event per
    room, each with the key: together they rebuild the first send's seqs)."""
    where, _, name = ev.sender.rpartition("/")
    origin = w.rooms.get(RoomName(where)) if where else w.rooms.get(ev.room)
    if origin is None or ev.key is None:
        return
    keys = origin.part(Keys).by_sender.setdefault(AgentName(name), {})
    seqs = keys.get(ev.key)
    if seqs is None:
        seqs = keys[ev.key] = {}
        limit = max(w.config.send_keys_per_agent, 1)
        while len(keys) > limit:  # the oldest key is forgotten (a dict keeps insertion order)
            del keys[next(iter(keys))]
    seqs.setdefault(ev.room, ev.seq)


# -- unknown recipients ---------------------------------------------------------------------------------------


def refuse_unknown(unknown: list[str]) -> None:
    """`unknown_recipient` naming the directed targets that never joined (a send without `allow_unknown`)."""
    if unknown:
        raise HubError(
            Code.UNKNOWN_RECIPIENT,
            f"{', '.join(unknown[:8])} never joined; send with --allow-unknown for a name that will join later",
            {"names": unknown[:64]},
        )


# -- read positions ---------------------------------------------------------------------------------------


def _addressed(ev: e.MessageSent, name: str) -> bool:
    to = ev.to
    if name in to:
        return True
    return ev.sender != name and (rooms.GROUP in to or rooms.ALL in to)


def count_after(window: Sequence[e.MessageSent], base: int, after: int, name: str) -> int:
    """Messages in the window after seq `after` that are addressed to `name`."""
    return sum(1 for ev in window[max(after - base, 0) :] if _addressed(ev, name))


def unread(room: Room, name: str) -> int | None:
    """How many messages addressed to member `name` are after its read position (None: not a member)."""
    reads = room.part(Reads)
    counted = reads.counted.get(AgentName(name))
    if counted is None:
        return None
    return reads.group + reads.addressed[AgentName(name)] - counted


def start(room: Room, name: AgentName, window: Sequence[e.MessageSent], base: int) -> None:
    """A new member reads from the start of the window: what is in it addressed to it is unread."""
    reads = room.part(Reads)
    if name in reads.counted:
        return
    who = Address(name)
    directed = sum(1 for ev in window if who in ev.to and rooms.GROUP not in ev.to and rooms.ALL not in ev.to)
    reads.addressed[name] = directed
    reads.upto[name] = base
    reads.counted[name] = reads.group + directed - count_after(window, base, base, name)


def apply_sent(w: World, ev: e.MessageSent) -> None:
    """Count the message for the members it is addressed to; remember its key."""
    room = w.rooms[ev.room]
    reads = room.part(Reads)
    to = ev.to
    if rooms.GROUP in to or rooms.ALL in to:
        reads.group += 1
        sender = AgentName(ev.sender)
        if sender in reads.addressed and ev.sender not in to:  # a broadcast is not addressed to its sender
            reads.addressed[sender] -= 1
    else:
        addressed = reads.addressed
        for each in to if len(to) == 1 else dict.fromkeys(to):  # each name once
            name = AgentName(each)
            if name in addressed:
                addressed[name] += 1
    if ev.key is not None:
        _remember(w, ev)


def apply_read(w: World, ev: e.MessagesRead) -> None:
    reads = w.rooms[ev.room].part(Reads)
    if ev.agent in reads.counted and ev.upto > reads.upto[ev.agent]:
        reads.upto[ev.agent] = ev.upto
        reads.counted[ev.agent] = ev.counted
    reads.acked.add(ev.agent)
    agents.beat(w.rooms[ev.room], ev.agent, ev.at)


def read_event(
    room: Room, name: AgentName, upto: int, window: Sequence[e.MessageSent], base: int, head: int, now: float
) -> e.MessagesRead | None:
    """The event moving `name`'s position to `upto`, or None when it is there already (never backwards).

    The messages after `upto` are counted in the window; when `upto` is older than the window they cannot
    be, and the count of what was read stays as it was (the older ones still count as unread).
    """
    reads = room.part(Reads)
    if name not in reads.counted or upto <= reads.upto[name]:
        return None
    total = reads.group + reads.addressed[name]
    counted = reads.counted[name] if upto < base else total - count_after(window, base, upto, name)
    return e.MessagesRead(room=room.name, at=now, agent=name, upto=Seq(min(upto, head)), counted=counted)


def resume_after(room: Room, name: str | None) -> int | None:
    """Where a `wait` without `after` resumes for `name`: after its read position, once it has moved it."""
    reads = room.part(Reads)
    if name is None or AgentName(name) not in reads.acked:
        return None
    return reads.upto.get(AgentName(name))


def cel_unread(room: Room, ctx: dict[str, Any], reader: str | None) -> dict[str, Any]:
    """`ctx` with `messages.unread` set to the reader's unread count (a shallow copy; `ctx` is shared)."""
    count = unread(room, reader) if reader is not None else None
    if count is None:
        return ctx
    return {**ctx, "messages": {**ctx["messages"], "unread": count}}


__all__ += ["cel_unread", "read_event", "resume_after"]
