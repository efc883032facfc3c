"""Tables: events(seq, room, type, data, at), snapshots(seq, version, data), meta(key, value)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, LargeBinary, MetaData, String, Table, Text

__all__ = ["SCHEMA_VERSION", "events", "meta", "metadata", "snapshots"]

SCHEMA_VERSION = 1  # a log written by a newer hub (higher number) is refused, never guessed at

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),  # the event's position in the whole log
    Column("room", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),  # the event, JSON-encoded by hub.protocol.codec
    Column("at", Float, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),  # the last event folded into it
    Column("version", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
