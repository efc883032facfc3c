"""`synapse backup`, `restore` and `log migrate`: work on the log itself, with no hub in between."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from cli.hub import default_db
from cli.main import settings
from cli.output import emit

__all__ = ["register"]

_DB_HELP = (
    "The log: an SQLite file path or an SQLAlchemy URL (postgresql+psycopg://...), as for `synapse hub` "
    "[env SYNAPSE_DB; default: $XDG_DATA_HOME/synapse/hub.db]."
)


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:  # where the group's error handler looks, so a refusal is JSON too
        ctx.find_root().meta.setdefault("synapse", {})["json_"] = True


_json_option = click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_json_flag,
    help="Print the result as one JSON document.",
)


class _Progress:
    """A progress line on stderr for work that takes more than a second (redrawn in place on a terminal)."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.started = self.shown = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = done >= total
        if now - self.shown < 1.0 and not (final and self.drawn):
            return
        self.shown = now
        share = f" ({100 * done // total}%)" if total else ""
        line = f"{self.verb}: {done}/{total} events{share}, {now - self.started:.0f} s"
        if self.tty:
            click.echo(f"\r{line}", err=True, nl=final)
        else:
            click.echo(line, err=True)
        self.drawn = not final

    def end(self) -> None:
        if self.drawn and self.tty:
            click.echo("", err=True)
        self.drawn = False


def _summary(verb: str, result: dict[str, Any]) -> str:
    snap = result.get("snapshot_seq")
    at = f", snapshot at {snap}" if snap else ""
    return f"{verb} {result['events']} events (last seq {result['last_seq']}{at}) from {result['from']} to {result['to']}"


def _run(verb: str, work: Any) -> dict[str, Any]:
    progress = _Progress(verb)
    try:
        result: dict[str, Any] = work(progress)
    finally:
        progress.end()
    return result


def register(group: click.Group) -> None:
    @group.command("backup")
    @click.argument("out", metavar="OUT")
    @click.option("--db", metavar="URL|PATH", envvar="SYNAPSE_DB", default=None, help=_DB_HELP)
    @_json_option
    @click.pass_context
    def backup_cmd(ctx: click.Context, out: str, db: str | None) -> None:
        """Copy the log to OUT, consistently, even while a hub is writing it.

        OUT ending in .db, .sqlite or .sqlite3 is an SQLite log file (SQLite's backup API); any other name is
        NDJSON (a header line, the newest snapshot, then one line per event: seq, room, type, at, event),
        `-` for stdout. OUT must not exist. Restore either with `synapse restore`.
        """
        from hub.log.backup import backup

        result = _run("backup", lambda p: backup(db or default_db(), out, p))
        if out == "-":
            click.echo(_summary("backed up", result), err=True)
        else:
            emit(settings(ctx).json, result, _summary("backed up", result))

    @group.command("restore")
    @click.argument("source", metavar="IN")
    @click.option("--db", metavar="URL|PATH", envvar="SYNAPSE_DB", default=None, help=_DB_HELP)
    @_json_option
    @click.pass_context
    def restore_cmd(ctx: click.Context, source: str, db: str | None) -> None:
        """Fill an empty log from a backup (NDJSON, `-` for stdin, or an SQLite backup file).

        Refused if the log already holds events, or while a hub runs on it. All or nothing: a damaged or
        truncated backup restores nothing. A hub started on the log then folds to the backed-up state.
        """
        from hub.log.backup import restore

        result = _run("restore", lambda p: restore(source, db or default_db(), p))
        emit(settings(ctx).json, result, _summary("restored", result))

    @group.group("log")
    def log_group() -> None:
        """Operations on the event log itself (stop the hub first)."""

    @log_group.command("migrate")
    @click.option(
        "--from",
        "source",
        metavar="URL|PATH",
        envvar="SYNAPSE_DB",
        default=None,
        help="The log to copy [env SYNAPSE_DB; default: $XDG_DATA_HOME/synapse/hub.db].",
    )
    @click.option("--to", "target", metavar="URL|PATH", required=True, help="An empty log to fill.")
    @_json_option
    @click.pass_context
    def migrate_cmd(ctx: click.Context, source: str | None, target: str) -> None:
        """Copy every event and the newest snapshot to another log: SQLite → PostgreSQL, or back.

        Neither log may have a hub running on it; the target must be empty. Then point `synapse hub --db`
        at the target. The source is left as it was.
        """
        from hub.log.backup import migrate

        result = _run("migrate", lambda p: migrate(source or default_db(), target, p))
        emit(settings(ctx).json, result, _summary("migrated", result))
