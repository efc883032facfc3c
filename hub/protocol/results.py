"""The `result` of an Ok frame, one Struct per shape: the same JSON for the wire, the SDK and the CLI.

Fields without a default are always sent (a null included); fields with one are left out at their default.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hub.protocol.frames import Message
from hub.protocol.types import AgentName, RoomName, Seq

__all__ = [
    "Acked",
    "AgentList",
    "Armed",
    "Attached",
    "BoardView",
    "BranchChange",
    "BranchDiff",
    "BranchInfo",
    "BranchList",
    "BranchMade",
    "ClaimList",
    "ClaimView",
    "Clash",
    "Deleted",
    "EntryList",
    "EntryView",
    "Evaluated",
    "HubStatus",
    "IntentList",
    "IntentView",
    "Invite",
    "Joined",
    "Merged",
    "MessageClaim",
    "MessageList",
    "PathHeld",
    "PathsChecked",
    "Presence",
    "RoomInfo",
    "RoomList",
    "RoomMade",
    "Sent",
    "Subscribed",
    "TailStarted",
    "TaskList",
    "TaskNote",
    "TaskView",
    "Unsubscribed",
    "Writes",
    # explanations
    "ClaimWhy",
    "ConditionPart",
    "ConditionWhy",
    "KeyHistory",
    "KeyVersion",
    "TaskLink",
    "TaskWhy",
    "WaitWhy",
]


class Result(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Base of every result."""


class Joined(Result):
    room: RoomName
    name: AgentName
    token: str
    role: str | None


class Presence(Result):
    """An agent's presence as clients see it (`waiter`: the name of its armed waiter, if any)."""

    name: AgentName
    role: str | None
    status: str
    waiting_on: str | None
    last_heartbeat: float
    sessions: int
    waiter: str | None = None


class Attached(Result):
    seq: Seq
    presence: Presence


class AgentList(Result):
    room: RoomName
    agents: list[Presence]


class Sent(Result):
    seq: Seq
    seqs: dict[str, int]
    unknown: list[str] = []
    unread: dict[str, int] = {}  # a directed send: how many messages each local recipient has not read
    repeated: bool = False  # the key was used before: these are the first send's seqs, nothing was sent


class Acked(Result):
    """A read position after `message.ack`: everything addressed to `name` up to `upto` is read."""

    name: AgentName
    upto: Seq
    unread: int


class MessageList(Result):
    messages: list[Message]
    head: int


class MessageClaim(Result):
    seq: Seq
    holder: AgentName


class Armed(Result):
    armed: int


class HubStatus(Result):
    version: str
    uptime: float
    rooms: int
    agents: int
    agents_online: int
    sessions: int
    log_events: int


class ClaimView(Result):
    """A live claim: `held_by` is `session`, `grace` (its session dropped) or `ttl`."""

    work: str
    holder: AgentName
    paths: list[str]
    held_by: str
    expires: float | None
    granted_at: float
    checkpoint: str | None
    epoch: int  # the fencing epoch of this grant: `--fence WORK=EPOCH` on writes
    already_held: bool = False  # a claim by its own holder: it held it already (same epoch)
    by: str | None = None  # in a `claim.reoffered` notice: the supervisor
    from_: str | None = msgspec.field(default=None, name="from")  # in a `claim.handed` notice: the giver


class ClaimList(Result):
    claims: list[ClaimView]


class Clash(Result):
    """Where an intent meets another agent's claim (holder, work) or intent (intent)."""

    paths: list[str]
    holder: str | None = None
    work: str | None = None
    intent: str | None = None


class IntentView(Result):
    agent: AgentName
    paths: list[str]
    note: str | None
    at: float
    overlaps: list[Clash]


class TaskNote(Result):
    at: float
    by: str | None
    note: str


class TaskView(Result):
    """A task; `task show` adds its children, open dependencies and the seq siblings blocking it."""

    id: str
    title: str
    status: str
    holder: AgentName | None
    etag: int
    depends_on: list[str]
    parent: str | None
    mode: str
    order: int | None
    kind: str
    notes: list[TaskNote]
    created_at: float
    updated_at: float
    epoch: int = 0  # the fencing epoch of its current (or last) claim: `--fence task:ID=EPOCH`
    children: list[TaskView] | None = None
    open_dependencies: list[str] | None = None
    blocked_by: list[str] | None = None


class TaskList(Result):
    tasks: list[TaskView]


class IntentList(Result):
    """Live claims and declared intents (the answer to `board.intent`)."""

    claims: list[ClaimView]
    intents: list[IntentView]


class BoardView(Result):
    room: RoomName
    tasks: list[str]  # the plan as indented lines
    plan: list[TaskView]
    claims: list[ClaimView]
    intents: list[IntentView]


class EntryView(Result):
    """A state entry (`expr` for a view: its expression, `value` its current value)."""

    scope: str
    key: str
    value: Any
    version: int
    by: str | None = None
    at: float | None = None
    expr: str | None = None


class EntryList(Result):
    entries: list[EntryView]


class Writes(Result):
    writes: list[EntryView]


class Deleted(Result):
    """A deleted entry and the version it had (a re-created key continues after it)."""

    scope: str
    key: str
    deleted: bool
    version: int


class Evaluated(Result):
    value: Any
    error: str | None = None


class Subscribed(Result):
    sub: int
    value: Any
    holds: bool


class Unsubscribed(Result):
    sub: int
    removed: bool


class BranchMade(Result):
    branch: str
    from_: str | None = msgspec.field(name="from")
    base: int


class BranchInfo(Result):
    branch: str
    from_: str | None = msgspec.field(name="from")
    base: int
    by: AgentName
    created_at: float
    changes: int


class BranchList(Result):
    branches: list[BranchInfo]


class BranchChange(Result):
    scope: str
    key: str
    value: Any
    deleted: bool
    source: Any


class BranchDiff(Result):
    branch: str
    from_: str | None = msgspec.field(name="from")
    changes: list[BranchChange]
    conflicts: list[str]


class Merged(Result):
    branch: str
    merged: int


class RoomMade(Result):
    room: RoomName


class Invite(Result):
    room: RoomName
    invite: str
    expires: float | None


class RoomInfo(Result):
    name: RoomName
    agents: int
    online: int
    messages: int
    claims: int
    tasks: int


class RoomList(Result):
    rooms: list[RoomInfo]


class TailStarted(Result):
    position: int
    after: int


# -- the git guard -------------------------------------------------------------------------------------------


class PathHeld(Result):
    """One path of a `guard.check`: `held` by the checked agent, else the live claim that covers it (`holder`
    and `work`), both None when no live claim does ("unclaimed")."""

    path: str
    held: bool
    holder: str | None
    work: str | None


class PathsChecked(Result):
    """The answer to `guard.check`, one PathHeld per path given, in the same order."""

    name: AgentName
    paths: list[PathHeld]


# -- explanations (`synapse why ...`, `synapse state history`) ---------------------------------------------


class TaskLink(Result):
    """One task in a `why task` chain: `reason` says how it blocks the task above it (`depends_on`, `seq`,
    `child` of an epic; `task` for the one asked about); `blockers` are what keeps it from being ready."""

    id: str
    status: str
    holder: AgentName | None
    reason: str
    title: str | None = None
    actionable: bool = False  # nothing blocks it: ready to claim, or in progress with its holder
    missing: bool = False  # depended on but never declared
    repeated: bool = False  # already shown higher up the chain (its blockers are not repeated)
    blockers: list[TaskLink] = []


class TaskWhy(Result):
    task: str
    ready: bool
    status: str
    holder: AgentName | None
    chain: TaskLink
    actionable: list[str]  # the first tasks someone can act on now, deepest in the chain
    truncated: bool = False  # the chain stopped at its bound


class ClaimWhy(Result):
    """A live claim explained: `lease` is `session` (bound to a live session), `grace` (its session dropped:
    it lapses at `expires` unless the holder comes back) or `ttl` (it lapses at `expires` unless renewed)."""

    work: str
    holder: AgentName
    paths: list[str]
    lease: str
    since: float
    expires: float | None
    epoch: int
    renewed_at: float | None  # the last renewal or re-binding (None: never renewed since granted)
    last_heartbeat: float | None  # the holder's last sign of life
    holder_status: str | None
    holder_sessions: int
    checkpoint: str | None = None


class WaitWhy(Result):
    """An armed waiter: woken by a message for `for` (after seq `armed`) or by `condition` turning true.
    `waking` counts messages already there that would wake it (0 for an armed waiter but while it settles)."""

    waiter: AgentName
    owner: AgentName
    for_: AgentName | None = msgspec.field(name="for")
    directed_only: bool
    since: float | None
    armed: int
    waking: int
    condition: str | None = None
    value: Any = None
    error: str | None = None


class ConditionPart(Result):
    """One sub-expression: its text, nesting depth, the value it read (or its evaluation error), and whether
    it is on the path that makes the whole expression not true (`blame`)."""

    expr: str
    depth: int
    value: Any = None
    error: str | None = None
    blame: bool = False


class ConditionWhy(Result):
    expr: str
    holds: bool
    value: Any = None
    error: str | None = None
    parts: list[ConditionPart] = []
    false_part: str | None = None  # the innermost sub-expression that keeps it from holding
    truncated: bool = False  # more sub-expressions than shown


class KeyVersion(Result):
    """One version of a key as the log recorded it: `op` is the command that wrote it (None: an older log)."""

    version: int
    value: Any
    deleted: bool
    by: str
    at: float
    op: str | None
    position: int  # the event's position in the log


class KeyHistory(Result):
    scope: str
    key: str
    versions: list[KeyVersion]
    complete: bool  # the oldest version shown is the key's first one
