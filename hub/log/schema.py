"""Tables: events(seq, room, type, data, at), snapshots(seq, version, data), meta(key, value).

The same tables on SQLite and PostgreSQL: `data` is a BLOB / BYTEA, `seq` an INTEGER rowid alias on SQLite
(fast appends, and the files written so far keep their layout) and a BIGINT on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, LargeBinary, MetaData, String, Table, Text

__all__ = ["SCHEMA_VERSION", "events", "meta", "metadata", "snapshots"]

SCHEMA_VERSION = 1  # a log written by a newer hub (higher number) is refused, never guessed at

metadata = MetaData()

# "INTEGER PRIMARY KEY" is SQLite's rowid; any other spelling (BIGINT) would add a second index
_POSITION = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("seq", _POSITION, primary_key=True, autoincrement=False),  # the event's position in the whole log
    Column("room", Text, nullable=False),  # unbounded, as on SQLite: a long name must not stop the hub
    Column("type", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),  # the event, JSON-encoded by hub.protocol.codec
    Column("at", Float, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("seq", _POSITION, primary_key=True, autoincrement=False),  # the last event folded into it
    Column("version", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
