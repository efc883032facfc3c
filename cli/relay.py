"""`synapse relay`: append messages for an agent to an NDJSON file and advance a cursor, crash-safely."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import click

from cli.main import client, client_options, settings
from cli.output import emit
from hub.protocol.codec import encode
from hub.protocol.errors import HubError

__all__ = ["handed_over", "read_cursor", "reconcile", "register", "write_cursor"]

PAGE = 1000


def read_cursor(path: Path) -> int:
    """The last seq relayed (0 when the cursor file does not exist yet)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    try:
        return int(text or 0)
    except ValueError:
        raise click.ClickException(f"cursor file {path} does not hold a seq: {text[:40]!r}") from None


def write_cursor(path: Path, seq: int) -> None:
    """Replace the cursor atomically and durably: write a temporary file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{seq}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def reconcile(out: Path, cursor: int) -> int:
    """Make the output file and the cursor agree after a crash; returns the cursor to continue from.

    A torn last line (a crash mid-write) is cut off; lines already written past the cursor (a crash between
    writing and advancing the cursor) move the cursor forward instead of being written again.
    """
    try:
        size = out.stat().st_size
    except FileNotFoundError:
        return cursor
    if size == 0:
        return cursor
    with open(out, "rb+") as f:
        tail_from = max(0, size - (1 << 20))
        f.seek(tail_from)
        tail = f.read()
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            keep = tail_from + cut + 1 if cut >= 0 else 0
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            tail = tail[: cut + 1] if cut >= 0 else b""
        lines = tail.splitlines()
    if not lines:
        return cursor
    try:
        last = int(json.loads(lines[-1])["seq"])
    except (ValueError, KeyError, TypeError):
        raise click.ClickException(f"{out} does not end with a relayed message; refusing to guess") from None
    return max(cursor, last)


def handed_over(agent: Any, for_: str | None, seq: int) -> None:
    """After a message is printed, move NAME's read position to it (CLI.md "Delivery"): the next `wait`
    without --after resumes after it, so a loop hands every message over exactly once. Acknowledging only
    after printing means a crash in between hands it over again rather than never."""
    if for_ is None or agent.name != for_ or agent.token is None and agent.admin_token is None:
        return
    try:
        agent.ack(seq)
    except HubError as exc:
        click.echo(f"warning: read position not moved ({exc.code}: {exc.message})", err=True)


def register(group: click.Group) -> None:
    @group.command("relay")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--for", "for_", required=True, metavar="NAME", help="Relay messages addressed to NAME.")
    @click.option(
        "--cursor",
        "cursor_file",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="CURSOR_FILE",
        help="Holds the last seq relayed; created on first use.",
    )
    @client_options
    @click.pass_context
    def relay(ctx: click.Context, file: Path, for_: str, cursor_file: Path) -> None:
        """Append every message addressed to NAME after the cursor to FILE as NDJSON, then advance the cursor.

        A crash at any point neither loses nor duplicates a line: lines are fsynced before the cursor moves,
        and a rerun reconciles a file that got ahead of its cursor. If its connection drops, it goes on from the
        cursor on the next --hub address that answers. Prints the number of lines appended.
        """
        for path, what in ((file, "FILE"), (cursor_file, "CURSOR_FILE")):
            folder = path.parent
            if not folder.is_dir():
                raise click.ClickException(f"{what} {path}: there is no folder {folder}; create it first")
        cursor = read_cursor(cursor_file)
        start = reconcile(file, cursor)
        if start != cursor:
            write_cursor(cursor_file, start)
        cursor = start
        agent = client(ctx, name=settings(ctx).name or for_)  # relaying NAME's messages is acting as NAME
        if agent.token is None:
            agent.first_join()  # first use joins NAME (directed messages are readable only by it)
        appended = 0
        while True:
            page = agent.list_messages(for_=for_, after=cursor, limit=PAGE)
            if not page:
                break
            with open(file, "ab") as f:
                f.write(b"".join(encode(m) + b"\n" for m in page))
                f.flush()
                os.fsync(f.fileno())
            cursor = int(page[-1]["seq"])
            write_cursor(cursor_file, cursor)
            appended += len(page)
            if len(page) < PAGE:
                break
        if appended:
            handed_over(agent, for_, cursor)
        emit(settings(ctx).json, {"appended": appended, "cursor": cursor}, str(appended))
