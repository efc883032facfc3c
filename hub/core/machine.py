"""Machine.handle / apply: the pure state machine; Context; internal commands; dispatch (STYLE.md §1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from hub import __version__
from hub.config import HubConfig
from hub.core import agents as agents_
from hub.core import cel, feed
from hub.core.agents import AgentRules, SessionInfo
from hub.core.board import BoardRules
from hub.core.branches import BranchRules
from hub.core.claims import ClaimRules
from hub.core.conditions import ConditionRules
from hub.core.effects import ArmTimer, Context, Outcome, Reply
from hub.core.feed import FeedRules
from hub.core.limits import Bucket
from hub.core.rooms import Room, RoomRules
from hub.core.state import StateRules
from hub.core.tasks import PlanRules
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError
from hub.protocol.types import AgentName, Position, RoomName, SessionId

__all__ = ["Context", "Machine", "SessionGone", "Start", "Tick"]


class Start(msgspec.Struct, frozen=True):
    """Internal: the hub finished replaying and starts serving."""


class Tick(msgspec.Struct, frozen=True):
    """Internal: a deadline the core asked for (ArmTimer) has come."""


class SessionGone(msgspec.Struct, frozen=True):
    """Internal: the shell reports that a session's connection ended."""

    session: SessionId


class Machine(
    AgentRules,
    RoomRules,
    FeedRules,
    ClaimRules,
    BoardRules,
    PlanRules,
    StateRules,
    BranchRules,
    ConditionRules,
):
    """The hub's whole state: a fold over events, plus the live sessions bound to it.

    The rules live with their concepts (`agents.AgentRules`, `claims.ClaimRules`...); this class dispatches
    commands to them, folds events, and owns what they share: emitting, replying, proving who acts.
    """

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
            c.ReofferClaim: self._reoffer_claim,
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

    def _proven(self, room: Room, name: str, token: str | None) -> AgentName | None:
        """`name` if it is an agent of the room and `token` is its own, else None."""
        agent = room.agents.get(AgentName(name))
        if agent is None or token is None:
            return None
        try:
            return agents_.verify(room, agent.name, token, self.token_owner).name
        except HubError:
            return None

    def _read_room(self, name: RoomName) -> Room:
        room = self.rooms.get(name)
        if room is None:
            raise HubError(Code.NOT_FOUND, f"no room {name!r}", {"what": "room", "room": name})
        return room

    # -- the hub itself ---------------------------------------------------------------------------------

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
