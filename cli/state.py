"""`synapse state get|set|init|cas|delete|batch|view|list|history`, `synapse eval`, `synapse branch ...`."""

from __future__ import annotations

from typing import Any

import click

from cli.claims import fence_option
from cli.main import client, client_options, settings
from cli.output import clean, emit, fmt_time, parse_value
from hub.protocol.codec import encode

__all__ = ["register"]

_BRANCH = click.option(
    "--branch", metavar="NAME", help="Read and write this branch instead of the main line."
)
_SCOPE = click.option(
    "--scope", default="_shared", show_default=True, help="_shared, your own agent name, or _view (views)."
)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else encode(value).decode()


def _entry(e: dict[str, Any]) -> str:
    return f"{clean(e['scope'])}.{clean(e['key'])} = {clean(_show(e['value']))}  (version {e['version']})"


def _state(ctx: click.Context, branch: str | None, need_name: bool = False) -> Any:
    """The state verbs on `branch` (the command's --branch, else the `state` group's, else the main line)."""
    branch = branch or ctx.find_root().meta.get("synapse.branch")
    return client(ctx, need_name=need_name).replies.state_at(branch)  # the whole replies: --json prints them


def _group_branch(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_root().meta["synapse.branch"] = value


def register(group: click.Group) -> None:
    @group.group("state")
    @click.option(
        "--branch",
        metavar="NAME",
        expose_value=False,
        callback=_group_branch,
        help="Every subcommand reads and writes this branch (`synapse state --branch B get K`).",
    )
    def state() -> None:
        """Versioned shared state: `_shared`, one scope per agent, and computed views in `_view`.

        Values are JSON when they parse (`3`, `true`, `{"a":1}`), else strings.
        """

    @state.command("get")
    @click.argument("key")
    @_SCOPE
    @_BRANCH
    @click.option("--raw", is_flag=True, help="Print the value only.")
    @client_options
    @click.pass_context
    def get(ctx: click.Context, key: str, scope: str, branch: str | None, raw: bool) -> None:
        """Print KEY's value and version (a view resolves to its current value)."""
        e = _state(ctx, branch).get(key, scope=scope)
        as_json = settings(ctx).json
        if raw:
            emit(as_json, e["value"], clean(_show(e["value"])))
        else:
            emit(as_json, e, _entry(e))

    @state.command("set")
    @click.argument("key")
    @click.argument("value")
    @_SCOPE
    @_BRANCH
    @click.option("--if", "gate", metavar="EXPR", help="Write only if this CEL expression is true.")
    @click.option(
        "--if-version", type=int, metavar="N", help="Write only if the entry is at version N (0: absent)."
    )
    @click.option("--increment", is_flag=True, help="Add VALUE to the current number atomically.")
    @fence_option
    @client_options
    @click.pass_context
    def set_(
        ctx: click.Context,
        key: str,
        value: str,
        scope: str,
        branch: str | None,
        gate: str | None,
        if_version: int | None,
        increment: bool,
        fence: dict[str, int],
    ) -> None:
        """Write KEY; a stale --if-version gets `conflict` with the current entry, a false --if `precondition_failed`."""
        e = _state(ctx, branch, True).set(
            key,
            parse_value(value),
            scope=scope,
            if_=gate,
            if_version=if_version,
            increment=increment,
            fence=fence,
        )
        emit(settings(ctx).json, e, _entry(e))

    @state.command("init")
    @click.argument("key")
    @click.argument("value")
    @_SCOPE
    @_BRANCH
    @fence_option
    @client_options
    @click.pass_context
    def init(
        ctx: click.Context, key: str, value: str, scope: str, branch: str | None, fence: dict[str, int]
    ) -> None:
        """Write KEY only if it is absent (`already_exists` otherwise)."""
        e = _state(ctx, branch, True).init(key, parse_value(value), scope=scope, fence=fence)
        emit(settings(ctx).json, e, _entry(e))

    @state.command("cas")
    @click.argument("key")
    @click.argument("version")
    @click.argument("value")
    @_SCOPE
    @_BRANCH
    @fence_option
    @client_options
    @click.pass_context
    def cas(
        ctx: click.Context,
        key: str,
        version: str,
        value: str,
        scope: str,
        branch: str | None,
        fence: dict[str, int],
    ) -> None:
        """Compare and swap: write KEY only if it is at VERSION (`0` or `none`: only if absent)."""
        try:
            expected = 0 if version.lower() in ("0", "none") else int(version)
        except ValueError:
            raise click.BadParameter("a version number, or none", param_hint="VERSION") from None
        e = _state(ctx, branch, True).cas(key, expected, parse_value(value), scope=scope, fence=fence)
        emit(settings(ctx).json, e, _entry(e))

    @state.command("delete")
    @click.argument("key")
    @_SCOPE
    @_BRANCH
    @click.option("--if-version", type=int, metavar="N", help="Delete only at version N.")
    @fence_option
    @client_options
    @click.pass_context
    def delete(
        ctx: click.Context,
        key: str,
        scope: str,
        branch: str | None,
        if_version: int | None,
        fence: dict[str, int],
    ) -> None:
        """Delete KEY (or a view, with --scope _view)."""
        r = _state(ctx, branch, True).delete(key, scope=scope, if_version=if_version, fence=fence)
        emit(settings(ctx).json, r, f"deleted {clean(scope)}.{clean(key)}")

    @state.command("batch")
    @click.argument("writes", nargs=-1, metavar="KEY=VALUE...")
    @click.option(
        "--increment", "increments", multiple=True, metavar="KEY=N", help="Add N to KEY (repeatable)."
    )
    @click.option("--if", "gate", metavar="EXPR", help="Apply the batch only if this CEL expression is true.")
    @_SCOPE
    @_BRANCH
    @fence_option
    @client_options
    @click.pass_context
    def batch(
        ctx: click.Context,
        writes: tuple[str, ...],
        increments: tuple[str, ...],
        gate: str | None,
        scope: str,
        branch: str | None,
        fence: dict[str, int],
    ) -> None:
        """Several writes, all or nothing, in one step."""
        items: list[dict[str, Any]] = []
        for raw, inc in [(w, False) for w in writes] + [(i, True) for i in increments]:
            key, sep, value = raw.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{raw!r} is not KEY=VALUE")
            items.append({"key": key, "value": parse_value(value), "scope": scope, "increment": inc})
        if not items:
            raise click.UsageError("give at least one KEY=VALUE or --increment KEY=N")
        done = _state(ctx, branch, True).batch(items, if_=gate, fence=fence)
        as_json = settings(ctx).json
        emit(as_json, done, "\n".join(_entry(e) for e in done))

    @state.command("view")
    @click.argument("key")
    @click.argument("expr")
    @client_options
    @click.pass_context
    def view(ctx: click.Context, key: str, expr: str) -> None:
        """Store a computed view `_view.KEY` = EXPR (CEL), usable in other expressions, waits and gates."""
        v = _state(ctx, None, True).view(key, expr)
        emit(settings(ctx).json, v, f"_view.{clean(key)} = {clean(_show(v['value']))}")

    @state.command("list")
    @click.option("--scope", default=None, help="Only this scope.")
    @_BRANCH
    @client_options
    @click.pass_context
    def list_(ctx: click.Context, scope: str | None, branch: str | None) -> None:
        """Every entry (views resolved), NDJSON with --json."""
        entries = _state(ctx, branch).list(scope)
        as_json = settings(ctx).json
        for e in entries:
            emit(as_json, e, _entry(e))
        if not entries and not as_json:
            click.echo("no entries", err=True)

    # -- explanations: `state history` (issue 14) ----------------------------------------------------

    @state.command("history")
    @click.argument("key")
    @_SCOPE
    @click.option(
        "--limit",
        type=click.IntRange(1, 1000),
        default=20,
        show_default=True,
        help="Versions to show, newest first (at most 1000).",
    )
    @client_options
    @click.pass_context
    def history(ctx: click.Context, key: str, scope: str, limit: int) -> None:
        """Every version of KEY on the main line, newest first: version, time, writer, the command that
        wrote it (`?` for events logged before it was recorded) and the value, or `(deleted)`.

        Read from the hub's event log, not from memory, so it survives restarts. Cost: the hub reads the
        room's state events back from the log, off its event loop in pages of 5000, until it has --limit
        versions or reaches KEY's first one; a key last written long ago in a busy room reads more.
        """
        got = client(ctx).replies.state.history(key, scope=scope, limit=limit)
        lines = [
            f"{clean(got['scope'])}.{clean(got['key'])}: {len(got['versions'])} version(s), newest first"
            + ("" if got["complete"] else " (older ones not shown)")
        ]
        for v in got["versions"]:
            shown = "(deleted)" if v["deleted"] else clean(_show(v["value"]))
            lines.append(
                f"  v{v['version']}  {fmt_time(v['at'])}  {clean(v['by'])}  {clean(v.get('op') or '?')}  {shown}"
            )
        emit(settings(ctx).json, got, "\n".join(lines))

    @group.command("eval")
    @click.argument("expr")
    @_BRANCH
    @client_options
    @click.pass_context
    def eval_(ctx: click.Context, expr: str, branch: str | None) -> None:
        """Evaluate a CEL expression against the room and print its value as JSON."""
        value = client(ctx).eval(expr, branch)
        emit(settings(ctx).json, value, encode(value).decode())

    @group.group("branch")
    def branch() -> None:
        """Branches of the room's state: fork, write in isolation, compare, merge."""

    @branch.command("create")
    @click.argument("branch_name", metavar="NAME")
    @click.option("--from", "source", metavar="B", help="Fork another branch instead of the main line.")
    @client_options
    @click.pass_context
    def create(ctx: click.Context, branch_name: str, source: str | None) -> None:
        """Fork the room's state into branch NAME (copy-on-write)."""
        r = _state(ctx, None, True).branch_create(branch_name, source)
        emit(settings(ctx).json, r, f"branch {clean(branch_name)} from {clean(source or 'main')}")

    @branch.command("list")
    @client_options
    @click.pass_context
    def list_branches(ctx: click.Context) -> None:
        """The room's branches."""
        found = _state(ctx, None).branches()
        as_json = settings(ctx).json
        for b in found:
            emit(
                as_json, b, f"{clean(b['branch'])}  from {clean(b['from'] or 'main')}  {b['changes']} changes"
            )
        if not found and not as_json:
            click.echo("no branches", err=True)

    @branch.command("diff")
    @click.argument("branch_name", metavar="NAME")
    @client_options
    @click.pass_context
    def diff(ctx: click.Context, branch_name: str) -> None:
        """Keys branch NAME changed, beside their value where it was forked from."""
        d = _state(ctx, None).branch_diff(branch_name)
        lines = []
        for c in d["changes"]:
            mark = "!" if f"{c['scope']}.{c['key']}" in d["conflicts"] else " "
            now = "(deleted)" if c["deleted"] else clean(_show(c["value"]))
            lines.append(f"{mark} {clean(c['scope'])}.{clean(c['key'])}: {clean(_show(c['source']))} → {now}")
        emit(settings(ctx).json, d, "\n".join(lines) or "no changes")

    @branch.command("merge")
    @click.argument("branch_name", metavar="NAME")
    @client_options
    @click.pass_context
    def merge(ctx: click.Context, branch_name: str) -> None:
        """Apply branch NAME where it was forked from; `conflict` lists keys changed on both sides."""
        r = _state(ctx, None, True).branch_merge(branch_name)
        emit(settings(ctx).json, r, f"merged {r['merged']} changes from {clean(branch_name)}")
