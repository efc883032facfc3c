"""Tests for hub.core.feed through the Machine: send, targets, delivery, message claims, list and waiters."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import HubConfig
from hub.core.agents import Waiters
from hub.core.effects import CloseSession, Deliver, FollowLog, Outcome, Reply
from hub.core.feed import Feed
from hub.core.machine import Context, Machine, SessionGone
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import to_builtins
from hub.protocol.errors import Code
from hub.protocol.frames import Delivery, Error, Wake

Script = Any  # the fixture's class lives in tests/core/conftest.py


def reply(out: Outcome) -> Any:
    """The result of the one Reply effect in `out`."""
    results = [to_builtins(fx.result) for fx in out.effects if isinstance(fx, Reply)]
    assert len(results) == 1, out.effects
    return results[0]


def pushed(out: Outcome) -> dict[int, list[Any]]:
    """Every frame pushed by `out`, by the session it goes to."""
    by_session: dict[int, list[Any]] = {}
    for fx in out.effects:
        if isinstance(fx, Deliver):
            for session in fx.sessions:
                by_session.setdefault(session, []).append(fx.frame)
    return by_session


def sent(out: Outcome) -> list[tuple[str, int, tuple[str, ...]]]:
    """(room, seq, to) of every MessageSent in `out`."""
    return [(ev.room, ev.seq, ev.to) for ev in out.events if isinstance(ev, e.MessageSent)]


def body(value: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


@pytest.fixture
def room3(script: Script) -> Script:
    """alice, bob and carol in `default`, each attached and streaming on session 1, 2, 3."""
    script.join("alice", "bob", "carol")
    for session, name in enumerate(("alice", "bob", "carol"), start=1):
        script.do(name, c.Attach(name=name), session=session)
    return script


# --------------------------------------------------------------------------- send and targets


def test_send_to_a_name(script: Script) -> None:
    """A message to `bob` is one MessageSent in the sender's room at seq 1, addressed to bob."""
    script.join("alice", "bob")
    out = script.do("alice", c.Send(name="alice", to=("bob",), body=body({"x": 1}), kind="note"))
    (event,) = out.events
    assert isinstance(event, e.MessageSent)
    assert (event.room, event.seq, event.sender, event.to, event.kind) == (
        "default",
        1,
        "alice",
        ("bob",),
        "note",
    )
    assert msgspec.json.decode(event.body) == {"x": 1}
    assert reply(out) == {"seq": 1, "seqs": {"default": 1}, "unread": {"bob": 1}}


def test_send_to_several_names_is_one_message(script: Script) -> None:
    """`a,b` is one message addressed to both; a repeated name is kept once."""
    script.join("alice", "bob", "carol")
    out = script.do("alice", c.Send(name="alice", to=("bob", "carol", "bob")))
    assert sent(out) == [("default", 1, ("bob", "carol"))]


def test_send_to_own_room_group(script: Script) -> None:
    """`default/*` and `*` both address the sender's own room group."""
    script.join("alice", "bob")
    assert sent(script.do("alice", c.Send(name="alice", to=("default/*",)))) == [("default", 1, ("*",))]
    assert sent(script.do("alice", c.Send(name="alice", to=("*",)))) == [("default", 2, ("*",))]


def test_send_to_another_rooms_agent(script: Script) -> None:
    """`ops/dana` lands in ops's feed only, sent from `default/alice`, without reply_to crossing rooms."""
    script.join("alice", "bob")
    script.join("dana", room="ops")
    script.do("alice", c.Send(name="alice", to=("bob",)))
    out = script.do("alice", c.Send(name="alice", to=("ops/dana",), reply_to=1))
    (event,) = out.events
    assert (event.room, event.seq, event.sender, event.to, event.reply_to) == (
        "ops",
        1,
        "default/alice",
        ("dana",),
        None,
    )
    assert reply(out) == {"seq": 1, "seqs": {"ops": 1}, "unread": {"ops/dana": 1}}
    assert script.machine.world.rooms["default"].part(Feed).seq == 1


def test_send_to_another_room_group_and_a_local_name(script: Script) -> None:
    """One send to `bob` and `ops/*` writes one message per room, each with its own seq."""
    script.join("alice", "bob")
    script.join("dana", room="ops")
    script.do("dana", c.Send(room="ops", name="dana", to=("dana",)))
    out = script.do("alice", c.Send(name="alice", to=("bob", "ops/*")))
    assert sorted(sent(out)) == [("default", 1, ("bob",)), ("ops", 2, ("*",))]
    assert reply(out)["seq"] == 1 and reply(out)["seqs"] == {"default": 1, "ops": 2}


def test_send_to_all_reaches_every_room(script: Script) -> None:
    """`all` writes one message into every room of the hub, each at that room's next seq."""
    script.join("alice", room="a")
    script.join("bob", room="b")
    script.join("carol", room="c")
    script.do("bob", c.Send(room="b", name="bob", to=("bob",)))
    out = script.do("alice", c.Send(room="a", name="alice", to=("all",)))
    assert sorted(sent(out)) == [("a", 1, ("all",)), ("b", 2, ("all",)), ("c", 1, ("all",))]
    assert {ev.sender for ev in out.events} == {"alice", "a/alice"}


def test_send_to_all_is_ordered_the_same_in_every_process(script: Script) -> None:
    """The rooms an `all` message lands in are written in a fixed order (the core is a function of its inputs)."""
    for room in ("r3", "r1", "r2", "r0"):
        script.join("x", room=room)
    out = script.do("x", c.Send(room="r2", name="x", to=("all",)))
    assert [ev.room for ev in out.events] == sorted(ev.room for ev in out.events)


def test_seq_is_per_room_and_monotonic(script: Script) -> None:
    """Each room numbers its own feed 1, 2, 3... independently of other rooms."""
    script.join("alice", room="a")
    script.join("bob", room="b")
    seqs: dict[str, list[int]] = {"a": [], "b": []}
    for i in range(6):
        room, name = ("a", "alice") if i % 3 else ("b", "bob")
        out = script.do(name, c.Send(room=room, name=name, to=(name,)))
        seqs[room].append(reply(out)["seq"])
    assert seqs == {"a": [1, 2, 3, 4], "b": [1, 2]}


def test_send_to_an_unknown_room_is_not_found(script: Script) -> None:
    """A target in a room nobody created is refused before any message is written."""
    script.join("alice", "bob")
    err = script.refused("alice", c.Send(name="alice", to=("bob", "nowhere/dana")))
    assert err.code == Code.NOT_FOUND and err.detail == {"what": "room", "room": "nowhere"}


def test_send_to_a_name_not_joined_yet_is_refused_unless_allowed(script: Script) -> None:
    """A directed send to a name that never joined is `unknown_recipient`, naming it, and writes nothing;
    with `allow_unknown` it is written and the reply lists the name as unknown."""
    script.join("alice")
    err = script.refused("alice", c.Send(name="alice", to=("later",)))
    assert err.code == Code.UNKNOWN_RECIPIENT and err.detail == {"names": ["later"]}
    out = script.do("alice", c.Send(name="alice", to=("later",), allow_unknown=True))
    assert reply(out)["unknown"] == ["later"]
    assert sent(out) == [("default", 1, ("later",))]


@pytest.mark.parametrize("to", [(), ("a/b/c",), ("ops/",), ("bad name",), ("x/../y",), ("-x",), ("a,b",)])
def test_bad_target_is_bad_request(script: Script, to: tuple[str, ...]) -> None:
    """Targets outside `name`, `room/*`, `room/name`, `all` are bad_request naming the field."""
    script.join("alice")
    err = script.refused("alice", c.Send(name="alice", to=to))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] in ("to", "room")


def test_body_over_the_limit_is_too_large(script: Script) -> None:
    """A body over max_body_bytes is too_large with the limit; one exactly at the limit is accepted."""
    small = type(script)(HubConfig(rate_per_agent=None, max_body_bytes=10))
    small.join("alice")
    err = small.refused("alice", c.Send(name="alice", to=("alice",), body=msgspec.Raw(b'"123456789"')))
    assert err.code == Code.TOO_LARGE and err.detail["limit"] == 10
    small.do("alice", c.Send(name="alice", to=("alice",), body=msgspec.Raw(b'"12345678"')))
    small.check_replay()


def test_body_limit_can_be_switched_off(script: Script) -> None:
    """max_body_bytes=None accepts any body size."""
    free = type(script)(HubConfig(rate_per_agent=None, max_body_bytes=None))
    free.join("alice")
    free.do("alice", c.Send(name="alice", to=("alice",), body=body("x" * 300_000)))
    free.check_replay()


def test_reply_to_a_missing_message_is_not_found(script: Script) -> None:
    """reply_to must name a message already in the room's feed."""
    script.join("alice", "bob")
    script.do("alice", c.Send(name="alice", to=("bob",)))
    err = script.refused("bob", c.Send(name="bob", to=("alice",), reply_to=2))
    assert err.code == Code.NOT_FOUND and err.detail == {"what": "message", "seq": 2}
    out = script.do("bob", c.Send(name="bob", to=("alice",), reply_to=1))
    assert out.events[0].reply_to == 1


def test_long_kind_is_bad_request(script: Script) -> None:
    """A kind over 128 characters is refused with bad_request field=kind."""
    script.join("alice")
    err = script.refused("alice", c.Send(name="alice", to=("alice",), kind="k" * 129))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "kind"


# --------------------------------------------------------------------------- delivery


def test_directed_message_is_delivered_only_to_its_addressee(room3: Script) -> None:
    """A message to bob is pushed to bob's session and never to carol's or the sender's."""
    out = room3.do("alice", c.Send(name="alice", to=("bob",), body=body("hi")), session=1)
    frames = pushed(out)
    assert list(frames) == [2]
    (frame,) = frames[2]
    assert isinstance(frame, Delivery) and frame.message.seq == 1 and frame.message.sender == "alice"


def test_message_to_two_names_reaches_both_only(room3: Script) -> None:
    """A message to alice,carol reaches sessions 1 and 3, not bob's session 2."""
    out = room3.do("bob", c.Send(name="bob", to=("alice", "carol")), session=2)
    assert sorted(pushed(out)) == [1, 3]


def test_broadcast_is_not_echoed_to_its_sender(room3: Script) -> None:
    """A message to `*` reaches everyone streaming in the room except the sender."""
    out = room3.do("alice", c.Send(name="alice", to=("*",)), session=1)
    assert sorted(pushed(out)) == [2, 3]


def test_message_to_self_is_delivered_to_self(room3: Script) -> None:
    """Naming oneself explicitly is a directed message, so it is delivered."""
    out = room3.do("alice", c.Send(name="alice", to=("alice",)), session=1)
    assert sorted(pushed(out)) == [1]


def test_delivery_never_crosses_rooms(script: Script) -> None:
    """A broadcast in room a is not pushed to a session attached in room b, even for the same name."""
    script.join("alice", "bob", room="a")
    script.join("bob", room="b")
    script.do("bob", c.Attach(room="a", name="bob"), session=1)
    script.do("bob", c.Attach(room="b", name="bob"), session=2)
    out = script.do("alice", c.Send(room="a", name="alice", to=("*", "bob")), session=3)
    assert sorted(pushed(out)) == [1]


def test_cross_room_message_is_delivered_in_the_target_room(script: Script) -> None:
    """`ops/dana` is pushed to dana's session in ops, showing the sender as `default/alice`."""
    script.join("alice")
    script.join("dana", room="ops")
    script.do("dana", c.Attach(room="ops", name="dana"), session=5)
    out = script.do("alice", c.Send(name="alice", to=("ops/dana",)), session=1)
    (frame,) = pushed(out)[5]
    assert frame.message.room == "ops" and frame.message.sender == "default/alice"


def test_session_without_stream_gets_no_pushes(script: Script) -> None:
    """An attach with stream=false binds the session but pushes nothing to it."""
    script.join("alice", "bob")
    script.do("bob", c.Attach(name="bob", stream=False), session=2)
    out = script.do("alice", c.Send(name="alice", to=("bob",)), session=1)
    assert pushed(out) == {}


def test_closed_session_gets_no_more_pushes(room3: Script) -> None:
    """After SessionGone, a message to that agent is pushed to nobody."""
    room3.run(SessionGone(2), session=2)
    out = room3.do("alice", c.Send(name="alice", to=("bob",)), session=1)
    assert pushed(out) == {}


def test_attach_with_cursor_pushes_the_backlog_first(script: Script) -> None:
    """Attach with `after` pushes every message addressed to the agent after that seq, oldest first."""
    script.join("alice", "bob", "carol")
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 1
    script.do("alice", c.Send(name="alice", to=("carol",)))  # 2
    script.do("alice", c.Send(name="alice", to=("*",)))  # 3
    script.do("bob", c.Send(name="bob", to=("*",)))  # 4: bob's own broadcast
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 5
    out = script.do("bob", c.Attach(name="bob", after=0), session=9)
    assert isinstance(out.effects[0], Reply) and reply(out)["seq"] == 5
    assert [f.message.seq for f in pushed(out)[9]] == [1, 3, 5]
    later = script.do("bob", c.Attach(name="bob", after=3), session=10)
    assert [f.message.seq for f in pushed(later)[10]] == [5]


# --------------------------------------------------------------------------- message claims


def test_message_claim_is_atomic_and_names_the_holder(script: Script) -> None:
    """The first claimer wins; a second gets already_claimed with detail holder, and nothing is emitted."""
    script.join("alice", "bob", "carol")
    script.do("alice", c.Send(name="alice", to=("*",), kind="job"))
    out = script.do("bob", c.ClaimMessage(name="bob", seq=1))
    assert out.events == [e.MessageClaimed(room="default", at=script.now, seq=1, holder="bob")]
    assert reply(out) == {"seq": 1, "holder": "bob"}
    err = script.refused("carol", c.ClaimMessage(name="carol", seq=1))
    assert err.code == Code.ALREADY_CLAIMED and err.detail["holder"] == "bob"
    again = script.refused("bob", c.ClaimMessage(name="bob", seq=1))
    assert again.code == Code.ALREADY_CLAIMED


@pytest.mark.parametrize("seq", [0, 2, -1])
def test_claiming_a_missing_message_is_not_found(script: Script, seq: int) -> None:
    """A claim of a seq outside the feed is not_found with what=message."""
    script.join("alice")
    script.do("alice", c.Send(name="alice", to=("alice",)))
    err = script.refused("alice", c.ClaimMessage(name="alice", seq=seq))
    assert err.code == Code.NOT_FOUND and err.detail["what"] == "message"


# --------------------------------------------------------------------------- list


@pytest.fixture
def feed5(script: Script) -> Script:
    """Five messages: 1 a→b task, 2 a→* note, 3 b→c task, 4 c→* task, 5 a→b note; 1 is claimed."""
    script.join("a", "b", "c")
    script.do("a", c.Send(name="a", to=("b",), kind="task"))
    script.do("a", c.Send(name="a", to=("*",), kind="note"))
    script.do("b", c.Send(name="b", to=("c",), kind="task"))
    script.do("c", c.Send(name="c", to=("*",), kind="task"))
    script.do("a", c.Send(name="a", to=("b",), kind="note"))
    script.do("b", c.ClaimMessage(name="b", seq=1))
    return script


def listed(script: Script, who: str | None = "b", **kw: Any) -> list[int]:
    """The seqs `who` (by its token; None: no token) lists; b sees the whole feed of `feed5`."""
    cmd = c.ListMessages(token=None if who is None else script.token(who), **kw)
    result = reply(script.run(cmd))
    assert result["head"] == script.machine.world.rooms["default"].part(Feed).seq
    return [m["seq"] for m in result["messages"]]


def test_list_everything(feed5: Script) -> None:
    """Without filters the list is the whole feed a reader may see, oldest first."""
    assert listed(feed5) == [1, 2, 3, 4, 5]


def test_directed_messages_are_read_only_by_their_sender_and_recipients(feed5: Script) -> None:
    """A directed message is listed to its sender and recipients only; without a token, broadcasts only."""
    assert listed(feed5, "a") == [1, 2, 4, 5]
    assert listed(feed5, "c") == [2, 3, 4]
    assert listed(feed5, None) == [2, 4]
    assert listed(feed5, "c", for_="b") == [2, 4]  # naming another agent shows nothing of its own


def test_list_for_an_agent(feed5: Script) -> None:
    """`for` keeps messages naming the agent and broadcasts from others (not its own broadcasts)."""
    assert listed(feed5, "b", for_="b") == [1, 2, 4, 5]
    assert listed(feed5, "a", for_="a") == [4]
    assert listed(feed5, "c", for_="c") == [2, 3]


def test_list_after_kind_unclaimed_and_limit(feed5: Script) -> None:
    """`after`, `kind`, `unclaimed` and `limit` filter and combine."""
    assert listed(feed5, after=2) == [3, 4, 5]
    assert listed(feed5, kind="task") == [1, 3, 4]
    assert listed(feed5, unclaimed=True) == [2, 3, 4, 5]
    assert listed(feed5, "c", kind="task", unclaimed=True, for_="c") == [3]
    assert listed(feed5, limit=2) == [1, 2]
    assert listed(feed5, after=5) == []
    assert listed(feed5, after=-3) == [1, 2, 3, 4, 5]


def test_a_negative_tail_position_follows_from_the_start(feed5: Script) -> None:
    """Like every `after` cursor, a tail's negative `after` is clamped to 0: the whole log, never refused."""
    out = feed5.run(c.Tail(id=7, after=-5))
    (follow,) = [fx for fx in out.effects if type(fx) is FollowLog]
    assert follow.after == 0 and follow.id == 7


def test_list_shows_the_claim_holder(feed5: Script) -> None:
    """Listed messages carry claimed_by."""
    messages = reply(feed5.run(c.ListMessages(limit=1, token=feed5.token("b"))))["messages"]
    assert messages[0]["claimed_by"] == "b"


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_list_limit_out_of_range_is_bad_request(feed5: Script, limit: int) -> None:
    """A limit outside 1..max_list_limit is bad_request field=limit."""
    err = feed5.refused(None, c.ListMessages(limit=limit))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "limit"


def test_list_of_an_unknown_room_is_empty(script: Script) -> None:
    """Listing a room that does not exist returns nothing and head 0."""
    assert reply(script.run(c.ListMessages(room="nowhere"))) == {"messages": [], "head": 0}


# --------------------------------------------------------------------------- waiters


def wake_of(out: Outcome, session: int) -> Wake | None:
    frames = [f for f in pushed(out).get(session, []) if isinstance(f, Wake)]
    assert len(frames) <= 1
    return frames[0] if frames else None


def test_waiter_is_woken_by_a_directed_message(script: Script) -> None:
    """A waiter for bob is woken once by a message to bob, then disarmed."""
    script.join("alice", "bob")
    out = script.do("bob", c.Wait(id=4, waiter="w", for_="bob"), session=7)
    assert reply(out) == {"armed": 0} and wake_of(out, 7) is None
    woke = script.do("alice", c.Send(name="alice", to=("bob",)), session=1)
    frame = wake_of(woke, 7)
    assert frame is not None and frame.id == 4 and frame.reason == "message" and frame.message.seq == 1
    assert wake_of(script.do("alice", c.Send(name="alice", to=("bob",)), session=1), 7) is None


def test_waiter_ignores_messages_for_others(script: Script) -> None:
    """A waiter for bob is not woken by a message to carol."""
    script.join("alice", "bob", "carol")
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=7)
    assert wake_of(script.do("alice", c.Send(name="alice", to=("carol",))), 7) is None
    assert "w" in script.machine.world.rooms["default"].part(Waiters).by_name


def test_waiter_is_woken_by_a_broadcast_unless_directed_only(script: Script) -> None:
    """A broadcast wakes a plain waiter but not a directed-only one."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="plain", for_="bob"), session=7)
    script.do("bob", c.Wait(waiter="strict", for_="bob", directed_only=True), session=8)
    out = script.do("alice", c.Send(name="alice", to=("*",)))
    assert wake_of(out, 7) is not None and wake_of(out, 8) is None


def test_priority_broadcast_wakes_directed_only_waiters(script: Script) -> None:
    """A priority broadcast wakes even a directed-only waiter."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="strict", for_="bob", directed_only=True), session=8)
    out = script.do("alice", c.Send(name="alice", to=("all",), priority=True))
    assert wake_of(out, 8) is not None


def test_priority_message_to_someone_else_wakes_nobody_else(script: Script) -> None:
    """Priority widens who a broadcast wakes, not who a directed message is for."""
    script.join("alice", "bob", "carol")
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=8)
    assert wake_of(script.do("alice", c.Send(name="alice", to=("carol",), priority=True)), 8) is None


def test_own_broadcast_does_not_wake_own_waiter(script: Script) -> None:
    """A waiter for alice is not woken by alice's own broadcast."""
    script.join("alice")
    script.do("alice", c.Wait(waiter="w", for_="alice"), session=8)
    assert wake_of(script.do("alice", c.Send(name="alice", to=("*",))), 8) is None


def test_second_waiter_with_the_same_name_takes_over(script: Script) -> None:
    """A new Wait with a live waiter's name sends it taken_over, closes its session and arms the new one."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(id=1, waiter="w", for_="bob"), session=7)
    out = script.do("bob", c.Wait(id=2, waiter="w", for_="bob"), session=8)
    notices = pushed(out)[7]
    assert [type(f) for f in notices] == [Error]
    assert notices[0].code == Code.TAKEN_OVER and notices[0].id == 1
    closes = [fx for fx in out.effects if isinstance(fx, CloseSession)]
    assert [fx.session for fx in closes] == [7]
    woke = script.do("alice", c.Send(name="alice", to=("bob",)))
    assert wake_of(woke, 8) is not None and wake_of(woke, 7) is None


def test_taken_over_session_going_away_keeps_the_new_waiter(script: Script) -> None:
    """The old waiter's session closing later does not disarm the waiter that took its name."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=7)
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=8)
    script.run(SessionGone(7), session=7)
    assert wake_of(script.do("alice", c.Send(name="alice", to=("bob",))), 8) is not None


def test_one_waiter_per_session(script: Script) -> None:
    """A session with an armed waiter cannot arm a second one."""
    script.join("bob")
    script.do("bob", c.Wait(waiter="w1", for_="bob"), session=7)
    err = script.refused("bob", c.Wait(waiter="w2", for_="bob"), session=7)
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "waiter"


def test_wait_after_a_cursor_that_is_already_covered_wakes_at_once(script: Script) -> None:
    """A Wait whose `after` is older than a matching message is woken immediately with the oldest match."""
    script.join("alice", "bob", "carol")
    script.do("alice", c.Send(name="alice", to=("carol",)))  # 1
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 2
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 3
    out = script.do("bob", c.Wait(id=9, waiter="w", for_="bob", after=0), session=7)
    frame = wake_of(out, 7)
    assert frame is not None and frame.id == 9 and frame.message.seq == 2
    assert reply(out) == {"armed": 3}
    assert "w" not in script.machine.world.rooms["default"].part(Waiters).by_name
    later = script.do("bob", c.Wait(id=10, waiter="w", for_="bob", after=3), session=8)
    assert wake_of(later, 8) is None


def test_wait_since_a_time_wakes_at_once_on_a_message_sent_then(script: Script) -> None:
    """A Wait with `since` is woken at once by the oldest matching message sent at or after that time."""
    script.join("alice", "bob")
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 1 at 1000
    script.now = 1010.0
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 2 at 1010
    script.now = 1020.0
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 3 at 1020
    frame = wake_of(script.do("bob", c.Wait(waiter="w1", for_="bob", since=1005.0), session=7), 7)
    assert frame is not None and frame.message.seq == 2
    frame = wake_of(script.do("bob", c.Wait(waiter="w2", for_="bob", since=0.0), session=8), 8)
    assert frame is not None and frame.message.seq == 1
    assert wake_of(script.do("bob", c.Wait(waiter="w3", for_="bob", since=1030.0), session=9), 9) is None


def test_wait_since_on_an_empty_feed_arms(script: Script) -> None:
    """A Wait with `since` in a room with no messages arms the waiter (and does not crash)."""
    script.join("bob")
    out = script.do("bob", c.Wait(waiter="w", for_="bob", since=0.0), session=7)
    assert reply(out) == {"armed": 0} and wake_of(out, 7) is None


def test_wait_already_covered_directed_only_skips_broadcasts(script: Script) -> None:
    """An immediate wake honours directed_only: a past broadcast does not count, a past direct one does."""
    script.join("alice", "bob")
    script.do("alice", c.Send(name="alice", to=("*",)))  # 1
    out = script.do("bob", c.Wait(waiter="w", for_="bob", directed_only=True, after=0), session=7)
    assert wake_of(out, 7) is None
    script.run(SessionGone(7), session=7)
    script.do("alice", c.Send(name="alice", to=("bob",)))  # 2
    frame = wake_of(
        script.do("bob", c.Wait(waiter="w", for_="bob", directed_only=True, after=0), session=8), 8
    )
    assert frame is not None and frame.message.seq == 2


def test_session_gone_disarms_its_waiter(script: Script) -> None:
    """When a waiter's session ends the waiter is gone; a later message wakes nobody."""
    script.join("alice", "bob")
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=7)
    script.run(SessionGone(7), session=7)
    out = script.do("alice", c.Send(name="alice", to=("bob",)))
    assert pushed(out) == {}


def test_session_gone_disarms_a_waiter_in_another_room(script: Script) -> None:
    """A session attached in one room that waits in another loses that waiter when it ends."""
    script.join("bob", room="a")
    script.join("alice", "bob", room="b")
    script.do("bob", c.Attach(room="a", name="bob", stream=False), session=7)
    script.do("bob", c.Wait(room="b", waiter="w", for_="bob"), session=7)
    script.run(SessionGone(7), session=7)
    assert script.machine.world.rooms["b"].part(Waiters).by_name == {}
    out = script.do("alice", c.Send(room="b", name="alice", to=("bob",)))
    assert pushed(out) == {}


def test_waiting_is_shown_in_the_agents_list(script: Script) -> None:
    """An online agent with an armed waiter lists that waiter's name."""
    script.join("bob")
    script.do("bob", c.Attach(name="bob", stream=False), session=1)
    script.do("bob", c.Wait(waiter="w", for_="bob"), session=7)
    (record,) = reply(script.run(c.Agents()))["agents"]
    assert record["waiter"] == "w"


@pytest.mark.parametrize(
    ("cmd", "field"),
    [
        (c.Wait(waiter="bad name", for_="bob"), "waiter"),
        (c.Wait(waiter="w", for_="bad/name"), "for"),
        (c.Wait(waiter="w"), "for"),
        (c.Wait(room="a/b", waiter="w", for_="bob"), "room"),
    ],
)
def test_bad_wait_is_bad_request(script: Script, cmd: c.Wait, field: str) -> None:
    """A Wait with a bad name, room or no `for` is bad_request naming the field."""
    err = script.refused(None, cmd, session=7)
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == field


def test_wait_needs_a_session(script: Script) -> None:
    """A Wait outside a session has nobody to wake: bad_request."""
    assert script.refused(None, c.Wait(waiter="w", for_="bob"), session=None).code == Code.BAD_REQUEST


NAMES = ("a", "b", "c", "d")


@settings(max_examples=60, deadline=None)
@given(
    sender=st.sampled_from(NAMES),
    targets=st.lists(st.sampled_from([*NAMES, "*", "default/*", "all", "default/b"]), min_size=1, max_size=3),
    streaming=st.sets(st.sampled_from(NAMES)),
    priority=st.booleans(),
)
def test_deliveries_follow_the_addressing_rule(
    sender: str, targets: list[str], streaming: set[str], priority: bool
) -> None:
    """Pushes go exactly to the streaming sessions of agents named, or of everyone but the sender on a broadcast."""
    machine = Machine(HubConfig(rate_per_agent=None))
    for name in NAMES:
        machine.run(c.Join(name=name), Context(0.0, None, lambda name=name: f"t-{name}"))
    sessions = {name: i for i, name in enumerate(sorted(streaming), start=1)}
    for name, session in sessions.items():
        machine.run(c.Attach(name=name, token=f"t-{name}"), Context(1.0, session))
    send = c.Send(name=sender, to=tuple(targets), token=f"t-{sender}", priority=priority)
    out = machine.run(send, Context(2.0, 99))
    named = {t.rpartition("/")[2] for t in targets}
    broadcast = bool(named & {"*", "all"})
    expected = {s for n, s in sessions.items() if n in named or (broadcast and n != sender)}
    assert set(pushed(out)) == expected


def test_sender_naming_itself_in_a_broadcast_gets_it(room3: Script) -> None:
    """`alice,*` from alice is delivered to alice too: naming oneself beats the no-echo rule, as in the feed."""
    out = room3.do("alice", c.Send(name="alice", to=("alice", "*")), session=1)
    assert sorted(pushed(out)) == [1, 2, 3]
    assert listed(room3, "alice", for_="alice") == [1]


@settings(max_examples=60, deadline=None)
@given(
    sender=st.sampled_from(NAMES),
    targets=st.lists(st.sampled_from([*NAMES, "*", "all", "default/c"]), min_size=1, max_size=3),
    waiting=st.lists(st.tuples(st.sampled_from(NAMES), st.booleans()), max_size=4),
    priority=st.booleans(),
)
def test_wakes_follow_the_addressing_rule(
    sender: str, targets: list[str], waiting: list[tuple[str, bool]], priority: bool
) -> None:
    """A waiter wakes iff its agent is named, or on a broadcast not its own (directed-only: priority ones only)."""
    machine = Machine(HubConfig(rate_per_agent=None))
    for name in NAMES:
        machine.run(c.Join(name=name), Context(0.0, None, lambda name=name: f"t-{name}"))
    for session, (for_, directed) in enumerate(waiting, start=1):
        wait = c.Wait(waiter=f"w{session}", for_=for_, directed_only=directed, token=f"t-{for_}")
        machine.run(wait, Context(1.0, session))
    send = c.Send(name=sender, to=tuple(targets), token=f"t-{sender}", priority=priority)
    out = machine.run(send, Context(2.0, 99))
    named = {t.rpartition("/")[2] for t in targets}
    broadcast = bool(named & {"*", "all"})
    expected = {
        session
        for session, (for_, directed) in enumerate(waiting, start=1)
        if for_ in named or (broadcast and for_ != sender and (priority or not directed))
    }
    woken = {s for s, frames in pushed(out).items() if any(isinstance(f, Wake) for f in frames)}
    assert woken == expected
