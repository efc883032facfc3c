"""The plan: tasks, epics (par/seq children), depends_on → ready, etags, seq_blocked (SPEC: Plan)."""

from __future__ import annotations

from typing import Any

from hub.protocol.errors import Code, HubError
from hub.protocol.events import TaskDeclared, TaskUpdated
from hub.protocol.types import AgentName

__all__ = ["OPEN", "STATUSES", "Plan", "Task"]

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
