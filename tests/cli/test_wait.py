"""`synapse wait` as a real process: woken by what is addressed to NAME, exit 3 on timeout, 4 without a hub,
one live waiter per name (a new one takes over, even from a killed or frozen one)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent_sdk import SyncAgent
from tests.conftest import HubProcess, seconds, synapse_cmd

POLL = 0.01  # the pause between two looks at the hub while polling it


def poll(check: Callable[[], Any], within_ms: float = 15_000, what: str = "condition") -> Any:
    """Ask the hub (through `check`) until it answers truthy, or fail after `within_ms` (scaled)."""
    deadline = time.monotonic() + seconds(within_ms)
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL)


class Waiters:
    """Starts `synapse wait` processes against one hub and reaps them at the end."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = {**env, "SYNAPSE_HUB": url}
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            synapse_cmd("wait", *args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def armed(self, waiter: str, for_: str) -> None:
        """Until the hub shows `waiter` armed for `for_` (in `agents`)."""
        with SyncAgent(hub=self.url) as reader:

            def look() -> bool:
                return any(a["name"] == for_ and a.get("waiter") == waiter for a in reader.agents())

            poll(look, what=f"waiter {waiter} armed for {for_}")

    def disarmed(self, for_: str) -> None:
        with SyncAgent(hub=self.url) as reader:
            poll(
                lambda: all(a.get("waiter") is None for a in reader.agents() if a["name"] == for_),
                what=f"no waiter for {for_}",
            )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=seconds(10_000))


def finish(proc: subprocess.Popen[str], within_ms: float = 20_000) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=seconds(within_ms))
    return proc.returncode, out, err


@pytest.fixture
def alice(hub, client_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncAgent]:
    """A sender; bob (the agent waited for) has joined so presence can show his waiter."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    with SyncAgent("bob", hub=hub.url) as bob:
        bob.join()
    with SyncAgent("alice", hub=hub.url) as agent:
        agent.join()
        yield agent


def test_woken_by_message_after_armed(waiters: Waiters, alice: SyncAgent) -> None:
    """A message for NAME sent after the waiter armed wakes it: exit 0, the message printed."""
    proc = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "60")
    waiters.armed("bob-rx", "bob")
    alice.send("carol", "not for bob", allow_unknown=True)
    seq = alice.send("bob", "wake up", allow_unknown=True)
    code, out, err = finish(proc)
    assert code == 0, err
    assert out.startswith(f"#{seq} ") and "alice → bob" in out and out.rstrip().endswith(": wake up")


def test_json_wake_is_one_object(waiters: Waiters, alice: SyncAgent) -> None:
    """With --json the waiter prints exactly one JSON object: woken_by and the message."""
    proc = waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--timeout", "60")
    waiters.armed("bob-rx", "bob")
    seq = alice.send("bob", {"task": 7}, allow_unknown=True)
    code, out, err = finish(proc)
    assert code == 0, err
    [line] = out.splitlines()
    doc = json.loads(line)
    assert doc["woken_by"] == "message"
    assert doc["message"]["seq"] == seq and doc["message"]["body"] == {"task": 7}
    assert doc["message"]["from"] == "alice" and doc["message"]["to"] == ["bob"]


def test_message_between_start_and_arm_wakes(waiters: Waiters, alice: SyncAgent) -> None:
    """A message sent after the process started, before it could arm, still wakes it."""
    proc = waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--timeout", "60")
    seq = alice.send("bob", "early", allow_unknown=True)  # the process is still starting Python
    code, out, err = finish(proc)
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == seq


def test_after_skips_older_messages(waiters: Waiters, alice: SyncAgent) -> None:
    """--after SEQ: only a message after SEQ wakes it, even one sent before the waiter armed."""
    first = alice.send("bob", "old", allow_unknown=True)
    second = alice.send("bob", "new", allow_unknown=True)
    proc = waiters.start(
        "--json", "--name", "bob-rx", "--for", "bob", "--after", str(first), "--timeout", "60"
    )
    code, out, err = finish(proc)
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == second


def test_directed_only_ignores_broadcasts(waiters: Waiters, alice: SyncAgent) -> None:
    """--directed-only is not woken by room/* or all, but by a message naming NAME; a plain waiter is woken by room/*."""
    directed = waiters.start(
        "--json",
        "--name",
        "bob-direct",
        "--for",
        "bob",
        "--directed-only",
        "--wake-jitter",
        "0",
        "--timeout",
        "60",
    )
    waiters.armed("bob-direct", "bob")
    plain = waiters.start(
        "--json", "--name", "bob-any", "--for", "bob", "--wake-jitter", "0", "--timeout", "60"
    )
    waiters.armed("bob-any", "bob")  # presence shows the newest waiter for bob
    group = alice.send("default/*", "to the room", allow_unknown=True)
    alice.send("all", "to everyone", allow_unknown=True)
    named = alice.send("bob", "to bob", allow_unknown=True)
    code, out, err = finish(plain)
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == group
    code, out, err = finish(directed)
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == named


def test_directed_only_woken_by_priority_broadcast(waiters: Waiters, alice: SyncAgent) -> None:
    """A --priority broadcast wakes even a --directed-only waiter."""
    proc = waiters.start(
        "--json",
        "--name",
        "bob-rx",
        "--for",
        "bob",
        "--directed-only",
        "--wake-jitter",
        "0",
        "--timeout",
        "60",
    )
    waiters.armed("bob-rx", "bob")
    alice.send("all", "not urgent", allow_unknown=True)
    urgent = alice.send("default/*", "prod is green", priority=True, allow_unknown=True)
    code, out, err = finish(proc)
    assert code == 0, err
    doc = json.loads(out)["message"]
    assert doc["seq"] == urgent and doc["priority"] is True


def test_timeout_exits_3(waiters: Waiters, alice: SyncAgent) -> None:
    """Nothing for NAME within --timeout: exit 3, `timed_out` on stderr (JSON with --json)."""
    proc = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "0.3")
    code, out, err = finish(proc)
    assert (code, out) == (3, "")
    assert err.startswith("timed_out: ")
    proc = waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--timeout", "0.3")
    code, out, err = finish(proc)
    assert code == 3
    assert json.loads(err)["error"]["code"] == "timed_out"


def test_hub_unreachable_exits_4(client_env) -> None:
    """A waiter with no hub to reach exits 4."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = Waiters(f"ws://127.0.0.1:{port}", client_env)
    try:
        code, out, err = finish(w.start("--name", "bob-rx", "--for", "bob", "--timeout", "30"))
    finally:
        w.close()
    assert code == 4 and err.startswith("unreachable: ")


def test_hub_killed_exits_4(hub_process: HubProcess, client_env) -> None:
    """SIGKILL the hub under an armed waiter: it tries to arm again (--retries rounds of its addresses, with
    a backoff, each said on stderr), then exits 4."""
    w = Waiters(hub_process.url, client_env)  # the waiter joins bob itself (and keeps its token)
    try:
        proc = w.start("--name", "bob-rx", "--for", "bob", "--timeout", "60")
        w.armed("bob-rx", "bob")
        hub_process.kill()
        code, out, err = finish(proc)
    finally:
        w.close()
        hub_process.kill()
        for pipe in (hub_process.proc.stdout, hub_process.proc.stderr):  # the fixture leaves them open
            pipe.close()
    assert code == 4, err
    *tries, last = err.splitlines()
    assert out == "" and last.startswith("disconnected: ")
    assert len(tries) == 5 and all(t.startswith("unreachable: retrying in ") for t in tries), err


def test_usage_errors(waiters: Waiters) -> None:
    """Neither --for nor --condition, or no --name: exit 2."""
    code, _, err = finish(waiters.start("--name", "bob-rx", "--timeout", "1"))
    assert code == 2 and "--for" in err
    code, _, err = finish(waiters.start("--for", "bob", "--timeout", "1"))
    assert code == 2 and "--name" in err


def test_rearm_after_sigkill(waiters: Waiters, alice: SyncAgent) -> None:
    """Start W, SIGKILL it, start W again: the new one arms and is woken normally."""
    first = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "60")
    waiters.armed("bob-rx", "bob")
    first.send_signal(signal.SIGKILL)
    first.wait(seconds(10_000))
    waiters.disarmed("bob")
    second = waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--timeout", "60")
    waiters.armed("bob-rx", "bob")
    seq = alice.send("bob", "again", allow_unknown=True)
    code, out, err = finish(second)
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == seq


def test_takeover_of_frozen_waiter(waiters: Waiters, alice: SyncAgent) -> None:
    """A frozen waiter (SIGSTOP: its socket stays open) is taken over by a new W, which is then woken."""
    ghost = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "60")
    waiters.armed("bob-rx", "bob")
    ghost.send_signal(signal.SIGSTOP)
    try:
        fresh = waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--timeout", "60")
        seq = alice.send("bob", "for the live one", allow_unknown=True)
        code, out, err = finish(fresh)
        assert code == 0, err
        assert json.loads(out)["message"]["seq"] == seq
    finally:
        ghost.send_signal(signal.SIGKILL)
        ghost.wait(seconds(10_000))


def test_takeover_while_first_runs(waiters: Waiters, alice: SyncAgent) -> None:
    """Start W while another W runs: the first exits non-zero saying taken_over; the second is woken next."""
    first = waiters.start("--name", "bob-rx", "--for", "bob", "--timeout", "60")
    waiters.armed("bob-rx", "bob")
    second = waiters.start("--json", "--name", "bob-rx", "--for", "bob", "--timeout", "60")
    code, out, err = finish(first)
    assert code != 0 and out == ""
    assert "taken_over" in err
    waiters.armed("bob-rx", "bob")
    seq = alice.send("bob", "next", allow_unknown=True)
    code, out, err = finish(second)
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == seq


def test_other_waiter_names_are_independent(waiters: Waiters, alice: SyncAgent) -> None:
    """Two waiters with different names for the same agent are both woken by one message."""
    one = waiters.start("--json", "--name", "rx-1", "--for", "bob", "--timeout", "60")
    waiters.armed("rx-1", "bob")
    two = waiters.start("--json", "--name", "rx-2", "--for", "bob", "--timeout", "60")
    waiters.armed("rx-2", "bob")  # presence shows the newest waiter for bob
    seq = alice.send("bob", "both", allow_unknown=True)
    for proc in (one, two):
        code, out, err = finish(proc)
        assert code == 0, err
        assert json.loads(out)["message"]["seq"] == seq


def test_cursor_file_from_relay(waiters: Waiters, alice: SyncAgent, tmp_path) -> None:
    """--cursor reads a relay cursor: a message after it wakes the waiter at once, even if sent before it started."""
    cursor = tmp_path / "bob.cursor"
    cursor.write_text(f"{alice.send('bob', 'relayed already', allow_unknown=True)}\n")
    pending = alice.send("bob", "not relayed yet", allow_unknown=True)
    proc = waiters.start(
        "--json", "--name", "bob-rx", "--for", "bob", "--cursor", str(cursor), "--timeout", "60"
    )
    code, out, err = finish(proc)
    assert code == 0, err
    assert json.loads(out)["message"]["seq"] == pending
