"""Two hubs never write one log: the second refuses at start (exit 1, `unavailable: another hub is using this
log (pid N)`), in another process or the same one; a SIGKILLed hub frees the log for the next at once.
SQLite always; PostgreSQL (advisory lock) when SYNAPSE_TEST_PG_URL is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent_sdk import SyncAgent
from hub.config import HubConfig
from hub.log.store import LogError
from tests.conftest import HubProcess, ThreadHub, hub_config
from tests.server.test_sigkill import close_pipes


@pytest.fixture(params=["sqlite", "postgresql"])
def log_at(request: pytest.FixtureRequest, db_path: Path) -> str:
    """A new log: an SQLite file, or a fresh PostgreSQL database."""
    return str(db_path) if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def test_a_second_hub_process_is_refused_and_the_log_is_untouched(
    log_at: str, client_env: dict[str, str]
) -> None:
    """`synapse hub` on a log another hub owns exits 1 naming that hub's pid; the first keeps working; after
    a SIGKILL of the first, the second starts on the log at once and finds everything."""
    first = HubProcess(log_at, client_env).start()
    second = HubProcess(log_at, client_env)
    try:
        with pytest.raises(RuntimeError) as info:
            second.start()
        assert second.proc is not None and second.proc.wait(10) == 1
        assert first.proc is not None
        assert f"unavailable: another hub is using this log (pid {first.proc.pid})\n" in str(info.value)
        close_pipes(second)
        with SyncAgent("a", hub=first.url) as agent:  # a's token is kept: a reads what it sent below
            assert agent.send("b", "still here", allow_unknown=True) == 1
            token = agent.token
    finally:
        first.kill()  # SIGKILL: the kernel drops the flock, PostgreSQL ends the session and its lock
        close_pipes(first)
    second.start()
    try:
        with SyncAgent("a", hub=second.url, token=token) as agent:  # a new port: pass a's token along
            assert [m["body"] for m in agent.list_messages()] == ["still here"]
    finally:
        assert second.terminate() == 0
        close_pipes(second)


def test_a_second_hub_in_the_same_process_is_refused(db_path: Path) -> None:
    """Even inside one process (tests run two hubs side by side), a log has one hub; once it stops, the log
    is free for the next."""
    from hub.server.hub import Hub

    first = ThreadHub(hub_config(db_path))
    try:
        with pytest.raises(LogError) as info:
            Hub(HubConfig(db=str(db_path)))
        assert info.value.message == f"another hub is using this log (pid {os.getpid()})"
        other = ThreadHub(hub_config(db_path.with_name("other.db")))  # another log: no conflict
        other.stop()
    finally:
        first.stop()
    again = ThreadHub(hub_config(db_path))
    again.stop()
