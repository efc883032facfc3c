"""Tests for hub.core.machine and hub.core.agents: identity, tokens, sessions, presence and hub start."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hub.core import snapshot
from hub.core.agents import hash_token
from hub.core.effects import Outcome, Reply
from hub.core.machine import Context, SessionGone, Start
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import encode, to_builtins
from hub.protocol.errors import Code, HubError

Script = Any  # the fixture's class lives in tests/core/conftest.py


def reply(out: Outcome) -> Any:
    """The result of the one Reply effect in `out`."""
    results = [to_builtins(fx.result) for fx in out.effects if isinstance(fx, Reply)]
    assert len(results) == 1, out.effects
    return results[0]


def presence_of(script: Script, name: str, room: str = "default") -> dict[str, Any]:
    agents = reply(script.run(c.Agents(room=room)))["agents"]
    return next(a for a in agents if a["name"] == name)


# --------------------------------------------------------------------------- join and tokens


def test_join_returns_token_once_and_stores_only_its_hash(script: Script) -> None:
    """Join replies with a fresh token; the event, the snapshot and later replies hold only its hash."""
    out = script.run(c.Join(id=7, name="alice", role="dev"), session=1)
    result = reply(out)
    token = result["token"]
    assert token and result["name"] == "alice" and result["role"] == "dev"
    (event,) = out.events
    assert isinstance(event, e.AgentJoined)
    assert event.token_hash == hash_token(token) != token
    assert token.encode() not in encode(event)
    assert token.encode() not in snapshot.dump(script.machine)
    attach = script.run(c.Attach(id=8, name="alice", token=token), session=1)
    assert token not in repr(attach)
    listed = script.run(c.Agents())
    assert token not in repr(listed) and event.token_hash not in repr(listed)


def test_rejoin_rotates_the_token(script: Script) -> None:
    """Re-joining with the token and `rotate` issues a new token; the old one is then unauthorized."""
    old = reply(script.run(c.Join(name="alice")))["token"]
    assert reply(script.run(c.Join(name="alice", token=old)))["token"] == old  # no rotate: the same
    new = reply(script.run(c.Join(name="alice", token=old, rotate=True)))["token"]
    assert new != old
    err = script.refused(None, c.Heartbeat(name="alice", token=old))
    assert err.code == Code.UNAUTHORIZED
    assert old not in err.message and new not in err.message
    script.run(c.Heartbeat(name="alice", token=new))


def test_rejoin_keeps_the_role_unless_given(script: Script) -> None:
    """A re-join without a role keeps the agent's role; with one it replaces it."""
    token = reply(script.run(c.Join(name="alice", role="dev")))["token"]
    script.run(c.Join(name="alice", token=token))
    assert presence_of(script, "alice")["role"] == "dev"
    script.run(c.Join(name="alice", role="ops", token=token))
    assert presence_of(script, "alice")["role"] == "ops"


def test_wrong_token_is_unauthorized(script: Script) -> None:
    """A token that belongs to nobody is refused with unauthorized, without echoing it."""
    script.join("alice")
    err = script.refused(None, c.Send(name="alice", to=("alice",), token="not-a-token"))
    assert err.code == Code.UNAUTHORIZED
    assert "not-a-token" not in str(err)


def test_missing_token_is_unauthorized(script: Script) -> None:
    """A mutation without any token is refused with unauthorized."""
    script.join("alice")
    assert script.refused(None, c.Heartbeat(name="alice")).code == Code.UNAUTHORIZED


def test_another_agents_token_is_forbidden(script: Script) -> None:
    """Acting as bob with alice's token is forbidden (not merely unauthorized)."""
    script.join("alice", "bob")
    err = script.refused(None, c.Send(name="bob", to=("alice",), token=script.token("alice")))
    assert err.code == Code.FORBIDDEN


def test_token_from_another_room_is_forbidden(script: Script) -> None:
    """A token issued in room `a` does not act for the same name in room `b`."""
    script.join("alice", room="a")
    script.join("alice", room="b")
    cmd = c.Heartbeat(room="b", name="alice", token=script.token("alice", room="a"))
    assert script.refused(None, cmd).code == Code.FORBIDDEN


def test_session_attached_as_one_agent_cannot_send_as_another(script: Script) -> None:
    """A session attached as alice that sends as bob (with bob's own token) is forbidden."""
    script.join("alice", "bob")
    script.do("alice", c.Attach(name="alice"), session=1)
    err = script.refused("bob", c.Send(name="bob", to=("alice",)), session=1)
    assert err.code == Code.FORBIDDEN
    script.do("bob", c.Send(name="bob", to=("alice",)), session=2)


def test_unknown_agent_is_not_found(script: Script) -> None:
    """Acting as a name that never joined is not_found with what=agent."""
    script.join("alice")
    err = script.refused(None, c.Send(name="ghost", to=("alice",), token="x"))
    assert err.code == Code.NOT_FOUND and err.detail["what"] == "agent"


def test_unknown_room_is_not_found(script: Script) -> None:
    """Acting in a room nobody created is not_found with what=room."""
    err = script.refused(None, c.Heartbeat(room="nowhere", name="alice", token="x"))
    assert err.code == Code.NOT_FOUND and err.detail["what"] == "room"


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "a b", "a/b", "a,b", "all*", "é", "x" * 129])
def test_bad_agent_name_is_bad_request(script: Script, name: str) -> None:
    """A name that cannot be an address or a file key is refused with bad_request field=name."""
    err = script.refused(None, c.Join(name=name))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "name"


@pytest.mark.parametrize("room", ["", "_x", "a/b", "a b", "room*", "x" * 129])
def test_bad_room_name_is_bad_request(script: Script, room: str) -> None:
    """A room name outside the pattern is refused with bad_request field=room."""
    err = script.refused(None, c.Join(room=room, name="alice"))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "room"


def test_join_without_a_secret_source_is_unavailable(script: Script) -> None:
    """A shell that cannot mint tokens gets unavailable rather than a predictable token."""
    before = script.machine.position
    with pytest.raises(HubError) as info:
        script.machine.run(c.Join(name="alice"), Context(script.now, 1, None))
    assert info.value.code == Code.UNAVAILABLE
    assert script.machine.position == before


# --------------------------------------------------------------------------- sessions and presence


def test_attach_opens_a_session_and_marks_the_agent_online(script: Script) -> None:
    """Attach emits SessionOpened once per session; the agent counts it and stays active."""
    script.join("alice")
    out = script.do("alice", c.Attach(name="alice"), session=3)
    assert [type(ev) for ev in out.events] == [e.SessionOpened]
    again = script.do("alice", c.Attach(name="alice"), session=3)
    assert again.events == []
    record = presence_of(script, "alice")
    assert record["sessions"] == 1 and record["status"] == "active"


def test_last_session_gone_makes_the_agent_offline(script: Script) -> None:
    """SessionGone emits SessionClosed; the agent goes offline only when its last session closes."""
    script.join("alice")
    script.do("alice", c.Attach(name="alice"), session=1)
    script.do("alice", c.Attach(name="alice"), session=2)
    out = script.run(SessionGone(1), session=1)
    assert out.events == [e.SessionClosed(room="default", at=script.now, agent="alice", session=1)]
    assert presence_of(script, "alice")["status"] == "active"
    script.run(SessionGone(2), session=2)
    assert presence_of(script, "alice")["status"] == "offline"
    assert presence_of(script, "alice")["sessions"] == 0


def test_session_gone_twice_or_unattached_emits_nothing(script: Script) -> None:
    """A session the core never bound, or one already gone, leaves no event."""
    script.join("alice")
    script.do("alice", c.Attach(name="alice"), session=1)
    assert script.run(SessionGone(1)).events
    assert script.run(SessionGone(1)).events == []
    assert script.run(SessionGone(99)).events == []


def test_reattach_after_offline_is_active_again(script: Script) -> None:
    """An offline agent that attaches a new session is active again."""
    script.join("alice")
    script.do("alice", c.Attach(name="alice"), session=1)
    script.run(SessionGone(1))
    script.do("alice", c.Attach(name="alice"), session=2)
    assert presence_of(script, "alice")["status"] == "active"


def test_attach_needs_a_session(script: Script) -> None:
    """Attach outside a session (no connection to push to) is bad_request."""
    script.join("alice")
    assert script.refused("alice", c.Attach(name="alice"), session=None).code == Code.BAD_REQUEST


def test_hub_start_marks_agents_with_sessions_offline(script: Script) -> None:
    """Start emits HubStarted; agents that had sessions in the previous run go offline, others keep status."""
    script.join("alice", "bob", "carol")
    script.do("alice", c.Attach(name="alice"), session=1)
    script.do("bob", c.Heartbeat(name="bob", status="busy"), session=None)
    script.do("carol", c.Heartbeat(name="carol", status="done"), session=None)
    script.now += 5
    out = script.run(Start(), session=None)
    assert out.events == [e.HubStarted(room="", at=script.now)]
    assert presence_of(script, "alice")["status"] == "offline"
    assert presence_of(script, "alice")["sessions"] == 0
    assert presence_of(script, "bob")["status"] == "busy"
    assert presence_of(script, "carol")["status"] == "done"


def test_heartbeat_sets_status_and_time(script: Script) -> None:
    """A heartbeat with a status records it and advances last_heartbeat to ctx.now."""
    script.join("alice")
    script.now += 30
    out = script.do("alice", c.Heartbeat(name="alice", status="busy"))
    assert reply(out)["status"] == "busy"
    record = presence_of(script, "alice")
    assert record["status"] == "busy" and record["last_heartbeat"] == script.now


def test_heartbeat_offline_with_a_live_session_is_bad_request(script: Script) -> None:
    """An agent holding a live session cannot declare itself offline."""
    script.join("alice")
    script.do("alice", c.Attach(name="alice"), session=1)
    err = script.refused("alice", c.Heartbeat(name="alice", status="offline"), session=1)
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "status"


def test_sending_is_a_heartbeat(script: Script) -> None:
    """Every meaningful action advances last_heartbeat, here a send."""
    script.join("alice")
    script.now += 12
    script.do("alice", c.Send(name="alice", to=("alice",)))
    assert presence_of(script, "alice")["last_heartbeat"] == script.now


def test_done_agent_is_not_auto_heartbeated(script: Script) -> None:
    """An agent that said it is done keeps its last_heartbeat when it merely acts."""
    script.join("alice")
    script.do("alice", c.Heartbeat(name="alice", status="done"))
    stamp = script.now
    script.now += 60
    script.do("alice", c.Send(name="alice", to=("alice",)))
    assert presence_of(script, "alice")["last_heartbeat"] == stamp


def test_agents_lists_only_the_rooms_own_agents(script: Script) -> None:
    """The agents list of a room holds its own agents, never another room's."""
    script.join("alice", room="a")
    script.join("bob", room="b")
    assert [r["name"] for r in reply(script.run(c.Agents(room="a")))["agents"]] == ["alice"]
    assert reply(script.run(c.Agents(room="nowhere")))["agents"] == []


def test_status_counts_rooms_agents_and_events(script: Script) -> None:
    """Status reports rooms, agents, agents online, sessions and the log position."""
    script.join("alice", "bob")
    script.do("alice", c.Attach(name="alice"), session=1)
    result = reply(script.run(c.Status(), session=2))
    assert result["rooms"] == 1 and result["agents"] == 2 and result["agents_online"] == 1
    assert result["sessions"] == 1 and result["log_events"] == script.machine.position == 3


def test_reads_outside_a_session_reply_nothing(script: Script) -> None:
    """A command without a session emits no Reply (there is nobody to answer)."""
    script.join("alice")
    assert script.run(c.Agents(), session=None).effects == []


def test_refusal_leaves_no_trace(script: Script) -> None:
    """A refused command changes nothing: the snapshot is byte-identical before and after."""
    script.join("alice", "bob")
    before = snapshot.dump(script.machine)
    script.refused(None, c.Send(name="bob", to=("alice",), token=script.token("alice")))
    script.refused("alice", c.Send(name="alice", to=("a/b/c",)))
    assert snapshot.dump(script.machine) == before


def test_commands_are_frozen_structs() -> None:
    """Commands are immutable so a handler cannot change what the shell logged or echoed."""
    cmd = c.Join(name="alice")
    with pytest.raises(AttributeError):
        cmd.name = "bob"  # type: ignore[misc]
    assert msgspec.structs.replace(cmd, name="bob").name == "bob"
