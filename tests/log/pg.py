"""A fresh PostgreSQL database per test, on the server SYNAPSE_TEST_PG_URL names; skipped without it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ENV = "SYNAPSE_TEST_PG_URL"
SKIP_REASON = f"PostgreSQL cases need {PG_ENV}=postgresql+psycopg://user@127.0.0.1:PORT/db (.ci/run sets it)"


def server_url() -> str:
    """SYNAPSE_TEST_PG_URL, or skip the test saying what to set."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def _conninfo(url: str) -> str:
    """A libpq URI for psycopg from an SQLAlchemy URL (postgresql+psycopg:// → postgresql://)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(prefix: str = "synapse_t") -> Iterator[str]:
    """Create an empty database on the test server, yield its SQLAlchemy URL, drop it (and its sessions)."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    base = server_url()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(_conninfo(base), autocommit=True)
    except psycopg.Error as exc:
        pytest.fail(f"{PG_ENV} is set but its server does not answer: {exc}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_url(base).set(database=name).render_as_string(hide_password=False)
        finally:
            force = sql.SQL(" WITH (FORCE)") if admin.info.server_version >= 130000 else sql.SQL("")
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)


def query(url: str, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run one statement on the database `url` names, outside any log (as an operator's psql would)."""
    import psycopg

    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        cur = conn.execute(statement, params or None)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description else []
