"""Messages: seq, targets, cursors, message claims, attaching, waiting, and who gets woken (SPEC: Messages, feed,
relay and wait)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from hub.core import agents, claims, conditions, delivery, fences, governor, rooms
from hub.core.effects import ArmTimer, CloseSession, Context, FollowLog, LogRead, Outcome, ReadLog
from hub.core.limits import check_count
from hub.core.world import Room, SessionInfo, World, hash_token
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol import results as r
from hub.protocol.commands import MAX_GOVERNOR_SECONDS
from hub.protocol.errors import Code, HubError
from hub.protocol.events import MessageSent
from hub.protocol.frames import WAKE_CAP, Delivery, Message, Wake
from hub.protocol.types import Address, AgentName, Cursor, RoomName, Seq, SessionId
from hub.protocol.values import check_body

__all__ = [
    "MARK",
    "Feed",
    "Streams",
    "addressed",
    "apply_claimed",
    "apply_joined",
    "apply_sent",
    "decide_ack",
    "decide_attach",
    "decide_claim",
    "decide_list",
    "decide_log_read",
    "decide_send",
    "decide_tail",
    "decide_wait",
    "matching",
    "refresh_root",
    "root",
    "to_message",
    "visible",
    "wake_due",
]

MARK = 1024  # every MARK-th message's log position is kept, so reading old messages skips most of the log
TAKEN_OVER_CLOSE = 4009  # the WebSocket close code a taken-over waiter sees


class Feed:
    """A room's newest messages (the window), the log positions to find older ones, and message claims."""

    __slots__ = ("base", "bytes", "claimed", "marks", "messages")

    def __init__(self) -> None:
        self.messages: list[MessageSent] = []  # the newest messages: messages[seq - base - 1]
        self.bytes = 0  # the window's bodies, in bytes (bounded by feed_window_bytes)
        self.base = 0  # messages older than the window (still in the log, read from there)
        self.marks: list[int] = []  # marks[i]: log position of message i * MARK + 1, to read old ones fast
        self.claimed: dict[Seq, AgentName] = {}

    @property
    def seq(self) -> Seq:
        """The seq of the newest message (0 for an empty feed)."""
        return Seq(self.base + len(self.messages))

    def has(self, seq: int) -> None:
        """`not_found` unless message `seq` exists (in memory or only in the log)."""
        if not 1 <= seq <= self.seq:
            raise HubError(Code.NOT_FOUND, f"no message {seq}", {"what": "message", "seq": seq})

    def mark_for(self, after: int) -> int:
        """A log position at or before the first message after seq `after` (0: the log's start)."""
        i = max(after, 0) // MARK
        return self.marks[i] - 1 if i < len(self.marks) else 0


class Streams:
    """A room's streaming sessions by agent: they are pushed what is addressed to it (ephemeral)."""

    __slots__ = ("of",)

    def __init__(self) -> None:
        self.of: dict[AgentName, set[SessionId]] = {}


# -- reading ---------------------------------------------------------------------------------------------


def addressed(event: MessageSent | Message, name: str, directed_only: bool = False) -> bool:
    """Whether `event` is for `name`: named directly, or (unless directed-only) via `*`/`all`; priority always."""
    to = event.to
    if name in to:
        return True
    if event.sender == name:
        return False  # a broadcast is not echoed to its sender
    if rooms.GROUP in to or rooms.ALL in to:
        return event.priority or not directed_only
    return False


def to_message(feed: Feed, event: MessageSent) -> Message:
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
        claimed_by=feed.claimed.get(event.seq),
    )


def matching(
    feed: Feed,
    after: int,
    for_: str | None,
    kind: str | None,
    unclaimed: bool,
    since: float | None = None,
    reader: agents.Reader | None = None,
) -> Iterator[MessageSent]:
    """Messages in memory after `after` (or sent at or after `since`) that pass the filters, oldest first."""
    window = feed.messages
    start = max(after - feed.base, 0)
    if since is not None:
        floor, start = start, len(window)
        while start > floor and window[start - 1].at >= since:
            start -= 1
    for i in range(start, len(window)):
        event = window[i]
        if kind is not None and event.kind != kind:
            continue
        if unclaimed and event.seq in feed.claimed:
            continue
        if for_ is not None and not addressed(event, for_):
            continue
        if reader is not None and not visible(event, reader.name, reader.admin):
            continue
        yield event


def visible(event: MessageSent | Message, who: str | None, admin: bool) -> bool:
    """Whether `who` may read a message: a broadcast anyone may; a directed one only its sender and
    recipients (and the admin token), on every hub (CLI.md "Identity and authorization")."""
    to = event.to
    if admin or rooms.GROUP in to or rooms.ALL in to:
        return True
    return who is not None and (who == event.sender or who in to)


def _passes(feed: Feed, event: MessageSent, cmd: Any, who: str | None, admin: bool) -> bool:
    """Whether a message read from the log passes `cmd`'s filters (list, wait or attach)."""
    if type(cmd) is c.ListMessages:
        if not visible(event, who, admin):
            return False
        if cmd.kind is not None and event.kind != cmd.kind:
            return False
        if cmd.unclaimed and event.seq in feed.claimed:
            return False
        return cmd.for_ is None or addressed(event, cmd.for_)
    if type(cmd) is c.Wait:
        return cmd.for_ is not None and addressed(event, cmd.for_, cmd.directed_only)
    return addressed(event, cmd.name)  # attach


def _behind(w: World, room: Room, session: SessionId, after: int, cmd: Any) -> ReadLog | None:
    """A read of the log for what `cmd` needs from behind the window, or None if memory holds it all."""
    feed = room.part(Feed)
    after = max(after, 0)  # a cursor before the first message means "from the start"
    if after >= feed.base:
        return None
    return ReadLog(session, room.name, after, feed.base, feed.mark_for(after), cmd)


def root(w: World, room: Room) -> dict[str, Any]:
    """The `messages` root of the CEL context."""
    feed = room.part(Feed)
    return {"count": feed.seq, "unclaimed": feed.seq - len(feed.claimed)}


def refresh_root(w: World, room: Room, node: dict[str, Any], path: tuple[str, ...]) -> tuple[str, ...] | None:
    node.update(root(w, room))
    return None


# -- deciding --------------------------------------------------------------------------------------------


def decide_send(w: World, cmd: c.Send, ctx: Context) -> Outcome:
    out = Outcome()
    key = cmd.key
    if key is not None:
        delivery.check_key(key)
    room, agent = agents.actor(w, cmd, ctx, out)
    if key is not None:
        first = delivery.first_send(room, agent.name, key)
        if first is not None:  # a repeat (a retry after a lost reply): the first send's seqs, nothing sent
            out.reply(ctx, cmd.id, _sent(w, room, cmd.to, first, [], {}, repeated=True))
            return out
    if cmd.fence:
        fences.check(room, agent.name, cmd.fence, ctx.now)
    body = cmd.body
    limit = w.config.max_body_bytes
    if limit is not None and len(body) > limit:
        raise HubError(Code.TOO_LARGE, f"message body is {len(body)} bytes, over {limit}", {"limit": limit})
    check_body(bytes(body))
    if len(cmd.kind) > 128:
        raise HubError(Code.BAD_REQUEST, "kind is longer than 128", {"field": "kind", "reason": "length"})
    feed = room.part(Feed)
    if cmd.reply_to is not None:
        feed.has(cmd.reply_to)
    stagger = governor.check_seconds(cmd.stagger, "stagger", MAX_GOVERNOR_SECONDS) if cmd.stagger else 0.0
    to = cmd.to or _reply_target(feed, cmd.reply_to)
    split = rooms.split_targets(room.name, to, w.rooms)
    targets = [room if dest == room.name else rooms.existing(w, dest) for dest in split]
    unknown: list[str] = []
    unread: dict[str, int] = {}
    for target, to in zip(targets, split.values(), strict=True):
        roster = target.part(agents.Roster).agents
        local = target is room
        for n in to:
            if n == rooms.GROUP or n == rooms.ALL:
                continue
            if AgentName(n) not in roster:
                unknown.append(n if local else f"{target.name}/{n}")
            count = delivery.unread(target, n)  # each named recipient's unread count, this message included
            if count is not None:
                unread[n if local else f"{target.name}/{n}"] = count + 1
    if unknown and not cmd.allow_unknown:
        delivery.refuse_unknown(unknown)
    seqs: dict[str, int] = {}
    for target, to in zip(targets, split.values(), strict=True):
        local = target is room
        dest_feed = feed if local else target.part(Feed)
        event = e.MessageSent(
            room=target.name,
            at=ctx.now,
            seq=Seq(dest_feed.seq + 1),
            sender=Address(agent.name if local else f"{room.name}/{agent.name}"),
            to=to,
            kind=cmd.kind,
            body=body,
            reply_to=cmd.reply_to if local else None,
            priority=cmd.priority,
            key=key,
        )
        out.emit(event)
        seqs[target.name] = event.seq
        _push(w, target, dest_feed, event, out, stagger, ctx.now)
    out.reply(ctx, cmd.id, _sent(w, room, cmd.to, seqs, unknown, unread))
    return out


def _reply_target(feed: Feed, reply_to: int | None) -> tuple[Address, ...]:
    """A send with no target answers `reply_to`'s sender only: a reply to a broadcast wakes its sender, not
    the room, unless the reply names wider targets itself (wake governor)."""
    if reply_to is None:
        return ()  # split_targets refuses it: a message needs at least one target
    if reply_to <= feed.base:
        raise HubError(
            Code.BAD_REQUEST,
            f"message {reply_to} is no longer in memory: give the reply's target",
            {"field": "to", "reason": "empty"},
        )
    return (feed.messages[reply_to - feed.base - 1].sender,)


def _sent(
    w: World,
    room: Room,
    to: tuple[Address, ...],
    seqs: dict[str, int],
    unknown: list[str],
    unread: dict[str, int],
    repeated: bool = False,
) -> r.Sent:
    """A send's reply; a repeat's unread counts are the named local recipients' current ones."""
    if repeated:
        for n in dict.fromkeys(to):
            count = delivery.unread(room, n) if "/" not in n else None
            if count is not None:
                unread[n] = count
    own = seqs.get(room.name)
    seq = Seq(own if own is not None else next(iter(seqs.values())))
    return r.Sent(
        seq=seq, seqs=dict(seqs) if repeated else seqs, unknown=unknown, unread=unread, repeated=repeated
    )


def _push(
    w: World, room: Room, feed: Feed, event: MessageSent, out: Outcome, stagger: float, now: float
) -> None:
    """Deliver a new message to the streams and waiters it is addressed to, and to no one else.

    A waiter is woken at once unless the wake governor defers it (its `settle`, the send's `stagger` over a
    `*`/`all` send's waiters in name order); a waiter whose wake is deferred collects the message instead. A
    wake that would continue a loop between two agents past `loop_limit` refuses the send.
    """
    streams = room.part(Streams).of
    sessions: tuple[SessionId, ...] = ()
    if streams:
        if rooms.GROUP in event.to or rooms.ALL in event.to:  # not echoed to its sender unless it is named
            to, sender = event.to, event.sender
            sessions = tuple(
                s for name, ss in streams.items() if (a := Address(name)) != sender or a in to for s in ss
            )
        elif len(event.to) == 1:
            ss = streams.get(AgentName(event.to[0]))
            sessions = tuple(ss) if ss else ()
        else:
            found: list[SessionId] = []
            for name in event.to:
                ss = streams.get(AgentName(name))
                if ss:
                    found.extend(ss)
            sessions = tuple(found)
    waiters = room.part(agents.Waiters).by_name
    woken = (
        [wt for wt in waiters.values() if wt.for_ is not None and addressed(event, wt.for_, wt.directed_only)]
        if waiters
        else []
    )
    if not sessions and not woken:
        return
    message = to_message(feed, event)
    out.deliver(sessions, Delivery(message=message))
    if not woken:
        return
    group = rooms.GROUP in event.to or rooms.ALL in event.to
    if group and stagger > 0.0:
        woken.sort(key=lambda wt: wt.name)
    offsets = governor.stagger_offsets(len(woken), stagger if group else 0.0)
    limit = w.config.loop_limit
    loops = w.part(governor.Loops)
    local = "/" not in event.sender  # the loop limit counts pairs of one room's agents
    for waiter, offset in zip(woken, offsets, strict=True):
        if waiter.due is not None:  # a deferred wake is collecting: the message joins it
            if len(waiter.pending) + 1 >= WAKE_CAP:  # full: wake now with what it holds
                out.stage(_disarming(w, room, waiter))
                out.deliver((waiter.session,), _wake(waiter.id, [*waiter.pending, message]))
            else:
                out.stage(_collecting(waiter, message))
            continue
        if local and limit > 0 and waiter.for_ is not None:
            waker = AgentName(event.sender)
            governor.check_loop(loops, limit, room.name, waker, waiter.for_, now)
            out.stage(_counting(loops, limit, room.name, waker, waiter.for_, now))
        delay = max(waiter.settle, offset)
        if delay <= 0.0:
            out.stage(_disarming(w, room, waiter))
            out.deliver((waiter.session,), _wake(waiter.id, [message]))
        else:
            out.stage(_deferring(w, room, waiter, now + delay, [message]))
            out.effects.append(ArmTimer(now + delay))


def _wake(wait_id: int, messages: list[Message]) -> Wake:
    """A message wake handing over `messages` (oldest first, at most WAKE_CAP); `message` is the first."""
    return Wake(id=wait_id, reason="message", message=messages[0], messages=messages)


def _disarming(w: World, room: Room, waiter: agents.Waiter) -> Any:
    return lambda: conditions.disarm(w, room, waiter)


def _collecting(waiter: agents.Waiter, message: Message) -> Any:
    return lambda: waiter.pending.append(message)


def _counting(
    loops: governor.Loops, limit: int, room: RoomName, sender: AgentName, partner: AgentName, now: float
) -> Any:
    return lambda: governor.count_wake(loops, limit, room, sender, partner, now)


def _deferring(w: World, room: Room, waiter: agents.Waiter, due: float, pending: list[Message]) -> Any:
    """Defer a waiter's wake to `due`, handing over `pending` and whatever else arrives until then."""
    room_name = room.name

    def defer() -> None:
        waiter.due, waiter.pending = due, pending
        governor.schedule(w.part(governor.Deferred), due, room_name, waiter.name, waiter.session)

    return defer


def wake_due(w: World, now: float, out: Outcome) -> float | None:
    """Wake the waiters whose deferred wake (settle, stagger) is due, each with every message it collected.

    Returns the next deferred wake after `now`, if any.
    """
    deferred = w.part(governor.Deferred)
    found, later = governor.due(deferred, now)
    if not found:
        return later
    out.stage(lambda: governor.pop_due(deferred, now))
    for at, _, room_name, name, session in found:
        room = w.rooms.get(room_name)
        waiter = None if room is None else room.part(agents.Waiters).by_name.get(name)
        if (
            room is None
            or waiter is None
            or waiter.session != session
            or waiter.due != at
            or not waiter.pending
        ):
            continue  # stale: woken early, disarmed or taken over since
        out.stage(_disarming(w, room, waiter))
        out.deliver((session,), _wake(waiter.id, list(waiter.pending)))
    return later


def decide_list(w: World, cmd: c.ListMessages, ctx: Context) -> Outcome:
    if cmd.limit < 1 or cmd.limit > w.config.max_list_limit:
        raise HubError(
            Code.BAD_REQUEST,
            f"limit must be 1..{w.config.max_list_limit}",
            {"field": "limit", "reason": "range"},
        )
    out = Outcome()
    who = agents.reader(w, cmd)
    room = who.room
    if room is None:
        out.reply(ctx, cmd.id, r.MessageList(messages=[], head=0))
        return out
    if cmd.unread:
        cmd = _unread_list(room, cmd, who)
    read = _behind(w, room, ctx.session, max(cmd.after, 0), cmd) if ctx.session is not None else None
    if read is not None:
        out.effects.append(read)
        return out
    _list_reply(room, cmd, cmd.after, [], who, ctx, out)
    return out


def _unread_list(room: Room, cmd: c.ListMessages, who: agents.Reader) -> c.ListMessages:
    """`message list --unread`: what is addressed to the token's agent after its read position."""
    if who.name is None:
        raise HubError(Code.UNAUTHORIZED, "listing unread messages needs the token of an agent of the room")
    if cmd.for_ is not None and cmd.for_ != who.name:
        raise HubError(Code.FORBIDDEN, f"unread messages are listed for the token's agent ({who.name})")
    upto = room.part(delivery.Reads).upto.get(who.name, 0)
    return msgspec.structs.replace(cmd, for_=who.name, after=Cursor(max(cmd.after, upto)))


def decide_ack(w: World, cmd: c.AckMessages, ctx: Context) -> Outcome:
    """Move the agent's read position forward to `seq` (never backwards: an older seq changes nothing)."""
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    feed = room.part(Feed)
    feed.has(cmd.seq)
    event = delivery.read_event(room, agent.name, cmd.seq, feed.messages, feed.base, feed.seq, ctx.now)
    reads = room.part(delivery.Reads)
    if event is not None:
        out.emit(event)
        left = reads.group + reads.addressed[agent.name] - event.counted
    else:
        left = delivery.unread(room, agent.name) or 0
    upto = event.upto if event is not None else reads.upto.get(agent.name, 0)
    out.reply(ctx, cmd.id, r.Acked(name=agent.name, upto=Seq(upto), unread=left))
    return out


def _list_reply(
    room: Room,
    cmd: c.ListMessages,
    after: int,
    found: list[Message],
    who: agents.Reader,
    ctx: Context,
    out: Outcome,
) -> None:
    feed = room.part(Feed)
    messages = found[: cmd.limit]
    if len(messages) < cmd.limit:
        for event in matching(feed, after, cmd.for_, cmd.kind, cmd.unclaimed, reader=who):
            messages.append(to_message(feed, event))
            if len(messages) >= cmd.limit:
                break
    out.reply(ctx, cmd.id, r.MessageList(messages=messages, head=feed.seq))


def decide_claim(w: World, cmd: c.ClaimMessage, ctx: Context) -> Outcome:
    """A message can be claimed once; the loser learns who holds it."""
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    feed = room.part(Feed)
    feed.has(cmd.seq)
    current = feed.claimed.get(cmd.seq)
    if current is not None:
        raise HubError(
            Code.ALREADY_CLAIMED,
            f"message {cmd.seq} is already claimed by {current}",
            {"holder": current, "seq": cmd.seq},
        )
    out.emit(e.MessageClaimed(room=room.name, at=ctx.now, seq=cmd.seq, holder=agent.name))
    out.reply(ctx, cmd.id, r.MessageClaim(seq=cmd.seq, holder=agent.name))
    return out


def decide_attach(w: World, cmd: c.Attach, ctx: Context) -> Outcome:
    """Bind the session to its agent (presence, session-bound claims back within grace), stream what is
    addressed to it, and resume from `after`."""
    if ctx.session is None:
        raise HubError(Code.BAD_REQUEST, "attach needs a session")
    session = ctx.session
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    if cmd.after is not None:
        read = _behind(w, room, session, cmd.after, cmd)
        if read is not None:
            out.effects.append(read)
            return out
    info = w.sessions.get(session)
    if info is None or info.agent is None:
        check_count("sessions per agent", len(agent.sessions), w.config.max_sessions_per_agent)
        out.emit(e.SessionOpened(room=room.name, at=ctx.now, agent=agent.name, session=session))
        claims.rebind(room, agent.name, session, ctx.now, out)
    room_name, name, stream = room.name, agent.name, cmd.stream

    def bind() -> None:
        bound = w.sessions.get(session)
        if bound is None:
            bound = w.sessions[session] = SessionInfo(room_name)
        bound.agent, bound.room = name, room_name
        if stream and not bound.stream:
            bound.stream = True
            w.rooms[room_name].part(Streams).of.setdefault(name, set()).add(session)

    out.stage(bind)
    record = agents.presence(room.part(agents.Roster), agent)
    if agent.status == "offline":
        record.status = "active"
    record.sessions = len(agent.sessions | {session})
    feed = room.part(Feed)
    out.reply(ctx, cmd.id, r.Attached(seq=feed.seq, presence=record))
    if cmd.after is not None:
        for event in matching(feed, cmd.after, agent.name, None, False):
            out.deliver((session,), Delivery(message=to_message(feed, event)))
    return out


def decide_wait(w: World, cmd: c.Wait, ctx: Context) -> Outcome:
    """Arm a waiter for a message, a condition, or both (SPEC: wait); a newer one takes the name over.

    Waiting is acting: the token names the agent that owns the waiter (it shows `waiting` on a condition),
    only `for`'s own token waits for its messages, and only the owner takes its waiter over. The admin token
    waits as `for` (or as no agent), and may take any waiter over (CLI.md "Identity and authorization").
    """
    if ctx.session is None:
        raise HubError(Code.BAD_REQUEST, "wait needs a session")
    session = ctx.session
    rooms.check_room(cmd.room)
    rooms.check_name(cmd.waiter, "waiter")
    if cmd.for_ is None and cmd.condition is None:
        raise HubError(Code.BAD_REQUEST, "wait needs `for`, `condition` or both", {"field": "for"})
    if cmd.for_ is not None:
        rooms.check_name(cmd.for_, "for")
    settle = governor.check_seconds(cmd.settle, "settle", MAX_GOVERNOR_SECONDS)
    compiled = conditions.compile_or_refuse(cmd.condition) if cmd.condition is not None else None
    room = rooms.existing(w, cmd.room)
    admin = w.is_admin(cmd.admin_token)
    if admin:
        owner = cmd.for_ if cmd.for_ is not None else cmd.waiter
    else:
        owner = agents.member(w, room, cmd.token, "waiting").name
    if cmd.for_ is not None and cmd.for_ != owner:
        raise HubError(
            Code.FORBIDDEN, f"only {cmd.for_}'s own token waits for its messages (this is {owner}'s)"
        )
    old = room.part(agents.Waiters).by_name.get(cmd.waiter)
    if old is not None and old.owner != owner and not admin:
        raise HubError(Code.FORBIDDEN, f"waiter {cmd.waiter!r} is {old.owner}'s", {"holder": old.owner})
    info = w.sessions.get(session)
    if info is not None and info.waiter is not None and info.waiter != (room.name, cmd.waiter):
        raise HubError(Code.BAD_REQUEST, "this session already has an armed waiter", {"field": "waiter"})
    feed = room.part(Feed)
    out = Outcome()
    cmd = _resumed(room, cmd)
    pending: list[Message] = []
    due = 0.0
    if cmd.for_ is not None:
        if cmd.since is None and cmd.after is not None:
            read = _behind(w, room, session, cmd.after, cmd)
            if read is not None:
                out.effects.append(read)
                return out
        after = feed.seq if cmd.after is None else max(cmd.after, 0)
        found = _waiting(feed, after if cmd.since is None else -1, cmd, [])
        if found:
            due = found[0].at + settle  # a burst that began before the wait settles from its first message
            if due <= ctx.now or len(found) >= WAKE_CAP:
                _take_over(w, room, cmd, session, out)
                out.reply(ctx, cmd.id, r.Armed(armed=feed.seq))
                out.deliver((session,), _wake(cmd.id, found))
                return out
            pending = found
    sub_id = None
    if compiled is not None:
        value = conditions.value_of(
            compiled, conditions.for_reader(room, conditions.context(w, room), compiled, owner)
        )
        if value is True:  # level-triggered: already true wakes at once, so a turn is never missed
            _take_over(w, room, cmd, session, out)
            out.reply(ctx, cmd.id, r.Armed(armed=feed.seq))
            out.deliver(
                (session,), Wake(id=cmd.id, reason="condition", condition=compiled.source, value=value)
            )
            return out
        shown = owner if owner in room.part(agents.Roster).agents else None  # presence `waiting`
        sub_id, add = conditions.plan_sub(w, room, session, compiled, (), shown, cmd.id, owner=shown)
    _take_over(w, room, cmd, session, out)  # only now: a refusal above leaves the old waiter armed
    if sub_id is not None:
        out.stage(add)
    waiter = agents.Waiter(
        session,
        cmd.id,
        cmd.waiter,
        owner,
        cmd.for_,
        cmd.directed_only,
        sub_id,
        settle,
        at=ctx.now,
        after=feed.seq,
    )
    room_name = room.name

    def arm() -> None:
        conditions.arm(w, w.rooms[room_name], waiter)
        bound = w.sessions.get(session)
        if bound is None:
            bound = w.sessions[session] = SessionInfo(room_name)
        bound.waiter = (room_name, waiter.name)

    out.stage(arm)
    if pending:  # messages are waiting and the burst they began is still settling
        out.stage(_deferring(w, room, waiter, due, pending))
        out.effects.append(ArmTimer(due))
    out.reply(ctx, cmd.id, r.Armed(armed=feed.seq))
    return out


def _waiting(feed: Feed, after: int, cmd: c.Wait, found: list[Message]) -> list[Message]:
    """`found` (read from the log) and then the messages in memory after `after` that wake `cmd`'s waiter,
    oldest first, at most WAKE_CAP: everything one wake hands over."""
    found = found[:WAKE_CAP]
    if cmd.for_ is None or len(found) >= WAKE_CAP:
        return found
    for event in matching(feed, after, cmd.for_, None, False, cmd.since):
        if addressed(event, cmd.for_, cmd.directed_only):
            found.append(to_message(feed, event))
            if len(found) >= WAKE_CAP:
                break
    return found


def _resumed(room: Room, cmd: c.Wait) -> c.Wait:
    """A wait without `after` resumes after `for`'s read position once it has moved it (`message.ack`, or a
    `wait`/`relay` that handed a message over), so a re-armed loop hands every message over exactly once."""
    upto = delivery.resume_after(room, cmd.for_) if cmd.after is None and cmd.for_ is not None else None
    return cmd if upto is None else msgspec.structs.replace(cmd, after=Cursor(upto), since=None)


def _take_over(w: World, room: Room, cmd: c.Wait, session: SessionId, out: Outcome) -> None:
    """The waiter of the same name, if any, is disarmed, told, and its session closed; one armed on this same
    session (its client gave up waiting on it, a timeout) is only replaced."""
    old = room.part(agents.Waiters).by_name.get(cmd.waiter)
    if old is None:
        return
    out.stage(_disarming(w, room, old))
    if old.session == session:
        return
    out.refuse(old.session, old.id, Code.TAKEN_OVER, f"waiter {cmd.waiter!r} was taken over")
    out.effects.append(CloseSession(old.session, TAKEN_OVER_CLOSE, "taken over by a newer waiter"))


def decide_tail(w: World, cmd: c.Tail, ctx: Context) -> Outcome:
    """Follow the durable event feed: every room needs the admin token on a hub that has one."""
    if ctx.session is None:
        raise HubError(Code.BAD_REQUEST, "tail needs a session")
    admin = w.is_admin(cmd.admin_token)
    owner = w.part(agents.Tokens).owner.get(hash_token(cmd.token)) if cmd.token is not None else None
    follows = frozenset(cmd.rooms)
    if w.gated and not admin:
        if owner is None:
            raise HubError(
                Code.UNAUTHORIZED, "following the event feed needs an agent's token or the admin token"
            )
        if follows - {owner[0]}:
            raise HubError(Code.FORBIDDEN, f"an agent's token follows its own room only ({owner[0]})")
        follows = frozenset({owner[0]})
    out = Outcome()
    after = None if cmd.after is None else max(cmd.after, 0)  # before the log's start: from its start
    out.effects.append(FollowLog(ctx.session, cmd.id, after, follows, cmd.batch, owner, admin))
    return out


def decide_log_read(w: World, cmd: LogRead, ctx: Context) -> Outcome:
    """One page read from the log for a read behind the window: filter it here; read on, or finish the read."""
    request = cmd.request
    read = request.command
    room = rooms.existing(w, request.room)
    feed = room.part(Feed)
    rctx = Context(ctx.now, request.session, ctx.secret)
    out = Outcome()
    who = agents.reader(w, read)
    passed = [to_message(feed, m) for m in cmd.messages if _passes(feed, m, read, who.name, who.admin)]
    if type(read) is c.Wait and passed:  # older messages than the window: the burst settled long ago
        _take_over(w, room, read, request.session, out)
        out.reply(rctx, read.id, r.Armed(armed=feed.seq))
        # what the window holds follows on only when the log was read up to it: a gap would be skipped
        found = _waiting(feed, cmd.reached, read, passed) if cmd.reached >= feed.base else passed[:WAKE_CAP]
        out.deliver((request.session,), _wake(read.id, found))
        return out
    if type(read) is c.Attach:
        for message in passed:
            out.deliver((request.session,), Delivery(message=message))
        passed = []
    found = [*request.found, *passed]
    full = type(read) is c.ListMessages and len(found) >= read.limit
    if not full and cmd.reached < feed.base:  # more behind the window (it may have moved meanwhile)
        out.effects.append(
            ReadLog(request.session, room.name, cmd.reached, feed.base, cmd.position, read, tuple(found))
        )
        return out
    if type(read) is c.ListMessages:
        _list_reply(room, read, cmd.reached, found, who, rctx, out)
        return out
    rest = msgspec.structs.replace(read, after=Cursor(cmd.reached))
    decided = decide_wait(w, rest, rctx) if type(rest) is c.Wait else decide_attach(w, rest, rctx)
    out.events.extend(decided.events)
    out.staged.extend(decided.staged)
    out.effects.extend(decided.effects)
    return out


# -- folding ----------------------------------------------------------------------------------------------


def apply_sent(w: World, event: MessageSent) -> None:
    """Append to the window; past 5/4 of its size in messages or in bytes, the oldest messages leave memory
    down to the size (the log keeps them)."""
    room = w.rooms[event.room]
    feed = room.part(Feed)
    if (event.seq - 1) % MARK == 0:
        feed.marks.append(w.position)
    window = feed.messages
    window.append(event)
    feed.bytes += len(event.body)
    size, limit = w.config.feed_window, w.config.feed_window_bytes
    if (size and len(window) >= size + (size >> 2)) or (limit and feed.bytes > limit + (limit >> 2)):
        trim(feed, size, limit)
    agents.beat(room, event.sender, event.at)


def trim(feed: Feed, size: int, limit: int) -> None:
    """Drop the oldest messages until the window holds at most `size` messages and `limit` bytes (0: no cap)."""
    window = feed.messages
    cut = max(len(window) - size, 0) if size else 0
    held = feed.bytes - sum(len(m.body) for m in window[:cut])
    if limit:
        while cut < len(window) - 1 and held > limit:
            held -= len(window[cut].body)
            cut += 1
    if cut:
        del window[:cut]
        feed.base += cut
        feed.bytes = held


def apply_joined(w: World, event: e.AgentJoined) -> None:
    """A new member's read position starts at the window's start (delivery.start)."""
    room = w.rooms[event.room]
    feed = room.part(Feed)
    delivery.start(room, event.agent, feed.messages, feed.base)


def apply_claimed(w: World, event: e.MessageClaimed) -> None:
    room = w.rooms[event.room]
    room.part(Feed).claimed[event.seq] = event.holder
    agents.beat(room, event.holder, event.at)
