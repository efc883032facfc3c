"""EventLog: append, read after a position, save and load snapshots; one owner per log; driver errors here."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import create_engine, delete, event, func, insert, inspect, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from hub.log import private
from hub.log.schema import SCHEMA_VERSION, events, meta, metadata, snapshots
from hub.protocol.errors import Code, HubError

__all__ = ["EventLog", "LogError", "LogTaken", "Row", "Snapshot", "db_url", "why_unwritable"]

logger = logging.getLogger(__name__)

Row = tuple[int, str, str, bytes, float]  # (seq, room, type, data, at)
Snapshot = tuple[int, int, bytes]  # (seq, version, data)
KEEP_SNAPSHOTS = 2
FILL_CHUNK = 5_000  # rows per executemany while filling an empty log
PROBE_BYTES = 256 << 10  # headroom a probe must find before a degraded hub takes writes again

# PostgreSQL appends with binary COPY: 2-4x the rows per second of executemany at group-commit batch sizes
_COPY = "COPY events (seq, room, type, data, at) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["int8", "text", "text", "bytea", "float8"]

# PostgreSQL: the owner holds a session-level advisory lock keyed (namespace, crc of the schema) for its life.
_LOCK_NAMESPACE = 0x53594E41  # "SYNA"
OWNER_WAIT = 1.0  # seconds: a SIGKILLed owner's session ends a moment after the process; wait that long
_SESSION_SETTINGS = (  # the owner's session must not be ended by the server while the hub idles
    ("idle_in_transaction_session_timeout", "0"),
    ("statement_timeout", "0"),  # a restore's one long transaction included
    ("tcp_keepalives_idle", "30"),  # and a vanished hub host frees the log within about a minute
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "3"),
)


class LogError(HubError):
    """The log cannot be opened, read or written; the message says why without SQL or secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.UNAVAILABLE, message)


class LogTaken(LogError):
    """Another hub owns the log (it took the ownership lock while this one's session was gone)."""


def why_unwritable(message: str) -> str:
    """Why a write failed, in a few words an operator can act on: the disk is full, the log is read-only,
    the database is unreachable, or the driver's own words."""
    low = message.lower()
    if "disk is full" in low or "no space left" in low or "disk full" in low or "could not extend" in low:
        return "the log's disk is full"
    if "readonly" in low or "read-only" in low or "read only" in low:
        return "the log is read-only"
    if "disk i/o error" in low:
        return "the log's disk failed a write (full, read-only or failing)"
    if any(word in low for word in ("connect", "terminat", "server closed", "shutdown", "lost", "broken")):
        return "the log's database is unreachable"
    return "the log is not writable"


def db_url(db: str) -> str:
    """An SQLAlchemy URL for `db`: a URL as it is (postgresql:// means psycopg 3), a path as an SQLite file."""
    if "://" in db:
        scheme, rest = db.split("://", 1)
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"
        return db
    return f"sqlite:///{Path(db).expanduser().absolute()}"


class EventLog:
    """The durable event log on SQLite (WAL) or PostgreSQL.

    With `owner=True` (the hub, restore, migrate) this process owns the log until close(): on SQLite an
    exclusive flock on `<file>.lock`, on PostgreSQL an advisory lock held by the session every write goes
    through. A second owner is refused with "another hub is using this log (pid N)". `owner=False` opens
    an existing log to read it (a backup, a test) and never writes. `create=False` owns an existing log only
    (a migration's source): a missing one is refused and nothing is created.
    """

    def __init__(
        self, db: str, sync: str = "normal", *, owner: bool = True, create: bool | None = None
    ) -> None:
        create = owner if create is None else create and owner
        self.owner = owner
        self.create = create
        self._writer: Connection | None = None  # the owner's connection (PostgreSQL: it holds the lock)
        self._raw: sqlite3.Connection | None = None  # SQLite: the DB-API connection behind _writer
        self._owner_fd: int | None = None
        self._candidate: Connection | None = None  # a standby's session that asks for the lock (PostgreSQL)
        self._key: tuple[int, int] | None = None
        self._errors: tuple[type[Exception], ...] = (SQLAlchemyError,)
        try:
            self.url = make_url(db_url(db))
        except SQLAlchemyError:
            raise LogError(f"cannot open the log: {db!r} is neither a path nor a database URL") from None
        self.where = self.url.render_as_string(hide_password=True)
        backend = self.url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise LogError(f"cannot open the log at {self.where}: use an SQLite path or a postgresql:// URL")
        self.is_sqlite = backend == "sqlite"
        path = self.url.database if self.is_sqlite else None
        if not create and path and path != ":memory:" and not os.path.isfile(path):
            raise LogError(f"there is no log at {path}")
        try:
            self.engine = self._engine(sync)
            if owner:
                self._own()
            self._prepare(create=create)
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            self._insert_sql = (
                f"INSERT INTO events (seq, room, type, data, at) VALUES ({', '.join([mark] * 5)})"
            )
            # the driver's own errors too: COPY and SQLite's appends run below SQLAlchemy
            dbapi = getattr(self.engine.dialect, "loaded_dbapi", None)
            self._errors = (SQLAlchemyError,) + ((dbapi.Error,) if dbapi is not None else ())
        except ImportError:
            self.close()
            raise LogError(
                "the PostgreSQL log needs psycopg 3: pip install 'synapse-hub[postgres]'"
            ) from None
        except (SQLAlchemyError, OSError) as exc:  # OSError: the SQLite file's folder cannot be made
            self.close()
            raise LogError(f"cannot open the log at {self.where}: {_why(exc)}") from None
        except BaseException:
            self.close()
            raise

    def _engine(self, sync: str) -> Engine:
        if not self.is_sqlite:
            # an unreachable server fails in seconds, not the OS's TCP timeout
            return create_engine(self.url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        path = self.url.database
        if path and path != ":memory:" and self.create:
            private.make_folders(Path(path).parent)  # 0700, and the log file 0600 (its -wal, -shm follow)
            private.create_file(path)
        engine = create_engine(self.url, poolclass=NullPool, connect_args={"check_same_thread": False})
        level = "FULL" if sync == "full" else "NORMAL"

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={level}")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

        return engine

    def _prepare(self, create: bool) -> None:
        version = select(meta.c.value).where(meta.c.key == "schema_version")
        if inspect(self.engine).has_table("meta"):  # refuse a newer hub's log before creating anything in it
            with self.engine.connect() as conn:
                _check_schema(conn.execute(version).scalar())
        elif not create:
            raise LogError(f"there is no log at {self.where}")
        if not create:
            return
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            found = conn.execute(version).scalar()
            if found is None:
                conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            else:
                _check_schema(found)

    # -- ownership ------------------------------------------------------------------------------

    def _own(self, wait: float = OWNER_WAIT) -> None:
        """Become the log's only writer, or refuse: two hubs on one log would interleave positions."""
        if not self.is_sqlite:
            self._writer = self._owner_session(wait)
            return
        path = self.url.database
        if not path or path == ":memory:":
            return
        try:
            import fcntl
        except ImportError:  # no flock (Windows): nothing stops a second hub there
            logger.warning("log.unguarded path=%s reason=no-flock", path)
            return
        private.create_file(path + ".lock")  # 0600; kept once made: unlinking it would race a taker
        fd = os.open(path + ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 256).decode(errors="replace").split()
            os.close(fd)
            raise _in_use(*(holder + [None, None])[:2]) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._owner_fd = fd

    def take(self) -> bool:
        """Try once to become the owner of a log opened to read (a standby's takeover): True when this process
        owns it now, False while another hub does. On PostgreSQL one session of its own asks each time, and
        becomes the write session once it holds the lock."""
        if self.owner:
            return True
        try:
            if self.is_sqlite:
                self._own(0.0)
            else:
                if self._candidate is None:
                    self._candidate = self._session()
                if not self._try_lock(self._candidate):
                    return False
                self._writer, self._candidate = self._candidate, None
                self._tag(self._writer)
        except LogTaken:
            return False
        except self._errors as exc:
            self._drop_candidate()
            raise LogError(f"cannot reach the log: {_why(exc)}") from None
        self.owner = True
        return True

    def _session(self) -> Connection:
        """A PostgreSQL session of its own, never back into the pool: a lock it takes ends with it."""
        conn = self.engine.connect()
        conn.detach()
        return conn

    def _lock_key(self, conn: Connection) -> tuple[int, int]:
        """The advisory lock's key: (namespace, crc of the schema), so two schemas are two logs."""
        if self._key is None:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
            self._key = (_LOCK_NAMESPACE, zlib.crc32(f"synapse-log:{schema}".encode()) & 0x7FFFFFFF)
        return self._key

    def _try_lock(self, conn: Connection) -> bool:
        key = self._lock_key(conn)
        taken = bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s, %s)", key).scalar())
        conn.commit()
        return taken

    def _tag(self, conn: Connection) -> None:
        """Name the owner's session (who holds the log, for the refusal of a second hub) and keep the server
        from ending it while the hub idles."""
        tag = f"synapse pid={os.getpid()} host={socket.gethostname()}"[:63]
        settings = [("application_name", tag), *_SESSION_SETTINGS]
        if (conn.dialect.server_version_info or (0,)) >= (14,):
            settings.append(("idle_session_timeout", "0"))
        for name, value in settings:
            conn.exec_driver_sql("SELECT set_config(%s, %s, false)", (name, value))
        conn.commit()

    def _drop_candidate(self) -> None:
        if self._candidate is not None:
            try:
                self._candidate.invalidate()
                self._candidate.close()
            except SQLAlchemyError:
                pass
            self._candidate = None

    def _owner_session(self, wait: float = OWNER_WAIT) -> Connection:
        """A PostgreSQL session of its own holding the log's advisory lock; closing it frees the log."""
        conn = self._session()
        try:
            deadline = time.monotonic() + wait
            while not self._try_lock(conn):
                if time.monotonic() >= deadline:
                    raise _in_use(*_pg_holder(conn, self._lock_key(conn)))
                time.sleep(0.05)
            self._tag(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _write_conn(self) -> Connection:
        """The connection every write goes through; after a lost session, ownership is taken again first."""
        if not self.owner:
            raise LogError(f"the log at {self.where} was opened to read only")
        conn = self._writer
        if conn is None:
            conn = self._writer = self.engine.connect() if self.is_sqlite else self._owner_session()
        return conn

    def _write_failed(self, exc: Exception) -> None:
        """Drop the write connection unless it is healthy (PostgreSQL: keeping it keeps the lock)."""
        conn = self._writer
        if conn is None:
            return
        broken = self.is_sqlite or conn.invalidated or getattr(exc, "connection_invalidated", False)
        if not broken:
            try:
                broken = bool(getattr(conn.connection.dbapi_connection, "broken", False))
            except SQLAlchemyError:
                broken = True
        if broken:
            try:
                conn.invalidate()
                conn.close()
            except SQLAlchemyError:
                pass
            self._writer = self._raw = None

    def _sqlite_conn(self) -> sqlite3.Connection:
        """The sqlite3 connection behind the write connection: appends go straight through it."""
        raw = self._raw
        if raw is None:
            raw = self._raw = cast(sqlite3.Connection, self._write_conn().connection.dbapi_connection)
        return raw

    def _append_sqlite(self, rows: Sequence[Row]) -> None:
        """BEGIN, executemany, COMMIT on the sqlite3 connection, rolled back on any failure: SQLAlchemy's
        transaction and execution context cost as much CPU as the commit itself."""
        raw = self._sqlite_conn()
        raw.execute("BEGIN")  # explicit: the driver's implicit BEGIN depends on its isolation_level
        try:
            raw.executemany(self._insert_sql, rows)
            raw.commit()
        except BaseException:
            try:
                raw.rollback()  # a no-op when the failed COMMIT already ended the transaction
            except sqlite3.Error:
                pass  # the connection is dropped next (_write_failed) and the transaction with it
            raise

    def _insert(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Insert rows inside the caller's transaction: executemany on SQLite, binary COPY on PostgreSQL."""
        if self.is_sqlite:
            conn.exec_driver_sql(self._insert_sql, list(rows))
            return
        raw: Any = conn.connection.dbapi_connection
        with raw.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)

    # -- writing (the writer thread) ----------------------------------------------------------

    def append(self, rows: Sequence[Row]) -> None:
        """Insert rows in one transaction: all are durable when this returns, or none and it raises.

        Uses one long-lived connection (the writer thread's): a group commit costs one transaction, not a
        connection and a statement compilation. SQLite: the sqlite3 connection's executemany, below
        SQLAlchemy; PostgreSQL: binary COPY.
        """
        if not rows:
            return  # executemany with no rows would be a statement without its parameters
        try:
            if self.is_sqlite:
                self._append_sqlite(rows)
                return
            conn = self._write_conn()
            with conn.begin():
                self._insert(conn, rows)
        except self._errors as exc:
            self._write_failed(exc)
            raise LogError(f"cannot append to the log: {_why(exc)}") from None

    def probe(self, at: float) -> None:
        """Whether the log takes writes again after a failed commit: commit PROBE_BYTES into the meta row
        `probe`, then shrink it again (no event or snapshot changes). A tiny write could fit in room a failed
        commit left behind while the disk is still full; this one needs real headroom, and the pages it frees
        stay in the file for the next batches. On PostgreSQL a lost session is opened again first and the
        ownership lock re-taken (LogTaken if another hub holds it now)."""
        try:
            conn = self._write_conn()
            for value in (repr(at) + " " + "." * PROBE_BYTES, repr(at)):
                with conn.begin():
                    conn.execute(delete(meta).where(meta.c.key == "probe"))
                    conn.execute(insert(meta).values(key="probe", value=value))
        except self._errors as exc:
            self._write_failed(exc)
            raise LogError(f"cannot write to the log: {_why(exc)}") from None

    def save_snapshot(self, seq: int, version: int, data: bytes) -> None:
        """Store a snapshot taken after event `seq`, keeping only the newest few."""
        try:
            conn = self._write_conn()
            with conn.begin():
                conn.execute(delete(snapshots).where(snapshots.c.seq == seq))
                conn.execute(insert(snapshots).values(seq=seq, version=version, data=data))
                old = conn.execute(
                    select(snapshots.c.seq).order_by(snapshots.c.seq.desc()).offset(KEEP_SNAPSHOTS)
                ).scalars()
                stale = list(old)
                if stale:
                    conn.execute(delete(snapshots).where(snapshots.c.seq.in_(stale)))
        except self._errors as exc:
            self._write_failed(exc)
            raise LogError(f"cannot save a snapshot: {_why(exc)}") from None

    def fill(
        self,
        rows: Iterable[Row],
        snapshot: Snapshot | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Fill an empty log in one transaction (restore, migrate): every row and the snapshot, or nothing.

        `rows` may raise (a bad backup line): the transaction is rolled back and the log stays empty.
        """
        count = 0
        try:
            conn = self._write_conn()
            with conn.begin():
                found = conn.execute(select(func.count()).select_from(events)).scalar_one()
                kept = conn.execute(select(func.count()).select_from(snapshots)).scalar_one()
                if found or kept:
                    raise LogError(
                        f"the log at {self.where} is not empty ({found} events); "
                        "restore only into a new, empty log"
                    )
                batch: list[Row] = []
                for row in rows:
                    batch.append(row)
                    if len(batch) >= FILL_CHUNK:
                        self._insert(conn, batch)
                        count += len(batch)
                        batch = []
                        if progress is not None:
                            progress(count)
                if batch:
                    self._insert(conn, batch)
                    count += len(batch)
                if snapshot is not None:
                    seq, version, data = snapshot
                    conn.execute(insert(snapshots).values(seq=seq, version=version, data=data))
        except self._errors as exc:
            self._write_failed(exc)
            raise LogError(f"cannot fill the log: {_why(exc)}") from None
        if progress is not None:
            progress(count)
        return count

    # -- reading ---------------------------------------------------------------------------------

    def last_seq(self) -> int:
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read the log: {_why(exc)}") from None

    def count(self, upto: int | None = None) -> int:
        """The number of events (at or before position `upto`)."""
        query = select(func.count()).select_from(events)
        if upto is not None:
            query = query.where(events.c.seq <= upto)
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(query).scalar_one())
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read the log: {_why(exc)}") from None

    def read(self, after: int = 0, limit: int | None = None, upto: int | None = None) -> list[Row]:
        """Events after position `after` (and at or before `upto`), oldest first."""
        query = select(events.c.seq, events.c.room, events.c.type, events.c.data, events.c.at).where(
            events.c.seq > after
        )
        if upto is not None:
            query = query.where(events.c.seq <= upto)
        query = query.order_by(events.c.seq)
        if limit is not None:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                return [(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read the log: {_why(exc)}") from None

    def read_back(self, before: int, limit: int, room: str, types: Sequence[str]) -> list[Row]:
        """Events of `room` of the given types at positions below `before`, newest first, at most `limit`."""
        query = (
            select(events.c.seq, events.c.room, events.c.type, events.c.data, events.c.at)
            .where(events.c.seq < before, events.c.room == room, events.c.type.in_(list(types)))
            .order_by(events.c.seq.desc())
            .limit(limit)
        )
        try:
            with self.engine.connect() as conn:
                return [(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read the log: {_why(exc)}") from None

    def scan(self, after: int = 0, chunk: int = 20_000, upto: int | None = None) -> Iterator[Row]:
        """Every event after `after` (up to `upto`), in chunks so memory stays flat."""
        while True:
            rows = self.read(after, chunk, upto)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    def load_snapshot(self, versions: Sequence[int] | None) -> Snapshot | None:
        """The newest snapshot whose version this hub reads (None: of any version), as (seq, version, data)."""
        query = select(snapshots.c.seq, snapshots.c.version, snapshots.c.data)
        if versions is not None:
            query = query.where(snapshots.c.version.in_(list(versions)))
        query = query.order_by(snapshots.c.seq.desc()).limit(1)
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read a snapshot: {_why(exc)}") from None
        return None if row is None else (int(row[0]), int(row[1]), bytes(row[2]))

    def size(self) -> int | None:
        """Bytes on disk: an SQLite file with its WAL, or PostgreSQL's tables (a query: keep it off the loop)."""
        path = self.url.database
        if not self.is_sqlite:
            try:
                with self.engine.connect() as conn:
                    found = conn.exec_driver_sql(
                        "SELECT pg_total_relation_size('events') + pg_total_relation_size('snapshots')"
                    ).scalar()
                return None if found is None else int(found)
            except SQLAlchemyError:
                return None
        if not path or path == ":memory:":
            return None
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))

    def close(self) -> None:
        """Release the log: the owner's session or file lock ends here (a killed process frees it too)."""
        self._drop_candidate()
        if self._writer is not None:
            try:
                self._writer.close()  # detached on PostgreSQL: the session, and its advisory lock, end
            except SQLAlchemyError:
                pass
            self._writer = self._raw = None
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.dispose()


def _in_use(pid: str | None, host: str | None) -> LogTaken:
    who = ""
    if pid:
        elsewhere = f" on {host}" if host and host != socket.gethostname() else ""
        who = f" (pid {pid}{elsewhere})"
    return LogTaken(f"another hub is using this log{who}")


def _pg_holder(conn: Connection, key: tuple[int, int]) -> tuple[str | None, str | None]:
    """(pid, host) of the session holding the log's advisory lock, from the tag it set; else (None, None)."""
    found = conn.exec_driver_sql(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
        " AND l.classid::bigint = %s AND l.objid::bigint = %s"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        key,
    ).scalar()
    fields = dict(part.split("=", 1) for part in str(found or "").split() if "=" in part)
    return fields.get("pid"), fields.get("host")


def _check_schema(found: str | None) -> None:
    """Refuse a log written by a newer hub (or with an unreadable version): never guess at its layout."""
    if found is None:
        return
    try:
        version = int(found)
    except ValueError:
        raise LogError(f"this log's schema version {found!r} is not a number") from None
    if version > SCHEMA_VERSION:
        raise LogError(
            f"this log was written by a newer hub (schema {found}, this hub reads up to {SCHEMA_VERSION})"
        )


def _why(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
