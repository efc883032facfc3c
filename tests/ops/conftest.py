"""Fixtures for operator tests: a fresh PostgreSQL database per test (skipped, saying why, without one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.log.pg import fresh_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database on SYNAPSE_TEST_PG_URL's server, dropped afterwards."""
    with fresh_database("synapse_ops") as url:
        yield url
