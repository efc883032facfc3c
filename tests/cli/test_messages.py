"""`synapse send`, `message list`, `message claim` against a real hub."""

from __future__ import annotations

import json
from typing import Any


def _listed(cli, *args: str) -> list[dict[str, Any]]:
    """Listed as alice, the sender: directed messages are readable only by their sender and recipients."""
    if "--name" not in args:
        args = ("--name", "alice", *args)
    r = cli("--json", "message", "list", *args)
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines()]


def _send(cli, *args: str, input: str | None = None) -> int:
    r = cli("send", "--allow-unknown", "--name", "alice", *args, input=input)
    assert r.exit_code == 0, r.output
    return int(r.stdout.split()[0])


def test_send_prints_increasing_seqs(cli) -> None:
    """Each send prints its own seq, 1, 2, 3..."""
    assert [_send(cli, "--target", "bob", f"m{i}") for i in range(3)] == [1, 2, 3]


def test_send_targets(cli) -> None:
    """`name`, `a,b`, repeated --target, `room/*`, `room/name` and `all` are stored as addressed."""
    cli("join", "bob")
    cli("join", "carol")
    _send(cli, "--target", "bob", "one")
    _send(cli, "--target", "bob,carol", "two")
    _send(cli, "-t", "bob", "-t", "carol", "three")
    _send(cli, "--target", "default/*", "four")
    _send(cli, "--target", "default/bob", "five")
    _send(cli, "--target", "all", "six")
    got = [(m["body"], m["to"], m["from"]) for m in _listed(cli)]
    assert got == [
        ("one", ["bob"], "alice"),
        ("two", ["bob", "carol"], "alice"),
        ("three", ["bob", "carol"], "alice"),
        ("four", ["*"], "alice"),
        ("five", ["bob"], "alice"),
        ("six", ["all"], "alice"),
    ]


def test_send_to_other_room_name(cli) -> None:
    """`room/name` lands in that room's feed, from `myroom/me`; nothing in the sender's own feed."""
    cli("--room", "lab", "join", "xena")
    _send(cli, "--target", "lab/xena", "across")
    assert _listed(cli) == []
    [m] = _listed(cli, "--room", "lab", "--name", "xena")
    assert (m["room"], m["from"], m["to"], m["body"]) == ("lab", "default/alice", ["xena"], "across")


def test_send_to_unknown_room_is_refused(cli) -> None:
    """A target in a room that does not exist is refused with `not_found` (exit 1)."""
    r = cli("send", "--allow-unknown", "--name", "alice", "--target", "nowhere/bob", "x")
    assert r.exit_code == 1
    assert r.stderr.startswith("not_found: ")


def test_send_warns_about_unknown_target(cli) -> None:
    """A target that has not joined gets a warning on stderr; the message is still stored."""
    r = cli("send", "--allow-unknown", "--name", "alice", "--target", "ghost", "boo")
    assert r.exit_code == 0
    assert "ghost has not joined" in r.stderr
    assert _listed(cli)[0]["body"] == "boo"


def test_body_json_or_string(cli) -> None:
    """A body that parses as JSON is JSON; anything else (or several words) is a string."""
    bodies = ['{"a": [1, 2]}', "3", "true", '"quoted"', "plain text", "{not json"]
    for body in bodies:
        _send(cli, "--target", "bob", body)
    _send(cli, "--target", "bob", "two", "words")
    got = [m["body"] for m in _listed(cli)]
    assert got == [{"a": [1, 2]}, 3, True, "quoted", "plain text", "{not json", "two words"]


def test_body_from_stdin(cli) -> None:
    """`-` reads the body from stdin, JSON if it parses, else the text as it is."""
    _send(cli, "--target", "bob", "-", input='{"k": ["v"]}\n')
    _send(cli, "--target", "bob", "-", input="line one\nline two")
    assert [m["body"] for m in _listed(cli)] == [{"k": ["v"]}, "line one\nline two"]


def test_kind_reply_to_priority(cli) -> None:
    """--kind, --reply-to and --priority are stored on the message; a reply to a missing seq is refused."""
    first = _send(cli, "--target", "bob", "--kind", "question", "why?")
    r = cli(
        "send",
        "--allow-unknown",
        "--name",
        "bob",
        "--target",
        "alice",
        "--reply-to",
        str(first),
        "--priority",
        "because",
    )
    assert r.exit_code == 0, r.output
    q, a = _listed(cli)
    assert q["kind"] == "question" and not q.get("priority") and q.get("reply_to") is None
    assert a["kind"] == "message" and a["priority"] is True and a["reply_to"] == first
    r = cli("send", "--allow-unknown", "--name", "bob", "--target", "alice", "--reply-to", "99", "x")
    assert r.exit_code == 1
    assert r.stderr.startswith("not_found: ")


def test_send_json_output(cli) -> None:
    """`--json send` prints one object with the seq (and the unknown targets)."""
    r = cli("--json", "send", "--allow-unknown", "--name", "alice", "--target", "bob", "hi")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["seq"] == 1 and doc["unknown"] == ["bob"]


def test_message_list_filters(cli) -> None:
    """--for, --after, --kind, --unclaimed and --limit each narrow the list, oldest first."""
    cli("join", "bob")
    cli("join", "carol")
    _send(cli, "--target", "bob", "b1")  # 1
    _send(cli, "--target", "carol", "--kind", "task", "c1")  # 2
    _send(cli, "--target", "default/*", "all1")  # 3
    _send(cli, "--target", "bob", "--kind", "task", "b2")  # 4
    _send(cli, "--target", "all", "all2")  # 5
    assert cli("message", "claim", "4", "--name", "bob").exit_code == 0

    def seqs(*args: str) -> list[int]:
        return [m["seq"] for m in _listed(cli, *args)]

    assert seqs() == [1, 2, 3, 4, 5]
    assert seqs("--for", "bob") == [1, 3, 4, 5]
    assert seqs("--for", "carol") == [2, 3, 5]
    assert seqs("--for", "alice") == []  # broadcasts are not echoed to their sender
    assert seqs("--after", "2") == [3, 4, 5]
    assert seqs("--kind", "task") == [2, 4]
    assert seqs("--unclaimed") == [1, 2, 3, 5]
    assert seqs("--limit", "2") == [1, 2]
    assert seqs("--for", "bob", "--after", "1", "--kind", "task", "--unclaimed") == []
    assert seqs("--for", "bob", "--after", "1", "--limit", "1") == [3]


def test_message_list_json_is_ndjson_and_text_is_lines(cli) -> None:
    """--json gives one JSON object per line; text gives one readable line per message."""
    _send(cli, "--target", "bob", "hello")
    _send(cli, "--target", "bob", "--priority", '{"x": 1}')
    r = cli("--json", "message", "list", "--name", "alice")
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    docs = [json.loads(line) for line in lines]
    assert [d["seq"] for d in docs] == [1, 2]
    assert set(docs[0]) >= {"room", "seq", "from", "to", "kind", "body", "at"}
    r = cli("message", "list", "--name", "alice")
    text = r.stdout.splitlines()
    assert len(text) == 2
    assert text[0].startswith("#1 ") and "alice → bob" in text[0] and text[0].endswith(": hello")
    assert " !" in text[1] and text[1].endswith(': {"x":1}')


def test_message_list_empty(cli) -> None:
    """An empty feed lists nothing: `no messages` on stderr, nothing on stdout with --json."""
    r = cli("message", "list")
    assert r.exit_code == 0 and r.stdout == "" and "no messages" in r.stderr
    r = cli("--json", "message", "list")
    assert r.exit_code == 0 and r.stdout == ""


def test_message_list_limit_out_of_range_is_usage(cli) -> None:
    """--limit 0 is a usage error (exit 2)."""
    assert cli("message", "list", "--limit", "0").exit_code == 2


def test_message_claim_once(cli) -> None:
    """The first claimer wins; the second gets exit 1 and `already_claimed` naming the holder."""
    seq = _send(cli, "--target", "default/*", "job")
    r = cli("message", "claim", str(seq), "--name", "bob")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"claimed {seq}"
    r = cli("message", "claim", str(seq), "--name", "carol")
    assert r.exit_code == 1
    assert r.stderr.startswith("already_claimed: ") and "bob" in r.stderr
    r = cli("--json", "message", "claim", str(seq), "--name", "carol")
    assert r.exit_code == 1
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "already_claimed" and err["holder"] == "bob" and err["seq"] == seq
    assert _listed(cli)[0]["claimed_by"] == "bob"


def test_message_claim_json_and_missing(cli) -> None:
    """--json claim prints {seq, holder}; claiming a seq that does not exist is `not_found` (exit 1)."""
    _send(cli, "--target", "bob", "job")
    r = cli("message", "claim", "1", "--json", "--name", "bob")
    assert json.loads(r.stdout) == {"seq": 1, "holder": "bob"}
    r = cli("message", "claim", "7", "--name", "bob")
    assert r.exit_code == 1 and r.stderr.startswith("not_found: ")
