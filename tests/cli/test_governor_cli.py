"""The wake governor through a real hub: `synapse wait` hands over a burst in one wake, `--settle` and
`send --stagger` defer wakes to the hub's timer (driven here by a manual clock), a reply answers its sender,
and `--loop-limit` refuses the send that continues a wake loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk import SyncAgent
from hub.protocol.errors import Code, HubError
from tests.cli.test_wait import Waiters, finish, poll
from tests.conftest import Cli, ManualClock, ThreadHub, hub_config


@pytest.fixture
def agents(
    hub: ThreadHub, client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, SyncAgent]]:
    """alice, bob, carol and dave, joined (their tokens in the test's own folder)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    joined = {name: SyncAgent(name, hub=hub.url, retries=0) for name in ("alice", "bob", "carol", "dave")}
    try:
        for agent in joined.values():
            agent.join()
        yield joined
    finally:
        for agent in joined.values():
            agent.close()


def test_wait_hands_over_a_burst_in_one_wake(
    waiters: Waiters, agents: dict[str, SyncAgent], tmp_path: Path
) -> None:
    """Ten messages sent before the wait: one `synapse wait` prints all ten (one line each, oldest first) and
    exits; with --advance the cursor file then holds the last one's seq, so the next wait hands over only what
    came after (without --advance the file is relay's to move, and stays)."""
    alice = agents["alice"]
    seqs = [alice.send("bob", f"m{i}") for i in range(10)]
    cursor = tmp_path / "bob.cursor"
    code, out, err = finish(
        waiters.start(
            "--name", "bob-rx", "--for", "bob", "--cursor", str(cursor), "--advance", "--timeout", "60"
        )
    )
    assert code == 0, err
    lines = out.splitlines()
    assert [int(line.split()[0][1:]) for line in lines] == seqs
    assert lines[-1].endswith(": m9")
    assert int(cursor.read_text()) == seqs[-1]
    later = alice.send("bob", "later")
    code, out, err = finish(
        waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--cursor", str(cursor), "--advance")
    )
    assert code == 0, err
    [line] = out.splitlines()
    doc = json.loads(line)
    assert [m["seq"] for m in doc["messages"]] == [later] and doc["message"] == doc["messages"][0]
    assert int(cursor.read_text()) == later
    code, out, err = finish(
        waiters.start("--name", "bob-rx", "--for", "bob", "--cursor", str(cursor), "--timeout", "0.5")
    )
    assert code == 3 and out == "", err  # nothing after the cursor: it times out
    alice.send("bob", "last")
    code, out, err = finish(
        waiters.start("--name", "bob-rx", "--for", "bob", "--cursor", str(cursor), "--timeout", "60")
    )
    assert code == 0 and out.rstrip().endswith(": last"), err
    assert int(cursor.read_text()) == later  # read only without --advance


def test_json_wake_carries_message_and_messages(waiters: Waiters, agents: dict[str, SyncAgent]) -> None:
    """--json prints one object: `message` (the first, as before) and `messages` (all of them)."""
    alice = agents["alice"]
    seqs = [alice.send("bob", {"n": i}) for i in range(3)]
    code, out, err = finish(waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--after", "0"))
    assert code == 0, err
    [line] = out.splitlines()
    doc = json.loads(line)
    assert doc["woken_by"] == "message" and doc["message"]["seq"] == seqs[0]
    assert [m["body"] for m in doc["messages"]] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_sdk_wait_returns_every_message(agents: dict[str, SyncAgent]) -> None:
    """SyncAgent.wait returns the whole burst; a wait that timed out is replaced by the next one."""
    alice, bob = agents["alice"], agents["bob"]
    seqs = [alice.send("bob", i) for i in range(5)]
    assert [m.seq for m in bob.wait(after=0, timeout=30)] == seqs
    with pytest.raises(HubError) as info:
        bob.wait(timeout=0.05)
    assert info.value.code == Code.TIMED_OUT
    seq = alice.send("bob", "again")
    assert [m.seq for m in bob.wait(after=seqs[-1], timeout=30)] == [seq]


def test_a_reply_without_target_goes_to_the_sender_only(cli: Cli, agents: dict[str, SyncAgent]) -> None:
    """`send --reply-to SEQ` with no --target answers the broadcast's sender; without either it is a usage error."""
    seq = agents["alice"].send("*", "who is free?")
    r = cli("--json", "send", "--name", "bob", "--reply-to", str(seq), "me")
    assert r.exit_code == 0, r.output
    [m] = [m for m in agents["alice"].list_messages(after=seq)]
    assert (m["from"], m["to"], m["reply_to"]) == ("bob", ["alice"], seq)
    r = cli("send", "--name", "bob", "nobody")
    assert r.exit_code == 2 and "--target" in r.output


# -- deferred wakes on the hub's timer, driven by a manual clock ----------------------------------------


def tick(th: ThreadHub, clock: ManualClock) -> None:
    """The hub's timer fires now (as it would once the real delay passed): deferred wakes that are due wake."""
    assert th.hub is not None
    th.loop.call_soon_threadsafe(th.hub._tick, clock.now)


@pytest.fixture
def timed(
    timed_hub: ThreadHub, client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Waiters, dict[str, SyncAgent]]]:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    w = Waiters(timed_hub.url, client_env)
    joined = {
        name: SyncAgent(name, hub=timed_hub.url, retries=0) for name in ("alice", "bob", "carol", "dave")
    }
    try:
        for agent in joined.values():
            agent.join()
        yield w, joined
    finally:
        for agent in joined.values():
            agent.close()
        w.close()


def test_settle_collects_a_burst_into_one_wake(
    timed_hub: ThreadHub, clock: ManualClock, timed: tuple[Waiters, dict[str, SyncAgent]]
) -> None:
    """`wait --settle 30`: the first message does not wake it; five more arrive; when the hub's clock reaches
    30 s after the first, one wake hands over all six."""
    waiters, agents = timed
    proc = waiters.start("--name", "bob-rx", "--for", "bob", "--settle", "30", "--timeout", "120")
    waiters.armed("bob-rx", "bob")
    seqs = [agents["alice"].send("bob", f"m{i}") for i in range(6)]
    clock.advance(29)
    tick(timed_hub, clock)
    waiters.armed("bob-rx", "bob")  # asked after the tick ran (same loop, queued first): still armed
    clock.advance(1)
    tick(timed_hub, clock)
    code, out, err = finish(proc)
    assert code == 0, err
    assert [int(line.split()[0][1:]) for line in out.splitlines()] == seqs
    metrics = _metrics(timed_hub)
    for line in (
        "synapse_wakes_total 1.0",
        "synapse_wake_messages_sum 6.0",
        "synapse_wakes_deferred_total 1.0",
    ):
        assert line in metrics.splitlines(), line


def test_stagger_spreads_a_broadcasts_wakes(
    timed_hub: ThreadHub, clock: ManualClock, timed: tuple[Waiters, dict[str, SyncAgent]]
) -> None:
    """`send -t '*' --stagger 30` to three waiters: bob (first by name) wakes at once, carol 10 s and dave 20 s
    later by the hub's clock."""
    waiters, agents = timed
    procs = {
        n: waiters.start("--name", f"{n}-rx", "--for", n, "--timeout", "120")
        for n in ("bob", "carol", "dave")
    }
    for n in procs:
        waiters.armed(f"{n}-rx", n)
    seq = agents["alice"].replies.send("*", "standup", stagger=30.0)["seq"]
    code, out, err = finish(procs["bob"])
    assert code == 0 and out.startswith(f"#{seq} "), err
    assert procs["carol"].poll() is None and procs["dave"].poll() is None
    clock.advance(10)
    tick(timed_hub, clock)
    code, out, err = finish(procs["carol"])
    assert code == 0 and out.startswith(f"#{seq} "), err
    waiters.armed("dave-rx", "dave")
    clock.advance(10)
    tick(timed_hub, clock)
    code, out, err = finish(procs["dave"])
    assert code == 0 and out.startswith(f"#{seq} "), err


def test_send_stagger_out_of_range_is_a_usage_error(cli: Cli, agents: dict[str, SyncAgent]) -> None:
    """--stagger and --settle outside 0..60 are usage errors (exit 2) naming the flag."""
    r = cli("send", "--name", "alice", "-t", "*", "--stagger", "61", "x")
    assert r.exit_code == 2 and "--stagger" in r.output
    r = cli("wait", "--name", "w", "--for", "alice", "--settle", "-1")
    assert r.exit_code == 2 and "--settle" in r.output


# -- the loop limit ----------------------------------------------------------------------------------------


@pytest.fixture
def limited_hub(db_path: Path) -> Iterator[ThreadHub]:
    th = ThreadHub(hub_config(db_path, loop_limit=3))
    try:
        yield th
    finally:
        th.stop()


def test_loop_limit_refuses_the_send_that_continues_a_loop(
    limited_hub: ThreadHub, client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hub --loop-limit 3`: alice and bob wake each other back and forth; the send past 3 exchanges is
    refused with `rate_limited` naming both (exit 1 from the CLI), and nothing was sent."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    cli = Cli(limited_hub.url, client_env)
    with (
        SyncAgent("alice", hub=limited_hub.url, retries=0) as alice,
        SyncAgent("bob", hub=limited_hub.url, retries=0) as bob,
    ):
        alice.join()
        bob.join()
        turn = {"alice": alice, "bob": bob}
        for i in range(4):  # alice → bob, then three exchanges back and forth
            sender, partner = ("alice", "bob") if i % 2 == 0 else ("bob", "alice")
            turn[partner].arm(f"{partner}-rx", partner)
            turn[sender].send(partner, f"turn {i}")
            assert [m.body for m in [turn[partner].woken(30).message]] == [f"turn {i}"]
        bob.arm("bob-rx", "bob")
        head = alice.list_messages(after=0, limit=100)
        r = cli("send", "--retries", "0", "--name", "alice", "-t", "bob", "turn 4")
        assert r.exit_code == 1, r.output
        assert r.stderr.startswith("rate_limited: ") and "alice and bob" in r.stderr and "loop" in r.stderr
        assert alice.list_messages(after=0, limit=100) == head
        with pytest.raises(HubError) as info:
            alice.send("bob", "turn 4")
        assert info.value.code == Code.RATE_LIMITED and info.value.detail["loop"] == ["alice", "bob"]
        poll(
            lambda: "synapse_wake_loops_broken_total 2.0" in _metrics(limited_hub),
            what="broken loops counted",
        )


def test_loop_limit_is_a_hub_flag(cli: Cli) -> None:
    """`synapse hub --help` explains --loop-limit."""
    r = cli("hub", "--help")
    assert "--loop-limit" in r.output and "loop" in r.output


def _metrics(th: ThreadHub) -> str:
    assert th.hub is not None
    return th.hub.metrics.render().decode()
