"""EventLog: append, read after a position, save and load snapshots; driver errors translated here."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, func, insert, inspect, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from hub.log.schema import SCHEMA_VERSION, events, meta, metadata, snapshots
from hub.protocol.errors import Code, HubError

__all__ = ["EventLog", "LogError", "Row", "db_url"]

logger = logging.getLogger(__name__)

Row = tuple[int, str, str, bytes, float]  # (seq, room, type, data, at)
KEEP_SNAPSHOTS = 2


class LogError(HubError):
    """The log cannot be opened, read or written; the message says why without SQL or secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.UNAVAILABLE, message)


def db_url(db: str) -> str:
    """An SQLAlchemy URL for `db`: a URL as it is, a path as an SQLite file."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().absolute()}"


class EventLog:
    """The durable event log on SQLite (WAL) or PostgreSQL; only the log writer thread appends."""

    def __init__(self, db: str, sync: str = "normal") -> None:
        self.url = make_url(db_url(db))
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._writer: Connection | None = None
        try:
            self.engine = self._engine(sync)
            self._prepare()
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            self._insert_sql = (
                f"INSERT INTO events (seq, room, type, data, at) VALUES ({', '.join([mark] * 5)})"
            )
        except (SQLAlchemyError, OSError) as exc:  # OSError: the SQLite file's folder cannot be made
            raise LogError(
                f"cannot open the log at {self.url.render_as_string(hide_password=True)}: {_why(exc)}"
            ) from None

    def _engine(self, sync: str) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True)
        path = self.url.database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
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

    def _prepare(self) -> None:
        version = select(meta.c.value).where(meta.c.key == "schema_version")
        if inspect(self.engine).has_table("meta"):  # refuse a newer hub's log before creating anything in it
            with self.engine.connect() as conn:
                _check_schema(conn.execute(version).scalar())
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            found = conn.execute(version).scalar()
            if found is None:
                conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
            else:
                _check_schema(found)

    # -- writing (the writer thread) ----------------------------------------------------------

    def append(self, rows: Sequence[Row]) -> None:
        """Insert rows in one transaction: all are durable when this returns, or none and it raises.

        Uses one long-lived connection (the writer thread's) and the driver's executemany: a group commit
        costs one transaction, not a connection and a statement compilation.
        """
        if not rows:
            return  # executemany with no rows would be a statement without its parameters
        try:
            conn = self._writer
            if conn is None:
                conn = self._writer = self.engine.connect()
            with conn.begin():
                conn.exec_driver_sql(self._insert_sql, list(rows))
        except SQLAlchemyError as exc:
            if self._writer is not None:
                self._writer.invalidate()
                self._writer.close()
                self._writer = None
            raise LogError(f"cannot append to the log: {_why(exc)}") from None

    def save_snapshot(self, seq: int, version: int, data: bytes) -> None:
        """Store a snapshot taken after event `seq`, keeping only the newest few."""
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(snapshots).where(snapshots.c.seq == seq))
                conn.execute(insert(snapshots).values(seq=seq, version=version, data=data))
                old = conn.execute(
                    select(snapshots.c.seq).order_by(snapshots.c.seq.desc()).offset(KEEP_SNAPSHOTS)
                ).scalars()
                stale = list(old)
                if stale:
                    conn.execute(delete(snapshots).where(snapshots.c.seq.in_(stale)))
        except SQLAlchemyError as exc:
            raise LogError(f"cannot save a snapshot: {_why(exc)}") from None

    # -- reading ---------------------------------------------------------------------------------

    def last_seq(self) -> int:
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read the log: {_why(exc)}") from None

    def read(self, after: int = 0, limit: int | None = None) -> list[Row]:
        """Events after position `after`, oldest first."""
        query = select(events.c.seq, events.c.room, events.c.type, events.c.data, events.c.at).where(
            events.c.seq > after
        )
        query = query.order_by(events.c.seq)
        if limit is not None:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read the log: {_why(exc)}") from None

    def scan(self, after: int = 0, chunk: int = 20_000) -> Iterator[Row]:
        """Every event after `after`, in chunks so memory stays flat."""
        while True:
            rows = self.read(after, chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    def load_snapshot(self, versions: Sequence[int]) -> tuple[int, int, bytes] | None:
        """The newest snapshot whose version this hub reads, as (seq, version, data)."""
        query = (
            select(snapshots.c.seq, snapshots.c.version, snapshots.c.data)
            .where(snapshots.c.version.in_(list(versions)))
            .order_by(snapshots.c.seq.desc())
            .limit(1)
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read a snapshot: {_why(exc)}") from None
        return None if row is None else (int(row[0]), int(row[1]), bytes(row[2]))

    def size(self) -> int | None:
        """Bytes on disk for an SQLite log (with its WAL), else None."""
        path = self.url.database
        if not self.is_sqlite or not path or path == ":memory:":
            return None
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()


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
