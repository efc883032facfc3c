"""Messages: seq, targets, cursors, message claims, and who gets woken (SPEC: Messages, feed, relay and wait)."""

from __future__ import annotations

from collections.abc import Iterator

from hub.core.rooms import ALL, GROUP, MARK, Room, Waiter
from hub.protocol.errors import Code, HubError
from hub.protocol.events import MessageClaimed, MessageSent
from hub.protocol.frames import Message
from hub.protocol.types import AgentName, Seq, SessionId

__all__ = [
    "addressed",
    "apply_claimed",
    "apply_sent",
    "decide_claim",
    "matching",
    "recipients",
    "to_message",
    "wakes",
]


def addressed(event: MessageSent, name: str, directed_only: bool = False) -> bool:
    """Whether `event` is for `name`: named directly, or (unless directed-only) via `*`/`all`; priority always."""
    to = event.to
    if name in to:
        return True
    if event.sender == name:
        return False  # a broadcast is not echoed to its sender
    if GROUP in to or ALL in to:
        return event.priority or not directed_only
    return False


def to_message(room: Room, event: MessageSent) -> Message:
    """The wire form of a feed entry."""
    return Message(
        room=event.room,
        seq=event.seq,
        sender=event.sender,
        to=event.to,
        kind=event.kind,
        body=event.body,
        at=event.at,
        reply_to=event.reply_to,
        priority=event.priority,
        claimed_by=room.claimed.get(event.seq),
    )


def matching(
    room: Room, after: int, for_: str | None, kind: str | None, unclaimed: bool, since: float | None = None
) -> Iterator[MessageSent]:
    """Messages after `after` (or sent at or after `since`) that pass the filters, oldest first."""
    feed = room.feed
    start = max(after - room.base, 0)
    if since is not None:
        floor, start = start, len(feed)
        while start > floor and feed[start - 1].at >= since:
            start -= 1
    for i in range(start, len(feed)):
        event = feed[i]
        if kind is not None and event.kind != kind:
            continue
        if unclaimed and event.seq in room.claimed:
            continue
        if for_ is not None and not addressed(event, for_):
            continue
        yield event


def recipients(room: Room, event: MessageSent) -> tuple[SessionId, ...]:
    """The streaming sessions a message is pushed to: only agents it is addressed to."""
    streams = room.streams
    if not streams:
        return ()
    if GROUP in event.to or ALL in event.to:
        to = event.to  # not echoed to its sender, unless the sender also named itself (as `addressed` says)
        return tuple(
            s for name, sessions in streams.items() if name != event.sender or name in to for s in sessions
        )
    out: list[SessionId] = []
    for name in event.to:
        sessions = streams.get(AgentName(name))
        if sessions:
            out.extend(sessions)
    return tuple(out)


def wakes(room: Room, event: MessageSent) -> list[Waiter]:
    """The armed waiters this message wakes."""
    return [
        w for w in room.waiters.values() if w.for_ is not None and addressed(event, w.for_, w.directed_only)
    ]


def decide_claim(room: Room, seq: Seq, holder: AgentName) -> None:
    """A message can be claimed once; the loser learns who holds it."""
    room.message(seq)
    current = room.claimed.get(seq)
    if current is not None:
        raise HubError(
            Code.ALREADY_CLAIMED,
            f"message {seq} is already claimed by {current}",
            {"holder": current, "seq": seq},
        )


def apply_sent(room: Room, event: MessageSent, position: int) -> None:
    """Append to the window; past 5/4 of it, the oldest quarter leaves memory (the log keeps it)."""
    feed = room.feed
    if (event.seq - 1) % MARK == 0:
        room.marks.append(position)
    feed.append(event)
    window = room.window
    if window and len(feed) >= window + (window >> 2):
        cut = len(feed) - window
        del feed[:cut]
        room.base += cut
    sender = room.agents.get(AgentName(event.sender))
    if sender is not None:
        sender.beat(event.at)


def apply_claimed(room: Room, event: MessageClaimed) -> None:
    room.claimed[event.seq] = event.holder
    holder = room.agents.get(event.holder)
    if holder is not None:
        holder.beat(event.at)
