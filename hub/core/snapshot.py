"""Machine ⇄ Snapshot: a versioned cache of the fold; derived indexes are rebuilt on load, never stored."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.config import HubConfig
from hub.core import cel
from hub.core.agents import Agent
from hub.core.machine import Machine
from hub.core.rooms import Room
from hub.core.state import Branch, Entry
from hub.protocol.events import BranchCreated, ClaimGranted, IntentDeclared, MessageSent, TaskDeclared
from hub.protocol.types import AgentName, Position, RoomName, Seq, SessionId

__all__ = ["SNAPSHOT_VERSION", "Snapshot", "dump", "load", "take"]

SNAPSHOT_VERSION = 2  # 2: feed window, branches with fork-time entries


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
    notes: list[dict[str, Any]]
    created_at: float
    updated_at: float


class EntryRecord(msgspec.Struct, array_like=True, gc=False):
    scope: str
    key: str
    value: Any
    version: int
    changed: int
    by: AgentName
    at: float
    deleted: bool = False


class BranchRecord(msgspec.Struct, array_like=True, gc=False):
    name: str
    source: str | None
    base: int
    by: AgentName
    created_at: float
    overlay: list[EntryRecord]
    frozen: list[EntryRecord] = []  # the source's entries at fork time, for keys it changed since


class RoomRecord(msgspec.Struct, gc=False):
    name: RoomName
    agents: list[AgentRecord]
    feed: list[MessageSent]
    claimed: dict[Seq, AgentName]
    base: int = 0
    marks: list[int] = []
    claims: list[HeldRecord] = []
    checkpoints: dict[str, str] = {}
    intents: list[IntentRecord] = []
    tasks: list[TaskRecord] = []
    entries: list[EntryRecord] = []
    views: list[EntryRecord] = []
    branches: list[BranchRecord] = []
    clock: int = 0


class Snapshot(msgspec.Struct, gc=False):
    version: int
    position: Position
    started_at: float
    rooms: list[RoomRecord]
    created: list[RoomName] = []  # rooms made by room.create / an invite
    invites: list[tuple[str, RoomName, float | None]] = []  # (hash, room, expires)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)


def take(machine: Machine) -> Snapshot:
    """The durable part of the machine's state (sessions' bindings are not durable)."""
    rooms = [
        RoomRecord(
            name=room.name,
            agents=[
                AgentRecord(a.name, a.role, a.token_hash, a.status, a.last_heartbeat, sorted(a.sessions))
                for a in room.agents.values()
            ],
            feed=room.feed,
            claimed=room.claimed,
            base=room.base,
            marks=room.marks,
            claims=[
                HeldRecord(
                    h.work, h.holder, h.paths, h.expires, h.session, h.bound, h.checkpoint, h.granted_at
                )
                for h in room.claims.live.values()
            ],
            checkpoints=room.claims.checkpoints,
            intents=[IntentRecord(i.agent, i.paths, i.note, i.at) for i in room.claims.intents.values()],
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
                )
                for t in room.plan.tasks.values()
            ],
            entries=[
                EntryRecord(scope, key, en.value, en.version, en.changed, en.by, en.at)
                for scope, keys in room.state.scopes.items()
                for key, en in keys.items()
            ],
            views=[
                EntryRecord("_view", key, en.value, en.version, en.changed, en.by, en.at)
                for key, en in room.state.views.items()
            ],
            branches=[
                BranchRecord(b.name, b.source, b.base, b.by, b.created_at, _overlay(b), _overlay(b, True))
                for b in room.state.branches.values()
            ],
            clock=room.state.clock,
        )
        for room in sorted(machine.rooms.values(), key=lambda r: r.name)  # canonical: a live hub may
        if room.agents or room.seq  # hold a waiter's room before any event created it
    ]
    invites = [(h, room, expires) for h, (room, expires) in sorted(machine.invites.items())]
    return Snapshot(
        SNAPSHOT_VERSION, machine.position, machine.started_at, rooms, sorted(machine.created), invites
    )


def dump(machine: Machine) -> bytes:
    return _encoder.encode(take(machine))


def load(data: bytes, config: HubConfig | None = None) -> Machine:
    """A machine holding exactly the snapshot's state."""
    snap = _decoder.decode(data)
    machine = Machine(config)
    machine.position = snap.position
    machine.started_at = snap.started_at
    for record in snap.rooms:
        room = machine.rooms[record.name] = Room(record.name, machine.config.feed_window)
        room.feed = record.feed
        room.base = record.base
        room.marks = record.marks
        room.claimed = dict(record.claimed)
        for a in record.agents:
            agent = Agent(a.name, a.role, a.token_hash, a.last_heartbeat)
            agent.status = a.status
            agent.sessions = set(a.sessions)
            room.agents[a.name] = agent
            machine.token_owner[a.token_hash] = (room.name, a.name)
        for h in record.claims:
            granted = ClaimGranted(
                room=room.name,
                at=h.granted_at,
                work=h.work,
                holder=h.holder,
                paths=h.paths,
                expires=h.expires,
                session=h.session,
                checkpoint=h.checkpoint,
            )
            held = room.claims.granted(granted)
            held.bound = h.bound
            machine._deadline(room.name, held)
        room.claims.checkpoints.update(record.checkpoints)
        for i in record.intents:
            room.claims.intent(
                IntentDeclared(room=room.name, at=i.at, agent=i.agent, paths=i.paths, note=i.note)
            )
        for t in record.tasks:
            room.plan.declared(
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
            task = room.plan.tasks[t.id]
            task.holder, task.etag, task.notes, task.updated_at = t.holder, t.etag, t.notes, t.updated_at
        _load_state(machine, room, record)
    for name in snap.created:
        machine.created.add(machine.room(name).name)
    for digest, name, expires in snap.invites:
        machine.invites[digest] = (machine.room(name).name, expires)
    return machine


def _overlay(b: Branch, frozen: bool = False) -> list[EntryRecord]:
    return [
        EntryRecord(scope, key, None, 0, 0, AgentName(""), 0.0, True)
        if en is None
        else EntryRecord(scope, key, en.value, en.version, en.changed, en.by, en.at)
        for (scope, key), en in (b.frozen if frozen else b.overlay).items()
    ]


def _load_state(machine: Machine, room: Room, record: RoomRecord) -> None:
    st = room.state
    st.clock = record.clock
    for r in record.entries:
        st.scopes.setdefault(r.scope, {})[r.key] = Entry(r.value, r.version, r.changed, r.by, r.at)
    for r in record.views:
        st.views[r.key] = Entry(r.value, r.version, r.changed, r.by, r.at)
        try:
            room.conditions.define_view(room, r.key, cel.compile(r.value))
        except cel.BadExpression:  # compiled when decided; an engine change must not stop a restart
            pass
    for b in record.branches:
        branch = Branch(
            BranchCreated(
                room=room.name, at=b.created_at, branch=b.name, source=b.source, base=b.base, by=b.by
            )
        )
        for r in b.overlay:
            branch.overlay[(r.scope, r.key)] = (
                None if r.deleted else Entry(r.value, r.version, r.changed, r.by, r.at)
            )
        for r in b.frozen:
            branch.frozen[(r.scope, r.key)] = (
                None if r.deleted else Entry(r.value, r.version, r.changed, r.by, r.at)
            )
        st.branches[b.name] = branch
