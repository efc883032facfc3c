"""Machine.handle / apply: the pure state machine; Context; internal commands; dispatch (STYLE.md §1)."""

from __future__ import annotations

import heapq
import hmac
from collections.abc import Callable
from typing import Any

import msgspec

from hub import __version__
from hub.config import HubConfig
from hub.core import agents as agents_
from hub.core import cel, feed
from hub.core import claims as claims_
from hub.core import conditions as conditions_
from hub.core import state as state_
from hub.core import tasks as tasks_
from hub.core.effects import ArmTimer, CloseSession, Deliver, Outcome, Reply
from hub.core.limits import Bucket, check_count
from hub.core.rooms import Room, Waiter, check_room, split_targets
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import to_builtins
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Delivery, Error, Notice, Trigger, Wake
from hub.protocol.types import AgentName, Position, RoomName, SessionId

__all__ = ["Context", "Machine", "SessionGone", "Start", "Tick"]

TAKEN_OVER_CLOSE = 4009


class Context(msgspec.Struct, frozen=True):
    """What the shell tells the core about a command: the time, the session, a source of fresh secrets."""

    now: float
    session: SessionId | None = None
    secret: Callable[[], str] | None = None


class Start(msgspec.Struct, frozen=True):
    """Internal: the hub finished replaying and starts serving."""


class Tick(msgspec.Struct, frozen=True):
    """Internal: a deadline the core asked for (ArmTimer) has come."""


class SessionGone(msgspec.Struct, frozen=True):
    """Internal: the shell reports that a session's connection ended."""

    session: SessionId


class SessionInfo:
    """A live session's bindings (ephemeral: not in the log)."""

    __slots__ = ("agent", "room", "stream", "subs", "waiter", "waiter_room")

    def __init__(self, room: RoomName) -> None:
        self.room = room
        self.agent: AgentName | None = None
        self.stream = False
        self.waiter: AgentName | None = None
        self.waiter_room: RoomName | None = None  # may differ from `room`: a session waits in any room
        self.subs: set[tuple[RoomName, int]] = set()


class Machine:
    """The hub's whole state: a fold over events, plus the live sessions bound to it."""

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig()
        self.rooms: dict[RoomName, Room] = {}
        self.position = Position(0)
        self.started_at = 0.0
        self.token_owner: dict[str, tuple[RoomName, str]] = {}
        self.sessions: dict[SessionId, SessionInfo] = {}
        self.buckets: dict[tuple[RoomName, AgentName], Bucket] = {}
        self.created: set[RoomName] = set()  # rooms made by `room.create` (or an invite)
        self.invites: dict[str, tuple[RoomName, float | None]] = {}  # invite hash → (room, expires)
        self._handlers: dict[type, Callable[[Any, Context, Outcome], None]] = {
            c.Join: self._join,
            c.Attach: self._attach,
            c.Send: self._send,
            c.ListMessages: self._list_messages,
            c.ClaimMessage: self._claim_message,
            c.Heartbeat: self._heartbeat,
            c.Agents: self._agents,
            c.Wait: self._wait,
            c.Status: self._status,
            c.Claim: self._claim,
            c.Release: self._release,
            c.Handoff: self._handoff,
            c.ListClaims: self._list_claims,
            c.DeclareIntent: self._declare_intent,
            c.Board: self._board,
            c.DeclareTask: self._declare_task,
            c.ClaimTask: self._claim_task,
            c.UpdateTask: self._update_task,
            c.ListTasks: self._list_tasks,
            c.ShowTask: self._show_task,
            c.SetState: self._set_state,
            c.InitState: self._init_state,
            c.DeleteState: self._delete_state,
            c.BatchState: self._batch_state,
            c.DefineView: self._define_view,
            c.GetState: self._get_state,
            c.ListState: self._list_state,
            c.Eval: self._eval,
            c.Subscribe: self._subscribe,
            c.Unsubscribe: self._unsubscribe,
            c.CreateBranch: self._create_branch,
            c.ListBranches: self._list_branches,
            c.DiffBranch: self._diff_branch,
            c.MergeBranch: self._merge_branch,
            c.CreateRoom: self._create_room,
            c.InviteRoom: self._invite_room,
            c.ListRooms: self._list_rooms,
            Start: self._start,
            SessionGone: self._session_gone,
            Tick: self._tick,
        }
        self._appliers: dict[type, Callable[[Any], None]] = {
            e.HubStarted: self._apply_started,
            e.AgentJoined: self._apply_joined,
            e.PresenceChanged: lambda ev: agents_.apply_presence(self.rooms[ev.room], ev),
            e.SessionOpened: lambda ev: agents_.apply_session_opened(self.rooms[ev.room], ev),
            e.SessionClosed: lambda ev: agents_.apply_session_closed(self.rooms[ev.room], ev),
            e.MessageSent: lambda ev: feed.apply_sent(self.room(ev.room), ev, self.position),
            e.MessageClaimed: lambda ev: feed.apply_claimed(self.rooms[ev.room], ev),
            e.ClaimGranted: lambda ev: self._deadline(ev.room, self._claimant(ev, ev.holder).granted(ev)),
            e.ClaimRenewed: lambda ev: self._deadline(ev.room, self.rooms[ev.room].claims.renewed(ev)),
            e.ClaimOrphaned: lambda ev: self._deadline(ev.room, self.rooms[ev.room].claims.orphaned(ev)),
            e.ClaimReleased: lambda ev: self._claimant(ev, None).released(ev),
            e.ClaimLapsed: lambda ev: self.rooms[ev.room].claims.lapsed(ev),
            e.ClaimHandedOff: lambda ev: self._deadline(ev.room, self._claimant(ev, ev.to).handed(ev)),
            e.IntentDeclared: lambda ev: self._claimant(ev, ev.agent).intent(ev),
            e.TaskDeclared: lambda ev: self.room(ev.room).plan.declared(ev),
            e.TaskUpdated: self._apply_task_updated,
            e.StateWritten: lambda ev: self.rooms[ev.room].state.written(ev),
            e.StateDeleted: self._apply_state_deleted,
            e.ViewDefined: self._apply_view_defined,
            e.BranchCreated: lambda ev: self.rooms[ev.room].state.branch_created(ev),
            e.BranchMerged: lambda ev: None,
            e.RoomCreated: lambda ev: self.created.add(self.room(ev.room).name),
            e.InviteIssued: self._apply_invite,
        }
        self.touched: dict[
            RoomName, set[tuple[str, ...]]
        ] = {}  # context paths changed since the last reaction
        self.next_sub = 0
        self.deadlines: list[
            tuple[float, RoomName, str]
        ] = []  # claim expiries (a heap; stale entries skipped)

    # -- the two entry points -------------------------------------------------------------------

    def handle(self, cmd: Any, ctx: Context) -> Outcome:
        """Decide one command: refuse with HubError before any event exists, or emit and apply events."""
        out = Outcome()
        self._handlers[type(cmd)](cmd, ctx, out)
        if self.touched:
            self._react(out)
        return out

    def apply(self, event: e.Event) -> None:
        """Fold one event into the state; never raises, never decides (replay calls only this)."""
        self.position = Position(self.position + 1)
        self._appliers[type(event)](event)
        room = self.rooms.get(event.room)
        if room is not None and room.conditions.ctx is not None:
            path = _touches(event)
            if path is not None:
                touched = self.touched.setdefault(room.name, set())
                touched.add(path)
                if type(event) is e.MessageSent or type(event) is e.MessageClaimed:
                    sender = event.sender if type(event) is e.MessageSent else event.holder
                    if "/" not in sender:
                        touched.add(("agents", sender))

    # -- helpers ----------------------------------------------------------------------------------

    def room(self, name: RoomName) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.config.feed_window)
        return room

    def _emit(self, out: Outcome, event: e.Event) -> None:
        out.events.append(event)
        self.apply(event)

    def _reply(self, out: Outcome, ctx: Context, cmd: c.BaseCommand, result: Any = None) -> None:
        if ctx.session is not None:
            out.effects.append(Reply(ctx.session, cmd.id, result))

    def _actor(self, cmd: Any, ctx: Context) -> tuple[Room, agents_.Agent]:
        """The room and agent a mutation acts as, once its token (and session binding) prove it."""
        room = self.rooms.get(cmd.room)
        if room is None:
            raise HubError(Code.NOT_FOUND, f"no room {cmd.room!r}", {"what": "room", "room": cmd.room})
        info = self.sessions.get(ctx.session) if ctx.session is not None else None
        if info is not None and info.agent is not None and (info.agent != cmd.name or info.room != cmd.room):
            raise HubError(
                Code.FORBIDDEN, f"this session acts as {info.room}/{info.agent}, not {cmd.room}/{cmd.name}"
            )
        agent = agents_.verify(room, cmd.name, cmd.token, self.token_owner)
        rate = self.config.rate_per_agent
        if rate is not None:
            key = (room.name, agent.name)
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = Bucket(rate, self.config.rate_burst, ctx.now)
            bucket.take(ctx.now)
        return room, agent

    # -- agents and presence ----------------------------------------------------------------------

    def _join(self, cmd: c.Join, ctx: Context, out: Outcome) -> None:
        check_room(cmd.room)
        agents_.check_name(cmd.name)
        self._admit(cmd, ctx.now)
        if ctx.secret is None:
            raise HubError(Code.UNAVAILABLE, "no source of tokens")
        token = ctx.secret()
        digest = agents_.hash_token(token)
        self._emit(
            out, e.AgentJoined(room=cmd.room, at=ctx.now, agent=cmd.name, token_hash=digest, role=cmd.role)
        )
        self._reply(out, ctx, cmd, {"room": cmd.room, "name": cmd.name, "token": token, "role": cmd.role})

    def _admit(self, cmd: c.Join, now: float) -> None:
        """With an admin token, joining needs it, a live invite to the room, or the agent's own token
        (a re-join rotating it) (SPEC: Identity and rooms)."""
        if self._is_admin(cmd.admin_token):
            return
        if cmd.invite is not None:
            invite = self.invites.get(agents_.hash_token(cmd.invite))
            if invite is not None and invite[0] == cmd.room and (invite[1] is None or now < invite[1]):
                return
            raise HubError(
                Code.UNAUTHORIZED,
                f"that invite does not admit to room {cmd.room!r} (wrong, expired, or another room's)",
            )
        room = self.rooms.get(cmd.room)
        if room is not None and cmd.token is not None and cmd.name in room.agents:
            agents_.verify(room, cmd.name, cmd.token, self.token_owner)
            return
        raise HubError(
            Code.UNAUTHORIZED,
            f"joining needs the admin token or an invite to room {cmd.room!r} (synapse room invite {cmd.room})",
        )

    def _is_admin(self, given: str | None) -> bool:
        """Whether `given` is the hub's admin token (or the hub has none); compared in constant time."""
        admin = self.config.admin_token
        if admin is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), admin.encode())

    def _need_admin(self, given: str | None, what: str) -> None:
        if not self._is_admin(given):
            raise HubError(Code.UNAUTHORIZED, f"{what} needs the hub's admin token")

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

    def _attach(self, cmd: c.Attach, ctx: Context, out: Outcome) -> None:
        if ctx.session is None:
            raise HubError(Code.BAD_REQUEST, "attach needs a session")
        room, agent = self._actor(cmd, ctx)
        info = self.sessions.setdefault(ctx.session, SessionInfo(room.name))
        if info.agent is None:
            check_count("sessions per agent", len(agent.sessions), self.config.max_sessions_per_agent)
            info.agent, info.room = agent.name, room.name
            self._emit(
                out, e.SessionOpened(room=room.name, at=ctx.now, agent=agent.name, session=ctx.session)
            )
            for held in list(room.claims.live.values()):  # back within grace: its claims are its own again
                if (
                    held.holder == agent.name
                    and held.bound
                    and held.session is None
                    and not held.expired(ctx.now)
                ):
                    self._emit(
                        out, e.ClaimRenewed(room=room.name, at=ctx.now, work=held.work, session=ctx.session)
                    )
        if cmd.stream and not info.stream:
            info.stream = True
            room.streams.setdefault(agent.name, set()).add(ctx.session)
        self._reply(out, ctx, cmd, {"seq": room.seq, "presence": agents_.presence(agent)})
        if cmd.after is not None:
            backlog = [
                feed.to_message(room, m) for m in feed.matching(room, cmd.after, agent.name, None, False)
            ]
            for message in backlog:
                out.effects.append(Deliver((ctx.session,), Delivery(message=message)))

    def _heartbeat(self, cmd: c.Heartbeat, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        status = cmd.status or agent.status
        if status == "offline" and agent.sessions:
            raise HubError(
                Code.BAD_REQUEST, "an agent with a live session is not offline", {"field": "status"}
            )
        self._emit(out, e.PresenceChanged(room=room.name, at=ctx.now, agent=agent.name, status=status))
        self._reply(out, ctx, cmd, agents_.presence(agent))

    def _agents(self, cmd: c.Agents, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        listed = [] if room is None else [agents_.presence(a) for a in room.agents.values()]
        waiting = (
            {} if room is None else {w.for_: w.name for w in room.waiters.values() if w.for_ is not None}
        )
        conditions = {} if room is None else room.conditions.waiting
        for record in listed:
            if record["name"] in waiting and record["status"] != "offline":
                record["waiter"] = waiting[record["name"]]
            if record["name"] in conditions:
                record["status"], record["waiting_on"] = "waiting", conditions[record["name"]]
        self._reply(out, ctx, cmd, {"room": cmd.room, "agents": listed})

    # -- messages ---------------------------------------------------------------------------------

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
        split = split_targets(room.name, cmd.to, self.rooms)
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

    def _push(self, room: Room, event: e.MessageSent, out: Outcome) -> None:
        """Deliver a new message to the streams and waiters it is addressed to, and to no one else."""
        sessions = feed.recipients(room, event)
        woken = feed.wakes(room, event) if room.waiters else ()
        if not sessions and not woken:
            return
        message = feed.to_message(room, event)
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
            for event in feed.matching(room, cmd.after, cmd.for_, cmd.kind, cmd.unclaimed):
                messages.append(feed.to_message(room, event))
                if len(messages) >= cmd.limit:
                    break
        head = 0 if room is None else room.seq
        self._reply(out, ctx, cmd, {"messages": messages, "head": head})

    def _claim_message(self, cmd: c.ClaimMessage, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        feed.decide_claim(room, cmd.seq, agent.name)
        self._emit(out, e.MessageClaimed(room=room.name, at=ctx.now, seq=cmd.seq, holder=agent.name))
        self._reply(out, ctx, cmd, {"seq": cmd.seq, "holder": agent.name})

    # -- waiters ----------------------------------------------------------------------------------

    def _wait(self, cmd: c.Wait, ctx: Context, out: Outcome) -> None:
        """Arm a waiter for a message, a condition, or both (SPEC: wait); a newer one takes the name over."""
        if ctx.session is None:
            raise HubError(Code.BAD_REQUEST, "wait needs a session")
        room_name = check_room(cmd.room)
        agents_.check_name(cmd.waiter, "waiter")
        if cmd.for_ is None and cmd.condition is None:
            raise HubError(Code.BAD_REQUEST, "wait needs `for`, `condition` or both", {"field": "for"})
        if cmd.for_ is not None:
            agents_.check_name(cmd.for_, "for")
        compiled = conditions_.compile_or_refuse(cmd.condition) if cmd.condition is not None else None
        room = self.room(room_name)
        info = self.sessions.setdefault(ctx.session, SessionInfo(room.name))
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
            for event in feed.matching(
                room, after if cmd.since is None else -1, cmd.for_, None, False, cmd.since
            ):
                if feed.addressed(event, cmd.for_, cmd.directed_only):
                    self._reply(out, ctx, cmd, {"armed": room.seq})
                    message = feed.to_message(room, event)
                    out.effects.append(
                        Deliver((ctx.session,), Wake(id=cmd.id, reason="message", message=message))
                    )
                    return
        sub_id = None
        if compiled is not None:
            value = _value(compiled, room.conditions.context(room))
            if cel.is_true(value):  # level-triggered: already true wakes at once, so a turn is never missed
                self._reply(out, ctx, cmd, {"armed": room.seq})
                wake = Wake(id=cmd.id, reason="condition", condition=compiled.source, value=value)
                out.effects.append(Deliver((ctx.session,), wake))
                return
            agent = AgentName(cmd.waiter) if cmd.waiter in room.agents else None
            sub_id = self._add_sub(room, ctx.session, compiled, (), agent, cmd.id, info)
        waiter = Waiter(
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

    def _disarm(self, room: Room, waiter: Waiter) -> None:
        if room.waiters.get(waiter.name) is waiter:
            del room.waiters[waiter.name]
        if waiter.sub is not None:
            self._drop_sub(room, waiter.sub)
            waiter.sub = None
        info = self.sessions.get(waiter.session)
        if info is not None and info.waiter == waiter.name and info.waiter_room == room.name:
            info.waiter = info.waiter_room = None

    # -- claims -------------------------------------------------------------------------------------

    def _holding(
        self, agent: agents_.Agent, ctx: Context, ttl: float | None
    ) -> tuple[SessionId | None, float | None]:
        """Session-bound when the agent has a live session (its own, or its presence connector), else TTL."""
        info = self.sessions.get(ctx.session) if ctx.session is not None else None
        if info is not None and info.agent == agent.name and ctx.session in agent.sessions:
            return ctx.session, None
        if agent.sessions:
            return min(agent.sessions), None
        ttl = self.config.claim_ttl if ttl is None else ttl
        if not 0 < ttl <= 30 * 86_400:
            raise HubError(
                Code.BAD_REQUEST, "ttl must be between 0 and 30 days", {"field": "ttl", "reason": "range"}
            )
        return None, ctx.now + ttl

    def _claim(self, cmd: c.Claim, ctx: Context, out: Outcome) -> None:
        # Decide with expired claims counted as gone, then lapse them, then act: a refusal emits nothing.
        room, agent = self._actor(cmd, ctx)
        claims_.check_checkpoint(cmd.checkpoint)
        live = room.claims.live
        held = room.claims.current(cmd.work, ctx.now)
        if not cmd.work or len(cmd.work) > 200:
            raise HubError(Code.BAD_REQUEST, "work needs a name of 1..200 characters", {"field": "work"})
        if held is not None and held.holder != agent.name:
            raise HubError(
                Code.CONFLICT,
                f"{cmd.work!r} is held by {held.holder}",
                {"holder": held.holder, "work": cmd.work, "current": held.view()},
            )
        session, expires = self._holding(agent, ctx, cmd.ttl)
        if cmd.renew:
            if held is None:
                raise HubError(Code.NOT_FOUND, f"no live claim {cmd.work!r} to renew", {"what": "claim"})
            if cmd.paths and claims_.check_paths(cmd.paths) != held.paths:
                raise HubError(
                    Code.BAD_REQUEST, "renew keeps the scope; claim again to change it", {"field": "paths"}
                )
            self._lapse_due(ctx.now, out)
            self._emit(
                out,
                e.ClaimRenewed(room=room.name, at=ctx.now, work=cmd.work, expires=expires, session=session),
            )
        else:
            paths = claims_.check_paths(cmd.paths)
            clashes = room.claims.conflicts(paths, agent.name, ctx.now)
            if clashes:
                raise claims_.overlap_error(cmd.work, clashes)
            self._lapse_due(ctx.now, out)
            held = live.get(cmd.work)
            inherited = held.checkpoint if held is not None else room.claims.checkpoints.get(cmd.work)
            checkpoint = cmd.checkpoint if cmd.checkpoint is not None else inherited
            self._emit(
                out,
                e.ClaimGranted(
                    room=room.name,
                    at=ctx.now,
                    work=cmd.work,
                    holder=agent.name,
                    paths=paths,
                    expires=expires,
                    session=session,
                    checkpoint=checkpoint,
                ),
            )
        if expires is not None:
            out.effects.append(ArmTimer(expires))
        self._reply(out, ctx, cmd, live[cmd.work].view())

    def _mine(self, room: Room, agent: agents_.Agent, work: str, now: float) -> claims_.Held:
        held = room.claims.current(work, now)
        if held is None:
            raise HubError(Code.NOT_FOUND, f"no live claim {work!r}", {"what": "claim", "work": work})
        if held.holder != agent.name:
            raise HubError(
                Code.FORBIDDEN,
                f"{work!r} is held by {held.holder}, not {agent.name}",
                {"holder": held.holder},
            )
        return held

    def _release(self, cmd: c.Release, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        claims_.check_checkpoint(cmd.checkpoint)
        held = self._mine(room, agent, cmd.work, ctx.now)
        self._lapse_due(ctx.now, out)
        view = held.view()
        self._emit(out, e.ClaimReleased(room=room.name, at=ctx.now, work=cmd.work, checkpoint=cmd.checkpoint))
        view["checkpoint"] = room.claims.checkpoints.get(cmd.work)
        self._reply(out, ctx, cmd, view)

    def _handoff(self, cmd: c.Handoff, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        held = self._mine(room, agent, cmd.work, ctx.now)
        target = room.agents.get(cmd.to)
        if target is None:
            raise HubError(
                Code.NOT_FOUND,
                f"{cmd.to!r} is not a member of room {room.name!r}",
                {"what": "agent", "name": cmd.to},
            )
        session, expires = self._holding(target, Context(ctx.now), None)
        self._lapse_due(ctx.now, out)
        self._emit(
            out,
            e.ClaimHandedOff(
                room=room.name, at=ctx.now, work=cmd.work, to=target.name, expires=expires, session=session
            ),
        )
        if expires is not None:
            out.effects.append(ArmTimer(expires))
        self._notify(room, target.name, "claim.handed", {**held.view(), "from": agent.name}, out)
        self._reply(out, ctx, cmd, held.view())

    def _list_claims(self, cmd: c.ListClaims, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        listed = (
            []
            if room is None
            else [h.view() for h in sorted(room.claims.live.values(), key=lambda h: h.work)]
        )
        self._reply(out, ctx, cmd, {"claims": listed})

    def _declare_intent(self, cmd: c.DeclareIntent, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        paths = claims_.check_paths(cmd.paths) if cmd.paths else ()
        if cmd.note is not None and len(cmd.note) > 4096:
            raise HubError(Code.TOO_LARGE, "a note holds at most 4096 characters", {"limit": 4096})
        self._emit(
            out, e.IntentDeclared(room=room.name, at=ctx.now, agent=agent.name, paths=paths, note=cmd.note)
        )
        self._reply(out, ctx, cmd, room.claims.board())

    def _board(self, cmd: c.Board, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        if room is None:
            self._reply(
                out, ctx, cmd, {"room": cmd.room, "tasks": [], "plan": [], "claims": [], "intents": []}
            )
            return
        plan = room.plan
        board = {
            "room": cmd.room,
            "tasks": plan.tree(),
            "plan": plan.listed(None, False, None),
            **room.claims.board(),
        }
        self._reply(out, ctx, cmd, board)

    def _tick(self, cmd: Tick, ctx: Context, out: Outcome) -> None:
        self._lapse_due(ctx.now, out)
        if self.deadlines:
            out.effects.append(ArmTimer(self.deadlines[0][0]))

    def _lapse_due(self, now: float, out: Outcome) -> None:
        """Lapse every claim whose TTL or grace has run out (SPEC: Claims); its checkpoint stays for the next."""
        heap = self.deadlines
        while heap and heap[0][0] <= now:
            expires, room_name, work = heapq.heappop(heap)
            room = self.rooms.get(room_name)
            held = None if room is None else room.claims.live.get(work)
            if held is None or held.expires != expires or room is None:
                continue  # stale: released, renewed or re-bound since
            view = held.view()
            self._emit(out, e.ClaimLapsed(room=room_name, at=now, work=work))
            self._notify(room, held.holder, "claim.lapsed", view, out)

    def _notify(self, room: Room, agent: AgentName, kind: str, detail: dict[str, Any], out: Outcome) -> None:
        """A Notice to every attached session of `agent` (streaming or not: a presence connector too)."""
        member = room.agents.get(agent)
        sessions = sorted(member.sessions) if member is not None else ()
        if sessions:
            out.effects.append(Deliver(tuple(sessions), Notice(kind=kind, room=room.name, detail=detail)))

    def _claimant(self, event: Any, agent: AgentName | None) -> claims_.Claims:
        return self.room(event.room).claims

    def _deadline(self, room: RoomName, held: claims_.Held) -> None:
        if held.expires is not None:
            heapq.heappush(self.deadlines, (held.expires, room, held.work))

    # -- the plan ---------------------------------------------------------------------------------

    def _declare_task(self, cmd: c.DeclareTask, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        plan = room.plan
        if not cmd.task or len(cmd.task) > 200 or not cmd.title or len(cmd.title) > 1000:
            raise HubError(
                Code.BAD_REQUEST,
                "a task needs an id (1..200) and a title (1..1000 characters)",
                {"field": "task"},
            )
        depends_on = tuple(dict.fromkeys(d for d in cmd.depends_on if d))
        existing = plan.tasks.get(cmd.task)
        if existing is not None:
            same = (
                existing.title,
                existing.depends_on,
                existing.parent,
                existing.mode,
                existing.order,
                existing.epic,
            ) == (cmd.title, depends_on, cmd.parent, cmd.mode, cmd.order, cmd.epic)
            if not same:
                raise HubError(
                    Code.ALREADY_EXISTS,
                    f"task {cmd.task!r} exists with other settings",
                    {"current": existing.view()},
                )
            self._reply(out, ctx, cmd, existing.view())
            return
        plan.check_declare(cmd.task, depends_on, cmd.parent)
        self._emit(
            out,
            e.TaskDeclared(
                room=room.name,
                at=ctx.now,
                task=cmd.task,
                title=cmd.title,
                status=plan.first_status(depends_on),
                by=agent.name,
                depends_on=depends_on,
                parent=cmd.parent,
                mode=cmd.mode,
                order=cmd.order,
                epic=cmd.epic,
            ),
        )
        self._reply(out, ctx, cmd, plan.tasks[cmd.task].view())

    def _claim_task(self, cmd: c.ClaimTask, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        plan = room.plan
        task = plan.get(cmd.task)
        if task.status == "in_progress" and task.holder == agent.name:
            self._reply(out, ctx, cmd, task.view())
            return
        if task.epic:
            raise HubError(Code.BAD_REQUEST, f"{task.id!r} is an epic: claim its children", {"field": "task"})
        if task.status == "pending":
            open_deps = plan.open_dependencies(task)
            raise HubError(
                Code.NOT_READY,
                f"{task.id!r} waits for {', '.join(open_deps)}",
                {"open_dependencies": open_deps, "current": task.view()},
            )
        if task.status != "ready":
            who = f" by {task.holder}" if task.holder else ""
            raise HubError(
                Code.CONFLICT,
                f"{task.id!r} is {task.status}{who}",
                {"holder": task.holder, "current": task.view()},
            )
        blockers = plan.seq_blockers(task)
        if blockers:
            raise HubError(
                Code.SEQ_BLOCKED,
                f"{task.id!r} is blocked: {', '.join(blockers)} not done",
                {"blocked_by": blockers, "current": task.view()},
            )
        self._emit(
            out,
            e.TaskUpdated(
                room=room.name,
                at=ctx.now,
                task=task.id,
                etag=task.etag + 1,
                status="in_progress",
                holder=agent.name,
                by=agent.name,
            ),
        )
        self._reply(out, ctx, cmd, task.view())

    def _update_task(self, cmd: c.UpdateTask, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        task = room.plan.get(cmd.task)
        if cmd.etag is not None and cmd.etag != task.etag:
            raise HubError(
                Code.CONFLICT,
                f"{task.id!r} changed since etag {cmd.etag} (now {task.etag}); re-read",
                {"current": task.view()},
            )
        if cmd.note is not None and len(cmd.note) > 4096:
            raise HubError(Code.TOO_LARGE, "a note holds at most 4096 characters", {"limit": 4096})
        if cmd.title is not None and not 0 < len(cmd.title) <= 1000:
            raise HubError(Code.BAD_REQUEST, "a title holds 1..1000 characters", {"field": "title"})
        status = cmd.status or task.status
        holder = task.holder
        if status == "ready":
            holder = None
        elif status == "in_progress" and holder is None:
            holder = agent.name
        self._emit(
            out,
            e.TaskUpdated(
                room=room.name,
                at=ctx.now,
                task=task.id,
                etag=task.etag + 1,
                status=status,
                holder=holder,
                title=cmd.title,
                by=agent.name,
                note=cmd.note,
            ),
        )
        if status == "done" and cmd.status == "done":
            self._finished(room, task, ctx.now, out)
        elif cmd.status == "cancelled":
            self._closed(room, task, ctx.now, out)
        self._reply(out, ctx, cmd, task.view())

    def _finished(self, room: Room, task: tasks_.Task, now: float, out: Outcome) -> None:
        """A task is done: its dependents whose dependencies are all done become ready, a complete epic done."""
        plan = room.plan
        for dep in plan.readied_by(task.id):
            self._emit(
                out,
                e.TaskUpdated(
                    room=room.name, at=now, task=dep.id, etag=dep.etag + 1, status="ready", holder=None
                ),
            )
        self._closed(room, task, now, out)

    def _closed(self, room: Room, task: tasks_.Task, now: float, out: Outcome) -> None:
        """A task is done or cancelled: the epic it completes is done."""
        epic = room.plan.completed_epic(task)
        if epic is not None:
            self._emit(
                out,
                e.TaskUpdated(
                    room=room.name,
                    at=now,
                    task=epic.id,
                    etag=epic.etag + 1,
                    status="done",
                    holder=epic.holder,
                    note="all children done",
                ),
            )
            self._finished(room, epic, now, out)

    def _list_tasks(self, cmd: c.ListTasks, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        listed = [] if room is None else room.plan.listed(cmd.status, cmd.ready, cmd.parent)
        self._reply(out, ctx, cmd, {"tasks": listed})

    def _show_task(self, cmd: c.ShowTask, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        if room is None:
            raise HubError(Code.NOT_FOUND, f"no task {cmd.task!r}", {"what": "task", "task": cmd.task})
        task = room.plan.get(cmd.task)
        view = task.view()
        view["children"] = room.plan.listed(None, False, task.id)
        view["open_dependencies"] = room.plan.open_dependencies(task)
        view["blocked_by"] = room.plan.seq_blockers(task)
        self._reply(out, ctx, cmd, view)

    # -- shared state ---------------------------------------------------------------------------------

    def _writable(self, room: Room, agent: agents_.Agent, scope: str, key: str) -> None:
        """`_shared` is everyone's, an agent's own scope only its own, `_view` only through views."""
        state_.check_key(key, scope)
        if scope == state_.VIEW:
            raise HubError(
                Code.BAD_REQUEST, "views are written with `state view KEY EXPR`", {"field": "scope"}
            )
        if scope != state_.SHARED and scope != agent.name:
            raise HubError(Code.FORBIDDEN, f"only {scope} writes scope {scope!r}", {"scope": scope})

    def _gate(self, room: Room, expr: str | None, branch: state_.Branch | None) -> None:
        """A CEL write gate: refuse with `precondition_failed` unless it evaluates to exactly true."""
        if expr is None:
            return
        compiled = conditions_.compile_or_refuse(expr)
        context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
        try:
            value = cel.evaluate(compiled, context)  # a plain mapping: only the slice it reads is converted
        except cel.EvalError as exc:
            raise HubError(
                Code.PRECONDITION_FAILED,
                f"gate failed: {exc}",
                {"expression": expr, "value": None, "error": str(exc)},
            ) from None
        if not cel.is_true(value):
            raise HubError(
                Code.PRECONDITION_FAILED, f"gate is {value!r}: {expr}", {"expression": expr, "value": value}
            )

    def _branch_context(self, room: Room, branch: state_.Branch) -> dict[str, Any]:
        context = conditions_.context_of(room)
        views: dict[str, Any] = {}
        context["state"] = {**room.state.values(branch), "_view": views}  # views resolve over the branch
        programs = room.conditions.view_programs
        for _ in range(len(programs) + 1):
            bound = context  # plain: each view converts only the slice it reads
            changed = False
            for key, compiled in programs.items():
                try:
                    value = cel.evaluate(compiled, bound)
                except cel.EvalError:
                    changed = views.pop(key, _MISSING) is not _MISSING or changed
                    continue
                old = views.get(key, _MISSING)
                if old is _MISSING or old != value or type(old) is not type(value):
                    views[key] = value
                    changed = True
            if not changed:
                break
        return context

    def _write(
        self,
        out: Outcome,
        room: Room,
        agent: agents_.Agent,
        now: float,
        branch: state_.Branch | None,
        scope: str,
        key: str,
        value: Any,
        increment: bool,
        if_version: int | None,
    ) -> dict[str, Any]:
        self._writable(room, agent, scope, key)
        state_.check_value(value, self.config.max_body_bytes)
        current = room.state.lookup(scope, key, branch)
        value, version = state_.next_value(current, scope, key, value, increment, if_version)
        bname = None if branch is None else branch.name
        self._emit(
            out,
            e.StateWritten(
                room=room.name,
                at=now,
                scope=scope,
                key=key,
                value=value,
                version=version,
                by=agent.name,
                branch=bname,
            ),
        )
        return {"scope": scope, "key": key, "value": value, "version": version}

    def _set_state(self, cmd: c.SetState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        self._gate(room, cmd.if_, branch)
        result = self._write(
            out, room, agent, ctx.now, branch, cmd.scope, cmd.key, cmd.value, cmd.increment, cmd.if_version
        )
        self._reply(out, ctx, cmd, result)

    def _init_state(self, cmd: c.InitState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        current = room.state.lookup(cmd.scope, cmd.key, branch)
        if current is not None:
            raise HubError(
                Code.ALREADY_EXISTS,
                f"{cmd.scope}.{cmd.key} exists",
                {"current": current.view(cmd.scope, cmd.key)},
            )
        self._reply(
            out,
            ctx,
            cmd,
            self._write(out, room, agent, ctx.now, branch, cmd.scope, cmd.key, cmd.value, False, None),
        )

    def _delete_state(self, cmd: c.DeleteState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        if cmd.scope == state_.VIEW:
            current = room.state.views.get(cmd.key)
        else:
            self._writable(room, agent, cmd.scope, cmd.key)
            current = room.state.lookup(cmd.scope, cmd.key, branch)
        if current is None:
            raise HubError(Code.NOT_FOUND, f"no entry {cmd.scope}.{cmd.key}", {"what": "key", "key": cmd.key})
        if cmd.if_version is not None and cmd.if_version != current.version:
            raise HubError(
                Code.CONFLICT,
                f"{cmd.scope}.{cmd.key} is at version {current.version}",
                {"current": current.view(cmd.scope, cmd.key)},
            )
        self._emit(
            out,
            e.StateDeleted(
                room=room.name,
                at=ctx.now,
                scope=cmd.scope,
                key=cmd.key,
                by=agent.name,
                branch=None if branch is None else branch.name,
            ),
        )
        self._reply(out, ctx, cmd, {"scope": cmd.scope, "key": cmd.key, "deleted": True})

    def _batch_state(self, cmd: c.BatchState, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        if not cmd.writes:
            raise HubError(Code.BAD_REQUEST, "a batch needs at least one write", {"field": "writes"})
        check_count("writes per batch", len(cmd.writes) - 1, 1000)
        self._gate(room, cmd.if_, branch)
        planned: dict[tuple[str, str], state_.Entry | None] = {}
        staged = []
        for w in cmd.writes:  # decide every write before emitting any: all or nothing
            self._writable(room, agent, w.scope, w.key)
            state_.check_value(w.value, self.config.max_body_bytes)
            spot = (w.scope, w.key)
            current = planned[spot] if spot in planned else room.state.lookup(w.scope, w.key, branch)
            value, version = state_.next_value(current, w.scope, w.key, w.value, w.increment, w.if_version)
            planned[spot] = state_.Entry(value, version, 0, agent.name, ctx.now)
            staged.append((w.scope, w.key, value, version))
        bname = None if branch is None else branch.name
        results = []
        for scope, key, value, version in staged:
            self._emit(
                out,
                e.StateWritten(
                    room=room.name,
                    at=ctx.now,
                    scope=scope,
                    key=key,
                    value=value,
                    version=version,
                    by=agent.name,
                    branch=bname,
                ),
            )
            results.append({"scope": scope, "key": key, "value": value, "version": version})
        self._reply(out, ctx, cmd, {"writes": results})

    def _define_view(self, cmd: c.DefineView, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        state_.check_key(cmd.key, state_.VIEW)
        compiled = conditions_.compile_or_refuse(cmd.expr)
        cycle = room.conditions.view_cycle(cmd.key, compiled)
        if cycle:
            raise HubError(
                Code.BAD_EXPRESSION,
                "views form a cycle: " + " → ".join(cycle),
                {"expression": cmd.expr, "cycle": cycle, "position": None},
            )
        current = room.state.views.get(cmd.key)
        version = 1 if current is None else current.version + 1
        room.conditions.context(room)  # views are kept resolved from now on
        self._emit(
            out,
            e.ViewDefined(
                room=room.name, at=ctx.now, key=cmd.key, expr=cmd.expr, version=version, by=agent.name
            ),
        )
        self._react(out)
        value = room.conditions.ctx["state"].get("_view", {}).get(cmd.key) if room.conditions.ctx else None
        self._reply(
            out,
            ctx,
            cmd,
            {"scope": "_view", "key": cmd.key, "expr": cmd.expr, "version": version, "value": value},
        )

    def _read_room(self, name: RoomName) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise HubError(Code.NOT_FOUND, f"no room {name!r}", {"what": "room", "room": name})
        return room

    def _get_state(self, cmd: c.GetState, ctx: Context, out: Outcome) -> None:
        room = self._read_room(cmd.room)
        branch = room.state.branch(cmd.branch)
        if cmd.scope == state_.VIEW:
            view = room.state.views.get(cmd.key)
            if view is None:
                raise HubError(Code.NOT_FOUND, f"no view {cmd.key!r}", {"what": "key", "key": cmd.key})
            context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
            value = context["state"].get("_view", {}).get(cmd.key)
            self._reply(
                out,
                ctx,
                cmd,
                {
                    "scope": "_view",
                    "key": cmd.key,
                    "value": value,
                    "version": view.version,
                    "expr": view.value,
                },
            )
            return
        entry = room.state.lookup(cmd.scope, cmd.key, branch)
        if entry is None:
            raise HubError(Code.NOT_FOUND, f"no entry {cmd.scope}.{cmd.key}", {"what": "key", "key": cmd.key})
        self._reply(out, ctx, cmd, entry.view(cmd.scope, cmd.key))

    def _list_state(self, cmd: c.ListState, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        if room is None:
            self._reply(out, ctx, cmd, {"entries": []})
            return
        branch = room.state.branch(cmd.branch)
        entries = [
            e_.view(scope, key)
            for scope, keys in sorted(room.state.entries(branch).items())
            for key, e_ in sorted(keys.items())
            if cmd.scope is None or cmd.scope == scope
        ]
        if cmd.scope in (None, state_.VIEW) and room.state.views:
            context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
            resolved = context["state"].get("_view", {})
            entries += [
                {"scope": "_view", "key": k, "value": resolved.get(k), "version": v.version, "expr": v.value}
                for k, v in sorted(room.state.views.items())
            ]
        self._reply(out, ctx, cmd, {"entries": entries})

    def _eval(self, cmd: c.Eval, ctx: Context, out: Outcome) -> None:
        compiled = conditions_.compile_or_refuse(cmd.expr)
        room = self.rooms.get(cmd.room) or Room(cmd.room, self.config.feed_window)
        branch = room.state.branch(cmd.branch)
        context = room.conditions.context(room) if branch is None else self._branch_context(room, branch)
        try:
            value = cel.evaluate(compiled, context)
        except cel.EvalError as exc:
            self._reply(out, ctx, cmd, {"value": None, "error": str(exc)})
            return
        self._reply(out, ctx, cmd, {"value": value})

    # -- subscriptions ----------------------------------------------------------------------------------

    def _add_sub(
        self,
        room: Room,
        session: SessionId,
        compiled: Any,
        include: tuple[str, ...],
        agent: AgentName | None,
        wait_id: int | None,
        info: SessionInfo,
    ) -> int:
        check_count("subscriptions per session", len(info.subs), self.config.max_subscriptions_per_session)
        self.next_sub += 1
        room.conditions.add(conditions_.Sub(self.next_sub, session, compiled, include, agent, wait_id))
        info.subs.add((room.name, self.next_sub))
        if agent is not None:
            self.touched.setdefault(room.name, set()).add(("agents", agent))
        return self.next_sub

    def _drop_sub(self, room: Room, sub_id: int) -> None:
        sub = room.conditions.remove(sub_id)
        if sub is None:
            return
        info = self.sessions.get(sub.session)
        if info is not None:
            info.subs.discard((room.name, sub_id))
        if sub.agent is not None and room.conditions.ctx is not None:
            self.touched.setdefault(room.name, set()).add(("agents", sub.agent))

    def _subscribe(self, cmd: c.Subscribe, ctx: Context, out: Outcome) -> None:
        if ctx.session is None:
            raise HubError(Code.BAD_REQUEST, "subscribe needs a session")
        compiled = conditions_.compile_or_refuse(cmd.expr)
        room = self.room(check_room(cmd.room))
        for part in cmd.include:
            if part not in cel.ROOTS:
                raise HubError(
                    Code.BAD_REQUEST,
                    f"include names a context root: {', '.join(sorted(cel.ROOTS))}",
                    {"field": "include"},
                )
        info = self.sessions.setdefault(ctx.session, SessionInfo(room.name))
        agent = cmd.name if cmd.name is not None and cmd.name in room.agents else None
        sub_id = self._add_sub(room, ctx.session, compiled, cmd.include, agent, None, info)
        sub = room.conditions.subs[sub_id]
        sub.once = cmd.once
        value = _value(compiled, room.conditions.context(room))
        sub.held = cel.is_true(value)
        self._reply(out, ctx, cmd, {"sub": sub_id, "value": value, "holds": sub.held})
        if sub.held:
            self._trigger(room, sub, value, out)
            if cmd.once:
                self._drop_sub(room, sub_id)

    def _unsubscribe(self, cmd: c.Unsubscribe, ctx: Context, out: Outcome) -> None:
        info = self.sessions.get(ctx.session) if ctx.session is not None else None
        found = None if info is None else next((r for r, i in info.subs if i == cmd.sub), None)
        if found is None:
            raise HubError(
                Code.NOT_FOUND, f"no subscription {cmd.sub} on this session", {"what": "subscription"}
            )
        self._drop_sub(self.rooms[found], cmd.sub)
        self._reply(out, ctx, cmd, {"sub": cmd.sub, "removed": True})

    def _trigger(self, room: Room, sub: conditions_.Sub, value: Any, out: Outcome) -> None:
        if sub.wait_id is not None:
            waiter = next((w for w in room.waiters.values() if w.sub == sub.id), None)
            if waiter is not None:
                self._disarm(room, waiter)
            wake = Wake(id=sub.wait_id, reason="condition", condition=sub.compiled.source, value=value)
            out.effects.append(Deliver((sub.session,), wake))
            return
        frame = Trigger(
            sub=sub.id,
            condition=sub.compiled.source,
            value=value,
            position=self.position,
            include=to_builtins(room.conditions.include(sub.include)) if sub.include else {},
        )
        out.effects.append(Deliver((sub.session,), frame))

    def _react(self, out: Outcome) -> None:
        """Re-evaluate only the views and conditions that read what changed; push triggers on the edge."""
        touched, self.touched = self.touched, {}
        for room_name, paths in touched.items():
            room = self.rooms.get(room_name)
            if room is None or room.conditions.ctx is None:
                continue
            changed = room.conditions.refresh(room, paths)
            subs = room.conditions.affected(changed)
            if not subs:
                continue
            # the plain live context, not cel.bind(): a Bound converts whole roots on first read (all of
            # `state` per write in a big room), the plain mapping only the slice each condition reads
            bound = room.conditions.ctx
            for sub in subs:
                if sub.id not in room.conditions.subs:
                    continue
                holds, value = room.conditions.evaluate(sub, bound)
                if holds and not sub.held:
                    self._trigger(room, sub, value, out)
                    if sub.once:
                        self._drop_sub(room, sub.id)
                sub.held = holds
        if self.touched:  # presence changed by a waiter that just woke
            self._react(out)

    # -- branches -----------------------------------------------------------------------------------------

    def _create_branch(self, cmd: c.CreateBranch, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        state_.check_branch_name(cmd.branch)
        if cmd.branch in room.state.branches:
            raise HubError(Code.ALREADY_EXISTS, f"branch {cmd.branch!r} exists", {"current": cmd.branch})
        room.state.branch(cmd.from_)
        self._emit(
            out,
            e.BranchCreated(
                room=room.name,
                at=ctx.now,
                branch=cmd.branch,
                source=cmd.from_,
                base=room.state.clock,
                by=agent.name,
            ),
        )
        self._reply(out, ctx, cmd, {"branch": cmd.branch, "from": cmd.from_, "base": room.state.clock})

    def _list_branches(self, cmd: c.ListBranches, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        listed = (
            []
            if room is None
            else [
                {
                    "branch": b.name,
                    "from": b.source,
                    "base": b.base,
                    "by": b.by,
                    "created_at": b.created_at,
                    "changes": len(b.overlay),
                }
                for b in sorted(room.state.branches.values(), key=lambda b: b.name)
            ]
        )
        self._reply(out, ctx, cmd, {"branches": listed})

    def _changes(
        self, room: Room, branch: state_.Branch
    ) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, str]]]:
        """A branch's changes beside the source's current entries; the keys changed on both sides (three
        ways: the branch's entry, the source's, and the source's at the fork); the keys a merge writes."""
        source = room.state.branches.get(branch.source) if branch.source is not None else None
        changes: list[dict[str, Any]] = []
        conflicts: list[str] = []
        writes: list[tuple[str, str]] = []
        for (scope, key), mine in sorted(branch.overlay.items()):
            theirs = room.state.lookup(scope, key, source)
            changes.append(
                {
                    "scope": scope,
                    "key": key,
                    "value": None if mine is None else mine.value,
                    "deleted": mine is None,
                    "source": None if theirs is None else theirs.value,
                }
            )
            spot = (scope, key)
            if spot in branch.frozen:
                moved = not state_.same(theirs, branch.frozen[spot])  # the source changed it since the fork
                mine_moved = not state_.same(mine, branch.frozen[spot])
            else:  # untouched by the source since the fork (or a snapshot too old to say: by the clock)
                moved = theirs is not None and theirs.changed > branch.base
                mine_moved = True
            if state_.same(mine, theirs) or not mine_moved:
                continue  # nothing to bring over: already there, or the branch ended where it began
            if moved:
                conflicts.append(f"{scope}.{key}")
            else:
                writes.append(spot)
        return changes, conflicts, writes

    def _diff_branch(self, cmd: c.DiffBranch, ctx: Context, out: Outcome) -> None:
        room = self._read_room(cmd.room)
        branch = room.state.branch(cmd.branch)
        assert branch is not None
        changes, conflicts, _ = self._changes(room, branch)
        self._reply(
            out,
            ctx,
            cmd,
            {"branch": branch.name, "from": branch.source, "changes": changes, "conflicts": conflicts},
        )

    def _merge_branch(self, cmd: c.MergeBranch, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        branch = room.state.branch(cmd.branch)
        assert branch is not None
        _, conflicts, writes = self._changes(room, branch)
        if conflicts:
            raise HubError(
                Code.CONFLICT, f"changed on both sides: {', '.join(conflicts)}", {"keys": conflicts}
            )
        source = room.state.branches.get(branch.source) if branch.source is not None else None
        self._emit(out, e.BranchMerged(room=room.name, at=ctx.now, branch=branch.name, by=agent.name))
        for scope, key in writes:  # the keys only the branch changed (three-way: the source kept its own)
            mine = branch.overlay[(scope, key)]
            theirs = room.state.lookup(scope, key, source)
            if mine is None:
                if theirs is not None:
                    self._emit(
                        out,
                        e.StateDeleted(
                            room=room.name,
                            at=ctx.now,
                            scope=scope,
                            key=key,
                            by=agent.name,
                            branch=branch.source,
                        ),
                    )
                continue
            version = (0 if theirs is None else theirs.version) + 1
            self._emit(
                out,
                e.StateWritten(
                    room=room.name,
                    at=ctx.now,
                    scope=scope,
                    key=key,
                    value=mine.value,
                    version=version,
                    by=agent.name,
                    branch=branch.source,
                ),
            )
        self._reply(out, ctx, cmd, {"branch": branch.name, "merged": len(writes)})

    # -- the hub itself ---------------------------------------------------------------------------

    def _status(self, cmd: c.Status, ctx: Context, out: Outcome) -> None:
        online = sum(1 for r in self.rooms.values() for a in r.agents.values() if a.sessions)
        self._reply(
            out,
            ctx,
            cmd,
            {
                "version": __version__,
                "uptime": max(0.0, ctx.now - self.started_at),
                "rooms": len(self.rooms),
                "agents": sum(len(r.agents) for r in self.rooms.values()),
                "agents_online": online,
                "sessions": len(self.sessions),
                "log_events": self.position,
            },
        )

    def _start(self, cmd: Start, ctx: Context, out: Outcome) -> None:
        """Every session of the previous run is gone: its claims get the grace period to be re-taken."""
        grace = ctx.now + self.config.claim_grace
        for room in self.rooms.values():
            for held in list(room.claims.live.values()):
                if held.session is not None:
                    self._emit(
                        out, e.ClaimOrphaned(room=room.name, at=ctx.now, work=held.work, expires=grace)
                    )
        self._emit(out, e.HubStarted(room=RoomName(""), at=ctx.now))
        if self.deadlines:
            out.effects.append(ArmTimer(min(d[0] for d in self.deadlines)))

    def _session_gone(self, cmd: SessionGone, ctx: Context, out: Outcome) -> None:
        info = self.sessions.pop(cmd.session, None)
        if info is None:
            return
        for room_name, sub_id in list(info.subs):
            self._drop_sub(self.rooms[room_name], sub_id)
        if info.waiter is not None and info.waiter_room is not None:
            waiters = self.rooms[info.waiter_room].waiters
            waiter = waiters.get(info.waiter)
            if waiter is not None and waiter.session == cmd.session:
                del waiters[info.waiter]
        room = self.rooms.get(info.room)
        if room is not None and info.agent is not None:
            if info.stream:
                streams = room.streams.get(info.agent)
                if streams is not None:
                    streams.discard(cmd.session)
                    if not streams:
                        del room.streams[info.agent]
            grace = ctx.now + self.config.claim_grace
            member = room.agents.get(info.agent)
            others = sorted(s for s in member.sessions if s != cmd.session) if member is not None else []
            for held in room.claims.of_session(cmd.session):
                if others:  # the holder is still connected (a reconnect raced the old socket's end)
                    self._emit(
                        out, e.ClaimRenewed(room=room.name, at=ctx.now, work=held.work, session=others[0])
                    )
                    continue
                self._emit(out, e.ClaimOrphaned(room=room.name, at=ctx.now, work=held.work, expires=grace))
                out.effects.append(ArmTimer(grace))
            self._emit(
                out, e.SessionClosed(room=room.name, at=ctx.now, agent=info.agent, session=cmd.session)
            )

    # -- appliers that need the whole machine -----------------------------------------------------

    def _apply_started(self, event: e.HubStarted) -> None:
        self.started_at = event.at
        for room in self.rooms.values():
            room.conditions.ctx = None  # rebuilt on first use
            for agent in room.agents.values():
                if agent.sessions:
                    agent.sessions.clear()
                    agent.status = "offline"

    def _apply_state_deleted(self, event: e.StateDeleted) -> None:
        room = self.rooms[event.room]
        room.state.deleted(event)
        if event.scope == "_view":
            room.conditions.drop_view(event.key)

    def _apply_view_defined(self, event: e.ViewDefined) -> None:
        room = self.rooms[event.room]
        room.state.view_defined(event)
        try:
            room.conditions.define_view(room, event.key, cel.compile(event.expr))
        except cel.BadExpression:  # it compiled when it was decided; an engine change must not stop replay
            return

    def _apply_task_updated(self, event: e.TaskUpdated) -> None:
        room = self.rooms[event.room]
        room.plan.updated(event)
        actor = room.agents.get(event.by) if event.by is not None else None
        if actor is not None:
            actor.beat(event.at)

    def _apply_joined(self, event: e.AgentJoined) -> None:
        agents_.apply_joined(self.room(event.room), event, self.token_owner)
        self.token_owner[event.token_hash] = (event.room, event.agent)


_MISSING = object()


def _value(compiled: Any, bound: Any) -> Any:
    """A condition's value, or None when evaluation fails (a failing condition never holds)."""
    try:
        return cel.evaluate(compiled, bound)
    except cel.EvalError:
        return None


_TOUCH: dict[type, Callable[[Any], tuple[str, ...] | None]] = {
    e.StateWritten: lambda ev: ("state", ev.scope, ev.key) if ev.branch is None else None,
    e.StateDeleted: lambda ev: ("state", ev.scope, ev.key) if ev.branch is None else None,
    e.ViewDefined: lambda ev: ("state", "_view", ev.key),
    e.MessageSent: lambda ev: ("messages",),
    e.MessageClaimed: lambda ev: ("messages",),
    e.AgentJoined: lambda ev: ("agents", ev.agent),
    e.PresenceChanged: lambda ev: ("agents", ev.agent),
    e.SessionOpened: lambda ev: ("agents", ev.agent),
    e.SessionClosed: lambda ev: ("agents", ev.agent),
    e.ClaimGranted: lambda ev: ("claims", ev.work),
    e.ClaimReleased: lambda ev: ("claims", ev.work),
    e.ClaimLapsed: lambda ev: ("claims", ev.work),
    e.ClaimHandedOff: lambda ev: ("claims", ev.work),
    e.TaskDeclared: lambda ev: ("tasks", ev.task),
    e.TaskUpdated: lambda ev: ("tasks", ev.task),
}


def _touches(event: Any) -> tuple[str, ...] | None:
    """The context path an event changes (None: nothing a condition can read)."""
    touch = _TOUCH.get(type(event))
    return None if touch is None else touch(event)
