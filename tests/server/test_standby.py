"""`synapse hub --standby`: a second hub on a log another hub owns follows it (healthz 200, readyz 503, upgrades
and HTTP calls 503) and takes over with the owner's state when the owner dies (SQLite: its file lock; PostgreSQL:
its session's advisory lock). An owner that lost its database session stops acknowledging and exits."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from agent_sdk import Code, HubError, SyncAgent
from tests.conftest import HubProcess, seconds
from tests.log.pg import fresh_database, query


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The shared log: an SQLite file (one host) or a fresh PostgreSQL database (skipped without a server)."""
    if request.param == "sqlite":
        yield str(tmp_path / "hub.db")
        return
    with fresh_database("synapse_standby") as url:
        yield url


@pytest.fixture
def db_path(log_url: str) -> str:
    """The conftest's hub processes run on the shared log."""
    return log_url


@pytest.fixture
def hubs(hub_procs: Callable[..., HubProcess]) -> Callable[[], HubProcess]:
    """A hub subprocess on the shared log started with --standby (killed at teardown)."""
    return lambda: hub_procs("--standby")


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=seconds(10_000)) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(port: int, op: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/{op}", data=b"{}", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=seconds(10_000)) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_standby_follows_and_takes_over_with_the_owners_state(hubs: Callable[..., HubProcess]) -> None:
    primary = hubs()
    assert not primary.standby  # the first hub on a free log owns it, --standby or not
    standby = hubs()
    assert standby.standby

    assert get(standby.port, "/healthz") == (200, {"ok": True})
    status, ready = get(standby.port, "/readyz")
    assert status == 503 and ready["standby"] is True and ready["ready"] is False
    with pytest.raises(InvalidStatus) as refused:
        connect(standby.url, open_timeout=seconds(10_000)).close()
    assert refused.value.response.status_code == 503
    assert b"standby" in refused.value.response.body
    status, body = post(standby.port, "status")
    assert status == 503 and body["error"]["code"] == "unavailable"

    with SyncAgent("alice", hub=primary.url, save_token=False) as alice:
        alice.join()
        alice.state.set("plan", {"step": 3})
        sent = alice.send("alice", "before the kill")
        token = alice.token

    primary.kill()
    killed = time.monotonic()
    served = standby.took_over()
    with SyncAgent("alice", hub=standby.url, token=token, save_token=False) as alice:
        alice.attach()
        seq = alice.send("alice", "after the kill")  # the first acknowledged write on the new owner
        acknowledged = time.monotonic()
        assert seq == sent + 1  # message seqs go on where the old owner left them
        assert alice.state.get("plan")["value"] == {"step": 3}
        bodies = [m["body"] for m in alice.list_messages(after=0)]
    assert bodies == ["before the kill", "after the kill"]
    status, ready = get(standby.port, "/readyz")
    assert status == 200 and ready["standby"] is False
    print(
        f"takeover: serving {served - killed:.3f} s, first write {acknowledged - killed:.3f} s after the kill"
    )

    again = hubs()  # the killed one comes back: it stands by behind the new owner
    assert again.standby
    assert get(again.port, "/readyz")[0] == 503
    assert again.terminate() == 0  # SIGTERM: a standby stops following and exits 0


def test_without_standby_a_second_hub_is_refused(log_url: str, client_env: dict[str, str]) -> None:
    first = HubProcess(log_url, client_env).start()
    try:
        with pytest.raises(RuntimeError, match="another hub is using this log"):
            HubProcess(log_url, client_env).start()
    finally:
        first.kill()
        first.close_pipes()


def test_an_owner_that_lost_its_session_stops_acknowledging(
    hubs: Callable[..., HubProcess], log_url: str
) -> None:
    """PostgreSQL: the owner's session ends (a failover of the network, an operator's pg_terminate_backend); the
    standby takes the lock; the old owner's next write is refused, not acknowledged, and it exits."""
    if "://" not in log_url:
        pytest.skip("a lost database session is a PostgreSQL case")
    primary = hubs()
    standby = hubs()
    with SyncAgent("bob", hub=primary.url, save_token=False, retries=0) as bob:
        bob.join()
        bob.send("all", "kept")
        assert primary.proc is not None
        ended = query(
            log_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            f"synapse pid={primary.proc.pid} host={__import__('socket').gethostname()}"[:63],
        )
        assert ended == [(True,)]
        standby.took_over()
        with pytest.raises(HubError) as refused:
            bob.send("all", "lost")
        assert refused.value.code in (Code.UNAVAILABLE, Code.DISCONNECTED, Code.UNREACHABLE)
    assert primary.proc.wait(seconds(30_000)) == 1  # it can no longer write: it stops
    with SyncAgent("carol", hub=standby.url, save_token=False) as carol:
        carol.join()
        bodies = [m["body"] for m in carol.list_messages(after=0)]
    assert "kept" in bodies and "lost" not in bodies
