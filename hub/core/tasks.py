"""The plan: tasks, epics (par/seq children), depends_on → ready, etags, seq_blocked, re-offers (SPEC: Plan)."""

from __future__ import annotations

from typing import Any

import msgspec

from hub.core import agents, fences
from hub.core.effects import Context, Outcome
from hub.core.world import Room, World
from hub.protocol import commands as c
from hub.protocol import results as r
from hub.protocol.errors import Code, HubError
from hub.protocol.events import TaskDeclared, TaskUpdated
from hub.protocol.types import AgentName
from hub.protocol.values import check_name

__all__ = [
    "OPEN",
    "STATUSES",
    "Plan",
    "Task",
    "apply_declared",
    "apply_updated",
    "decide_claim",
    "decide_declare",
    "decide_list",
    "decide_reoffer",
    "decide_show",
    "decide_update",
    "listed",
    "refresh_root",
    "root",
    "tree",
]

STATUSES = ("pending", "ready", "in_progress", "blocked", "done", "cancelled")
OPEN = frozenset({"pending", "ready", "in_progress", "blocked"})
CLOSED = frozenset({"done", "cancelled"})
MAX_NOTES = 50
MAX_TASK_ID = 200


class Task:
    """One item of the plan. `etag` changes on every update."""

    __slots__ = (
        "created_at",
        "depends_on",
        "epic",
        "epoch",
        "etag",
        "holder",
        "id",
        "mode",
        "notes",
        "order",
        "parent",
        "status",
        "title",
        "updated_at",
    )

    def __init__(self, event: TaskDeclared) -> None:
        self.id = event.task
        self.title = event.title
        self.status = event.status
        self.holder: AgentName | None = None
        self.depends_on = event.depends_on
        self.parent = event.parent
        self.mode = event.mode
        self.order = event.order
        self.epic = event.epic
        self.etag = 1
        self.epoch = 0  # the fencing epoch of its current (or last) claim
        self.notes: list[r.TaskNote] = []
        self.created_at = event.at
        self.updated_at = event.at

    def view(self, after: TaskUpdated | None = None) -> r.TaskView:
        """The task as clients see it (as `after` leaves it, when given)."""
        view = r.TaskView(
            id=self.id,
            title=self.title,
            status=self.status,
            holder=self.holder,
            etag=self.etag,
            depends_on=list(self.depends_on),
            parent=self.parent,
            mode=self.mode,
            order=self.order,
            kind="epic" if self.epic else "task",
            notes=list(self.notes),
            created_at=self.created_at,
            updated_at=self.updated_at,
            epoch=self.epoch,
        )
        if after is not None:
            if after.epoch:  # a claim: the epoch it takes (CLI.md "Fencing")
                view.epoch = after.epoch
            view.etag, view.status, view.holder, view.updated_at = (
                after.etag,
                after.status,
                after.holder,
                after.at,
            )
            if after.title is not None:
                view.title = after.title
            if after.note is not None:
                view.notes = [*view.notes, r.TaskNote(at=after.at, by=after.by, note=after.note)][-MAX_NOTES:]
        return view


class Plan:
    """A room's tasks with the indexes that keep readiness and sequencing cheap."""

    __slots__ = ("children", "dependents", "tasks")

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.dependents: dict[str, set[str]] = {}  # task → tasks that depend on it (declared or not yet)
        self.children: dict[str, list[str]] = {}  # parent → children in declaration order

    def get(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise HubError(Code.NOT_FOUND, f"no task {task_id!r}", {"what": "task", "task": task_id})
        return task

    def done(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and task.status == "done"

    def open_dependencies(self, task: Task) -> list[str]:
        return [d for d in task.depends_on if not self.done(d)]

    def seq_blockers(self, task: Task) -> list[str]:
        """Earlier siblings that are not done, for this task and each ancestor under a `seq` parent."""
        blockers: list[str] = []
        node: Task | None = task
        while node is not None and node.parent is not None:
            parent = self.tasks.get(node.parent)
            if parent is None:
                break
            if parent.mode == "seq":
                mine = _rank(node)
                for sibling_id in self.children.get(parent.id, ()):
                    sibling = self.tasks[sibling_id]
                    if sibling is not node and _rank(sibling) < mine and sibling.status not in CLOSED:
                        blockers.append(sibling.id)
            node = parent
        return blockers

    def cycle(self, task_id: str, depends_on: tuple[str, ...]) -> list[str] | None:
        """A path from one of `depends_on` back to `task_id` through declared dependencies, if any."""
        stack: list[tuple[str, list[str]]] = [(d, [task_id, d]) for d in depends_on]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            if node == task_id:
                return path
            if node in seen:
                continue
            seen.add(node)
            task = self.tasks.get(node)
            if task is not None:
                stack.extend((d, [*path, d]) for d in task.depends_on)
        return None


def _rank(task: Task) -> tuple[int, float]:
    return (task.order if task.order is not None else 1 << 30, task.created_at)


class _Cascade:
    """The updates one command makes, as a status overlay on the plan: deciding folds nothing."""

    __slots__ = ("events", "now", "plan", "room", "staged")

    def __init__(self, plan: Plan, room: Room, now: float) -> None:
        self.plan = plan
        self.room = room
        self.now = now
        self.staged: dict[str, TaskUpdated] = {}
        self.events: list[TaskUpdated] = []

    def status(self, task: Task) -> str:
        ev = self.staged.get(task.id)
        return task.status if ev is None else ev.status

    def etag(self, task: Task) -> int:
        ev = self.staged.get(task.id)
        return task.etag if ev is None else ev.etag

    def done(self, task_id: str) -> bool:
        task = self.plan.tasks.get(task_id)
        return task is not None and self.status(task) == "done"

    def add(self, ev: TaskUpdated) -> None:
        self.staged[ev.task] = ev
        self.events.append(ev)

    def finished(self, task: Task) -> None:
        """A task is done: its pending dependents whose dependencies are all done become ready; then closed."""
        plan = self.plan
        for dep_id in sorted(plan.dependents.get(task.id, ())):
            dep = plan.tasks.get(dep_id)
            if (
                dep is not None
                and self.status(dep) == "pending"
                and all(self.done(d) for d in dep.depends_on)
            ):
                self.add(
                    TaskUpdated(
                        room=self.room.name, at=self.now, task=dep.id, etag=self.etag(dep) + 1, status="ready"
                    )
                )
        self.closed(task)

    def closed(self, task: Task) -> None:
        """A task is done or cancelled: the epic it completes is done."""
        if task.parent is None:
            return
        parent = self.plan.tasks.get(task.parent)
        if parent is None or not parent.epic or self.status(parent) in CLOSED:
            return
        for child_id in self.plan.children.get(parent.id, ()):
            if self.status(self.plan.tasks[child_id]) not in CLOSED:
                return
        self.add(
            TaskUpdated(
                room=self.room.name,
                at=self.now,
                task=parent.id,
                etag=self.etag(parent) + 1,
                status="done",
                holder=parent.holder,
                note="all children done",
            )
        )
        self.finished(parent)


# -- deciding ----------------------------------------------------------------------------------------------


def decide_declare(w: World, cmd: c.DeclareTask, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    plan = room.part(Plan)
    check_name(cmd.task, "task", MAX_TASK_ID)
    if not cmd.title or len(cmd.title) > 1000:
        raise HubError(
            Code.BAD_REQUEST,
            "a task needs a title of 1..1000 characters",
            {"field": "title", "reason": "length"},
        )
    depends_on = tuple(dict.fromkeys(d for d in cmd.depends_on if d))
    for dep in depends_on:
        check_name(dep, "depends_on", MAX_TASK_ID)
    existing = plan.tasks.get(cmd.task)
    if existing is not None:
        same = (
            existing.title,
            existing.depends_on,
            existing.parent,
            existing.mode,
            existing.order,
            existing.epic,
        )
        if same != (cmd.title, depends_on, cmd.parent, cmd.mode, cmd.order, cmd.epic):
            raise HubError(
                Code.ALREADY_EXISTS,
                f"task {cmd.task!r} exists with other settings",
                {"current": msgspec.to_builtins(existing.view())},
            )
        out.reply(ctx, cmd.id, existing.view())
        return out
    if cmd.task in depends_on:
        raise HubError(
            Code.BAD_REQUEST, f"{cmd.task!r} depends on itself", {"field": "depends_on", "reason": "cycle"}
        )
    if cmd.parent is not None:
        if cmd.parent == cmd.task:
            raise HubError(Code.BAD_REQUEST, "a task cannot be its own parent", {"field": "parent"})
        plan.get(cmd.parent)
    cycle = plan.cycle(cmd.task, depends_on)
    if cycle:
        raise HubError(
            Code.BAD_REQUEST,
            "dependency cycle: " + " → ".join(cycle),
            {"field": "depends_on", "reason": "cycle", "cycle": cycle},
        )
    declared = TaskDeclared(
        room=room.name,
        at=ctx.now,
        task=cmd.task,
        title=cmd.title,
        status="ready" if all(plan.done(d) for d in depends_on) else "pending",
        by=agent.name,
        depends_on=depends_on,
        parent=cmd.parent,
        mode=cmd.mode,
        order=cmd.order,
        epic=cmd.epic,
    )
    out.emit(declared)
    out.reply(ctx, cmd.id, Task(declared).view())
    return out


def decide_claim(w: World, cmd: c.ClaimTask, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    plan = room.part(Plan)
    task = plan.get(cmd.task)
    if task.status == "in_progress" and task.holder == agent.name:
        out.reply(ctx, cmd.id, task.view())
        return out
    if task.epic:
        raise HubError(Code.BAD_REQUEST, f"{task.id!r} is an epic: claim its children", {"field": "task"})
    current = msgspec.to_builtins(task.view())
    if task.status == "pending":
        open_deps = plan.open_dependencies(task)
        raise HubError(
            Code.NOT_READY,
            f"{task.id!r} waits for {', '.join(open_deps)}",
            {"open_dependencies": open_deps, "current": current},
        )
    if task.status != "ready":
        who = f" by {task.holder}" if task.holder else ""
        raise HubError(
            Code.CONFLICT, f"{task.id!r} is {task.status}{who}", {"holder": task.holder, "current": current}
        )
    blockers = plan.seq_blockers(task)
    if blockers:
        raise HubError(
            Code.SEQ_BLOCKED,
            f"{task.id!r} is blocked: {', '.join(blockers)} not done",
            {"blocked_by": blockers, "current": current},
        )
    updated = TaskUpdated(
        room=room.name,
        at=ctx.now,
        task=task.id,
        etag=task.etag + 1,
        status="in_progress",
        holder=agent.name,
        by=agent.name,
        epoch=fences.next_epoch(room, fences.TASK + task.id),
    )
    out.emit(updated)
    out.reply(ctx, cmd.id, task.view(updated))
    return out


def decide_update(w: World, cmd: c.UpdateTask, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    plan = room.part(Plan)
    task = plan.get(cmd.task)
    claimed = task.status == "in_progress" and task.holder is not None
    if claimed and task.holder != agent.name and not w.is_admin(cmd.admin_token):
        raise HubError(
            Code.FORBIDDEN,
            f"{task.id!r} is claimed by {task.holder}: only its holder (or the admin token) updates it",
            {"holder": task.holder},
        )
    fences.check(room, agent.name, cmd.fence, ctx.now)
    if cmd.etag is not None and cmd.etag != task.etag:
        raise HubError(
            Code.CONFLICT,
            f"{task.id!r} changed since etag {cmd.etag} (now {task.etag}); re-read",
            {"current": msgspec.to_builtins(task.view())},
        )
    if cmd.note is not None and len(cmd.note) > 4096:
        raise HubError(Code.TOO_LARGE, "a note holds at most 4096 characters", {"limit": 4096})
    if cmd.title is not None and not 0 < len(cmd.title) <= 1000:
        raise HubError(Code.BAD_REQUEST, "a title holds 1..1000 characters", {"field": "title"})
    status = cmd.status or task.status
    holder = task.holder
    epoch = 0
    if status == "ready":
        holder = None
    elif status == "in_progress" and holder is None:  # taken through an update: a claim, with its epoch
        holder = agent.name
        epoch = fences.next_epoch(room, fences.TASK + task.id)
    updated = TaskUpdated(
        room=room.name,
        at=ctx.now,
        task=task.id,
        etag=task.etag + 1,
        status=status,
        holder=holder,
        title=cmd.title,
        by=agent.name,
        note=cmd.note,
        epoch=epoch,
    )
    cascade = _Cascade(plan, room, ctx.now)
    cascade.add(updated)
    if status == "done" and cmd.status == "done":
        cascade.finished(task)
    elif cmd.status == "cancelled":
        cascade.closed(task)
    out.events.extend(cascade.events)
    out.reply(ctx, cmd.id, task.view(updated))
    return out


def decide_reoffer(w: World, cmd: c.ReofferTask, ctx: Context) -> Outcome:
    """Back to `ready` a task whose holder went quiet (SPEC: supervisor): no live session, idle long enough."""
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    task = room.part(Plan).get(cmd.task)
    if task.status != "in_progress" or task.holder is None:
        raise HubError(
            Code.CONFLICT,
            f"{task.id!r} is {task.status}, not in progress",
            {"current": msgspec.to_builtins(task.view())},
        )
    holder = room.part(agents.Roster).agents.get(task.holder)
    idle = ctx.now - holder.last_heartbeat if holder is not None else float("inf")
    if holder is not None and (holder.sessions or idle < cmd.idle_seconds):
        why = "has a live session" if holder.sessions else f"was active {idle:.0f}s ago"
        raise HubError(
            Code.CONFLICT,
            f"{task.id!r} stays with {task.holder}: it {why}",
            {"holder": task.holder, "idle_seconds": idle, "current": msgspec.to_builtins(task.view())},
        )
    idle_text = f"idle {idle:.0f}s" if holder is not None else "gone"
    updated = TaskUpdated(
        room=room.name,
        at=ctx.now,
        task=task.id,
        etag=task.etag + 1,
        status="ready",
        holder=None,
        by=agent.name,
        note=f"re-offered by {agent.name}: {task.holder} {idle_text}",
    )
    out.emit(updated)
    view = task.view(updated)
    notice = agents.notify(room, task.holder, "task.reoffered", view)
    if notice is not None:
        out.effects.append(notice)
    out.reply(ctx, cmd.id, view)
    return out


def decide_list(w: World, cmd: c.ListTasks, ctx: Context) -> Outcome:
    room = agents.reader(w, cmd).room
    out = Outcome()
    out.reply(
        ctx, cmd.id, r.TaskList(tasks=[] if room is None else listed(room, cmd.status, cmd.ready, cmd.parent))
    )
    return out


def decide_show(w: World, cmd: c.ShowTask, ctx: Context) -> Outcome:
    room = agents.reader(w, cmd).room
    if room is None:
        raise HubError(Code.NOT_FOUND, f"no task {cmd.task!r}", {"what": "task", "task": cmd.task})
    plan = room.part(Plan)
    task = plan.get(cmd.task)
    view = task.view()
    view.children = listed(room, None, False, task.id)
    view.open_dependencies = plan.open_dependencies(task)
    view.blocked_by = plan.seq_blockers(task)
    out = Outcome()
    out.reply(ctx, cmd.id, view)
    return out


# -- reading -----------------------------------------------------------------------------------------------


def listed(room: Room, status: str | None, ready: bool, parent: str | None) -> list[r.TaskView]:
    """Tasks, ready work first, then by order and age."""
    plan = room.part(Plan)
    chosen = [
        t
        for t in plan.tasks.values()
        if (status is None or t.status == status)
        and (not ready or (t.status == "ready" and not t.epic and not plan.seq_blockers(t)))
        and (parent is None or t.parent == parent)
    ]
    chosen.sort(key=lambda t: (t.status != "ready", _rank(t), t.created_at))
    views = [t.view() for t in chosen]
    for t, view in zip(chosen, views, strict=True):
        if t.status == "ready" and plan.seq_blockers(t):
            view.status = "seq_blocked"  # display only: ready, but an earlier seq sibling is still open
    return views


def tree(room: Room) -> list[str]:
    """The plan as indented lines: epics and parents with their children, ready work first."""
    plan = room.part(Plan)
    lines: list[str] = []

    def walk(ids: list[str], depth: int) -> None:
        tasks = sorted(
            (plan.tasks[i] for i in ids), key=lambda t: (t.status != "ready", _rank(t), t.created_at)
        )
        for t in tasks:
            holder = f" @{t.holder}" if t.holder else ""
            kind = " [epic]" if t.epic else (" [seq]" if t.mode == "seq" and t.id in plan.children else "")
            order = f" #{t.order}" if t.order is not None else ""
            lines.append(f"{'  ' * depth}{t.status:11} {t.id}{order}{kind}{holder}  {t.title}")
            walk(plan.children.get(t.id, []), depth + 1)

    walk([t.id for t in plan.tasks.values() if t.parent is None or t.parent not in plan.tasks], 0)
    return lines


def _entry(t: Task) -> dict[str, Any]:
    return {"status": t.status, "holder": t.holder, "title": t.title}


def root(w: World, room: Room) -> dict[str, Any]:
    """The `tasks` root of the CEL context."""
    return {t.id: _entry(t) for t in room.part(Plan).tasks.values()}


def refresh_root(w: World, room: Room, node: dict[str, Any], path: tuple[str, ...]) -> tuple[str, ...] | None:
    if len(path) == 2:
        task = room.part(Plan).tasks.get(path[1])
        if task is not None:
            node[task.id] = _entry(task)
    return None


# -- folding -------------------------------------------------------------------------------------------------


def apply_declared(w: World, ev: TaskDeclared) -> None:
    plan = w.room(ev.room).part(Plan)
    task = Task(ev)
    plan.tasks[task.id] = task
    for dep in task.depends_on:
        plan.dependents.setdefault(dep, set()).add(task.id)
    if task.parent is not None:
        plan.children.setdefault(task.parent, []).append(task.id)


def apply_updated(w: World, ev: TaskUpdated) -> None:
    room = w.rooms[ev.room]
    task = room.part(Plan).tasks[ev.task]
    key = fences.TASK + ev.task
    if ev.status == "in_progress" and ev.holder is not None:
        if ev.epoch or task.holder != ev.holder or task.status != "in_progress":  # a claim (older logs: 0)
            task.epoch = fences.take(room, key, ev.holder, ev.epoch, None)
    else:
        fences.release(room, key)
    task.etag = ev.etag
    task.status = ev.status
    task.holder = ev.holder
    if ev.title is not None:
        task.title = ev.title
    if ev.note is not None:
        task.notes.append(r.TaskNote(at=ev.at, by=ev.by, note=ev.note))
        del task.notes[:-MAX_NOTES]
    task.updated_at = ev.at
    agents.beat(room, ev.by, ev.at)
