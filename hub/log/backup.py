"""Backup, restore and migrate: an online-consistent copy of a log, and filling an empty log from one.

Two backup forms:
- an SQLite file (OUT ends in .db, .sqlite or .sqlite3): SQLite's backup API, one step under one read
  transaction, from an SQLite log (a PostgreSQL log is copied row by row into a new SQLite log instead);
- NDJSON (any other name, or `-` for stdout), for either backend. Line 1 is a header
  `{"synapse_backup": 1, "schema": 1, "events": N, "last_seq": S, "snapshot_seq": P|null, ...}`; then, if the
  log has one, its newest snapshot `{"snapshot": {"seq": P, "version": V, "data": "<base64>"}}`; then one line
  per event, oldest first: `{"seq": 1, "room": "default", "type": "MessageSent", "at": 1.5, "event": {...}}`
  where `event` is the event exactly as the log stores it (so a restore is byte for byte).

Both are taken while a hub may be writing: the copy stops at the newest position committed when it started
(the log is append-only, so everything up to it is fixed) and takes a snapshot at or before it.
Restore and migrate write only into an empty log they own, in one transaction: all of it or nothing.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from hub.log import private
from hub.log.schema import SCHEMA_VERSION
from hub.log.store import EventLog, LogError, Row, Snapshot, db_url
from hub.protocol.codec import decode_event

__all__ = ["FORMAT", "Progress", "backup", "is_sqlite_file", "migrate", "restore"]

FORMAT = 1  # the NDJSON backup's own version: a newer one is refused
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SQLITE_MAGIC = b"SQLite format 3\x00"
PROGRESS_EVERY = 5_000

Progress = Callable[[int, int], None]  # (events done, events in all)


def is_sqlite_file(path: str) -> bool:
    """True when `path` is an SQLite database file (by its header, not its name)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def backup(db: str, out: str, progress: Progress | None = None) -> dict[str, Any]:
    """Copy the log at `db` to `out` (SQLite file or NDJSON, see above) without stopping its hub."""
    if out != "-" and os.path.lexists(out):
        raise LogError(f"{out} already exists; back up to a new name")
    to_sqlite = out.lower().endswith(SQLITE_SUFFIXES)
    source = EventLog(db, owner=False)
    try:
        snap = source.load_snapshot(None)  # first: a snapshot is written only after the events it covers
        last = source.last_seq()
        total = source.count(upto=last)
        summary = {
            "events": total,
            "last_seq": last,
            "snapshot_seq": snap[0] if snap else None,
            "from": source.where,
            "to": out,
            "format": "sqlite" if to_sqlite else "ndjson",
        }
        if to_sqlite and source.is_sqlite:
            _sqlite_copy(source, out)
            copy = EventLog(out, owner=False)  # the backup API copies the newest commit: say what it holds
            try:
                summary["last_seq"] = copy.last_seq()
                summary["events"] = copy.count()
                found = copy.load_snapshot(None)
                summary["snapshot_seq"] = found[0] if found else None
            finally:
                copy.close()
        elif to_sqlite:
            partial = out + ".partial"
            target = EventLog(partial)
            try:
                target.fill(source.scan(upto=last), snap, _counting(progress, total))
            finally:
                target.close()
                _remove(partial + ".lock")
            os.replace(partial, out)
        else:
            header = {
                "synapse_backup": FORMAT,
                "schema": SCHEMA_VERSION,
                "events": total,
                "last_seq": last,
                "snapshot_seq": snap[0] if snap else None,
                "source": "sqlite" if source.is_sqlite else "postgresql",
                "written_at": round(time.time(), 3),
            }
            _write_ndjson(out, header, snap, source.scan(upto=last), progress, total)
        return summary
    finally:
        source.close()


def restore(source: str, db: str, progress: Progress | None = None) -> dict[str, Any]:
    """Fill the empty log at `db` from a backup (NDJSON file, `-` for stdin, or an SQLite log file)."""
    if source != "-" and not os.path.isfile(source):
        raise LogError(f"there is no backup at {source}")
    if source != "-" and is_sqlite_file(source):
        return _copy(EventLog(source, owner=False), db, progress, "restore")
    stream: IO[bytes] = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    try:
        lines = enumerate(stream, 1)
        header = _header(source, lines)
        snap, first = _snapshot_line(source, lines, header)
        rows = _event_rows(source, first, lines, header)
        target = _owned(db, "restoring")
        try:
            count = target.fill(rows, snap, _counting(progress, int(header["events"])))
        finally:
            target.close()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return {
        "events": count,
        "last_seq": header["last_seq"],
        "snapshot_seq": snap[0] if snap else None,
        "from": source,
        "to": db,
    }


def migrate(source_db: str, target_db: str, progress: Progress | None = None) -> dict[str, Any]:
    """Move a log to another database (SQLite → PostgreSQL or back); no hub may run on either meanwhile."""
    if db_url(source_db) == db_url(target_db):
        raise LogError("--from and --to name the same log")
    return _copy(_owned(source_db, "migrating it", create=False), target_db, progress, "migrating to it")


# -- copying log to log ---------------------------------------------------------------------------


def _copy(source: EventLog, target_db: str, progress: Progress | None, doing: str) -> dict[str, Any]:
    try:
        snap = source.load_snapshot(None)
        last = source.last_seq()
        total = source.count(upto=last)
        target = _owned(target_db, doing)
        try:
            count = target.fill(source.scan(upto=last), snap, _counting(progress, total))
            if target.last_seq() != last or count != total:
                raise LogError(
                    f"the copy holds {count} events up to {target.last_seq()}, not {total} up to {last}"
                )
            where = target.where
        finally:
            target.close()
        return {
            "events": count,
            "last_seq": last,
            "snapshot_seq": snap[0] if snap else None,
            "from": source.where,
            "to": where,
        }
    finally:
        source.close()


def _owned(db: str, doing: str, *, create: bool = True) -> EventLog:
    """Own the log at `db` (an existing one only, unless `create`), saying clearly when a hub has it."""
    try:
        return EventLog(db, create=create)
    except LogError as exc:
        if exc.message.startswith("another hub is using this log"):
            raise LogError(f"{exc.message}: stop it before {doing}") from None
        raise


def _sqlite_copy(source: EventLog, out: str) -> None:
    """SQLite's backup API in one step: a consistent copy even while the hub commits."""
    import sqlite3

    partial = out + ".partial"
    _remove(partial)
    private.create_file(partial)  # 0600 whatever the umask: a backup holds everything the log does
    raw = source.engine.raw_connection()
    try:
        target = sqlite3.connect(partial)
        try:
            raw.driver_connection.backup(target)  # type: ignore[union-attr]
        finally:
            target.close()
    except sqlite3.Error as exc:
        _remove(partial)
        raise LogError(f"cannot back up the log to {out}: {exc}") from None
    finally:
        raw.close()
    os.replace(partial, out)


def _counting(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda done: progress(done, total)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# -- NDJSON ---------------------------------------------------------------------------------------


def _write_ndjson(
    out: str,
    header: dict[str, Any],
    snap: Snapshot | None,
    rows: Iterable[Row],
    progress: Progress | None,
    total: int,
) -> None:
    """Write the backup to `out.partial`, fsync, then rename: a crash never leaves a half backup at `out`."""
    partial = out + ".partial"
    f: IO[bytes] = sys.stdout.buffer if out == "-" else private.open_new(partial)  # 0600: a backup is the log
    done = 0
    try:
        f.write(json.dumps(header).encode() + b"\n")
        if snap is not None:
            data = base64.b64encode(snap[2]).decode()
            f.write(
                json.dumps({"snapshot": {"seq": snap[0], "version": snap[1], "data": data}}).encode() + b"\n"
            )
        dumps = json.dumps
        for seq, room, type_, data_, at in rows:
            f.write(
                b'{"seq":%d,"room":%s,"type":%s,"at":%s,"event":%s}\n'
                % (seq, dumps(room).encode(), dumps(type_).encode(), repr(float(at)).encode(), data_)
            )
            done += 1
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done, total)
        f.flush()
        if out != "-":
            os.fsync(f.fileno())
    except BaseException:
        if out != "-":
            f.close()
            _remove(partial)
        raise
    if out != "-":
        f.close()
        os.replace(partial, out)
    if progress is not None:
        progress(done, total)


def _header(name: str, lines: Iterator[tuple[int, bytes]]) -> dict[str, Any]:
    for _lineno, line in lines:
        if not line.strip():
            continue
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or "synapse_backup" not in header:
            raise LogError(f"{name} is not a Synapse backup (no header line)")
        if not isinstance(header["synapse_backup"], int) or header["synapse_backup"] > FORMAT:
            raise LogError(f"{name} was written by a newer hub (backup format {header['synapse_backup']})")
        if int(header.get("schema", 0)) > SCHEMA_VERSION:
            raise LogError(
                f"{name} holds a newer hub's log (schema {header['schema']}, this hub reads up to "
                f"{SCHEMA_VERSION})"
            )
        for key in ("events", "last_seq"):
            if not isinstance(header.get(key), int):
                raise LogError(f"{name}: the header has no {key}")
        return header
    raise LogError(f"{name} is empty")


def _snapshot_line(
    name: str, lines: Iterator[tuple[int, bytes]], header: dict[str, Any]
) -> tuple[Snapshot | None, tuple[int, bytes] | None]:
    """The snapshot line if there is one, and the first event line (already read)."""
    for lineno, line in lines:
        if not line.strip():
            continue
        if not line.startswith(b'{"snapshot"'):
            return None, (lineno, line)
        try:
            found = json.loads(line)["snapshot"]
            snap = (int(found["seq"]), int(found["version"]), base64.b64decode(found["data"], validate=True))
        except (ValueError, KeyError, TypeError) as exc:
            raise LogError(f"{name} line {lineno}: a damaged snapshot line ({exc})") from None
        if snap[0] > int(header["last_seq"]):
            raise LogError(f"{name} line {lineno}: the snapshot is newer than the last event")
        return snap, None
    return None, None


def _event_rows(
    name: str, first: tuple[int, bytes] | None, lines: Iterator[tuple[int, bytes]], header: dict[str, Any]
) -> Iterator[Row]:
    """Each event line as a log row, checked: it decodes as an event, positions only grow, none is missing."""
    previous = 0
    count = 0
    pending = [first] if first is not None else []
    for lineno, line in _chain(pending, lines):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            meta = json.loads(line)
            seq, room, type_, at = int(meta["seq"]), str(meta["room"]), str(meta["type"]), float(meta["at"])
            mark = line.find(b',"event":')
            if line.startswith(b'{"seq":') and mark > 0 and line.endswith(b"}"):
                data = line[mark + len(b',"event":') : -1]  # the stored bytes, as they were
            else:  # reformatted by hand: re-encode (equal JSON, perhaps other spacing)
                data = json.dumps(meta["event"], separators=(",", ":"), ensure_ascii=False).encode()
            decode_event(data)
        except Exception as exc:  # a bad line of any kind: say which, restore nothing
            raise LogError(f"{name} line {lineno}: not an event line ({_short(exc)})") from None
        if seq <= previous:
            raise LogError(f"{name} line {lineno}: seq {seq} after {previous}")
        previous = seq
        count += 1
        yield (seq, room, type_, data, at)
    if count != header["events"] or previous != header["last_seq"]:
        raise LogError(
            f"{name} is incomplete: {count} events up to seq {previous}, "
            f"the header promises {header['events']} up to {header['last_seq']}"
        )


def _chain(first: list[tuple[int, bytes]], rest: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    yield from first
    yield from rest


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
