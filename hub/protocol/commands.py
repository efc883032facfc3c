"""Client → hub commands: one Struct per op, imperative, tagged on `op` (its CLI path)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from hub.protocol.types import Address, AgentName, Cursor, RoomName, Seq
from hub.protocol.values import INT_MAX, INT_MIN

__all__ = [
    "BatchState",
    "CheckPaths",
    "CreateBranch",
    "DefineView",
    "DeleteState",
    "DiffBranch",
    "Eval",
    "GetState",
    "InitState",
    "ListBranches",
    "ListState",
    "MergeBranch",
    "SetState",
    "Subscribe",
    "Tail",
    "Unsubscribe",
    "CreateRoom",
    "InviteRoom",
    "ListRooms",
    "Write",
    "AckMessages",
    "Agents",
    "Attach",
    "BaseCommand",
    "Board",
    "Claim",
    "ClaimMessage",
    "ClaimTask",
    "DeclareIntent",
    "DeclareTask",
    "Handoff",
    "ListClaims",
    "ListTasks",
    "Release",
    "ReofferClaim",
    "ReofferTask",
    "ResetToken",
    "ShowTask",
    "TaskStatus",
    "UpdateTask",
    "Command",
    "Fence",
    "Heartbeat",
    "Int",
    "Join",
    "ListMessages",
    "PresenceStatus",
    "Send",
    "Status",
    "Wait",
    # explanations
    "StateHistory",
    "WhyClaim",
    "WhyCondition",
    "WhyTask",
    "WhyWait",
]

# Every integer on the wire is signed 64-bit, as the log, the snapshot and every client keep it: a larger one
# is refused at decode time with `bad_request` naming the field (hub.protocol.codec), before anything decides.
_I64 = msgspec.Meta(ge=INT_MIN, le=INT_MAX)
Int = Annotated[int, _I64]
MAX_GOVERNOR_SECONDS = 60.0  # the longest `settle` or `stagger` a wake may be deferred by
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_GOVERNOR_SECONDS)]

PresenceStatus = Literal["active", "busy", "waiting", "idle", "done", "offline"]


class BaseCommand(msgspec.Struct, tag_field="op", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every command: a request id echoed by its reply, the room it acts in, the agent's token (mutations,
    and reads on a hub with an admin token), or the hub's admin token (which may do anything)."""

    id: Int = 0
    room: RoomName = RoomName("default")
    token: str | None = None
    admin_token: str | None = None


Fence = dict[str, Int]  # WORK (or `task:ID`) → the epoch the writer holds it at


class Join(BaseCommand, tag="join", frozen=True):
    """Join `name` to the room (an open hub makes the room on first use); the reply carries its token.

    A name belongs to whoever holds its current token: re-joining it needs `token` (or the admin token),
    else `name_taken`. `rotate` issues a new token; `force` takes the name over without it (only on a hub
    with no admin token: recorded, and the old holder's sessions are told and closed). With an admin token,
    joining needs it or an `invite`, which admits new names only.
    """

    name: AgentName
    role: str | None = None
    rotate: bool = False
    force: bool = False
    invite: str | None = None  # a room invite (`room.invite`), instead of the admin token


class Attach(BaseCommand, tag="attach", frozen=True):
    """Bind this session to an agent: presence follows the session; messages addressed to it are pushed.

    `after` resumes the stream: every message after that seq is pushed first, then live ones.
    """

    name: AgentName
    after: Annotated[Cursor, _I64] | None = None  # a negative cursor reads from the start, as 0 does
    stream: bool = True


class Send(BaseCommand, tag="send", frozen=True):
    """Append a message to the feed of every room its targets name."""

    name: AgentName
    to: tuple[Address, ...]
    body: msgspec.Raw = msgspec.Raw(b"null")
    kind: str = "message"
    reply_to: Annotated[Seq, _I64] | None = None
    priority: bool = False
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch
    stagger: Seconds = 0.0  # a `*`/`all` send's wakes spread over this many seconds (wake governor)
    key: str | None = (
        None  # idempotency key (per sender): a repeat returns the first send's seqs, sends nothing
    )
    allow_unknown: bool = False  # a directed send to a name that never joined is refused unless this is set


class ListMessages(BaseCommand, tag="message.list", frozen=True):
    """Read the feed after a cursor, optionally only what is addressed to one agent.

    `unread`: only what is addressed to the token's agent after its read position (`message.ack`)."""

    for_: AgentName | None = msgspec.field(default=None, name="for")
    after: Annotated[Cursor, _I64] = Cursor(0)  # a negative cursor reads from the start, as 0 does
    kind: str | None = None
    unclaimed: bool = False
    limit: Int = 100
    unread: bool = False


class AckMessages(BaseCommand, tag="message.ack", frozen=True):
    """Mark everything addressed to `name` up to `seq` read; the read position never moves backwards."""

    name: AgentName
    seq: Annotated[Seq, _I64]


class ClaimMessage(BaseCommand, tag="message.claim", frozen=True):
    """Claim a message atomically: the first claimer wins; later ones get `already_claimed`."""

    name: AgentName
    seq: Annotated[Seq, _I64]


class Heartbeat(BaseCommand, tag="heartbeat", frozen=True):
    """Say the agent is alive, optionally with a new status."""

    name: AgentName
    status: PresenceStatus | None = None


class Agents(BaseCommand, tag="agents", frozen=True):
    """List the presence of every agent in the room."""


class Wait(BaseCommand, tag="wait", frozen=True):
    """Arm a waiter: woken by the first message for `for_` with seq > `after` (or sent at or after `since`); the
    wake hands over every message waiting for it (at most frames.WAKE_CAP), after `settle` seconds if given.

    One live waiter per (room, waiter): a newer one takes the name over and the older is closed (one armed on
    the same session is only replaced).
    """

    waiter: AgentName
    for_: AgentName | None = msgspec.field(default=None, name="for")
    condition: str | None = None
    directed_only: bool = False
    after: Annotated[Cursor, _I64] | None = None  # a negative cursor reads from the start, as 0 does
    since: float | None = None
    settle: Seconds = (
        0.0  # after the first message, wait up to this long for the burst to end (wake governor)
    )


class Status(BaseCommand, tag="status", frozen=True):
    """Hub version, uptime, rooms, agents online and log size."""


class Claim(BaseCommand, tag="claim", frozen=True):
    """Lease a unit of work with a file scope; refused with `claim_overlap` if it overlaps another agent's.

    Held by the agent's live session (plus a grace period after it drops) when it has one, else by TTL.
    `renew` extends a TTL claim (or re-binds it) without changing its scope.
    """

    name: AgentName
    work: str
    paths: tuple[str, ...] = ()
    ttl: float | None = None
    checkpoint: str | None = None
    renew: bool = False


class Release(BaseCommand, tag="release", frozen=True):
    """Release a claim, leaving a checkpoint for whoever claims the same work next."""

    name: AgentName
    work: str
    checkpoint: str | None = None
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch


class Handoff(BaseCommand, tag="handoff", frozen=True):
    """Move a live claim, with its checkpoint, to another agent of the room atomically."""

    name: AgentName
    work: str
    to: AgentName
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch


class ReofferClaim(BaseCommand, tag="claim.reoffer", frozen=True):
    """Release another agent's claim whose holder has no live session and has been idle `idle_seconds`
    (the supervisor's re-offer); its checkpoint stays for the next claimer."""

    name: AgentName
    work: str
    idle_seconds: float


class ListClaims(BaseCommand, tag="claims", frozen=True):
    """The room's live claims."""


class DeclareIntent(BaseCommand, tag="board.intent", frozen=True):
    """Declare advisory intent to touch paths (no lease); empty paths clear it."""

    name: AgentName
    paths: tuple[str, ...] = ()
    note: str | None = None


TaskStatus = Literal["pending", "ready", "in_progress", "blocked", "done", "cancelled"]


class DeclareTask(BaseCommand, tag="task.declare", frozen=True):
    """Add a task to the plan; it is `ready` once every task it depends on is `done`."""

    name: AgentName
    task: str
    title: str
    depends_on: tuple[str, ...] = ()
    parent: str | None = None
    mode: Literal["par", "seq"] = "par"  # how this task's own children run
    order: Int | None = None  # the place among the children of a `seq` parent
    epic: bool = False


class ClaimTask(BaseCommand, tag="task.claim", frozen=True):
    """Take a ready task: exactly one claimer wins; the others get `conflict` naming the holder."""

    name: AgentName
    task: str


class UpdateTask(BaseCommand, tag="task.update", frozen=True):
    """Change a task; `etag` is the version last seen (a stale one gets `conflict` with the current task)."""

    name: AgentName
    task: str
    etag: Int | None = None
    status: TaskStatus | None = None
    title: str | None = None
    note: str | None = None
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch


class ReofferTask(BaseCommand, tag="task.reoffer", frozen=True):
    """Put an in-progress task back to `ready` because its holder has no live session and has been idle
    `idle_seconds` (the supervisor's re-offer); the holder is told."""

    name: AgentName
    task: str
    idle_seconds: float


class ListTasks(BaseCommand, tag="task.list", frozen=True):
    """The plan, filtered by status, readiness or parent."""

    status: TaskStatus | None = None
    ready: bool = False
    parent: str | None = None


class ShowTask(BaseCommand, tag="task.show", frozen=True):
    """One task with its children."""

    task: str


class SetState(BaseCommand, tag="state.set", frozen=True):
    """Write one entry: plain, CAS (`if_version`; 0 = must be absent), CEL-gated (`if`), or an atomic add."""

    name: AgentName
    key: str
    value: Any = None
    scope: str = "_shared"
    if_: str | None = msgspec.field(default=None, name="if")
    if_version: Int | None = None
    increment: bool = False
    branch: str | None = None
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch


class InitState(BaseCommand, tag="state.init", frozen=True):
    """Write an entry only if it is absent (`already_exists` with the current entry otherwise)."""

    name: AgentName
    key: str
    value: Any = None
    scope: str = "_shared"
    branch: str | None = None
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch


class DeleteState(BaseCommand, tag="state.delete", frozen=True):
    """Delete an entry (or a view, with scope `_view`), optionally only at `if_version`."""

    name: AgentName
    key: str
    scope: str = "_shared"
    if_version: Int | None = None
    branch: str | None = None
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch


class Write(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One write of a batch."""

    key: str
    value: Any = None
    scope: str = "_shared"
    increment: bool = False
    if_version: Int | None = None


class BatchState(BaseCommand, tag="state.batch", frozen=True):
    """Several writes, all or nothing, in one version step, optionally behind one CEL gate."""

    name: AgentName
    writes: tuple[Write, ...]
    if_: str | None = msgspec.field(default=None, name="if")
    branch: str | None = None
    fence: Fence = {}  # refused with `fenced` unless the writer still holds each claim at that epoch


class DefineView(BaseCommand, tag="state.view", frozen=True):
    """Store a computed view: a CEL expression in `_view`, resolved on every read."""

    name: AgentName
    key: str
    expr: str


class GetState(BaseCommand, tag="state.get", frozen=True):
    """Read one entry (a view resolves to its current value)."""

    key: str
    scope: str = "_shared"
    branch: str | None = None


class ListState(BaseCommand, tag="state.list", frozen=True):
    """Every entry of one scope, or of all scopes."""

    scope: str | None = None
    branch: str | None = None


class Eval(BaseCommand, tag="eval", frozen=True):
    """Evaluate a CEL expression against the room (or a branch of its state)."""

    expr: str
    branch: str | None = None


class Subscribe(BaseCommand, tag="subscribe", frozen=True):
    """Push a Trigger whenever `expr` becomes true (at once if it already is); `name` shows as waiting."""

    expr: str
    name: AgentName | None = None
    include: tuple[str, ...] = ()
    once: bool = False


class Unsubscribe(BaseCommand, tag="unsubscribe", frozen=True):
    """Drop a subscription of this session."""

    sub: Int


class CreateBranch(BaseCommand, tag="branch.create", frozen=True):
    """Fork the room's state (or another branch) into a named branch, copy-on-write."""

    name: AgentName
    branch: str
    from_: str | None = msgspec.field(default=None, name="from")


class ListBranches(BaseCommand, tag="branch.list", frozen=True):
    """The room's branches."""


class DiffBranch(BaseCommand, tag="branch.diff", frozen=True):
    """Keys a branch changed since it was forked, beside their value where it came from."""

    branch: str


class MergeBranch(BaseCommand, tag="branch.merge", frozen=True):
    """Apply a branch to where it was forked from, unless a key changed on both sides (`conflict`)."""

    name: AgentName
    branch: str


class Tail(BaseCommand, tag="tail", frozen=True):
    """Follow the durable event feed (every kind of event) from position `after`, or from now.

    `rooms` limits it (empty: every room, which needs the admin token when the hub has one). A negative
    `after` reads from the log's start, as 0 does (like every `after` cursor).
    """

    after: Int | None = None
    rooms: tuple[str, ...] = ()
    batch: bool = False  # EventBatch frames (one per group commit) instead of one EventFrame per event


class Board(BaseCommand, tag="board", frozen=True):
    """The plan, live claims and declared intents in one view."""


class CreateRoom(BaseCommand, tag="room.create", frozen=True):
    """Create `room` (joining creates rooms too, but not on a hub with an admin token)."""


class InviteRoom(BaseCommand, tag="room.invite", frozen=True):
    """Issue a join token for `room` (only its hash is kept); it admits any name until `ttl` runs out."""

    ttl: float | None = None


class ResetToken(BaseCommand, tag="admin.reset_token", frozen=True):
    """Issue a new token for an existing agent (the admin token's way to take a name back); its sessions
    are told and closed."""

    name: AgentName


class ListRooms(BaseCommand, tag="room.list", frozen=True):
    """Every room with its counts (needs the admin token when the hub has one)."""


# -- the git guard -------------------------------------------------------------------------------------------


class CheckPaths(BaseCommand, tag="guard.check", frozen=True):
    """Which of `paths` (files relative to the repository root, taken literally) `name`'s live claims cover,
    and who holds each of the others: the git guard's check, in one round trip. A read: nothing changes,
    but it needs `name`'s token (or the admin token), so that a commit is checked as its real committer."""

    name: AgentName
    paths: tuple[str, ...]


# -- explanations (`synapse why ...`, `synapse state history`): reads, no events ----------------------------


class WhyTask(BaseCommand, tag="why.task", frozen=True):
    """Why a task is not ready: its open dependencies and blocking seq siblings, down to actionable tasks."""

    task: str


class WhyClaim(BaseCommand, tag="why.claim", frozen=True):
    """Who holds a claim, since when, by what lease (session or TTL), until when, at which epoch."""

    work: str


class WhyWait(BaseCommand, tag="why.wait", frozen=True):
    """What an armed waiter waits on, since when, for whom, and what would wake it now."""

    waiter: AgentName


class WhyCondition(BaseCommand, tag="why.condition", frozen=True):
    """A CEL expression's value with the value of each of its sub-expressions, and the one that is false."""

    expr: str


class StateHistory(BaseCommand, tag="state.history", frozen=True):
    """Every version of a key, newest first, read from the log (not kept in memory): `limit` ≤ 1000."""

    key: str
    scope: str = "_shared"
    limit: Int = 20


Command = (
    Join
    | Attach
    | Send
    | ListMessages
    | ClaimMessage
    | Heartbeat
    | Agents
    | Wait
    | Status
    | Claim
    | Release
    | Handoff
    | ListClaims
    | DeclareIntent
    | Board
    | DeclareTask
    | ClaimTask
    | UpdateTask
    | ListTasks
    | ShowTask
    | SetState
    | InitState
    | DeleteState
    | BatchState
    | DefineView
    | GetState
    | ListState
    | Eval
    | Subscribe
    | Unsubscribe
    | CreateBranch
    | ListBranches
    | DiffBranch
    | MergeBranch
    | Tail
    | CreateRoom
    | InviteRoom
    | ListRooms
    | ReofferClaim
    | ReofferTask
    | ResetToken
    | CheckPaths
    | WhyTask
    | WhyClaim
    | WhyWait
    | WhyCondition
    | StateHistory
    | AckMessages
)
