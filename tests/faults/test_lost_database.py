"""A lost database (the PostgreSQL log): the hub's session killed, the server stopped under load and started
again. Writes are refused with `unavailable` meanwhile and /readyz says not ready; the hub reconnects by
itself, re-takes its ownership lock (or stops if another hub took the log), and loses nothing acknowledged."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ThreadHub, seconds
from tests.faults.rig import Cluster, Refused, Wire, readyz, until

LOCK_HOLDER = (
    "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
)


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(statement)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description else []


@pytest.fixture
def db_url(cluster: Cluster) -> Iterator[str]:
    """A fresh database on the cluster, dropped after the test."""
    from sqlalchemy.engine import make_url

    name = f"faults_{secrets.token_hex(4)}"
    sql(cluster.url, f"CREATE DATABASE {name}")
    yield make_url(cluster.url).set(database=name).render_as_string(hide_password=False)
    cluster.start_if_stopped()
    sql(cluster.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_hub(url: str) -> ThreadHub:
    from hub.config import HubConfig

    return ThreadHub(HubConfig(host="127.0.0.1", port=0, db=url))


def owner(url: str) -> list[tuple[Any, ...]]:
    """(pid, application_name) of the session holding the log's advisory lock."""
    return sql(url, LOCK_HOLDER)


def check_ledger(url: str, ledger: dict[str, Any]) -> None:
    """A fresh hub on the same log has every acknowledged write."""
    th = pg_hub(url)
    try:
        wire = Wire(th.url)
        try:
            for key, value in ledger.items():
                assert wire.call("state.get", key=key)["value"] == value, key
        finally:
            wire.close()
    finally:
        th.stop()


def test_a_killed_database_session_is_reopened_and_the_lock_taken_again(db_url: str) -> None:
    """pg_terminate_backend on the hub's own session: the next write is refused with `unavailable` (the
    database is unreachable), the hub opens a new session, takes its advisory lock again, and writes go on."""
    th = pg_hub(db_url)
    try:
        wire = Wire(th.url).join("alice")
        ledger = {"a": 1}
        wire.call("state.set", name="alice", key="a", value=1)
        [(pid, tag)] = owner(db_url)
        assert str(tag).startswith("synapse pid=")
        sql(db_url, f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(Refused) as refused:  # it learns at its next commit
            wire.call("state.set", name="alice", key="lost", value=1)
        assert refused.value.code == "unavailable" and "unreachable" in refused.value.message
        until("the hub to take writes again", lambda: readyz(th)[0] == 200)
        [(again, tag_again)] = owner(db_url)
        assert again != pid and tag_again == tag  # the same hub, a new session holding the lock
        with pytest.raises(Refused) as missing:
            wire.call("state.get", key="lost")
        assert missing.value.code == "not_found"
        wire.call("state.set", name="alice", key="b", value=2)
        ledger["b"] = 2
        wire.close()
    finally:
        th.stop()
    check_ledger(db_url, ledger)


class Load:
    """One client writing new keys as fast as answers come; every acknowledged write goes in the ledger."""

    def __init__(self, url: str) -> None:
        self.wire = Wire(url).join("loader")
        self.ledger: dict[str, int] = {}
        self.refused: list[Refused] = []
        self.stop = threading.Event()
        self.acked = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                self.wire.call("state.set", name="loader", key=f"k{i}", value=i)
            except Refused as exc:
                assert exc.code == "unavailable", exc
                with self.acked:
                    self.refused.append(exc)
                    self.acked.notify_all()
                continue
            with self.acked:
                self.ledger[f"k{i}"] = i
                self.acked.notify_all()

    def wait(self, what: str, check: Any) -> None:
        with self.acked:
            if not self.acked.wait_for(check, timeout=seconds(30_000)):
                pytest.fail(f"timed out waiting for {what}")

    def close(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join(seconds(30_000))
        self.wire.close()
        return dict(self.ledger)


def test_the_database_server_stopped_under_load_and_started_again(cluster: Cluster, db_url: str) -> None:
    """The server stops while a client writes as fast as it can: writes are refused with `unavailable`,
    /readyz is 503; the server back, the hub reconnects by itself and every acknowledged write is there."""
    th = pg_hub(db_url)
    try:
        load = Load(th.url)
        load.wait("some writes", lambda: len(load.ledger) >= 20)
        cluster.kill()
        load.wait("writes to be refused", lambda: len(load.refused) >= 3)
        status, ready = readyz(th)
        assert status == 503 and "unreachable" in (ready["degraded"] or "")
        before = len(load.ledger)
        cluster.start()
        until("the hub to take writes again", lambda: readyz(th)[0] == 200)
        load.wait("writes to be acknowledged again", lambda: len(load.ledger) >= before + 20)
        ledger = load.close()
        assert all("unreachable" in r.message or "not writable" in r.message for r in load.refused)
    finally:
        th.stop()
    check_ledger(db_url, ledger)


def test_a_hub_whose_log_another_hub_took_meanwhile_stops(db_url: str) -> None:
    """While the first hub's session is gone a second hub takes the log: the first one, on its next write,
    finds the lock held, stops acknowledging anything and stops (as exit 1), and the second one serves."""
    first = pg_hub(db_url)
    second: ThreadHub | None = None
    try:
        wire = Wire(first.url).join("alice")
        wire.call("state.set", name="alice", key="a", value=1)
        [(pid, _tag)] = owner(db_url)
        sql(db_url, f"SELECT pg_terminate_backend({pid})")
        until("the lock to be free", lambda: not owner(db_url))
        second = pg_hub(db_url)
        with pytest.raises(Refused) as refused:
            wire.call("state.set", name="alice", key="b", value=2)
        assert refused.value.code == "unavailable"
        first.call(first.hub.stopped.wait())  # type: ignore[union-attr]
        assert first.hub is not None and "another hub is using this log" in str(first.hub.failed)
        reader = Wire(second.url)
        assert reader.call("state.get", key="a")["value"] == 1
        with pytest.raises(Refused):
            reader.call("state.get", key="b")
        reader.close()
        wire.close()
    finally:
        if second is not None:
            second.stop()
        first.stop()
