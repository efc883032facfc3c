"""A first end-to-end pass: join, send, list through the CLI against a real hub."""

from __future__ import annotations

import json


def test_send_then_list(cli) -> None:
    """A sent message is listed with its seq."""
    r = cli("send", "--allow-unknown", "--name", "alice", "--target", "bob", "hello")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "1"
    r = cli("--json", "message", "list", "--name", "alice")
    assert json.loads(r.stdout.splitlines()[0])["body"] == "hello"
