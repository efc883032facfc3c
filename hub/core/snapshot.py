"""Machine ⇄ Snapshot: a versioned cache of the fold; derived indexes are rebuilt on load, never stored."""

from __future__ import annotations

import heapq
from typing import Any

import msgspec

from hub.config import HubConfig
from hub.core import cel, delivery, fences
from hub.core.agents import Agent, Roster, Tokens
from hub.core.claims import Claims, Deadlines, Held, Intent
from hub.core.conditions import Conditions
from hub.core.feed import Feed
from hub.core.fences import Epochs
from hub.core.machine import Machine
from hub.core.rooms import Invites
from hub.core.state import Branch, Entry, State
from hub.core.tasks import Plan, Task
from hub.core.world import Room, World
from hub.protocol.events import BranchCreated, ClaimGranted, IntentDeclared, MessageSent, TaskDeclared
from hub.protocol.results import TaskNote
from hub.protocol.types import AgentName, Position, RoomName, Seq, SessionId

__all__ = ["SNAPSHOT_VERSION", "Snapshot", "dump", "load", "take"]

SNAPSHOT_VERSION = 4  # 3: every room, tombstone versions, typed task notes, fencing epochs; 4: delivery


class AgentRecord(msgspec.Struct, array_like=True, gc=False):
    name: AgentName
    role: str | None
    token_hash: str
    status: str
    last_heartbeat: float
    sessions: list[SessionId]


class HeldRecord(msgspec.Struct, array_like=True, gc=False):
    work: str
    holder: AgentName
    paths: tuple[str, ...]
    expires: float | None
    session: SessionId | None
    bound: bool
    checkpoint: str | None
    granted_at: float
    epoch: int
    renewed_at: float | None = None  # last: snapshots written before it decode without it


class IntentRecord(msgspec.Struct, array_like=True, gc=False):
    agent: AgentName
    paths: tuple[str, ...]
    note: str | None
    at: float


class TaskRecord(msgspec.Struct, array_like=True, gc=False):
    id: str
    title: str
    status: str
    holder: AgentName | None
    depends_on: tuple[str, ...]
    parent: str | None
    mode: str
    order: int | None
    epic: bool
    etag: int
    notes: list[TaskNote]
    created_at: float
    updated_at: float
    epoch: int


class EntryRecord(msgspec.Struct, array_like=True, gc=False):
    scope: str
    key: str
    value: Any
    version: int
    changed: int
    by: AgentName
    at: float
    deleted: bool = False


class GoneRecord(msgspec.Struct, array_like=True, gc=False):
    scope: str
    key: str
    version: int


class BranchRecord(msgspec.Struct, array_like=True, gc=False):
    name: str
    source: str | None
    base: int
    by: AgentName
    created_at: float
    overlay: list[EntryRecord]
    frozen: list[EntryRecord]  # the source's entries at fork time, for keys it changed since
    gone: list[GoneRecord]


class ReadRecord(msgspec.Struct, array_like=True, gc=False):
    agent: AgentName
    upto: int
    counted: int
    addressed: int
    acked: bool


class KeyRecord(msgspec.Struct, array_like=True, gc=False):
    sender: AgentName
    key: str
    seqs: dict[str, int]


class RoomRecord(msgspec.Struct, gc=False):
    name: RoomName
    agents: list[AgentRecord]
    feed: list[MessageSent]
    claimed: dict[Seq, AgentName]
    base: int
    marks: list[int]
    claims: list[HeldRecord]
    checkpoints: dict[str, str]
    intents: list[IntentRecord]
    tasks: list[TaskRecord]
    entries: list[EntryRecord]
    views: list[EntryRecord]
    branches: list[BranchRecord]
    gone: list[GoneRecord]
    clock: int
    epochs: dict[str, int]  # the last fencing epoch of every work and `task:ID`, never reused
    group: int = 0  # broadcasts in the feed (delivery.Reads)
    reads: list[ReadRecord] = []
    keys: list[KeyRecord] = []  # each sender's keys, oldest first


class Snapshot(msgspec.Struct, gc=False):
    version: int
    position: Position
    started_at: float
    rooms: list[RoomRecord]
    invites: list[tuple[str, RoomName, float | None]]  # (hash, room, expires)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)


def _entry(scope: str, key: str, en: Entry | None) -> EntryRecord:
    if en is None:
        return EntryRecord(scope, key, None, 0, 0, AgentName(""), 0.0, True)
    return EntryRecord(scope, key, en.value, en.version, en.changed, en.by, en.at)


def _gone(gone: dict[tuple[str, str], int]) -> list[GoneRecord]:
    return [GoneRecord(scope, key, version) for (scope, key), version in sorted(gone.items())]


def _room(room: Room) -> RoomRecord:
    feed, claims, plan, st = room.part(Feed), room.part(Claims), room.part(Plan), room.part(State)
    reads = room.part(delivery.Reads)
    return RoomRecord(
        name=room.name,
        agents=[
            AgentRecord(a.name, a.role, a.token_hash, a.status, a.last_heartbeat, sorted(a.sessions))
            for a in room.part(Roster).agents.values()
        ],
        feed=feed.messages,
        claimed=feed.claimed,
        base=feed.base,
        marks=feed.marks,
        claims=[
            HeldRecord(
                h.work,
                h.holder,
                h.paths,
                h.expires,
                h.session,
                h.bound,
                h.checkpoint,
                h.granted_at,
                h.epoch,
                h.renewed_at,
            )
            for h in claims.live.values()
        ],
        checkpoints=claims.checkpoints,
        intents=[IntentRecord(i.agent, i.paths, i.note, i.at) for i in claims.intents.values()],
        tasks=[
            TaskRecord(
                t.id,
                t.title,
                t.status,
                t.holder,
                t.depends_on,
                t.parent,
                t.mode,
                t.order,
                t.epic,
                t.etag,
                t.notes,
                t.created_at,
                t.updated_at,
                t.epoch,
            )
            for t in plan.tasks.values()
        ],
        entries=[_entry(scope, key, en) for scope, keys in st.scopes.items() for key, en in keys.items()],
        views=[_entry("_view", key, en) for key, en in st.views.items()],
        branches=[
            BranchRecord(
                b.name,
                b.source,
                b.base,
                b.by,
                b.created_at,
                [_entry(s, k, en) for (s, k), en in b.overlay.items()],
                [_entry(s, k, en) for (s, k), en in b.frozen.items()],
                _gone(b.gone),
            )
            for b in st.branches.values()
        ],
        gone=_gone(st.gone),
        clock=st.clock,
        epochs=dict(sorted(room.part(Epochs).last.items())),
        group=reads.group,
        reads=[
            ReadRecord(n, reads.upto[n], reads.counted[n], reads.addressed[n], n in reads.acked)
            for n in sorted(reads.counted)
        ],
        keys=[
            KeyRecord(sender, key, seqs)
            for sender, keys in sorted(room.part(delivery.Keys).by_sender.items())
            for key, seqs in keys.items()
        ],
    )


def take(machine: Machine) -> Snapshot:
    """The durable part of the machine's state (sessions' bindings are not durable), in a canonical order."""
    w = machine.world
    rooms = [_room(room) for room in sorted(w.rooms.values(), key=lambda each: each.name)]
    invites = [(h, room, expires) for h, (room, expires) in sorted(w.part(Invites).by_hash.items())]
    return Snapshot(SNAPSHOT_VERSION, w.position, w.started_at, rooms, invites)


def dump(machine: Machine) -> bytes:
    return _encoder.encode(take(machine))


def load(data: bytes, config: HubConfig | None = None) -> Machine:
    """A machine holding exactly the snapshot's state."""
    snap = _decoder.decode(data)
    machine = Machine(config)
    w = machine.world
    w.position = snap.position
    w.started_at = snap.started_at
    for record in snap.rooms:
        _load_room(w, w.room(record.name), record)
    for digest, name, expires in snap.invites:
        w.part(Invites).by_hash[digest] = (w.room(name).name, expires)
    return machine


def _load_room(w: World, room: Room, record: RoomRecord) -> None:
    room.part(Epochs).last.update(record.epochs)
    feed = room.part(Feed)
    feed.messages, feed.base, feed.marks, feed.claimed = (
        record.feed,
        record.base,
        record.marks,
        dict(record.claimed),
    )
    feed.bytes = sum(len(m.body) for m in feed.messages)
    owners = w.part(Tokens).owner
    roster = room.part(Roster).agents
    for a in record.agents:
        agent = Agent(a.name, a.role, a.token_hash, a.last_heartbeat)
        agent.status = a.status
        agent.sessions = set(a.sessions)
        roster[a.name] = agent
        owners[a.token_hash] = (room.name, a.name)
    claims = room.part(Claims)
    heap = w.part(Deadlines).heap
    for h in record.claims:
        held = Held(
            ClaimGranted(
                room=room.name,
                at=h.granted_at,
                work=h.work,
                holder=h.holder,
                paths=h.paths,
                expires=h.expires,
                session=h.session,
                checkpoint=h.checkpoint,
            ),
            h.epoch,
        )
        held.bound = h.bound
        held.renewed_at = h.renewed_at
        fences.take(room, h.work, h.holder, h.epoch, h.expires)
        claims.live[h.work] = held
        claims.bind(held, h.session)
        claims.index.add(h.work, h.paths)
        if held.expires is not None:
            heapq.heappush(heap, (held.expires, room.name, held.work))
    claims.checkpoints.update(record.checkpoints)
    for i in record.intents:
        claims.intents[i.agent] = Intent(
            IntentDeclared(room=room.name, at=i.at, agent=i.agent, paths=i.paths, note=i.note)
        )
    plan = room.part(Plan)
    for t in record.tasks:
        task = Task(
            TaskDeclared(
                room=room.name,
                at=t.created_at,
                task=t.id,
                title=t.title,
                status=t.status,
                by=AgentName(""),
                depends_on=t.depends_on,
                parent=t.parent,
                mode=t.mode,
                order=t.order,
                epic=t.epic,
            )
        )
        task.holder, task.etag, task.notes, task.updated_at = t.holder, t.etag, t.notes, t.updated_at
        task.epoch = t.epoch
        if t.status == "in_progress" and t.holder is not None:
            fences.take(room, fences.TASK + t.id, t.holder, t.epoch, None)
        plan.tasks[t.id] = task
        for dep in task.depends_on:
            plan.dependents.setdefault(dep, set()).add(task.id)
        if task.parent is not None:
            plan.children.setdefault(task.parent, []).append(task.id)
    _load_state(room, record)
    _load_delivery(room, record)


def _load_delivery(room: Room, record: RoomRecord) -> None:
    reads = room.part(delivery.Reads)
    reads.group = record.group
    for rr in record.reads:
        reads.upto[rr.agent], reads.counted[rr.agent], reads.addressed[rr.agent] = (
            rr.upto,
            rr.counted,
            rr.addressed,
        )
        if rr.acked:
            reads.acked.add(rr.agent)
    by_sender = room.part(delivery.Keys).by_sender
    for k in record.keys:
        by_sender.setdefault(k.sender, {})[k.key] = dict(k.seqs)


def _restore(r: EntryRecord) -> Entry | None:
    return None if r.deleted else Entry(r.value, r.version, r.changed, r.by, r.at)


def _load_state(room: Room, record: RoomRecord) -> None:
    st = room.part(State)
    st.clock = record.clock
    st.gone = {(g.scope, g.key): g.version for g in record.gone}
    for r in record.entries:
        st.scopes.setdefault(r.scope, {})[r.key] = Entry(r.value, r.version, r.changed, r.by, r.at)
    cond = room.part(Conditions)
    for r in record.views:
        st.views[r.key] = Entry(r.value, r.version, r.changed, r.by, r.at)
        try:
            compiled = cel.compile(r.value)
        except cel.BadExpression:  # compiled when decided; an engine change must not stop a restart
            continue
        cond.view_programs[r.key] = compiled
        for p in compiled.paths:
            cond.view_index.add(p, r.key)
    for b in record.branches:
        branch = Branch(
            BranchCreated(
                room=room.name, at=b.created_at, branch=b.name, source=b.source, base=b.base, by=b.by
            )
        )
        branch.overlay = {(r.scope, r.key): _restore(r) for r in b.overlay}
        branch.frozen = {(r.scope, r.key): _restore(r) for r in b.frozen}
        branch.gone = {(g.scope, g.key): g.version for g in b.gone}
        st.branches[b.name] = branch
