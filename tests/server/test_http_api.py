"""The HTTP API (CLI.md "Additions" → HTTP) through http.client and raw sockets against a real hub."""

from __future__ import annotations

import json
import socket
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import SyncAgent
from hub.protocol.commands import Command
from hub.server import api
from tests.conftest import HubProcess, ThreadHub, hub_config, seconds
from tests.server.http_api import EventStream, HttpAgent, join

ADMIN = "admin-secret-for-http"
ALL_OPS = frozenset(str(t.__struct_config__.tag) for t in typing.get_args(Command))


@pytest.fixture
def admin_hub(db_path: Path) -> Iterator[ThreadHub]:
    th = ThreadHub(hub_config(db_path, admin_token=ADMIN))
    try:
        yield th
    finally:
        th.stop()


def port_of(th: ThreadHub) -> int:
    assert th.hub is not None
    return th.hub.port


def exchange(port: int, data: bytes, read_until_close: bool = True) -> bytes:
    """Send raw bytes, read what comes back until the hub closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds(30_000)) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


# -- every op ------------------------------------------------------------------------------------------


def test_every_wire_op_answers_over_http(admin_hub: ThreadHub) -> None:
    """Each wire op POSTed to /v1/OP gets the wire `ok` result; the ones bound to a session (unsubscribe of
    a subscription made by an earlier request) answer as the wire does for a session that no longer has it."""
    port = port_of(admin_hub)
    lobby = HttpAgent(port)
    seen: dict[str, int] = {}

    def call(who: HttpAgent, op: str, body: dict[str, Any], token: str | None = "") -> Any:
        status, result = who.call(op, body, token)
        seen[op] = status
        return result

    alice_token = call(lobby, "join", {"name": "alice", "admin_token": ADMIN}, token=None)["token"]
    bob_token = call(lobby, "join", {"name": "bob", "admin_token": ADMIN}, token=None)["token"]
    alice = HttpAgent(port, alice_token, "alice")
    bob = HttpAgent(port, bob_token, "bob")
    assert call(alice, "attach", {"name": "alice", "stream": False}) is not None
    sent = call(alice, "send", {"name": "alice", "to": ["bob"], "body": {"n": 1}})
    assert sent["seq"] == 1
    listed = call(bob, "message.list", {})
    assert [m["body"] for m in listed["messages"]] == [{"n": 1}]
    call(bob, "message.claim", {"name": "bob", "seq": 1})
    assert call(bob, "message.ack", {"name": "bob", "seq": 1}) == {"name": "bob", "upto": 1, "unread": 0}
    call(alice, "heartbeat", {"name": "alice", "status": "busy"})
    assert {a["name"] for a in call(alice, "agents", {})["agents"]} >= {"alice", "bob"}
    woke = call(bob, "wait", {"waiter": "bob", "for": "bob", "after": 0, "timeout": 30})
    assert woke["reason"] == "message" and woke["message"]["seq"] == 1
    assert "version" in call(alice, "status", {})
    granted = call(alice, "claim", {"name": "alice", "work": "w1", "paths": ["src/**"], "ttl": 600})
    assert granted["epoch"] >= 1
    call(alice, "handoff", {"name": "alice", "work": "w1", "to": "bob"})
    call(bob, "release", {"name": "bob", "work": "w1"})
    call(alice, "claim", {"name": "alice", "work": "w2", "paths": ["lib/**"], "ttl": 600})
    call(bob, "claim.reoffer", {"name": "bob", "work": "w2", "idle_seconds": 0, "admin_token": ADMIN}, None)
    call(alice, "claims", {})
    checked = call(
        alice, "guard.check", {"name": "alice", "paths": ["lib/a.py", "src/b.py"]}
    )  # the git guard
    assert [(p["path"], p["held"]) for p in checked["paths"]] == [("lib/a.py", False), ("src/b.py", False)]
    call(alice, "board.intent", {"name": "alice", "paths": ["docs/**"], "note": "n"})
    call(alice, "board", {})
    call(alice, "task.declare", {"name": "alice", "task": "t1", "title": "T"})
    call(bob, "task.claim", {"name": "bob", "task": "t1"})
    call(bob, "task.update", {"name": "bob", "task": "t1", "note": "half"})
    call(
        alice, "task.reoffer", {"name": "alice", "task": "t1", "idle_seconds": 0, "admin_token": ADMIN}, None
    )
    assert call(alice, "task.list", {})["tasks"][0]["id"] == "t1"
    assert call(alice, "task.show", {"task": "t1"})["id"] == "t1"
    assert call(alice, "state.set", {"name": "alice", "key": "k", "value": 1})["version"] == 1
    call(alice, "state.init", {"name": "alice", "key": "j", "value": [1, 2]})
    call(alice, "state.delete", {"name": "alice", "key": "j"})
    call(
        alice,
        "state.batch",
        {"name": "alice", "writes": [{"key": "a", "value": 1}, {"key": "b", "value": 2}]},
    )
    call(alice, "state.view", {"name": "alice", "key": "v", "expr": "state.k + 1"})
    assert call(alice, "state.get", {"key": "k"})["value"] == 1
    call(alice, "state.list", {})
    assert call(alice, "eval", {"expr": "1 + 1"})["value"] == 2
    sub = call(alice, "subscribe", {"expr": "state.k == 1"})["sub"]
    call(alice, "unsubscribe", {"sub": sub})
    call(alice, "branch.create", {"name": "alice", "branch": "b1"})
    call(alice, "branch.list", {})
    call(alice, "branch.diff", {"branch": "b1"})
    call(alice, "branch.merge", {"name": "alice", "branch": "b1"})
    call(alice, "tail", {"after": 0, "rooms": ["default"]})
    # explanations: reads (a waiter to explain is armed on a WebSocket: an HTTP wait ends with its request)
    call(alice, "claim", {"name": "alice", "work": "w3", "paths": ["why/**"], "ttl": 600})
    assert call(alice, "why.claim", {"work": "w3"})["holder"] == "alice"
    assert call(alice, "why.task", {"task": "t1"})["task"] == "t1"
    assert (
        call(alice, "why.condition", {"expr": "state.k == 1"})["holds"] is False
    )  # `state.k`: no such scope
    with SyncAgent("carol", hub=admin_hub.url, admin_token=ADMIN) as carol:
        carol.join()
        carol.arm("carol-w", "carol")
        assert call(alice, "why.wait", {"waiter": "carol-w"})["owner"] == "carol"
    assert call(alice, "state.history", {"key": "k"})["versions"][0]["version"] == 1
    call(lobby, "room.create", {"room": "other", "admin_token": ADMIN}, None)
    assert call(lobby, "room.invite", {"room": "other", "admin_token": ADMIN}, None)["invite"]
    call(lobby, "room.list", {"admin_token": ADMIN}, None)
    call(lobby, "admin.reset_token", {"name": "bob", "admin_token": ADMIN}, None)
    for who in (lobby, alice, bob):
        who.close()
    assert set(seen) == ALL_OPS, sorted(ALL_OPS - set(seen))
    not_ok = {op: status for op, status in seen.items() if status != 200}
    assert not_ok == {"unsubscribe": 404}  # a subscription lives with its request's session


# -- status mapping ------------------------------------------------------------------------------------


def test_refusals_map_to_the_documented_statuses(hub: ThreadHub) -> None:
    port = port_of(hub)
    alice = join(port, "alice")
    bob = join(port, "bob")
    lobby = HttpAgent(port)
    assert alice.call("send", {"name": "alice", "to": ["bob"]}, token=None)[0] == 401
    assert alice.call("send", {"name": "alice", "to": ["bob"]}, token="st_wrong")[0] == 401
    status, err = alice.call("send", {"name": "bob", "to": ["alice"]})
    assert (status, err["error"]["code"]) == (403, "forbidden")
    status, err = lobby.call("join", {"name": "alice"}, token=None)
    assert (status, err["error"]["code"]) == (403, "name_taken")
    status, err = alice.call("eval", {"expr": "1 +"})
    assert (status, err["error"]["code"]) == (400, "bad_expression")
    status, err = alice.call("state.set", {"name": "alice", "key": "", "value": 1})
    assert (status, err["error"]["code"]) == (400, "bad_request")
    status, err = alice.call("task.show", {"task": "nope"})
    assert (status, err["error"]["code"]) == (404, "not_found")
    alice.ok("state.init", {"name": "alice", "key": "k", "value": 1})
    status, err = alice.call("state.init", {"name": "alice", "key": "k", "value": 1})
    assert (status, err["error"]["code"]) == (409, "already_exists")
    status, err = alice.call("state.set", {"name": "alice", "key": "k", "value": 2, "if_version": 7})
    assert (status, err["error"]["code"]) == (409, "conflict")
    status, err = alice.call("state.set", {"name": "alice", "key": "k", "value": 2, "if": "state.k == 5"})
    assert (status, err["error"]["code"]) == (412, "precondition_failed")
    epoch = alice.ok("claim", {"name": "alice", "work": "w", "paths": ["a/**"], "ttl": 600})["epoch"]
    status, err = bob.call("claim", {"name": "bob", "work": "v", "paths": ["a/b"], "ttl": 600})
    assert (status, err["error"]["code"]) == (409, "claim_overlap")
    status, err = alice.call(
        "state.set", {"name": "alice", "key": "k", "value": 3, "fence": {"w": epoch + 1}}
    )
    assert (status, err["error"]["code"]) == (409, "fenced")
    seq = alice.ok("send", {"name": "alice", "to": ["*"]})["seq"]
    alice.ok("message.claim", {"name": "alice", "seq": seq})
    status, err = bob.call("message.claim", {"name": "bob", "seq": seq})
    assert (status, err["error"]["code"]) == (409, "already_claimed")
    status, err = alice.call("nonsense.op", {})
    assert (status, err["error"]["code"]) == (404, "unknown_op")
    status, err = alice.call("send", {"name": "alice", "to": ["bob"], "surprise": 1})
    assert (status, err["error"]["code"]) == (400, "bad_frame")
    assert "surprise" in err["error"]["detail"]["path"]
    for who in (alice, bob, lobby):
        who.close()


def test_a_200_means_durable_and_the_websocket_side_sees_it(hub: ThreadHub, db_path: Path) -> None:
    """What an HTTP send acknowledged is in the log file when the answer arrives."""
    from tests.conftest import fold

    alice = join(hub_port := port_of(hub), "alice")
    seq = alice.ok("send", {"name": "alice", "to": ["*"], "body": "hello"})["seq"]
    machine = fold(db_path)
    assert machine.position >= seq
    assert hub_port
    alice.close()


def test_rate_limited_is_429_with_retry_after(db_path: Path) -> None:
    th = ThreadHub(hub_config(db_path, rate_per_agent=0.5, rate_burst=2))
    try:
        alice = join(port_of(th), "alice")
        statuses = []
        for _ in range(3):
            alice.conn.request(
                "POST",
                "/v1/heartbeat",
                b'{"name":"alice"}',
                {"Content-Type": "application/json", "Authorization": f"Bearer {alice.token}"},
            )
            r = alice.conn.getresponse()
            body = json.loads(r.read())
            statuses.append(r.status)
            if r.status == 429:
                assert body["error"]["code"] == "rate_limited"
                assert int(r.headers["Retry-After"]) >= 1
        assert statuses[-1] == 429, statuses
        alice.close()
    finally:
        th.stop()


# -- bad bodies and heads --------------------------------------------------------------------------------


def test_bad_bodies_are_refused_with_stable_codes(hub: ThreadHub) -> None:
    port = port_of(hub)
    alice = join(port, "alice")
    auth = {"Authorization": f"Bearer {alice.token}"}
    json_type = {"Content-Type": "application/json", **auth}
    status, _, body = alice.raw("POST", "/v1/send", b"{not json", json_type)
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_frame"
    status, _, body = alice.raw("POST", "/v1/send", b"[1, 2]", json_type)
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_frame"
    status, _, body = alice.raw(
        "POST", "/v1/send", b'{"name": "alice"}', {"Content-Type": "text/plain", **auth}
    )
    assert status == 415
    status, _, body = alice.raw("POST", "/v1/send", b'{"id": 5, "name": "alice", "to": []}', json_type)
    assert status == 400 and "id" in json.loads(body)["error"]["message"]
    status, _, body = alice.raw("POST", "/v1/send", b'{"token": "x"}', json_type)
    assert status == 400
    status, _, body = alice.raw("POST", "/v1/send", b"[" * 100_000 + b"]" * 100_000, json_type)
    assert status == 400
    status, _, body = alice.raw(
        "POST",
        "/v1/send",
        b'{"name": "alice", "to": ["*"]}',
        {"Content-Type": "application/json", "Authorization": "Basic x"},
    )
    assert status == 401
    status, _, body = alice.raw("GET", "/v1/send")
    assert status == 405
    status, _, body = alice.raw("POST", "/nothing", b"{}", json_type)
    assert status == 404
    status, _, body = alice.raw("POST", "/v1/wait", b'{"waiter": "w", "timeout": 301}', json_type)
    assert status == 400 and "timeout" in json.loads(body)["error"]["message"]
    # the connection survived every refusal above (keep-alive) and still works
    assert alice.ok("send", {"name": "alice", "to": ["*"]})["seq"] >= 1
    alice.close()


def test_bad_heads_huge_bodies_and_chunks_close_the_connection(hub: ThreadHub) -> None:
    port = port_of(hub)
    assert hub.hub is not None
    limit = hub.hub.config.max_frame_bytes
    assert limit is not None
    huge = exchange(port, f"POST /v1/send HTTP/1.1\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
    assert status_of(huge) == 413 and body_of(huge)["error"]["code"] == "too_large"
    chunked = exchange(
        port, b"POST /v1/send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert status_of(chunked) == 411
    big_head = exchange(port, b"POST /v1/send HTTP/1.1\r\nX-Big: " + b"a" * (api.HEAD_LIMIT + 10))
    assert status_of(big_head) == 431
    assert status_of(exchange(port, b"POST nothing\r\n\r\n")) == 400
    assert status_of(exchange(port, b"POST /v1/send HTTP/2.0\r\n\r\n")) == 505
    assert status_of(exchange(port, b"POST /v1/send HTTP/1.1\r\nContent-Length: -1\r\n\r\n")) == 400
    assert status_of(exchange(port, b"POST /v1/send HTTP/1.1\r\nno colon\r\n\r\n")) == 400
    # the hub still serves WebSocket and HTTP after all that
    alice = join(port, "alice")
    assert alice.ok("status", {})["version"]
    alice.close()


def test_a_slow_head_gets_408(hub: ThreadHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slowloris: a head still incomplete after HEAD_SECONDS is answered 408 and closed."""
    monkeypatch.setattr(api, "HEAD_SECONDS", 0.2)
    port = port_of(hub)
    with socket.create_connection(("127.0.0.1", port), timeout=seconds(30_000)) as sock:
        sock.sendall(b"POST /v1/send HTTP/1.1\r\nX-A: 1\r\n")  # never finished
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert status_of(data) == 408


def test_a_silent_connection_is_closed_before_it_says_anything(
    hub: ThreadHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "HEAD_SECONDS", 0.2)
    with socket.create_connection(("127.0.0.1", port_of(hub)), timeout=seconds(30_000)) as sock:
        assert sock.recv(10) == b""


def test_pipelined_requests_are_answered_in_order(hub: ThreadHub) -> None:
    port = port_of(hub)
    alice = join(port, "alice")
    body = b'{"name":"alice","to":["*"]}'
    one = (
        f"POST /v1/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {alice.token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    last = one.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    data = exchange(port, one * 4 + last)
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 5
    seqs = [json.loads(a.split(b"\r\n\r\n", 1)[1])["seq"] for a in answers]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    alice.close()


def test_plain_pages_still_answer_on_an_api_connection(hub: ThreadHub) -> None:
    alice = HttpAgent(port_of(hub))
    assert alice.raw("GET", "/v1/openapi.json")[0] == 200
    status, _, body = alice.raw("GET", "/healthz")  # the same kept-alive connection
    assert status == 200 and json.loads(body) == {"ok": True}
    alice.close()


# -- long-poll -----------------------------------------------------------------------------------------


def test_wait_long_polls_until_a_message_wakes_it(hub: ThreadHub) -> None:
    port = port_of(hub)
    alice = join(port, "alice")
    bob = join(port, "bob")
    head = bob.ok("message.list", {})["head"]
    answer: list[Any] = []

    def waiter() -> None:
        own = HttpAgent(port, bob.token)  # its own connection: http.client is not thread-safe
        answer.append(own.call("wait", {"waiter": "bob", "for": "bob", "after": head, "timeout": 60}))
        own.close()

    t = threading.Thread(target=waiter)
    t.start()
    seq = alice.ok("send", {"name": "alice", "to": ["bob"], "body": "your turn"})["seq"]
    t.join(seconds(30_000))
    status, woke = answer[0]
    assert status == 200 and woke["reason"] == "message"
    assert woke["message"]["seq"] == seq and woke["message"]["body"] == "your turn"
    alice.close()
    bob.close()


def test_wait_times_out_with_408_and_a_condition_wakes_it(hub: ThreadHub) -> None:
    port = port_of(hub)
    alice = join(port, "alice")
    status, err = alice.call("wait", {"waiter": "w", "for": "alice", "timeout": 0.1})
    assert status == 408 and err["error"]["code"] == "timed_out"
    alice.ok("state.set", {"name": "alice", "key": "go", "value": True})
    woke = alice.ok("wait", {"waiter": "w", "condition": "state._shared.go == true", "timeout": 5})
    assert woke["reason"] == "condition" and woke["value"] is True
    alice.close()


def _waiters(hub: ThreadHub) -> dict[str, Any]:
    from hub.core.agents import Waiters

    async def read() -> dict[str, Any]:
        assert hub.hub is not None
        return dict(hub.hub.machine.world.rooms["default"].part(Waiters).by_name)

    return typing.cast(dict[str, Any], hub.call(read()))


def test_a_dropped_long_poll_disarms_its_waiter(hub: ThreadHub) -> None:
    port = port_of(hub)
    alice = join(port, "alice")
    body = b'{"waiter":"w","condition":"state._shared.never == 1","timeout":300}'
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds(30_000))
    sock.sendall(
        (
            f"POST /v1/wait HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {alice.token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    # armed once the hub shows alice waiting (the waiter's presence)
    _until(lambda: "w" in _waiters(hub), "armed")
    sock.close()
    _until(lambda: "w" not in _waiters(hub))
    status, _ = alice.call("agents", {})
    assert status == 200
    alice.close()


def _until(check: Any, what: str = "") -> None:
    """Poll hub state (not time): every check is a round trip to the hub's loop, bounded by a deadline."""
    import time

    deadline = time.monotonic() + seconds(30_000)
    while not check():
        assert time.monotonic() < deadline, f"condition not reached {what}"
        time.sleep(0.01)


# -- Server-Sent Events ----------------------------------------------------------------------------------


def test_events_stream_messages_and_triggers(hub: ThreadHub) -> None:
    port = port_of(hub)
    alice = join(port, "alice")
    bob = join(port, "bob")
    assert bob.token is not None
    stream = EventStream(port, bob.token, "room=default&expr=state._shared.score%20%3E%202")
    assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
    seq = alice.ok("send", {"name": "alice", "to": ["bob"], "body": {"move": 1}})["seq"]
    event = stream.next()
    assert event["event"] == "message" and event["id"] == seq and event["data"]["body"] == {"move": 1}
    alice.ok("state.set", {"name": "alice", "key": "score", "value": 3})
    event = stream.next()
    assert event["event"] == "trigger" and event["data"]["value"] is True
    assert event["data"]["condition"] == "state._shared.score > 2"
    assert "attached" in stream.comments
    stream.close()
    alice.close()
    bob.close()


def test_events_refuse_a_missing_or_wrong_token_and_a_bad_expression(hub: ThreadHub) -> None:
    port = port_of(hub)
    bob = join(port, "bob")
    assert bob.token is not None
    wrong = EventStream(port, "st_nobody")
    assert wrong.status == 401
    wrong.close()
    bad = EventStream(port, bob.token, "expr=1%20%2B")
    assert bad.status == 400 and bad.error()["error"]["code"] == "bad_expression"
    bad.close()
    bob.close()


def test_events_keep_alive_comments(hub: ThreadHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "KEEPALIVE_SECONDS", 0.05)
    port = port_of(hub)
    bob = join(port, "bob")
    assert bob.token is not None
    stream = EventStream(port, bob.token)
    while stream.comments.count("keep-alive") < 2:
        raw = stream.file.readline()
        assert raw, "the stream ended"
        line = raw.decode().strip()
        if line.startswith(":"):
            stream.comments.append(line[1:].strip())
    stream.close()
    bob.close()


def test_a_slow_event_reader_is_closed_not_buffered(db_path: Path) -> None:
    """A reader that never reads is cut off once its buffer passes the outbox bound; the hub stays bounded."""
    th = ThreadHub(hub_config(db_path, outbox_bytes=64 << 10))
    try:
        port = port_of(th)
        alice = join(port, "alice")
        bob = join(port, "bob")
        assert bob.token is not None
        sock = socket.create_connection(("127.0.0.1", port), timeout=seconds(30_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /v1/events HTTP/1.1\r\nAuthorization: Bearer {bob.token}\r\n\r\n".encode())
        assert sock.recv(12).startswith(b"HTTP/1.1 200")
        big = "x" * 60_000
        assert th.hub is not None
        for _ in range(400):
            alice.ok("send", {"name": "alice", "to": ["bob"], "body": big})
            if not any(type(s).__name__ == "Stream" for s in th.hub.sessions.values()):
                break
        assert not any(type(s).__name__ == "Stream" for s in th.hub.sessions.values())
        sock.close()
        alice.close()
        bob.close()
    finally:
        th.stop()


def test_events_resume_with_last_event_id_across_a_sigkill(hub_process: HubProcess) -> None:
    """Messages acknowledged before a SIGKILL are streamed again after the restart from Last-Event-ID."""
    port = hub_process.port
    alice = join(port, "alice")
    bob = join(port, "bob")
    assert bob.token is not None
    stream = EventStream(port, bob.token)
    seqs = [alice.ok("send", {"name": "alice", "to": ["bob"], "body": n})["seq"] for n in range(3)]
    got = [stream.next() for _ in range(3)]
    assert [e["id"] for e in got] == seqs
    stream.close()
    alice.close()
    bob.close()
    hub_process.restart("kill")
    port = hub_process.port
    again = EventStream(port, bob.token, last_event_id=seqs[0])
    assert again.status == 200
    assert [again.next()["id"] for _ in range(2)] == seqs[1:]
    alice = HttpAgent(port, alice.token)
    live = alice.ok("send", {"name": "alice", "to": ["bob"], "body": "after"})["seq"]
    event = again.next()
    assert event["id"] == live and event["data"]["body"] == "after"
    again.close()
    alice.close()
    hub_process.kill()
    hub_process.close_pipes()


# -- OpenAPI -------------------------------------------------------------------------------------------


def test_openapi_describes_every_op_and_its_refs_resolve(hub: ThreadHub) -> None:
    agent = HttpAgent(port_of(hub))
    status, headers, body = agent.raw("GET", "/v1/openapi.json")
    agent.close()
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["openapi"] == "3.1.0"
    assert {p[len("/v1/") :] for p in doc["paths"]} == ALL_OPS | {"events", "openapi.json"}
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    send = schemas["SendBody"]
    assert "id" not in send["properties"] and "token" not in send["properties"]
    assert set(send["required"]) == {"name", "to"}
    assert "timeout" in schemas["WaitBody"]["properties"]
