"""Delivery against a real hub: send keys (CLI, SDK retry after a cut connection, hub restart), unknown
recipients, read positions (message ack, list --unread, HTTP), and a `wait` loop handing a burst over once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import SyncAgent
from tests.conftest import ThreadHub, hub_config, seconds, synapse_cmd
from tests.server.http_api import join as http_join


def _json(r: Any) -> Any:
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_the_same_key_twice_is_one_message_with_one_seq(cli: Any) -> None:
    """`send --key K` twice prints the first seq both times; bob has one message."""
    cli("join", "bob")
    first = _json(cli("--json", "send", "--name", "alice", "--target", "bob", "--key", "k-1", "hello"))
    again = _json(cli("--json", "send", "--name", "alice", "--target", "bob", "--key", "k-1", "hello"))
    assert first["seq"] == again["seq"] == 1 and again["repeated"] is True
    listed = cli("--json", "message", "list", "--name", "bob")
    assert [json.loads(line)["seq"] for line in listed.stdout.splitlines()] == [1]


def test_text_output_starts_with_the_seq_then_unread_counts(cli: Any) -> None:
    """The first token stays the seq; each directed recipient's unread count follows."""
    cli("join", "bob")
    cli("send", "--name", "alice", "--target", "bob", "one")
    r = cli("send", "--name", "alice", "--target", "bob", "two")
    assert r.exit_code == 0 and r.stdout.split() == ["2", "bob=2"]


def test_unknown_recipient_exits_1_unless_allowed(cli: Any) -> None:
    """A name that never joined is refused (exit 1, nothing sent); --allow-unknown sends; broadcasts always go."""
    r = cli("send", "--name", "alice", "--target", "ghost", "hi")
    assert r.exit_code == 1 and "unknown_recipient" in r.stderr
    assert cli("send", "--name", "alice", "--target", "*", "hi").stdout.split()[0] == "1"
    assert (
        cli("send", "--name", "alice", "--target", "ghost", "--allow-unknown", "hi").stdout.split()[0] == "2"
    )
    assert "--allow-unknown" in cli("send", "--help").stdout and "--key" in cli("send", "--help").stdout


def test_ack_and_list_unread(cli: Any) -> None:
    """`message ack` moves bob's position; `list --unread` and CEL `messages.unread` follow it."""
    cli("join", "bob")
    for body in ("a", "b", "c"):
        cli("send", "--name", "alice", "--target", "bob", body)
    assert cli("message", "ack", "2", "--name", "bob").stdout.strip() == "read up to 2, 1 unread"
    assert cli("message", "ack", "1", "--name", "bob").stdout.strip() == "read up to 2, 1 unread"
    listed = cli("--json", "message", "list", "--unread", "--name", "bob")
    assert [json.loads(line)["seq"] for line in listed.stdout.splitlines()] == [3]
    assert cli("eval", "messages.unread", "--name", "bob").stdout.strip() == "1"
    assert cli("message", "ack", "9", "--name", "bob").exit_code == 1  # not_found


def test_message_ack_over_http(hub: ThreadHub) -> None:
    """`POST /v1/message.ack` moves the position, as the wire op does."""
    port = int(hub.url.rsplit(":", 1)[1])
    bob = http_join(port, "bob")
    alice = http_join(port, "alice")
    alice.ok("send", {"name": "alice", "to": ["bob"], "body": 1})
    alice.ok("send", {"name": "alice", "to": ["bob"], "body": 2})
    assert bob.ok("message.ack", {"name": "bob", "seq": 1}) == {"name": "bob", "upto": 1, "unread": 1}
    status, err = alice.call("send", {"name": "alice", "to": ["nobody"], "body": 3})
    assert status == 404 and err["error"]["code"] == "unknown_recipient"
    bob.close()
    alice.close()


class CutFirstReply:
    """A TCP proxy in front of the hub that, on the first connection, forwards everything to the hub but
    closes both sides instead of passing back the first reply that carries a seq: the send was applied, its
    acknowledgement never arrived (a connection cut between the two)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.server.getsockname()[1]}"
        self.cut = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            first = not self.cut.is_set()
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, first), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut: bool) -> None:
        try:
            while data := src.recv(65536):
                if cut and b'"seq"' in data:
                    self.cut.set()
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.server.close()


def test_sdk_send_retried_after_a_cut_connection_is_delivered_once(hub: ThreadHub) -> None:
    """The reply of a send is lost with its connection; the SDK reconnects and sends again with the same
    key: the hub answers with the first seq and bob has the message exactly once."""
    port = int(hub.url.rsplit(":", 1)[1])
    with SyncAgent("bob", hub=hub.url, save_token=False) as bob:
        bob.join()
        proxy = CutFirstReply(port)
        try:
            with SyncAgent("alice", hub=hub.url, save_token=False) as alice:
                alice.join()
                alice.close()
                alice.hubs = [proxy.url]
                alice.hub = proxy.url
                reply = alice.replies.send("bob", "exactly once")
            assert proxy.cut.is_set() and reply["seq"] == 1 and reply["repeated"] is True
        finally:
            proxy.close()
        assert [m["body"] for m in bob.list_messages(for_="bob")] == ["exactly once"]


def test_keys_survive_a_hub_restart(db_path: Path) -> None:
    """A key recorded before a restart still returns the first seq after it (rebuilt from the log)."""
    th = ThreadHub(hub_config(db_path))
    try:
        with SyncAgent("alice", hub=th.url, save_token=False) as alice:
            alice.join()
            token = alice.token
            assert alice.send("*", "x", key="restart-key") == 1
    finally:
        th.stop()
    th = ThreadHub(hub_config(db_path))
    try:
        with SyncAgent("alice", hub=th.url, token=token, save_token=False) as alice:
            assert alice.replies.send("*", "x", key="restart-key") == {
                "seq": 1,
                "seqs": {"default": 1},
                "repeated": True,
            }
    finally:
        th.stop()


@pytest.fixture
def env(client_env: dict[str, str], hub: ThreadHub) -> Iterator[dict[str, str]]:
    yield {**os.environ, **client_env, "SYNAPSE_HUB": hub.url}


def test_a_wait_loop_hands_a_burst_over_exactly_once(hub: ThreadHub, env: dict[str, str]) -> None:
    """`wait --for bob` re-armed after each wake (no --after) prints every message of a burst once: each
    wake hands over what is waiting (one or more: the wake governor) and moves bob's read position past the
    last of them, and the next wait resumes after it."""
    subprocess.run(synapse_cmd("join", "bob"), env=env, check=True, capture_output=True)
    first = subprocess.Popen(
        synapse_cmd("--json", "wait", "--name", "bob-rx", "--for", "bob", "--timeout", "60"),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    with SyncAgent("alice", hub=hub.url, save_token=False) as alice:
        alice.join()
        for _ in range(int(seconds(15_000) * 100)):  # until the first waiter is armed (bob shows waiting)
            if alice.eval('agents["bob"].status') == "waiting":
                break
            assert first.poll() is None
            threading.Event().wait(0.01)
        for i in range(5):
            alice.send("bob", f"m{i}")
        out, _ = first.communicate(timeout=seconds(30_000))
        seen = [m["seq"] for m in json.loads(out)["messages"]]
        while len(seen) < 5:
            r = subprocess.run(
                synapse_cmd("--json", "wait", "--name", "bob-rx", "--for", "bob", "--timeout", "30"),
                env=env,
                capture_output=True,
                text=True,
                timeout=seconds(60_000),
            )
            assert r.returncode == 0, r.stderr
            seen.extend(m["seq"] for m in json.loads(r.stdout)["messages"])
        assert seen == [1, 2, 3, 4, 5]
        assert alice.eval("true")
    r = subprocess.run(
        synapse_cmd("eval", "messages.unread", "--name", "bob"), env=env, capture_output=True, text=True
    )
    assert r.stdout.strip() == "0"
