"""Machine: the pure state machine as two tables, command → decider and event → folds (STYLE.md §1).

`handle` decides: it reads the world and returns an Outcome (events, staged changes, effects), mutating
nothing; a refusal raises HubError. `commit` folds the outcome's events (`apply`), makes its staged changes,
and lets the conditions react. The shell encodes the events between the two, so an event the log could
not take refuses the command before anything changed. Replay and snapshot loading fold through `apply` too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hub.config import HubConfig
from hub.core import (
    agents,
    board,
    branches,
    claims,
    conditions,
    delivery,
    feed,
    rooms,
    sessions,
    state,
    status,
    tasks,
    why,
)
from hub.core.effects import Context, HistoryRead, LogRead, Outcome, SessionGone, Start, Tick
from hub.core.world import Root, World
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import decode_event
from hub.protocol.types import Position

__all__ = ["Context", "Machine", "SessionGone", "Start", "Tick"]

Decider = Callable[[World, Any, Context], Outcome]
Fold = Callable[[World, Any], None]

DECIDE: dict[type, Decider] = {
    c.Join: agents.decide_join,
    c.ResetToken: agents.decide_reset_token,
    c.Heartbeat: agents.decide_heartbeat,
    c.Agents: agents.decide_agents,
    c.Attach: feed.decide_attach,
    c.Send: feed.decide_send,
    c.ListMessages: feed.decide_list,
    c.ClaimMessage: feed.decide_claim,
    c.AckMessages: feed.decide_ack,
    c.Wait: feed.decide_wait,
    c.Tail: feed.decide_tail,
    LogRead: feed.decide_log_read,
    c.Claim: claims.decide_claim,
    c.Release: claims.decide_release,
    c.Handoff: claims.decide_handoff,
    c.ReofferClaim: claims.decide_reoffer,
    c.ListClaims: claims.decide_list,
    c.DeclareIntent: claims.decide_intent,
    c.CheckPaths: claims.decide_check,  # the git guard
    Tick: sessions.decide_tick,
    c.Board: board.decide_board,
    c.DeclareTask: tasks.decide_declare,
    c.ClaimTask: tasks.decide_claim,
    c.UpdateTask: tasks.decide_update,
    c.ReofferTask: tasks.decide_reoffer,
    c.ListTasks: tasks.decide_list,
    c.ShowTask: tasks.decide_show,
    c.SetState: state.decide_set,
    c.InitState: state.decide_init,
    c.DeleteState: state.decide_delete,
    c.BatchState: state.decide_batch,
    c.DefineView: state.decide_view,
    c.GetState: state.decide_get,
    c.ListState: state.decide_list,
    c.Eval: state.decide_eval,
    c.Subscribe: conditions.decide_subscribe,
    c.Unsubscribe: conditions.decide_unsubscribe,
    c.CreateBranch: branches.decide_create,
    c.ListBranches: branches.decide_list,
    c.DiffBranch: branches.decide_diff,
    c.MergeBranch: branches.decide_merge,
    c.CreateRoom: rooms.decide_create,
    c.InviteRoom: rooms.decide_invite,
    c.ListRooms: status.decide_rooms,
    c.Status: status.decide_status,
    Start: sessions.decide_start,
    SessionGone: sessions.decide_gone,
    # explanations (reads: no events)
    c.WhyTask: why.decide_task,
    c.WhyClaim: why.decide_claim,
    c.WhyWait: why.decide_wait,
    c.WhyCondition: why.decide_condition,
    c.StateHistory: why.decide_history,
    HistoryRead: why.decide_history_read,
}

APPLY: dict[type, tuple[Fold, ...]] = {
    e.HubStarted: (agents.apply_started, conditions.apply_started),
    e.AgentJoined: (agents.apply_joined, feed.apply_joined),
    e.PresenceChanged: (agents.apply_presence,),
    e.SessionOpened: (agents.apply_session_opened,),
    e.SessionClosed: (agents.apply_session_closed,),
    e.MessageSent: (feed.apply_sent, delivery.apply_sent),
    e.MessagesRead: (delivery.apply_read,),
    e.MessageClaimed: (feed.apply_claimed,),
    e.ClaimGranted: (claims.apply_granted,),
    e.ClaimRenewed: (claims.apply_renewed,),
    e.ClaimOrphaned: (claims.apply_orphaned,),
    e.ClaimReleased: (claims.apply_released,),
    e.ClaimLapsed: (claims.apply_lapsed,),
    e.ClaimHandedOff: (claims.apply_handed,),
    e.IntentDeclared: (claims.apply_intent,),
    e.TaskDeclared: (tasks.apply_declared,),
    e.TaskUpdated: (tasks.apply_updated,),
    e.StateWritten: (state.apply_written,),
    e.StateDeleted: (state.apply_deleted, conditions.apply_view_deleted),
    e.ViewDefined: (state.apply_view_defined, conditions.apply_view_defined),
    e.BranchCreated: (state.apply_branch_created,),
    e.BranchMerged: (),
    e.RoomCreated: (rooms.apply_created,),
    e.InviteIssued: (rooms.apply_invite,),
}

ROOTS: dict[str, Root] = {  # the CEL context: each concept fills its own root
    "state": (state.root, state.refresh_root),
    "agents": (agents.root, agents.refresh_root),
    "messages": (feed.root, feed.refresh_root),
    "claims": (claims.root, claims.refresh_root),
    "tasks": (tasks.root, tasks.refresh_root),
}


class Machine:
    """The hub's whole state (a fold over events, plus live sessions) behind `handle`, `commit` and `apply`."""

    __slots__ = ("world",)

    def __init__(self, config: HubConfig | None = None) -> None:
        self.world = World(config or HubConfig(), dict(ROOTS))

    @property
    def config(self) -> HubConfig:
        return self.world.config

    @config.setter
    def config(self, config: HubConfig) -> None:
        self.world.config = config

    @property
    def position(self) -> Position:
        return self.world.position

    def handle(self, cmd: Any, ctx: Context) -> Outcome:
        """Decide one command: an Outcome, or HubError; nothing in the world changes either way (but the
        clock: CEL `now` is the time the shell gave with the latest command)."""
        self.world.now = ctx.now
        return DECIDE[type(cmd)](self.world, cmd, ctx)

    def commit(self, out: Outcome) -> None:
        """Fold an outcome the shell accepted: its events, then its staged changes, then the reactions."""
        for event in out.events:
            self.apply(event)
        for change in out.staged:
            change()
        conditions.react(self.world, out)
        conditions.push_presence(self.world, out)

    def run(self, cmd: Any, ctx: Context) -> Outcome:
        """Decide and commit at once (core tests and tools: no log between the two)."""
        out = self.handle(cmd, ctx)
        self.commit(out)
        return out

    def fold(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Apply the log's rows (seq, room, type, data, at) in order, as a restart does; returns how many."""
        apply = self.apply
        count = 0
        for row in rows:
            apply(decode_event(row[3]))
            count += 1
        return count

    def apply(self, event: e.Event) -> None:
        """Fold one event into the state; never raises, never decides (replay calls only this)."""
        w = self.world
        w.position = Position(w.position + 1)
        for fold in APPLY[type(event)]:
            fold(w, event)
        conditions.apply_touched(w, event)
