"""A `python -m hub` process on PostgreSQL: acknowledged sends survive SIGKILL, snapshots and replay restore the
same state (a second hub on the log: test_ownership.py). Skipped, saying why, without SYNAPSE_TEST_PG_URL."""

from __future__ import annotations

from agent_sdk import Code, HubError, SyncAgent
from tests.conftest import HubProcess
from tests.log.pg import query
from tests.ops.logs import folded, restored, rows_of, snapshot_of
from tests.server.test_sigkill import Senders, close_pipes, read_feed


def stop(hp: HubProcess) -> None:
    """SIGTERM: the hub drains and exits 0."""
    if hp.proc is not None and hp.proc.poll() is None:
        assert hp.terminate() == 0
    close_pipes(hp)


def test_acknowledged_sends_survive_sigkill_on_postgres(pg_url: str, client_env: dict[str, str]) -> None:
    """SIGKILL a PostgreSQL-backed hub under three busy senders, restart it on the same database: every
    acknowledged send is in the feed at its seq, once, and seqs run 1..N."""
    hp = HubProcess(pg_url, client_env).start()
    with SyncAgent("sink", hub=hp.url, save_token=False) as sink:
        token = sink.join()  # sink reads every message below (each is to sink or to everyone)
    senders = Senders(hp.url)
    senders.start()
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
        with SyncAgent("sink", hub=hp.url, token=token) as reader:
            messages = read_feed(reader)
    finally:
        stop(hp)
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    for name, acked in senders.acked.items():
        for seq, i in acked:
            assert (messages[seq - 1]["from"], messages[seq - 1]["body"]) == (name, {"from": name, "i": i})
        mine = [m["body"]["i"] for m in messages if m["from"] == name]
        assert mine == list(range(len(mine))) and len(acked) <= len(mine) <= len(acked) + 1


def test_snapshots_and_replay_on_postgres(pg_url: str, client_env: dict[str, str]) -> None:
    """With --snapshot-every 20 the hub keeps the newest snapshots in PostgreSQL; a restarted hub serves the
    same feed and state, and restoring from the snapshot equals folding the whole log."""
    hp = HubProcess(pg_url, client_env, "--snapshot-every", "20").start()
    try:
        with SyncAgent("a", hub=hp.url, save_token=False) as a:
            token = a.join()  # a reads what it sent, after the restart too
            for i in range(75):
                a.send("b", {"i": i}, allow_unknown=True)
            a.state.set("turn", 7)
            a.claim("edit", ["src/"], ttl=600)
            before = read_feed(a), a.state.get("turn"), a.claims()
    finally:
        stop(hp)
    kept = query(pg_url, "SELECT seq, length(data) FROM snapshots ORDER BY seq")
    assert len(kept) == 2 and all(int(size) > 0 for _seq, size in kept)  # type: ignore[call-overload]
    rows, newest = rows_of(pg_url), snapshot_of(pg_url)
    assert newest is not None and 0 < newest[0] <= len(rows)
    assert restored(pg_url) == folded(rows)

    hp.start()
    try:
        with SyncAgent("a", hub=hp.url, save_token=False, token=token) as a:
            after = read_feed(a), a.state.get("turn"), a.claims()
    finally:
        stop(hp)
    assert after == before
