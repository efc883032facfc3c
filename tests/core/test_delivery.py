"""Tests for hub.core.delivery through the Machine: send keys, unknown recipients, read positions, unread."""

from __future__ import annotations

from typing import Any

from hub.config import HubConfig
from hub.core import snapshot
from hub.core.effects import Deliver, Reply
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import to_builtins
from hub.protocol.errors import Code
from hub.protocol.frames import Wake

Script = Any


def reply(out: Any) -> Any:
    (result,) = [to_builtins(fx.result) for fx in out.effects if isinstance(fx, Reply)]
    return result


def test_a_repeated_key_returns_the_first_seq_and_sends_nothing(script: Script) -> None:
    """The same (sender, key) twice: the second reply carries the first seq, marked repeated, no event."""
    script.join("alice", "bob")
    first = script.do("alice", c.Send(name="alice", to=("bob",), key="k1"))
    again = script.do("alice", c.Send(name="alice", to=("bob",), key="k1"))
    assert reply(first)["seq"] == 1 and not again.events
    assert reply(again) == {"seq": 1, "seqs": {"default": 1}, "unread": {"bob": 1}, "repeated": True}
    other = script.do("bob", c.Send(name="bob", to=("alice",), key="k1"))  # keys are per sender
    assert reply(other)["seq"] == 2


def test_keys_survive_a_snapshot_and_the_oldest_is_forgotten(script: Script) -> None:
    """The key index is rebuilt from a snapshot; past the cap the oldest key is forgotten."""
    script.machine.config = script.config = HubConfig(rate_per_agent=None, send_keys_per_agent=2)
    script.join("alice", "bob")
    for key in ("a", "b", "c"):
        script.do("alice", c.Send(name="alice", to=("bob",), key=key))
    loaded = snapshot.load(snapshot.dump(script.machine), script.config)
    script.machine = loaded
    assert reply(script.do("alice", c.Send(name="alice", to=("bob",), key="c")))["seq"] == 3
    assert reply(script.do("alice", c.Send(name="alice", to=("bob",), key="a")))["seq"] == 4


def test_a_bad_key_is_bad_request(script: Script) -> None:
    """An empty key, one over 128 characters or one with a control character is refused."""
    script.join("alice", "bob")
    for key in ("", "x" * 129, "a\nb"):
        err = script.refused("alice", c.Send(name="alice", to=("bob",), key=key))
        assert err.code == Code.BAD_REQUEST and err.detail["field"] == "key"


def test_broadcasts_are_never_unknown_recipients(script: Script) -> None:
    """`*` and `all` go out with nobody else in the room; a directed name that never joined does not."""
    script.join("alice")
    script.do("alice", c.Send(name="alice", to=("*",)))
    script.do("alice", c.Send(name="alice", to=("all",)))
    err = script.refused("alice", c.Send(name="alice", to=("*", "ghost")))
    assert err.code == Code.UNKNOWN_RECIPIENT and err.detail["names"] == ["ghost"]


def test_ack_moves_the_read_position_forward_only(script: Script) -> None:
    """unread counts what is addressed to bob after his position; an older ack changes nothing."""
    script.join("alice", "bob", "carol")
    for to in (("bob",), ("carol",), ("*",), ("bob",)):
        script.do("alice", c.Send(name="alice", to=to))
    assert reply(script.do("bob", c.AckMessages(name="bob", seq=3))) == {
        "name": "bob",
        "upto": 3,
        "unread": 1,
    }
    out = script.do("bob", c.AckMessages(name="bob", seq=1))
    assert not out.events and reply(out) == {"name": "bob", "upto": 3, "unread": 1}
    sent = reply(script.do("alice", c.Send(name="alice", to=("bob",))))
    assert sent["unread"] == {"bob": 2}
    err = script.refused("bob", c.AckMessages(name="bob", seq=99))
    assert err.code == Code.NOT_FOUND


def test_list_unread_lists_after_the_read_position(script: Script) -> None:
    """`unread` lists only messages addressed to the token's agent after its position."""
    script.join("alice", "bob")
    for to in (("bob",), ("alice",), ("bob",)):
        script.do("alice", c.Send(name="alice", to=to))
    script.do("bob", c.AckMessages(name="bob", seq=1))
    out = script.do("bob", c.ListMessages(unread=True))
    assert [m["seq"] for m in reply(out)["messages"]] == [3]
    err = script.refused("bob", c.ListMessages(unread=True, for_="alice"))
    assert err.code == Code.FORBIDDEN


def test_cel_messages_unread_is_the_readers_own(script: Script) -> None:
    """`messages.unread` evaluates to the count of the agent whose token reads it."""
    script.join("alice", "bob")
    script.do("alice", c.Send(name="alice", to=("bob",)))
    script.do("alice", c.Send(name="alice", to=("*",)))
    assert reply(script.do("bob", c.Eval(expr="messages.unread")))["value"] == 2
    assert reply(script.do("alice", c.Eval(expr="messages.unread")))["value"] == 0


def test_a_condition_on_unread_fires_for_its_subscriber(script: Script) -> None:
    """A subscription on `messages.unread > 0` triggers when a message for its agent arrives, and an ack
    is an event the conditions see."""
    script.join("alice", "bob")
    script.do("bob", c.Attach(name="bob"), session=2)
    script.do("bob", c.Subscribe(expr="messages.unread > 0"), session=2)
    out = script.do("alice", c.Send(name="alice", to=("bob",)))
    frames = [fx.frame for fx in out.effects if isinstance(fx, Deliver) and 2 in fx.sessions]
    assert any(type(f).__name__ == "Trigger" for f in frames)
    acked = script.do("bob", c.AckMessages(name="bob", seq=1), session=2)
    assert isinstance(acked.events[0], e.MessagesRead)


def test_a_wait_without_after_resumes_after_the_read_position(script: Script) -> None:
    """Once bob has acked, a wait with no `after` wakes at once on the first message after his position."""
    script.join("alice", "bob")
    for _ in range(3):
        script.do("alice", c.Send(name="alice", to=("bob",)))
    script.do("bob", c.AckMessages(name="bob", seq=1))
    out = script.do("bob", c.Wait(id=5, waiter="w", for_="bob", since=9e9), session=7)
    (wake,) = [fx.frame for fx in out.effects if isinstance(fx, Deliver) and isinstance(fx.frame, Wake)]
    assert wake.message is not None and wake.message.seq == 2
