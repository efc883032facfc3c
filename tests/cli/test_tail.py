"""`synapse tail`: the live event feed as lines or NDJSON, filtered, and unbroken across hub restarts."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.sync import SyncAgent
from cli.tail import kind_matches
from tests.conftest import ROOT, Cli, HubProcess, ThreadHub, hub_config, seconds, synapse_cmd

ADMIN = "tail-admin"


def frames(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_tail_prints_one_readable_line_per_event(cli: Cli) -> None:
    """From position 0: time, position, room, agent, kind and a summary, one line per event, no colour off a TTY."""
    assert (
        cli("send", "--allow-unknown", "--name", "alice", "--target", "bob", "hello \x1b[31mbob").exit_code
        == 0
    )
    assert cli("claim", "api", "--paths", "src/api/", "--name", "alice").exit_code == 0
    result = cli("tail", "--since", "0", "--count", "4", "--name", "alice")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and "\x1b" not in result.stdout  # no styling, and the body's escape is defused
    assert "HubStarted" in lines[0]
    sent = next(line for line in lines if "MessageSent" in line)
    assert " default alice MessageSent #1 → bob: hello \\x1b[31mbob" in sent
    granted = lines[-1]
    assert "ClaimGranted" in granted and "api src/api" in granted


def test_tail_json_is_ndjson_event_frames_with_kind_and_agent_filters(cli: Cli) -> None:
    """--json prints EventFrames; --kind (type or family, repeatable) and --agent filter on the client."""
    cli("send", "--allow-unknown", "--name", "alice", "--target", "bob", "one")
    cli("send", "--allow-unknown", "--name", "bob", "--target", "alice", "two")
    cli("state", "set", "turn", "2", "--name", "bob")
    messages = frames(
        cli("tail", "--since", "0", "--count", "2", "--kind", "message", "--json", "--name", "alice").stdout
    )
    assert [f["event"]["body"] for f in messages] == ["one", "two"]
    assert all(set(f) == {"type", "position", "room", "event"} for f in messages)
    assert messages[0]["position"] < messages[1]["position"]
    by_bob = frames(
        cli(
            "tail",
            "--name",
            "alice",
            "--since",
            "0",
            "--count",
            "3",
            "--agent",
            "bob",
            "--kind",
            "MessageSent",
            "--kind",
            "state",
            "--json",
        ).stdout
    )
    assert [f["event"]["type"] for f in by_bob] == ["MessageSent", "MessageSent", "StateWritten"]
    assert [f["event"].get("body") for f in by_bob[:2]] == ["one", "two"]  # to bob, then from bob
    by_alice = frames(cli("tail", "--since", "0", "--count", "1", "--agent", "alice", "--json").stdout)
    assert by_alice[0]["event"]["type"] == "AgentJoined" and by_alice[0]["event"]["agent"] == "alice"
    after = messages[0]["position"]
    later = frames(
        cli(
            "tail", "--name", "bob", "--since", str(after), "--count", "1", "--kind", "message", "--json"
        ).stdout
    )
    assert later[0]["event"]["body"] == "two"


@pytest.mark.parametrize(
    ("kind", "kinds", "match"),
    [
        ("MessageSent", ["MessageSent"], True),
        ("MessageSent", ["message.sent"], True),
        ("MessageSent", ["message"], True),
        ("MessageClaimed", ["message"], True),
        ("ClaimGranted", ["message"], False),
        ("ClaimGranted", ["claim", "task"], True),
        ("TaskUpdated", ["taskupdated"], True),
        ("StateWritten", ["state_written"], True),
        ("StateWritten", ["statedeleted"], False),
    ],
)
def test_kind_matches_types_and_families(kind: str, kinds: list[str], match: bool) -> None:
    """--kind takes an event type in any spelling, or the family it starts with."""
    assert kind_matches(kind, kinds) is match


def test_tail_stays_in_its_room_and_every_room_needs_the_admin_token(
    db_path: Path, client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A room's tail shows only that room (and the hub's own events); --all-rooms needs the admin token."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    th = ThreadHub(hub_config(db_path, admin_token=ADMIN))
    try:
        cli = Cli(th.url, client_env)
        for room, body in (("ops", "in ops"), ("dev", "in dev")):
            assert (
                cli(
                    "--admin-token",
                    ADMIN,
                    "--room",
                    room,
                    "send",
                    "--allow-unknown",
                    "--name",
                    "a",
                    "--target",
                    "a",
                    body,
                ).exit_code
                == 0
            )
        ops = frames(
            cli("--room", "ops", "tail", "--name", "a", "--since", "0", "--count", "3", "--json").stdout
        )
        assert {f["room"] for f in ops} <= {"ops", ""} and ops[-1]["event"]["body"] == "in ops"
        refused = cli("tail", "--all-rooms", "--since", "0", "--count", "1")
        assert refused.exit_code == 5 and refused.stderr.startswith("unauthorized:")
        both = cli(
            "tail",
            "--all-rooms",
            "--since",
            "0",
            "--count",
            "2",
            "--kind",
            "message",
            "--json",
            "--admin-token",
            ADMIN,
        )
        assert [f["event"]["body"] for f in frames(both.stdout)] == ["in ops", "in dev"]
        usage = cli("--room", "ops", "tail", "--all-rooms", "--count", "1")
        assert usage.exit_code == 2
    finally:
        th.stop()


def test_tail_exits_4_when_the_hub_is_unreachable(client_env: dict[str, str]) -> None:
    """No hub at the address at the start: exit 4, as every client command."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = Cli(f"ws://127.0.0.1:{port}", client_env)("tail", "--count", "1")
    assert result.exit_code == 4 and result.stderr.startswith("unreachable:")


def close_pipes(proc: subprocess.Popen[str] | None) -> str:
    """Close a finished process's pipes (what is left on stderr is returned)."""
    if proc is None:
        return ""
    err = proc.stderr.read() if proc.stderr is not None else ""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lines:
    """A subprocess's stdout, one line at a time, with a bounded wait."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=lambda: [self.queue.put(line) for line in stream], daemon=True)
        self.thread.start()

    def until(self, predicate: Any, timeout_ms: float = 10_000) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds(timeout_ms)
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"tail printed only {got}"
            frame = json.loads(self.queue.get(timeout=left))
            got.append(frame)
            if predicate(frame):
                return got


def test_tail_survives_a_hub_restart_without_gap_or_duplicate(
    db_path: Path, client_env: dict[str, str]
) -> None:
    """SIGKILL the hub mid-tail and start it again on the same port: the tail resumes after the last event it
    printed, so every position appears exactly once, in order, and nothing acknowledged is missing."""
    port = free_port()
    hub = HubProcess(db_path, client_env).start(port)
    env = dict(client_env, SYNAPSE_HUB=hub.url)
    tail = subprocess.Popen(
        synapse_cmd("tail", "--since", "0", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines = Lines(tail)
    try:
        seen = lines.until(lambda f: f["event"]["type"] == "HubStarted")
        with SyncAgent("alice", hub=hub.url) as alice:
            for i in range(3):
                alice.send(
                    "*", f"m{i}", allow_unknown=True
                )  # broadcasts: an anonymous tail shows every position
        seen += lines.until(lambda f: f["event"].get("body") == "m2")
        hub.kill()
        close_pipes(hub.proc)
        hub.start(port)
        with SyncAgent("alice", hub=hub.url) as alice:
            for i in range(3, 6):
                alice.send(
                    "*", f"m{i}", allow_unknown=True
                )  # broadcasts: an anonymous tail shows every position
        seen += lines.until(lambda f: f["event"].get("body") == "m5", 20_000)
    finally:
        tail.terminate()
        tail.wait(10)
        lines.thread.join(10)  # it reads to the end before the pipe is closed
        hub.kill()
        close_pipes(hub.proc)
        stderr = close_pipes(tail)
    positions = [f["position"] for f in seen]
    assert positions == list(range(1, len(positions) + 1))  # every event of the room, once, in order
    bodies = [f["event"]["body"] for f in seen if f["event"]["type"] == "MessageSent"]
    assert bodies == [f"m{i}" for i in range(6)]
    assert sum(1 for f in seen if f["event"]["type"] == "HubStarted") == 2
    assert "reconnecting" in stderr
