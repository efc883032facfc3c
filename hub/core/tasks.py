"""The plan: tasks, epics (par/seq children), depends_on → ready, etags, seq_blocked (SPEC: Plan)."""

from __future__ import annotations

from typing import Any

from hub.core import rooms as rooms_
from hub.core.effects import Context, Outcome
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError
from hub.protocol.events import TaskDeclared, TaskUpdated
from hub.protocol.types import AgentName

__all__ = ["PlanRules", "OPEN", "STATUSES", "Plan", "Task"]

STATUSES = ("pending", "ready", "in_progress", "blocked", "done", "cancelled")
OPEN = frozenset({"pending", "ready", "in_progress", "blocked"})
MAX_NOTES = 50


class Task:
    """One item of the plan. `etag` changes on every update."""

    __slots__ = (
        "created_at",
        "depends_on",
        "epic",
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
        self.notes: list[dict[str, Any]] = []
        self.created_at = event.at
        self.updated_at = event.at

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "holder": self.holder,
            "etag": self.etag,
            "depends_on": list(self.depends_on),
            "parent": self.parent,
            "mode": self.mode,
            "order": self.order,
            "kind": "epic" if self.epic else "task",
            "notes": list(self.notes),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


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

    # -- deciding ------------------------------------------------------------------------------

    def first_status(self, depends_on: tuple[str, ...]) -> str:
        return "ready" if all(self._done(d) for d in depends_on) else "pending"

    def _done(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and task.status == "done"

    def open_dependencies(self, task: Task) -> list[str]:
        return [d for d in task.depends_on if not self._done(d)]

    def check_declare(self, task_id: str, depends_on: tuple[str, ...], parent: str | None) -> None:
        """Refuse self-dependencies, cycles (naming them) and parents that do not exist."""
        if task_id in depends_on:
            raise HubError(
                Code.BAD_REQUEST, f"{task_id!r} depends on itself", {"field": "depends_on", "reason": "cycle"}
            )
        if parent is not None:
            if parent == task_id:
                raise HubError(Code.BAD_REQUEST, "a task cannot be its own parent", {"field": "parent"})
            self.get(parent)
        cycle = self._cycle(task_id, depends_on)
        if cycle:
            raise HubError(
                Code.BAD_REQUEST,
                "dependency cycle: " + " → ".join(cycle),
                {"field": "depends_on", "reason": "cycle", "cycle": cycle},
            )

    def _cycle(self, task_id: str, depends_on: tuple[str, ...]) -> list[str] | None:
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
                    if (
                        sibling is not node
                        and _rank(sibling) < mine
                        and sibling.status not in ("done", "cancelled")
                    ):
                        blockers.append(sibling.id)
            node = parent
        return blockers

    def readied_by(self, task_id: str) -> list[Task]:
        """Pending tasks that become ready once `task_id` is done."""
        out = []
        for dep_id in sorted(self.dependents.get(task_id, ())):
            dep = self.tasks.get(dep_id)
            if (
                dep is not None
                and dep.status == "pending"
                and not [d for d in dep.depends_on if d != task_id and not self._done(d)]
            ):
                out.append(dep)
        return out

    def completed_epic(self, task: Task) -> Task | None:
        """The parent epic that is complete once `task` is done, if any."""
        if task.parent is None:
            return None
        parent = self.tasks.get(task.parent)
        if parent is None or not parent.epic or parent.status in ("done", "cancelled"):
            return None
        for child_id in self.children.get(parent.id, ()):
            child = self.tasks[child_id]
            if child is not task and child.status not in ("done", "cancelled"):
                return None
        return parent

    # -- folding events ------------------------------------------------------------------------

    def declared(self, event: TaskDeclared) -> None:
        task = Task(event)
        self.tasks[task.id] = task
        for dep in task.depends_on:
            self.dependents.setdefault(dep, set()).add(task.id)
        if task.parent is not None:
            self.children.setdefault(task.parent, []).append(task.id)

    def updated(self, event: TaskUpdated) -> None:
        task = self.tasks[event.task]
        task.etag = event.etag
        task.status = event.status
        task.holder = event.holder
        if event.title is not None:
            task.title = event.title
        if event.note is not None:
            task.notes.append({"at": event.at, "by": event.by, "note": event.note})
            del task.notes[:-MAX_NOTES]
        task.updated_at = event.at

    # -- reading -------------------------------------------------------------------------------

    def listed(self, status: str | None, ready: bool, parent: str | None) -> list[dict[str, Any]]:
        """Tasks, ready work first, then by order and age."""
        chosen = [
            t
            for t in self.tasks.values()
            if (status is None or t.status == status)
            and (not ready or (t.status == "ready" and not t.epic and not self.seq_blockers(t)))
            and (parent is None or t.parent == parent)
        ]
        chosen.sort(key=lambda t: (t.status != "ready", _rank(t), t.created_at))
        return [t.view() for t in chosen]

    def tree(self) -> list[str]:
        """The plan as indented lines: epics and parents with their children, ready work first."""
        lines: list[str] = []

        def walk(ids: list[str], depth: int) -> None:
            tasks = sorted(
                (self.tasks[i] for i in ids), key=lambda t: (t.status != "ready", _rank(t), t.created_at)
            )
            for t in tasks:
                holder = f" @{t.holder}" if t.holder else ""
                kind = (
                    " [epic]" if t.epic else (" [seq]" if t.mode == "seq" and t.id in self.children else "")
                )
                order = f" #{t.order}" if t.order is not None else ""
                lines.append(f"{'  ' * depth}{t.status:11} {t.id}{order}{kind}{holder}  {t.title}")
                walk(self.children.get(t.id, []), depth + 1)

        walk([t.id for t in self.tasks.values() if t.parent is None or t.parent not in self.tasks], 0)
        return lines


def _rank(task: Task) -> tuple[int, float]:
    return (task.order if task.order is not None else 1 << 30, task.created_at)


class PlanRules:
    """Declaring, claiming and updating tasks (SPEC: Plan). Mixed into Machine: `self` is the machine."""

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

    def _finished(self, room: rooms_.Room, task: Task, now: float, out: Outcome) -> None:
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

    def _closed(self, room: rooms_.Room, task: Task, now: float, out: Outcome) -> None:
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
