"""Durable facts, past tense, tagged on `type`: the hub's whole state is a fold over them."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.protocol.types import Address, AgentName, RoomName, Seq, SessionId

__all__ = [
    "BranchCreated",
    "BranchMerged",
    "StateDeleted",
    "StateWritten",
    "ViewDefined",
    "AgentJoined",
    "BaseEvent",
    "ClaimGranted",
    "ClaimHandedOff",
    "ClaimLapsed",
    "ClaimOrphaned",
    "ClaimReleased",
    "ClaimRenewed",
    "IntentDeclared",
    "Event",
    "HubStarted",
    "MessageClaimed",
    "MessageSent",
    "MessagesRead",
    "PresenceChanged",
    "SessionClosed",
    "SessionOpened",
    "TaskDeclared",
    "TaskUpdated",
    "RoomCreated",
    "InviteIssued",
]


class BaseEvent(msgspec.Struct, tag_field="type", tag=True, frozen=True, kw_only=True, gc=False):
    """Every event: the room it belongs to and `ctx.now` when it was decided."""

    room: RoomName
    at: float


class HubStarted(BaseEvent, frozen=True):
    """The hub (re)started: every session of the previous run is gone."""


class AgentJoined(BaseEvent, frozen=True):
    """An agent joined (or re-joined, rotating its token); only the token's hash is kept."""

    agent: AgentName
    token_hash: str
    role: str | None = None
    forced: bool = False  # taken over without the old token (`join --force`, `admin reset-token`)


class PresenceChanged(BaseEvent, frozen=True):
    """An agent's status changed (heartbeat with a status)."""

    agent: AgentName
    status: str


class SessionOpened(BaseEvent, frozen=True):
    """A session attached to an agent: the agent is online while it has one."""

    agent: AgentName
    session: SessionId


class SessionClosed(BaseEvent, frozen=True):
    """A session of an agent ended."""

    agent: AgentName
    session: SessionId


class MessageSent(BaseEvent, frozen=True):
    """A message joined a room's feed at `seq`; `sender` is a name, or `room/name` from another room."""

    seq: Seq
    sender: Address = msgspec.field(name="from")
    to: tuple[Address, ...]
    kind: str
    body: msgspec.Raw
    reply_to: Seq | None = None
    priority: bool = False
    key: str | None = None  # the sender's idempotency key (`send --key`): a repeat returns this send's seqs


class MessagesRead(BaseEvent, frozen=True):
    """An agent's read position moved forward to `upto`; `counted` messages addressed to it are at or
    before it (an outcome, so replay counts nothing)."""

    agent: AgentName
    upto: Seq
    counted: int


class MessageClaimed(BaseEvent, frozen=True):
    """A message was claimed by an agent."""

    seq: Seq
    holder: AgentName


class ClaimGranted(BaseEvent, frozen=True):
    """A claim was granted (or re-granted to its holder with a new scope); `session` set = session-bound."""

    work: str
    holder: AgentName
    paths: tuple[str, ...]
    expires: float | None = None  # TTL claims, and session-bound ones whose session has gone
    session: SessionId | None = None
    checkpoint: str | None = None
    epoch: int = 0  # the fencing epoch of this grant (0 in logs from before fencing: the fold numbers them)


class ClaimRenewed(BaseEvent, frozen=True):
    """A claim's expiry moved (TTL renewal), or it was re-bound to a live session of its holder."""

    work: str
    expires: float | None = None
    session: SessionId | None = None


class ClaimOrphaned(BaseEvent, frozen=True):
    """A session-bound claim's session ended: it lapses at `expires` unless its holder comes back."""

    work: str
    expires: float


class ClaimReleased(BaseEvent, frozen=True):
    """The holder released a claim; its checkpoint waits for the next claimer of the same work."""

    work: str
    checkpoint: str | None = None
    by: AgentName | None = None  # someone other than the holder (a supervisor's re-offer)


class ClaimLapsed(BaseEvent, frozen=True):
    """A claim's TTL or grace ran out; its checkpoint waits for the next claimer."""

    work: str


class ClaimHandedOff(BaseEvent, frozen=True):
    """A live claim moved, with its checkpoint, to another agent."""

    work: str
    to: AgentName
    expires: float | None = None
    session: SessionId | None = None
    epoch: int = 0  # the new holder's fencing epoch (0 in older logs: the fold numbers it)


class IntentDeclared(BaseEvent, frozen=True):
    """An agent declared advisory intent on paths (empty: cleared)."""

    agent: AgentName
    paths: tuple[str, ...]
    note: str | None = None


class TaskDeclared(BaseEvent, frozen=True):
    """A task joined the plan with its first status (`pending` or `ready`)."""

    task: str
    title: str
    status: str
    by: AgentName
    depends_on: tuple[str, ...] = ()
    parent: str | None = None
    mode: str = "par"
    order: int | None = None
    epic: bool = False


class TaskUpdated(BaseEvent, frozen=True):
    """A task's new status, holder and title at version `etag` (claims, updates, readiness, re-offers)."""

    task: str
    etag: int
    status: str
    holder: AgentName | None = None
    title: str | None = None
    by: AgentName | None = None  # None: the hub itself (a dependency finished, an epic completed)
    note: str | None = None
    epoch: int = 0  # set when a task is claimed: its fencing epoch


class StateWritten(BaseEvent, frozen=True):
    """An entry's new value and version (set, init, CAS, increment and batches all record the outcome)."""

    scope: str
    key: str
    value: Any
    version: int
    by: AgentName
    branch: str | None = None
    op: str | None = None  # the command that wrote it (`state.set`, `state.batch`...); None in older logs


class StateDeleted(BaseEvent, frozen=True):
    """An entry (or a view, in scope `_view`) was deleted."""

    scope: str
    key: str
    by: AgentName
    branch: str | None = None
    op: str | None = None  # the command that deleted it (`state.delete`, `branch.merge`); None in older logs


class ViewDefined(BaseEvent, frozen=True):
    """A computed view was stored in `_view`."""

    key: str
    expr: str
    version: int
    by: AgentName


class BranchCreated(BaseEvent, frozen=True):
    """A branch forked from the room's state (`source` None) or another branch, at state clock `base`."""

    branch: str
    source: str | None
    base: int
    by: AgentName


class BranchMerged(BaseEvent, frozen=True):
    """A branch's changes were applied to its source (the writes follow as StateWritten/StateDeleted)."""

    branch: str
    by: AgentName


class RoomCreated(BaseEvent, frozen=True):
    """A room was created explicitly (`room.create`)."""

    by: str | None = None


class InviteIssued(BaseEvent, frozen=True):
    """A join token for the room was issued; only its hash is kept."""

    token_hash: str
    expires: float | None = None


Event = (
    HubStarted
    | AgentJoined
    | PresenceChanged
    | SessionOpened
    | SessionClosed
    | MessageSent
    | MessageClaimed
    | ClaimGranted
    | ClaimRenewed
    | ClaimOrphaned
    | ClaimReleased
    | ClaimLapsed
    | ClaimHandedOff
    | IntentDeclared
    | TaskDeclared
    | TaskUpdated
    | StateWritten
    | StateDeleted
    | ViewDefined
    | BranchCreated
    | BranchMerged
    | RoomCreated
    | InviteIssued
    | MessagesRead
)
