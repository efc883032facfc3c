"""A `python -m hub` process on PostgreSQL: acknowledged sends survive SIGKILL, snapshots and replay restore the
same state, and a second hub on the same log is refused. Skipped, saying why, without SYNAPSE_TEST_PG_URL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Code, HubError, SyncAgent
from hub.config import HubConfig
from hub.core import snapshot
from hub.core.machine import Machine
from hub.log.store import EventLog
from hub.protocol.codec import decode_event
from tests.conftest import HubProcess, seconds
from tests.log.pg import query

SENDERS = ("s1", "s2", "s3")


def close_pipes(hp: HubProcess) -> None:
    assert hp.proc is not None
    for pipe in (hp.proc.stdout, hp.proc.stderr):
        if pipe is not None:
            pipe.close()


def stop(hp: HubProcess) -> None:
    """SIGTERM (drains, exits 0), or SIGKILL if it is still up after a failure elsewhere."""
    if hp.proc is not None and hp.proc.poll() is None:
        assert hp.terminate() == 0
    close_pipes(hp)


def feed(agent: SyncAgent) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = agent.list_messages(after=out[-1]["seq"] if out else 0, limit=10_000)["messages"]
        out.extend(page)
        if len(page) < 10_000:
            return out


class Senders:
    """Three agents sending as fast as acknowledgements come back, until the hub dies."""

    def __init__(self, url: str) -> None:
        self.acked: dict[str, list[tuple[int, int]]] = {name: [] for name in SENDERS}
        self.errors: dict[str, BaseException] = {}
        self.count = 0
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._run, args=(url, name), daemon=True) for name in SENDERS]
        for t in self.threads:
            t.start()

    def _run(self, url: str, name: str) -> None:
        try:
            with SyncAgent(name, hub=url, save_token=False) as agent:
                agent.join()
                i = 0
                while True:
                    seq = int(agent.send("sink", {"from": name, "i": i})["seq"])
                    self.acked[name].append((seq, i))
                    with self.cond:
                        self.count += 1
                        self.cond.notify_all()
                    i += 1
        except BaseException as exc:  # the hub going away ends the thread; the test checks how
            self.errors[name] = exc
            with self.cond:
                self.cond.notify_all()

    def wait_for(self, acks: int) -> None:
        with self.cond:
            assert self.cond.wait_for(
                lambda: self.count >= acks or len(self.errors) == len(SENDERS), seconds(60_000)
            )
        assert not self.errors, self.errors

    def join(self) -> None:
        for t in self.threads:
            t.join(seconds(30_000))
            assert not t.is_alive()


def test_acknowledged_sends_survive_sigkill_on_postgres(pg_url: str, client_env: dict[str, str]) -> None:
    """SIGKILL a PostgreSQL-backed hub under three busy senders, restart it on the same database: every
    acknowledged send is in the feed at its seq, once, and seqs run 1..N."""
    hp = HubProcess(pg_url, client_env).start()
    with SyncAgent("sink", hub=hp.url, save_token=False) as sink:
        sink.join()
    senders = Senders(hp.url)
    try:
        senders.wait_for(400)
    finally:
        hp.kill()
        senders.join()
        close_pipes(hp)
    for name, exc in senders.errors.items():
        assert isinstance(exc, HubError) and exc.code == Code.DISCONNECTED, f"{name}: {exc!r}"

    hp.start()  # the same database; the killed hub's session (and its advisory lock) has ended
    try:
        with SyncAgent(hub=hp.url) as reader:
            messages = feed(reader)
    finally:
        stop(hp)
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    for name, acked in senders.acked.items():
        for seq, i in acked:
            assert (messages[seq - 1]["from"], messages[seq - 1]["body"]) == (name, {"from": name, "i": i})
        mine = [m["body"]["i"] for m in messages if m["from"] == name]
        assert mine == list(range(len(mine))) and len(acked) <= len(mine) <= len(acked) + 1


def restored(db: str) -> bytes:
    """What a hub starting on `db` restores: the newest snapshot, then the events after it."""
    from hub.server.hub import Hub

    hub = Hub(HubConfig(db=db))
    try:
        hub.restore()
        return snapshot.dump(hub.machine)
    finally:
        hub.log.close()


def test_snapshots_and_replay_on_postgres(pg_url: str, client_env: dict[str, str]) -> None:
    """With --snapshot-every 20 the hub keeps the newest snapshots in PostgreSQL; a restarted hub serves the
    same feed and state, and restoring from the snapshot equals folding the whole log."""
    hp = HubProcess(pg_url, client_env, "--snapshot-every", "20").start()
    try:
        with SyncAgent("a", hub=hp.url, save_token=False) as a:
            a.join()
            for i in range(75):
                a.send("b", {"i": i})
            a.state.set("turn", 7)
            a.claim("edit", ["src/"], ttl=600)
            before = feed(a), a.state.get("turn"), a.claims()
    finally:
        stop(hp)
    kept = query(pg_url, "SELECT seq, length(data) FROM snapshots ORDER BY seq")
    assert len(kept) == 2 and all(int(size) > 0 for _seq, size in kept)  # type: ignore[call-overload]
    log = EventLog(pg_url, owner=False)
    try:
        rows = log.read()
        newest = log.load_snapshot(None)
    finally:
        log.close()
    assert newest is not None and 0 < newest[0] <= len(rows)
    machine = Machine()
    for row in rows:
        machine.apply(decode_event(row[3]))
    assert restored(pg_url) == snapshot.dump(machine)

    hp.start()
    try:
        with SyncAgent("a", hub=hp.url, save_token=False) as a:
            after = feed(a), a.state.get("turn"), a.claims()
    finally:
        stop(hp)
    assert after == before


def test_a_second_hub_on_the_same_postgres_log_is_refused(
    pg_url: str, client_env: dict[str, str], tmp_path: Path
) -> None:
    """Two hubs never write one log: the second exits 1 with `unavailable: another hub is using this log
    (pid N)`; once the first stops, it starts."""
    first = HubProcess(pg_url, client_env).start()
    second = HubProcess(pg_url, client_env)
    try:
        with pytest.raises(RuntimeError) as info:
            second.start()
        assert second.proc is not None and second.proc.wait(10) == 1
        assert first.proc is not None
        assert f"unavailable: another hub is using this log (pid {first.proc.pid})" in str(info.value)
        close_pipes(second)
    finally:
        stop(first)
    second.start()
    with SyncAgent(hub=second.url) as probe:
        assert probe.status()
    stop(second)
