"""`synapse task declare|claim|update|list|show` and `synapse supervisor`: the shared plan."""

from __future__ import annotations

import time
from typing import Any

import click

from cli.claims import fence_option
from cli.main import client, client_options, settings
from cli.output import clean, emit

__all__ = ["register", "render_task"]

STATUSES = ["pending", "ready", "in_progress", "blocked", "done", "cancelled"]


def render_task(t: dict[str, Any]) -> str:
    holder = f" @{clean(t['holder'])}" if t.get("holder") else ""
    parent = f" (in {clean(t['parent'])})" if t.get("parent") else ""
    deps = f" after {clean(','.join(t['depends_on']))}" if t.get("depends_on") else ""
    epoch = f"  epoch={t['epoch']}" if t.get("epoch") and t.get("holder") else ""
    return f"{t['status']:11} {clean(t['id'])}{holder}  etag={t['etag']}{epoch}  {clean(t['title'])}{parent}{deps}"


def register(group: click.Group) -> None:
    @group.group("task")
    def task() -> None:
        """The shared plan: tasks with dependencies, epics, sequential pipelines."""

    @task.command("declare")
    @click.argument("task_id", metavar="ID")
    @click.option("--title", "-t", required=True, help="What the task is.")
    @click.option(
        "--depends-on",
        metavar="A,B",
        default="",
        help="Tasks that must be done first (may be declared "
        "later: this one stays pending until they exist and are done).",
    )
    @click.option("--parent", metavar="P", help="The epic or pipeline this task belongs to.")
    @click.option(
        "--mode",
        type=click.Choice(["par", "seq"]),
        default="par",
        show_default=True,
        help="How this task's own children run: in parallel, or in --order.",
    )
    @click.option("--order", type=int, metavar="N", help="Place among the children of a seq parent.")
    @click.option("--epic", is_flag=True, help="An epic: done by itself once all its children are done.")
    @client_options
    @click.pass_context
    def declare(
        ctx: click.Context,
        task_id: str,
        title: str,
        depends_on: str,
        parent: str | None,
        mode: str,
        order: int | None,
        epic: bool,
    ) -> None:
        """Declare task ID; it becomes ready once every task it depends on is done."""
        deps = [d.strip() for d in depends_on.split(",") if d.strip()]
        t = client(ctx, need_name=True).tasks.declare(
            task_id, title, depends_on=deps, parent=parent, mode=mode, order=order, epic=epic
        )
        emit(settings(ctx).json, t, render_task(t))

    @task.command("claim")
    @click.argument("task_id", metavar="ID")
    @client_options
    @click.pass_context
    def claim(ctx: click.Context, task_id: str) -> None:
        """Take ready task ID (atomic: `conflict` if taken, `not_ready`, `seq_blocked`). Prints its etag and
        epoch (`--json`: "epoch"): pass `--fence task:ID=EPOCH` to writes that must not land once it is lost."""
        t = client(ctx, need_name=True).tasks.claim(task_id)
        emit(settings(ctx).json, t, render_task(t))

    @task.command("update")
    @click.argument("task_id", metavar="ID")
    @click.option("--status", type=click.Choice(STATUSES), help="The new status (done readies dependents).")
    @click.option("--etag", type=int, metavar="E", help="The etag you last saw; a stale one gets `conflict`.")
    @click.option("--title", help="A new title.")
    @click.option("--note", metavar="TEXT", help="Append a note.")
    @fence_option
    @client_options
    @click.pass_context
    def update(
        ctx: click.Context,
        task_id: str,
        status: str | None,
        etag: int | None,
        title: str | None,
        note: str | None,
        fence: dict[str, int],
    ) -> None:
        """Update task ID and print its new etag. A task claimed by another agent is theirs: `forbidden`."""
        t = client(ctx, need_name=True).tasks.update(
            task_id, status=status, etag=etag, title=title, note=note, fence=fence
        )
        emit(settings(ctx).json, t, render_task(t))  # the task as `task show` heads it, etag included

    @task.command("list")
    @click.option(
        "--status", type=click.Choice([*STATUSES, "seq_blocked"]), help="Only this (display) status."
    )
    @click.option("--ready", is_flag=True, help="Only work that can be claimed now.")
    @click.option("--parent", metavar="P", help="Only the children of P.")
    @client_options
    @click.pass_context
    def list_(ctx: click.Context, status: str | None, ready: bool, parent: str | None) -> None:
        """The plan, ready work first (NDJSON with --json)."""
        asked = "ready" if status == "seq_blocked" else status  # seq_blocked: ready, behind a seq sibling
        tasks = [t for t in client(ctx).tasks.list(asked, ready, parent) if status in (None, t["status"])]
        as_json = settings(ctx).json
        for t in tasks:
            emit(as_json, t, render_task(t))
        if not tasks and not as_json:
            click.echo("no tasks", err=True)

    @task.command("show")
    @click.argument("task_id", metavar="ID")
    @client_options
    @click.pass_context
    def show(ctx: click.Context, task_id: str) -> None:
        """One task with its notes and children."""
        t = client(ctx).tasks.show(task_id)
        lines = [render_task(t)]
        if t["open_dependencies"]:
            lines.append(f"  waiting for: {clean(', '.join(t['open_dependencies']))}")
        if t["blocked_by"]:
            lines.append(f"  blocked by: {clean(', '.join(t['blocked_by']))}")
        lines += [f"  note ({clean(n.get('by') or 'hub')}): {clean(n['note'])}" for n in t["notes"]]
        lines += [f"  - {render_task(c)}" for c in t["children"]]
        emit(settings(ctx).json, t, "\n".join(lines))

    @group.command("supervisor")
    @click.option(
        "--idle-seconds",
        type=click.FloatRange(min=1),
        required=True,
        metavar="N",
        help="Re-offer work whose holder has shown no activity for N seconds.",
    )
    @click.option("--once", is_flag=True, help="Check once and exit (for cron).")
    @client_options
    @click.pass_context
    def supervisor(ctx: click.Context, idle_seconds: float, once: bool) -> None:
        """Re-offer (back to ready) tasks whose holder went quiet, and report stale claims, in the feed.

        Safe to run twice: every re-offer is guarded by the task's etag. Reconnects by itself.
        """
        from hub.protocol.errors import Code, HubError

        s = settings(ctx)
        if not s.name:
            ctx.find_root().meta.setdefault("synapse", {})["name"] = "supervisor"
        period = min(5.0, idle_seconds / 4)
        while True:
            try:
                agent = client(ctx)
                _sweep(agent, idle_seconds, s.json)
                agent.close()
            except HubError as exc:
                if exc.code not in (Code.UNREACHABLE, Code.DISCONNECTED, Code.UNAVAILABLE) or once:
                    raise
                click.echo(f"supervisor: {exc.code}: {exc.message}; retrying", err=True)
            if once:
                return
            time.sleep(period)


def _sweep(agent: Any, idle: float, as_json: bool) -> None:
    from hub.protocol.errors import Code, HubError

    now = time.time()
    seen = {a["name"]: a for a in agent.agents()}

    def quiet(name: str | None) -> float | None:
        a = seen.get(name or "")
        if a is None:
            return None
        age = now - float(a["last_heartbeat"])
        return age if age >= idle and not a.get("sessions") else None

    for t in agent.tasks.list(status="in_progress"):
        age = quiet(t.get("holder"))
        if age is None:
            continue
        try:  # guarded by the hub: it refuses if the holder came back or the task moved meanwhile
            agent.reoffer_task(t["id"], idle)
        except HubError as exc:
            if exc.code in (Code.CONFLICT, Code.NOT_FOUND):
                continue
            raise
        why = f"re-offered by the supervisor: {t['holder']} idle {age:.0f}s"
        agent.send(
            ["*"], {"task": t["id"], "holder": t["holder"], "idle_seconds": round(age)}, kind="supervisor"
        )
        emit(as_json, {"reoffered": t["id"], "holder": t["holder"], "idle_seconds": age}, f"{t['id']}: {why}")
    for claim in agent.claims():
        age = quiet(claim["holder"])
        if age is None:
            continue
        try:  # guarded by the hub: it refuses if the holder came back meanwhile
            agent.reoffer_claim(claim["work"], idle)
        except HubError as exc:
            if exc.code in (Code.CONFLICT, Code.NOT_FOUND):
                continue
            raise
        agent.send(
            ["*"],
            {"reoffered_claim": claim["work"], "holder": claim["holder"], "idle_seconds": round(age)},
            kind="supervisor",
        )
        emit(
            as_json,
            {"reoffered_claim": claim["work"], "holder": claim["holder"], "idle_seconds": age},
            f"claim {claim['work']}: released from {claim['holder']}, idle {age:.0f}s (checkpoint kept)",
        )
