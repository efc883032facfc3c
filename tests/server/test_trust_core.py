"""Regressions of the core rewrite (decide → events → apply), each through a real hub over raw WebSocket frames
and, where it says so, a real stop and restart on the same SQLite file: refusals change nothing, values the log
cannot keep exactly are refused at the edge, versions never go back, and odd cursors are answered."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hub.core.feed import Feed
from hub.core.state import State
from hub.protocol.codec import FRAME_DEPTH
from tests.conftest import HubProcess, ThreadHub, fold, hub_config, seconds

INT_MAX = 2**63 - 1
FAR_BACK = -1_000_000  # a cursor long before the first message


class Raw:
    """A raw WebSocket to the hub (blocking): send any frame, read replies by id; pushes are kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = 0
        self.pushed: list[dict[str, Any]] = []  # every frame read that was not the reply asked for

    def recv(self, within_ms: float = 5_000) -> dict[str, Any]:
        try:
            data = self.ws.recv(seconds(within_ms))
        except ConnectionClosed as exc:
            raise AssertionError(f"the hub closed the connection: {exc.rcvd}") from None
        frame: dict[str, Any] = json.loads(data)
        return frame

    def send(self, frame: dict[str, Any] | str) -> int:
        """Send a command (a dict, or the text of a JSON object without its id); returns the id given."""
        self.ids += 1
        if isinstance(frame, str):
            text = frame.rstrip()
            assert text.endswith("}")
            self.ws.send(f'{text[:-1]}, "id": {self.ids}}}')
        else:
            self.ws.send(json.dumps({**frame, "id": self.ids}))
        return self.ids

    def reply(self, cmd_id: int) -> dict[str, Any]:
        """The Ok or Error answering `cmd_id`; frames before it go to `pushed`."""
        while True:
            frame = self.recv()
            if frame.get("id") == cmd_id and frame["type"] in ("Ok", "Error"):
                return frame
            self.pushed.append(frame)

    def ask(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        return self.reply(self.send(frame))

    def ok(self, frame: dict[str, Any] | str) -> Any:
        reply = self.ask(frame)
        assert reply["type"] == "Ok", reply
        return reply["result"]

    def refused(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        reply = self.ask(frame)
        assert reply["type"] == "Error", reply
        return reply

    def push(self, within_ms: float = 5_000) -> dict[str, Any]:
        """The next pushed frame (one already read first)."""
        return self.pushed.pop(0) if self.pushed else self.recv(within_ms)

    def serves(self) -> None:
        """The connection is open and answers a command."""
        assert self.ok({"op": "status"})["version"]


@contextlib.contextmanager
def raw(url: str) -> Iterator[Raw]:
    with connect(url, max_size=None) as ws:
        yield Raw(ws)


def join(r: Raw, name: str) -> str:
    token: str = r.ok({"op": "join", "name": name})["token"]
    return token


def state_set(name: str, token: str, key: str, value: Any, **kw: Any) -> dict[str, Any]:
    return {"op": "state.set", "name": name, "token": token, "key": key, "value": value, **kw}


def entry(r: Raw, key: str) -> tuple[Any, int]:
    got = r.ok({"op": "state.get", "key": key})
    return got["value"], got["version"]


def nested(depth: int) -> Any:
    """A JSON value of objects and lists, alternating, nested exactly `depth` levels."""
    value: Any = "leaf"
    for level in range(depth):
        value = [value, level] if level % 2 else {"k": value, "n": level}
    return value


# -- hubs ------------------------------------------------------------------------------------------------


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., ThreadHub]]:
    """Real hubs on their own threads, each with its own SQLite file and the given config."""
    hubs: list[ThreadHub] = []

    def make(**config: Any) -> ThreadHub:
        th = ThreadHub(hub_config(tmp_path / f"hub{len(hubs)}.db", **config))
        hubs.append(th)
        return th

    yield make
    for th in hubs:
        th.stop()


def logged(db: Path, key: str) -> tuple[Any, int]:
    """A `_shared` key's value and version as the log alone has it."""
    found = fold(db).world.rooms["default"].part(State).scopes["_shared"][key]
    return found.value, found.version


# -- 1. a refused wait takes nothing over ------------------------------------------------------------------


@pytest.mark.parametrize("wake", ["message", "condition"])
def test_wait_refused_by_a_limit_leaves_the_old_waiter_armed(
    make_hub: Callable[..., ThreadHub], wake: str
) -> None:
    """A wait refused with limit_exceeded leaves the same-named waiter armed, untold, and still woken."""
    th = make_hub(max_subscriptions_per_session=1)
    condition = "state._shared.go == true"
    with raw(th.url) as old, raw(th.url) as new, raw(th.url) as bob:
        alice = join(old, "alice")
        bob_token = join(bob, "bob")
        wait = {"op": "wait", "waiter": "w", "for": "alice", "condition": condition, "token": alice}
        armed_id = old.send(wait)
        assert old.reply(armed_id)["type"] == "Ok"

        new.ok({"op": "subscribe", "expr": "state._shared.other == 1"})  # the new session's only subscription
        err = new.refused(wait)  # its condition would be a second one
        assert err["code"] == "limit_exceeded" and err["detail"]["limit"] == 1, err

        old.serves()  # a take-over would have reached `old` (Error taken_over, close 4009) before this reply
        assert old.pushed == []
        presence = {a["name"]: a for a in bob.ok({"op": "agents"})["agents"]}["alice"]
        shown = (presence.get("waiter"), presence.get("status"), presence.get("waiting_on"))
        assert shown == ("w", "waiting", condition), presence

        if wake == "message":
            send = {"op": "send", "name": "bob", "token": bob_token, "to": ["alice"], "body": "turn"}
            seq = bob.ok(send)["seq"]
        else:
            bob.ok(state_set("bob", bob_token, "go", True))
        woken = old.push()
        assert (woken["type"], woken["id"], woken["reason"]) == ("Wake", armed_id, wake), woken
        if wake == "message":
            assert (woken["message"]["seq"], woken["message"]["body"]) == (seq, "turn")
        else:
            assert woken["value"] is True
        new.serves()
        assert new.pushed == []  # the refused wait armed nothing of its own
        old.serves()


# -- 2. 64-bit integers ----------------------------------------------------------------------------------------


def test_integers_are_64_bit_and_an_overflowing_increment_changes_nothing(
    hub_procs: Callable[..., HubProcess],
) -> None:
    """Ints past 64 bits and overflowing increments are bad_request; the key stays readable and durable."""
    hp = hub_procs()
    with raw(hp.url) as a:
        token = join(a, "alice")
        huge = json.dumps(state_set("alice", token, "big", None)).replace(
            '"value": null', '"value": ' + "9" * 4300
        )
        err = a.refused(huge)
        assert err["code"] == "bad_request" and err["detail"]["field"] == "value", err
        assert "64-bit" in err["message"], err
        a.serves()
        assert a.refused({"op": "state.get", "key": "big"})["code"] == "not_found"  # nothing was written

        assert a.ok(state_set("alice", token, "big", INT_MAX)) == {
            "scope": "_shared",
            "key": "big",
            "value": INT_MAX,
            "version": 1,
        }
        err = a.refused(state_set("alice", token, "big", 1, increment=True))
        assert err["code"] == "bad_request" and err["detail"]["field"] == "value", err
        assert "64-bit" in err["message"], err
        a.serves()

        def reads(r: Raw) -> None:
            assert entry(r, "big") == (INT_MAX, 1)
            listed = r.ok({"op": "state.list", "scope": "_shared"})["entries"]
            assert [(e["key"], e["value"], e["version"]) for e in listed] == [("big", INT_MAX, 1)]
            assert r.ok({"op": "eval", "expr": "state._shared.big"})["value"] == INT_MAX

        reads(a)
        reads(a)

    hp.restart("kill")
    with raw(hp.url) as a:
        reads(a)
        assert a.ok(state_set("alice", token, "big", -1, increment=True))["version"] == 2
        assert entry(a, "big") == (INT_MAX - 1, 2)
    hp.restart("kill")
    with raw(hp.url) as a:
        assert entry(a, "big") == (INT_MAX - 1, 2)
        a.serves()


# -- 3. finite floats -----------------------------------------------------------------------------------------


def test_an_increment_to_infinity_is_refused_and_memory_equals_the_log(
    hub_procs: Callable[..., HubProcess], db_path: Path
) -> None:
    """An increment to infinity is bad_request; the served value equals the log's, also after a restart."""
    hp = hub_procs()
    with raw(hp.url) as a:
        token = join(a, "alice")
        assert a.ok(state_set("alice", token, "f", 1e308))["version"] == 1
        for _ in range(2):
            err = a.refused(state_set("alice", token, "f", 1e308, increment=True))
            assert err["code"] == "bad_request" and err["detail"]["field"] == "value", err
            assert "finite" in err["message"], err
            a.serves()
        assert entry(a, "f") == (1e308, 1)
        assert logged(db_path, "f") == (1e308, 1)
    hp.restart("kill")
    with raw(hp.url) as a:
        assert entry(a, "f") == (1e308, 1)
        assert a.ok(state_set("alice", token, "f", -1e308, increment=True))["value"] == 0.0
    assert logged(db_path, "f") == (0.0, 2)
    hp.restart("kill")
    with raw(hp.url) as a:
        assert entry(a, "f") == (0.0, 2)


# -- 4. nesting depth 64 ---------------------------------------------------------------------------------------


def test_values_nest_at_most_64_deep_and_survive_snapshots(hub_procs: Callable[..., HubProcess]) -> None:
    """A value 65 deep is bad_request; one 64 deep reads back unchanged after snapshots and a restart."""
    hp = hub_procs("--snapshot-every", "1")
    deep = nested(64)
    with raw(hp.url) as a, raw(hp.url) as b:
        token = join(a, "alice")
        err = a.refused(state_set("alice", token, "deep", nested(65)))
        assert err["code"] == "bad_request" and err["detail"]["field"] == "value", err
        assert "64" in err["message"], err
        a.serves()

        assert a.ok(state_set("alice", token, "deep", deep))["version"] == 1  # a snapshot follows it
        assert (
            a.ok({"op": "send", "name": "alice", "token": token, "to": ["alice"], "body": deep})["seq"] == 1
        )
        assert a.ok(state_set("alice", token, "after", 1))["version"] == 1  # and another
        for r in (a, b):
            r.serves()
            assert entry(r, "deep") == (deep, 1)
            assert r.ok({"op": "eval", "expr": "state._shared.deep"})["value"] == deep

    restored = hp.restart("terminate")  # SIGTERM drains: the queued snapshots are written
    assert "snapshot=None" not in restored, restored
    with raw(hp.url) as a:
        a.serves()
        assert entry(a, "deep") == (deep, 1)
        assert a.ok({"op": "message.list", "token": token})["messages"][0]["body"] == deep
        assert a.ok(state_set("alice", token, "deep", deep, if_version=1))["version"] == 2
        assert entry(a, "deep") == (deep, 2)
        a.serves()


# -- 5. versions continue across delete ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot_every", "how"), [("0", "kill"), ("1", "terminate")], ids=["log-only-sigkill", "snapshot"]
)
def test_versions_continue_across_delete_so_a_stale_leader_cannot_write(
    hub_procs: Callable[..., HubProcess], snapshot_every: str, how: str
) -> None:
    """A re-created key continues its version, so a stale leader's CAS conflicts, also across restarts."""
    hp = hub_procs("--snapshot-every", snapshot_every)
    with raw(hp.url) as old, raw(hp.url) as new:
        alice = join(old, "alice")
        bob = join(new, "bob")
        assert old.ok(state_set("alice", alice, "leader", "alice", if_version=0))["version"] == 1
        assert new.ok({"op": "state.delete", "name": "bob", "token": bob, "key": "leader"})["version"] == 1
        assert new.ok(state_set("bob", bob, "leader", "bob", if_version=0))["version"] == 2
        err = old.refused(state_set("alice", alice, "leader", "alice again", if_version=1))
        assert err["code"] == "conflict" and err["detail"]["current"]["value"] == "bob", err
        assert entry(old, "leader") == ("bob", 2)
        new.ok({"op": "state.delete", "name": "bob", "token": bob, "key": "leader", "if_version": 2})

    restored = hp.restart(how)
    assert ("snapshot=None" in restored) == (snapshot_every == "0"), restored
    with raw(hp.url) as old, raw(hp.url) as new:
        assert new.refused({"op": "state.get", "key": "leader"})["code"] == "not_found"
        assert new.ok(state_set("bob", bob, "leader", "bob", if_version=0))["version"] == 3
        for stale in (1, 2):
            err = old.refused(state_set("alice", alice, "leader", "alice again", if_version=stale))
            assert err["code"] == "conflict", err
        assert entry(old, "leader") == ("bob", 3)

    hp.restart(how)
    with raw(hp.url) as r:
        assert entry(r, "leader") == ("bob", 3)
        assert r.refused(state_set("alice", alice, "leader", "alice", if_version=1))["code"] == "conflict"


# -- 6. cursors before the first message -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "count"), [({}, 5), ({"feed_window": 40}, 120)], ids=["memory", "behind-window"]
)
def test_a_cursor_before_the_first_message_is_answered(
    make_hub: Callable[..., ThreadHub], config: dict[str, Any], count: int
) -> None:
    """message.list, wait and attach with after=-1000000 are answered, from memory or from the log."""
    th = make_hub(**config)
    with raw(th.url) as sender:
        alice = join(sender, "alice")
        carol = join(sender, "carol")
        bob = join(sender, "bob")
        for i in range(count):
            sender.ok({"op": "send", "name": "bob", "token": bob, "to": ["alice"], "body": i})
    if config:
        assert th.hub is not None and th.hub.machine.world.rooms["default"].part(Feed).base > 0

    everything = list(range(1, count + 1))
    with raw(th.url) as r:
        for frame in (
            {"op": "message.list", "room": "default", "after": FAR_BACK, "token": alice},
            {"op": "message.list", "after": FAR_BACK, "for": "alice", "limit": 1000, "token": alice},
        ):
            seqs = [m["seq"] for m in r.ok(frame)["messages"]]
            assert seqs in ([], everything[: frame.get("limit", 100)]), seqs
            r.serves()
        assert r.ok({"op": "message.list", "room": "r", "after": FAR_BACK})["messages"] == []
        r.serves()

    with (
        raw(th.url) as waiting_alice,
        raw(th.url) as waiting_carol,
        raw(th.url) as attached,
        raw(th.url) as s,
    ):
        wait = {"op": "wait", "waiter": "wa", "for": "alice", "after": FAR_BACK, "token": alice}
        assert waiting_alice.ask(wait)["type"] == "Ok"
        waiting_alice.serves()
        for frame in waiting_alice.pushed:  # woken at once or not: only by a message of alice's
            assert frame["type"] == "Wake" and frame["message"]["seq"] in everything, frame

        wait = {"op": "wait", "waiter": "wc", "for": "carol", "after": FAR_BACK, "token": carol}
        wait_id = waiting_carol.send(wait)
        assert waiting_carol.reply(wait_id)["type"] == "Ok"  # nothing for carol yet: armed
        waiting_carol.serves()
        assert waiting_carol.pushed == []
        seq = s.ok({"op": "send", "name": "bob", "token": bob, "to": ["carol"], "body": "now"})["seq"]
        woken = waiting_carol.push()
        assert (woken["type"], woken["id"], woken["message"]["seq"]) == ("Wake", wait_id, seq), woken

        assert attached.ok({"op": "attach", "name": "alice", "token": alice, "after": FAR_BACK})["seq"] == seq
        attached.serves()
        delivered = [f["message"]["seq"] for f in attached.pushed if f["type"] == "Delivery"]
        assert delivered in ([], everything), delivered
        assert all(f["type"] == "Delivery" for f in attached.pushed), attached.pushed
        attached.pushed.clear()
        s.ok({"op": "send", "name": "bob", "token": bob, "to": ["alice"], "body": "live"})
        assert attached.push()["message"]["body"] == "live"  # the stream is live after the resume
        for r in (waiting_alice, waiting_carol, attached, s):
            r.serves()


# -- 7. message bodies nest at most 64 deep --------------------------------------------------------------------------


def test_a_body_nested_979_deep_is_refused_and_the_connection_stays_open(hub: ThreadHub) -> None:
    """A body nested 100 (or 65) deep is bad_request, one 979 deep makes the frame too deep to read
    (bad_frame, whatever the recursion limit); stored nowhere, and the connection serves on."""
    with raw(hub.url) as a, raw(hub.url) as b:
        alice = join(a, "alice")
        bob = join(b, "bob")
        b.ok({"op": "attach", "name": "bob", "token": bob})
        send = json.dumps({"op": "send", "name": "alice", "token": alice, "to": ["bob"], "body": None})
        for depth in (979, 100, 65):
            body = "[" * depth + "]" * depth
            if depth > FRAME_DEPTH:  # not read: its Error cannot carry its id
                a.send(send.replace('"body": null', f'"body": {body}'))
                err = a.recv()
                assert err["type"] == "Error" and err["id"] is None, err
                assert err["code"] == "bad_frame" and str(FRAME_DEPTH) in err["message"], err
            else:
                err = a.refused(send.replace('"body": null', f'"body": {body}'))
                assert err["code"] == "bad_request" and err["detail"]["field"] == "body", err
                assert "64" in err["message"], err
            a.serves()
        assert a.ok({"op": "message.list", "token": alice})["messages"] == []  # not even to its sender
        b.serves()
        assert b.pushed == []

        deep = nested(64)
        assert a.ok({"op": "send", "name": "alice", "token": alice, "to": ["bob"], "body": deep})["seq"] == 1
        got = b.push()
        assert (got["type"], got["message"]["seq"], got["message"]["body"]) == ("Delivery", 1, deep)
        a.serves()
        b.serves()
