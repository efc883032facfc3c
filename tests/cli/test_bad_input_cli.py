"""Bad input to the CLI: one line on stderr, the documented exit code, never a traceback; nothing half done.

Invalid UTF-8 (stdin, argv, --name, the environment) is a usage error (exit 2) and nothing reaches the hub; a
relay into a missing folder and a migration from a missing log are refused (exit 1) without creating files; a
body too large for the hub exits 1 with `too_large` even when the hub closes the connection for it; a deeply
nested body from the hub is printed, not a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from agent_sdk import Agent, Code, HubError, SyncAgent
from tests.conftest import ROOT, Cli, ThreadHub, seconds

DEEP = 979  # nearly as deep as a hub process itself can read a frame


def run(
    env: dict[str, str], *argv: str | bytes, stdin: bytes = b"", extra_env: dict[bytes, bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`synapse ARGV` as a real process (argv may hold bytes that are not UTF-8)."""
    cmd = [os.fsencode(sys.executable), b"-m", b"hub", *(os.fsencode(a) for a in argv)]
    full: dict[bytes, bytes] = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    full.update(extra_env or {})
    return subprocess.run(cmd, input=stdin, capture_output=True, env=full, cwd=ROOT, timeout=seconds(60_000))


def one_line(stderr: bytes | str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def env(hub: ThreadHub, client_env: dict[str, str]) -> dict[str, str]:
    return {**client_env, "SYNAPSE_HUB": hub.url}


def _feed(hub: ThreadHub) -> list[Any]:
    with SyncAgent("reader", hub=hub.url) as reader:
        return [m["body"] for m in reader.list_messages(after=0)]


# -- invalid UTF-8 -------------------------------------------------------------------------------------------


def test_stdin_not_utf8_is_refused_in_one_line(hub: ThreadHub, env: dict[str, str]) -> None:
    r = run(env, "send", "--allow-unknown", "--name", "alice", "--target", "x", "-", stdin=b"\xff\xfe")
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert line.startswith("bad_request: ") and "stdin is not valid UTF-8" in line and "BODY" in line
    assert r.stdout == b""
    assert _feed(hub) == []


def test_stdin_not_utf8_in_process_and_as_json(cli: Cli) -> None:
    r = cli(
        "--json", "send", "--allow-unknown", "--name", "alice", "--target", "x", "-", input=b"ok \xff\xfe"
    )  # type: ignore[arg-type]
    assert r.exit_code == 2
    error = json.loads(one_line(r.stderr))["error"]
    assert error["code"] == "bad_request" and "at byte 3" in error["message"]


@pytest.mark.parametrize(
    "argv",
    [
        [b"send", b"--name", b"alice", b"--target", b"x", b"\xff\xfe"],  # the body
        [b"send", b"--name", b"\xff", b"--target", b"x", b"hi"],  # --name after the command
        [b"--name", b"al\xe9", b"send", b"--target", b"x", b"hi"],  # --name before it (Latin-1)
        [b"send", b"--name", b"alice", b"--target", b"\xff", b"hi"],  # a target
        [b"send", b"--name", b"alice", b"--target", b"x", b"--kind", b"\xc3", b"hi"],  # a truncated sequence
        [b"state", b"set", b"--name", b"alice", b"k\xff", b"1"],  # another command's argument
        [b"--room", b"r\xff", b"message", b"list"],  # a read
    ],
)
def test_argv_not_utf8_is_refused_in_one_line(hub: ThreadHub, env: dict[str, str], argv: list[bytes]) -> None:
    r = run(env, *argv)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("bad_request: ") and "not valid UTF-8" in line, line
    assert _feed(hub) == []


def test_env_name_not_utf8_is_refused(hub: ThreadHub, env: dict[str, str]) -> None:
    r = run(env, "send", "--allow-unknown", "--target", "x", "hi", extra_env={b"SYNAPSE_NAME": b"\xffbad"})
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert "SYNAPSE_NAME" in line and "not valid UTF-8" in line
    r = run(
        env,
        "send",
        "--allow-unknown",
        "--name",
        "alice",
        "--target",
        "*",
        "hi",
        extra_env={b"SYNAPSE_NAME": b"\xffbad"},
    )
    assert r.returncode == 0, r.stderr  # the flag wins over the variable
    assert _feed(hub) == ["hi"]


def test_a_path_may_be_any_bytes(hub: ThreadHub, env: dict[str, str], tmp_path: Path) -> None:
    """File names are not text for the hub: a relay into a non-UTF-8 file name works."""
    out, cursor = os.fsencode(tmp_path) + b"/caf\xe9.ndjson", os.fsencode(tmp_path) + b"/c\xe9"
    with SyncAgent("alice", hub=hub.url) as alice:
        alice.send("*", "one", allow_unknown=True)
    r = run(env, b"relay", out, b"--for", b"bob", b"--cursor", cursor)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"1"
    assert json.loads(Path(os.fsdecode(out)).read_bytes())["body"] == "one"


# -- relay into a missing folder -------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["file", "cursor"])
def test_relay_into_a_missing_folder(cli: Cli, tmp_path: Path, missing: str) -> None:
    cli("send", "--allow-unknown", "--name", "alice", "--target", "*", "one")
    out, cursor = tmp_path / "feed.ndjson", tmp_path / "bob.cursor"
    if missing == "file":
        out = tmp_path / "nope" / "feed.ndjson"
    else:
        cursor = tmp_path / "nope" / "bob.cursor"
    r = cli("relay", str(out), "--for", "bob", "--cursor", str(cursor))
    assert r.exit_code == 1
    line = one_line(r.stderr)
    assert "there is no folder" in line and str(tmp_path / "nope") in line
    assert not (tmp_path / "nope").exists()
    assert not out.exists() and not cursor.exists()  # nothing written, so nothing to reconcile later


def test_relay_into_a_missing_folder_as_a_process(env: dict[str, str], tmp_path: Path) -> None:
    r = run(env, "relay", str(tmp_path / "nope" / "f"), "--for", "bob", "--cursor", str(tmp_path / "c"))
    assert r.returncode == 1
    assert "there is no folder" in one_line(r.stderr)


# -- too large -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("megabytes", [0.5, 2, 50])
def test_a_body_too_large_exits_with_too_large(hub: ThreadHub, env: dict[str, str], megabytes: float) -> None:
    """Over the body limit (the core refuses), over the frame limit (the hub refuses the frame), and far over
    it (the hub closes the connection, 1009): each is `too_large`, exit 1, one line."""
    body = b"x" * int(megabytes * 1024 * 1024)
    r = run(env, "send", "--allow-unknown", "--name", "alice", "--target", "*", "-", stdin=body)
    assert r.returncode == 1, r.stderr[-500:]
    line = one_line(r.stderr)
    assert line.startswith("too_large: "), line
    assert _feed(hub) == []


def test_sync_agent_gets_too_large_for_a_frame_the_hub_closes_on(hub: ThreadHub) -> None:
    with SyncAgent("alice", hub=hub.url) as alice, pytest.raises(HubError) as info:
        alice.send("*", "x" * (50 << 20), allow_unknown=True)
    assert info.value.code == Code.TOO_LARGE


async def test_async_agent_gets_too_large_and_reconnects(hub: ThreadHub) -> None:
    async with Agent("alice", hub=hub.url) as alice:
        with pytest.raises(HubError) as info:
            await alice.send("*", "x" * (50 << 20), allow_unknown=True)
        assert info.value.code == Code.TOO_LARGE
        with pytest.raises(HubError) as info:
            await alice.send("*", "x" * (2 << 20), allow_unknown=True)  # refused by the hub, connection kept
        assert info.value.code == Code.TOO_LARGE
        assert await alice.send("*", "small", allow_unknown=True) >= 1


# -- deeply nested bodies ----------------------------------------------------------------------------------------


async def _raw_send(url: str, body: str, name: str = "raw") -> dict[str, Any]:
    """Join `name` and send `body` (JSON text, as it is) to the room, as a raw WebSocket client."""
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"op": "join", "id": 1, "room": "default", "name": name}))
        token = json.loads(await ws.recv())["result"]["token"]
        head = json.dumps(
            {"op": "send", "id": 2, "room": "default", "name": name, "token": token, "to": ["*"]}
        )
        await ws.send(head[:-1] + ', "body": ' + body + "}")
        return json.loads(await asyncio.wait_for(ws.recv(), seconds(10_000)))  # type: ignore[no-any-return]


def test_a_deep_body_is_refused_by_this_hub_and_the_list_still_works(hub: ThreadHub, cli: Cli) -> None:
    """This hub keeps bodies to 64 levels; a raw client's 979-deep body is refused; the list is unharmed."""
    reply = asyncio.run(_raw_send(hub.url, "[" * DEEP + "]" * DEEP))
    assert reply["type"] == "Error" and reply["code"] in ("bad_request", "bad_frame")
    r = cli("--json", "message", "list")
    assert r.exit_code == 0 and r.stdout == ""


@pytest.fixture
def lenient_hub(hub: ThreadHub, monkeypatch: pytest.MonkeyPatch) -> ThreadHub:
    """The same real hub without the body and frame depth checks (as hubs before it, or another one)."""
    import hub.core.feed as feed
    import hub.protocol.codec as codec

    monkeypatch.setattr(feed, "check_body", lambda raw, field="body": None)
    monkeypatch.setattr(codec, "FRAME_DEPTH", 1_000_000)
    return hub


@pytest.mark.parametrize("as_json", [True, False])
def test_message_list_prints_a_979_deep_body(lenient_hub: ThreadHub, cli: Cli, as_json: bool) -> None:
    """`message list` on a body nested 979 deep (sent by a raw client): printed whole, exit 0."""
    body = "[" * DEEP + "]" * DEEP
    reply = asyncio.run(_raw_send(lenient_hub.url, body))
    assert reply["type"] == "Ok", reply
    asyncio.run(_raw_send(lenient_hub.url, '{"a":' * DEEP + "1" + "}" * DEEP, name="raw2"))
    r = cli(*(["--json"] if as_json else []), "message", "list")
    assert r.exit_code == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert body in lines[0]
    if as_json:
        assert lines[0].startswith('{"room":"default","seq":1,') and lines[0].endswith("}")
    assert '{"a":' * DEEP + "1" + "}" * DEEP in lines[1]


def test_message_list_prints_a_979_deep_body_as_a_process(
    lenient_hub: ThreadHub, env: dict[str, str]
) -> None:
    body = "[" * DEEP + "]" * DEEP
    assert asyncio.run(_raw_send(lenient_hub.url, body))["type"] == "Ok"
    r = run(env, "--json", "message", "list")
    assert r.returncode == 0, r.stderr[-2000:]
    assert body.encode() in r.stdout and b"Traceback" not in r.stderr


def test_sdk_reads_a_deep_frame_or_says_bad_frame(lenient_hub: ThreadHub) -> None:
    """The SDK never lets a RecursionError out: the frame is read, or refused as `bad_frame`."""
    assert asyncio.run(_raw_send(lenient_hub.url, "[" * DEEP + "]" * DEEP))["type"] == "Ok"
    with SyncAgent("reader", hub=lenient_hub.url) as reader:
        try:
            reader.list_messages(after=0)
        except HubError as exc:
            assert exc.code == Code.BAD_FRAME


# -- log migrate from a missing log ----------------------------------------------------------------------------


def test_migrate_from_a_missing_log_creates_nothing(tmp_path: Path, client_env: dict[str, str]) -> None:
    missing, target = tmp_path / "MISSING.db", tmp_path / "target.db"
    r = run(client_env, "log", "migrate", "--from", str(missing), "--to", str(target))
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "there is no log at" in line and str(missing) in line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("MISSING", "target"))) == []


@pytest.mark.parametrize("value", ["1e400", "-1e400", '{"a": [1e999]}'])
def test_a_number_past_a_double_is_refused_not_sent_as_null(cli: Cli, value: str) -> None:
    """`state set k 1e400` was sent as null (the JSON encoder writes infinity so): it is bad_request, one line,
    and nothing is written."""
    r = cli("state", "set", "--name", "ada", "--", "k", value)  # `--`: "-1e400" is not an option
    assert r.exit_code != 0 and r.stderr.startswith("bad_request: value: ") and "\n" not in r.stderr.strip()
    assert cli("state", "get", "k").exit_code != 0  # never written


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_text(cli: Cli, text: str) -> None:
    """Not JSON, so the value is the text itself, as for any other word."""
    assert cli("state", "set", "--name", "ada", "--", "k", text).exit_code == 0
    assert json.loads(cli("--json", "state", "get", "k").stdout)["value"] == text
