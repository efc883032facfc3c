"""`synapse relay`: every message for NAME lands in the NDJSON file exactly once, in order, across crashes."""

from __future__ import annotations

import json
import random
import subprocess
import threading
from pathlib import Path
from typing import Any

from agent_sdk import HubError, SyncAgent
from tests.conftest import seconds, synapse_cmd


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _feed_for(cli, name: str, reader: str = "alice") -> list[dict[str, Any]]:
    """Every message for `name`, read page by page from the feed (as `reader`: alice sent them all)."""
    out: list[dict[str, Any]] = []
    while True:
        after = str(out[-1]["seq"] if out else 0)
        r = cli(
            "--json", "message", "list", "--for", name, "--name", reader, "--after", after, "--limit", "1000"
        )
        page = [json.loads(line) for line in r.stdout.splitlines()]
        out.extend(page)
        if len(page) < 1000:
            return out


def _send(cli, target: str, body: str) -> int:
    r = cli("send", "--allow-unknown", "--name", "alice", "--target", target, body)
    assert r.exit_code == 0, r.output
    return int(r.stdout.split()[0])


def _relay(cli, out: Path, cursor: Path, name: str = "bob") -> int:
    r = cli("relay", str(out), "--for", name, "--cursor", str(cursor))
    assert r.exit_code == 0, r.output
    return int(r.stdout.split()[0])


def test_relay_appends_and_advances_cursor(cli, tmp_path: Path) -> None:
    """Relay writes NDJSON lines for NAME only (direct and broadcast) and leaves the cursor at the last seq."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    cli("join", "bob")
    _send(cli, "bob", "one")
    _send(cli, "carol", "not for bob")
    _send(cli, "default/*", "everyone")
    _send(cli, "bob,carol", "both")
    assert _relay(cli, out, cursor) == 3
    lines = _lines(out)
    assert [(m["seq"], m["body"]) for m in lines] == [(1, "one"), (3, "everyone"), (4, "both")]
    assert lines == _feed_for(cli, "bob")
    assert cursor.read_text().strip() == "4"
    assert out.read_bytes().endswith(b"\n")


def test_relay_rerun_appends_only_new(cli, tmp_path: Path) -> None:
    """A second relay with nothing new appends 0 and keeps the file; new messages are appended after."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    _send(cli, "bob", "one")
    _send(cli, "bob", "two")
    assert _relay(cli, out, cursor) == 2
    assert _relay(cli, out, cursor) == 0
    assert [m["body"] for m in _lines(out)] == ["one", "two"]
    _send(cli, "bob", "three")
    assert _relay(cli, out, cursor) == 1
    assert [m["seq"] for m in _lines(out)] == [1, 2, 3]
    assert cursor.read_text().strip() == "3"


def test_relay_json_output(cli, tmp_path: Path) -> None:
    """`--json relay` prints {appended, cursor}."""
    _send(cli, "bob", "one")
    r = cli("--json", "relay", str(tmp_path / "f"), "--for", "bob", "--cursor", str(tmp_path / "c"))
    assert json.loads(r.stdout) == {"appended": 1, "cursor": 1}


def test_relay_pages_through_a_long_feed(cli, hub, tmp_path: Path) -> None:
    """More messages than one page (1000) are all relayed, once each."""
    with SyncAgent("alice", hub=hub.url) as alice:
        for i in range(1205):
            alice.send("bob", i, allow_unknown=True)
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    assert _relay(cli, out, cursor) == 1205
    assert [m["body"] for m in _lines(out)] == list(range(1205))


def test_crash_after_append_before_cursor(cli, tmp_path: Path) -> None:
    """Lines appended but the cursor not advanced (crash between the two): a rerun appends no duplicate."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    _send(cli, "bob", "one")
    assert _relay(cli, out, cursor) == 1
    _send(cli, "bob", "two")
    _send(cli, "bob", "three")
    # What the crashed relay had written: the next page, fsynced, but the cursor still says 1.
    with open(out, "ab") as f:
        for m in _feed_for(cli, "bob")[1:]:
            f.write(json.dumps(m, separators=(",", ":")).encode() + b"\n")
    assert cursor.read_text().strip() == "1"
    assert _relay(cli, out, cursor) == 0
    assert [m["seq"] for m in _lines(out)] == [1, 2, 3]
    assert cursor.read_text().strip() == "3"
    _send(cli, "bob", "four")
    assert _relay(cli, out, cursor) == 1
    assert [m["body"] for m in _lines(out)] == ["one", "two", "three", "four"]


def test_crash_before_first_cursor_write(cli, tmp_path: Path) -> None:
    """A file written before any cursor file existed is reconciled, not duplicated."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    _send(cli, "bob", "one")
    _send(cli, "bob", "two")
    assert _relay(cli, out, cursor) == 2
    cursor.unlink()
    assert _relay(cli, out, cursor) == 0
    assert [m["seq"] for m in _lines(out)] == [1, 2]
    assert cursor.read_text().strip() == "2"


def test_torn_last_line(cli, tmp_path: Path) -> None:
    """A torn last line (crash mid-write) is cut and that message written whole, once."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    _send(cli, "bob", "one")
    assert _relay(cli, out, cursor) == 1
    _send(cli, "bob", "long " + "x" * 200)
    _send(cli, "bob", "three")
    whole = _feed_for(cli, "bob")[1]
    encoded = json.dumps(whole, separators=(",", ":")).encode()
    with open(out, "ab") as f:
        f.write(encoded[: len(encoded) // 2])  # no newline: the write was torn
    assert _relay(cli, out, cursor) == 2
    lines = _lines(out)
    assert [m["seq"] for m in lines] == [1, 2, 3]
    assert lines == _feed_for(cli, "bob")
    assert cursor.read_text().strip() == "3"


def test_torn_only_line(cli, tmp_path: Path) -> None:
    """A file holding only a torn first line is emptied and relayed from the start."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    _send(cli, "bob", "one")
    out.write_bytes(b'{"room":"default","seq":1,"fr')
    assert _relay(cli, out, cursor) == 1
    assert [m["body"] for m in _lines(out)] == ["one"]


def test_torn_line_with_cursor_behind(cli, tmp_path: Path) -> None:
    """Whole lines past the cursor and then a torn one: cut the torn one, keep the whole ones, no duplicate."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    for body in ("one", "two", "three"):
        _send(cli, "bob", body)
    feed = _feed_for(cli, "bob")
    with open(out, "wb") as f:
        f.write(json.dumps(feed[0], separators=(",", ":")).encode() + b"\n")
        f.write(json.dumps(feed[1], separators=(",", ":")).encode() + b"\n")
        f.write(json.dumps(feed[2], separators=(",", ":")).encode()[:10])
    cursor.write_text("1\n")
    assert _relay(cli, out, cursor) == 1
    assert _lines(out) == feed


def test_cursor_file_with_garbage_is_refused(cli, tmp_path: Path) -> None:
    """A cursor file that does not hold a seq is an error (exit 1), and the output file is not touched."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    cursor.write_text("not a number")
    r = cli("relay", str(out), "--for", "bob", "--cursor", str(cursor))
    assert r.exit_code == 1
    assert "does not hold a seq" in r.stderr
    assert not out.exists()


def test_relay_survives_sigkill_at_random_moments(cli, hub, client_env, tmp_path: Path) -> None:
    """`synapse relay` SIGKILLed at random moments while messages arrive; a last clean run has each once, in order."""
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    env = {**client_env, "SYNAPSE_HUB": hub.url}
    assert (
        cli("join", "bob").exit_code == 0
    )  # bob's token saved first: a relay killed between the hub's answer
    # to its first join and saving the token would otherwise leave bob's name to a token nobody kept
    rng = random.Random(0x5EED)
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_sending() -> None:
        targets = ["bob", "carol", "default/*", "bob,carol", "all"]
        try:
            with SyncAgent("alice", hub=hub.url, save_token=False) as alice:
                i = 0
                while not stop.is_set() and i < 6_000:
                    alice.send(
                        targets[i % len(targets)], {"i": i, "pad": "p" * (i % 300)}, allow_unknown=True
                    )
                    i += 1
        except HubError as exc:  # pragma: no cover - reported below
            failures.append(exc)

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        for _ in range(15):
            proc = subprocess.Popen(
                synapse_cmd("relay", str(out), "--for", "bob", "--cursor", str(cursor)),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                proc.wait(rng.uniform(0.05, 0.6))  # a random moment to crash at, not a synchronisation
            except subprocess.TimeoutExpired:
                proc.kill()
            proc.wait(seconds(10_000))
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.stderr.close()
            assert proc.returncode in (0, -9), err
    finally:
        stop.set()
        sender.join(seconds(20_000))
    assert not failures
    assert _relay(cli, out, cursor) >= 0
    lines = _lines(out)
    expected = _feed_for(cli, "bob", reader="bob")  # the relay joined bob
    assert len(expected) > 0
    assert [m["seq"] for m in lines] == [m["seq"] for m in expected]
    assert lines == expected
    assert cursor.read_text().strip() == str(expected[-1]["seq"])
