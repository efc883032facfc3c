"""Messages: seq, targets, cursors, message claims, and who gets woken (SPEC: Messages, feed, relay and wait)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub.core import agents as agents_
from hub.core import cel
from hub.core import conditions as conditions_
from hub.core import rooms as rooms_
from hub.core.effects import CloseSession, Context, Deliver, Outcome
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError
from hub.protocol.events import MessageClaimed, MessageSent
from hub.protocol.frames import Delivery, Error, Message, Wake
from hub.protocol.types import AgentName, Seq, SessionId

__all__ = [
    "FeedRules",
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
    if rooms_.GROUP in to or rooms_.ALL in to:
        return event.priority or not directed_only
    return False


def to_message(room: rooms_.Room, event: MessageSent) -> Message:
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
    room: rooms_.Room,
    after: int,
    for_: str | None,
    kind: str | None,
    unclaimed: bool,
    since: float | None = None,
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


def recipients(room: rooms_.Room, event: MessageSent) -> tuple[SessionId, ...]:
    """The streaming sessions a message is pushed to: only agents it is addressed to."""
    streams = room.streams
    if not streams:
        return ()
    if rooms_.GROUP in event.to or rooms_.ALL in event.to:
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


def wakes(room: rooms_.Room, event: MessageSent) -> list[rooms_.Waiter]:
    """The armed waiters this message wakes."""
    return [
        w for w in room.waiters.values() if w.for_ is not None and addressed(event, w.for_, w.directed_only)
    ]


def decide_claim(room: rooms_.Room, seq: Seq, holder: AgentName) -> None:
    """A message can be claimed once; the loser learns who holds it."""
    room.message(seq)
    current = room.claimed.get(seq)
    if current is not None:
        raise HubError(
            Code.ALREADY_CLAIMED,
            f"message {seq} is already claimed by {current}",
            {"holder": current, "seq": seq},
        )


def apply_sent(room: rooms_.Room, event: MessageSent, position: int) -> None:
    """Append to the window; past 5/4 of it, the oldest quarter leaves memory (the log keeps it)."""
    feed = room.feed
    if (event.seq - 1) % rooms_.MARK == 0:
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


def apply_claimed(room: rooms_.Room, event: MessageClaimed) -> None:
    room.claimed[event.seq] = event.holder
    holder = room.agents.get(event.holder)
    if holder is not None:
        holder.beat(event.at)


TAKEN_OVER_CLOSE = 4009  # the WebSocket close code a taken-over waiter sees


class FeedRules:
    """Sending, reading and claiming messages; waiters (SPEC: Messages, feed, relay and wait). Mixed into Machine: `self` is the machine."""

    def _send(self, cmd: c.Send, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        limit = self.config.max_body_bytes
        if limit is not None and len(cmd.body) > limit:
            raise HubError(
                Code.TOO_LARGE, f"message body is {len(cmd.body)} bytes, over {limit}", {"limit": limit}
            )
        if len(cmd.kind) > 128:
            raise HubError(Code.BAD_REQUEST, "kind is longer than 128", {"field": "kind", "reason": "length"})
        if cmd.reply_to is not None:
            room.message(cmd.reply_to)
        split = rooms_.split_targets(room.name, cmd.to, self.rooms)
        rooms = self.rooms
        for dest in split:
            if dest not in rooms:
                raise HubError(Code.NOT_FOUND, f"no room {dest!r}", {"what": "room", "room": dest})
        seqs: dict[str, int] = {}
        unknown: list[str] = []
        for dest, to in split.items():
            target = rooms[dest]
            local = dest == room.name
            for n in to:
                if n not in target.agents and n != "*" and n != "all":
                    unknown.append(n if local else f"{dest}/{n}")
            event = e.MessageSent(
                room=dest,
                at=ctx.now,
                seq=target.seq + 1,  # type: ignore[arg-type]
                sender=agent.name if local else f"{room.name}/{agent.name}",
                to=to,
                kind=cmd.kind,
                body=cmd.body,
                reply_to=cmd.reply_to if local else None,
                priority=cmd.priority,
            )
            self._emit(out, event)
            seqs[dest] = event.seq
            self._push(target, event, out)
        own = seqs.get(room.name)
        result: dict[str, Any] = {"seq": own if own is not None else next(iter(seqs.values())), "seqs": seqs}
        if unknown:
            result["unknown"] = unknown
        self._reply(out, ctx, cmd, result)

    def _push(self, room: rooms_.Room, event: e.MessageSent, out: Outcome) -> None:
        """Deliver a new message to the streams and waiters it is addressed to, and to no one else."""
        sessions = recipients(room, event)
        woken = wakes(room, event) if room.waiters else ()
        if not sessions and not woken:
            return
        message = to_message(room, event)
        if sessions:
            out.effects.append(Deliver(sessions, Delivery(message=message)))
        for waiter in woken:
            self._disarm(room, waiter)
            out.effects.append(
                Deliver((waiter.session,), Wake(id=waiter.id, reason="message", message=message))
            )

    def _list_messages(self, cmd: c.ListMessages, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        if cmd.limit < 1 or cmd.limit > self.config.max_list_limit:
            raise HubError(
                Code.BAD_REQUEST,
                f"limit must be 1..{self.config.max_list_limit}",
                {"field": "limit", "reason": "range"},
            )
        messages = []
        if room is not None:
            for event in matching(room, cmd.after, cmd.for_, cmd.kind, cmd.unclaimed):
                messages.append(to_message(room, event))
                if len(messages) >= cmd.limit:
                    break
        head = 0 if room is None else room.seq
        self._reply(out, ctx, cmd, {"messages": messages, "head": head})

    def _claim_message(self, cmd: c.ClaimMessage, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        decide_claim(room, cmd.seq, agent.name)
        self._emit(out, e.MessageClaimed(room=room.name, at=ctx.now, seq=cmd.seq, holder=agent.name))
        self._reply(out, ctx, cmd, {"seq": cmd.seq, "holder": agent.name})

    def _wait(self, cmd: c.Wait, ctx: Context, out: Outcome) -> None:
        """Arm a waiter for a message, a condition, or both (SPEC: wait); a newer one takes the name over."""
        if ctx.session is None:
            raise HubError(Code.BAD_REQUEST, "wait needs a session")
        room_name = rooms_.check_room(cmd.room)
        agents_.check_name(cmd.waiter, "waiter")
        if cmd.for_ is None and cmd.condition is None:
            raise HubError(Code.BAD_REQUEST, "wait needs `for`, `condition` or both", {"field": "for"})
        if cmd.for_ is not None:
            agents_.check_name(cmd.for_, "for")
        compiled = conditions_.compile_or_refuse(cmd.condition) if cmd.condition is not None else None
        room = self.room(room_name)
        info = self.sessions.setdefault(ctx.session, agents_.SessionInfo(room.name))
        if info.waiter is not None:
            raise HubError(Code.BAD_REQUEST, "this session already has an armed waiter", {"field": "waiter"})
        old = room.waiters.get(cmd.waiter)
        if old is not None:
            self._disarm(room, old)
            notice = Error(id=old.id, code=Code.TAKEN_OVER, message=f"waiter {cmd.waiter!r} was taken over")
            out.effects.append(Deliver((old.session,), notice))
            out.effects.append(CloseSession(old.session, TAKEN_OVER_CLOSE, "taken over by a newer waiter"))
        if cmd.for_ is not None:
            after = room.seq if cmd.after is None else cmd.after
            for event in matching(room, after if cmd.since is None else -1, cmd.for_, None, False, cmd.since):
                if addressed(event, cmd.for_, cmd.directed_only):
                    self._reply(out, ctx, cmd, {"armed": room.seq})
                    message = to_message(room, event)
                    out.effects.append(
                        Deliver((ctx.session,), Wake(id=cmd.id, reason="message", message=message))
                    )
                    return
        sub_id = None
        if compiled is not None:
            value = conditions_.value_of(compiled, room.conditions.context(room))
            if cel.is_true(value):  # level-triggered: already true wakes at once, so a turn is never missed
                self._reply(out, ctx, cmd, {"armed": room.seq})
                wake = Wake(id=cmd.id, reason="condition", condition=compiled.source, value=value)
                out.effects.append(Deliver((ctx.session,), wake))
                return
            agent = self._proven(room, cmd.waiter, cmd.token)  # shows as `waiting` only if its token says so
            sub_id = self._add_sub(room, ctx.session, compiled, (), agent, cmd.id, info)
        waiter = rooms_.Waiter(
            session=ctx.session,
            id=cmd.id,
            name=cmd.waiter,
            for_=cmd.for_,
            directed_only=cmd.directed_only,
            sub=sub_id,
        )
        room.waiters[cmd.waiter] = waiter
        info.waiter, info.waiter_room = cmd.waiter, room.name
        self._reply(out, ctx, cmd, {"armed": room.seq})

    def _disarm(self, room: rooms_.Room, waiter: rooms_.Waiter) -> None:
        if room.waiters.get(waiter.name) is waiter:
            del room.waiters[waiter.name]
        if waiter.sub is not None:
            self._drop_sub(room, waiter.sub)
            waiter.sub = None
        info = self.sessions.get(waiter.session)
        if info is not None and info.waiter == waiter.name and info.waiter_room == room.name:
            info.waiter = info.waiter_room = None
