"""Admin token, rooms and invites (SPEC: Identity and rooms; Operators), and loopback-only without a token."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_sdk.sync import SyncAgent
from hub.config import HubConfig, bind_problem, is_loopback
from hub.core import snapshot
from hub.core.agents import Roster
from hub.core.rooms import Invites
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError
from tests.conftest import Cli, ThreadHub, hub_config
from tests.core.conftest import Script

ADMIN = "admin-sekrit-ünïcode"  # a non-ASCII token is compared like any other


@pytest.fixture
def admin_hub(
    db_path: Path, client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ThreadHub]:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    th = ThreadHub(hub_config(db_path, admin_token=ADMIN))
    try:
        yield th
    finally:
        th.stop()


def agent(hub: ThreadHub, name: str, room: str = "default", **kw: str) -> SyncAgent:
    return SyncAgent(name, room=room, hub=hub.url, **kw)  # type: ignore[arg-type]


def invite(hub: ThreadHub, room: str, ttl: float | None = None) -> str:
    with SyncAgent(hub=hub.url) as op:
        result = op.request(c.InviteRoom(id=op.next_id(), room=room, admin_token=ADMIN, ttl=ttl))
    return str(result["invite"])


# -- over the wire ---------------------------------------------------------------------------------------


def test_joining_needs_the_admin_token_or_an_invite(admin_hub: ThreadHub) -> None:
    """No proof: `unauthorized`; the admin token or an invite to the room admits; a wrong admin token does not."""
    with agent(admin_hub, "mallory") as m, pytest.raises(HubError) as info:
        m.send("x", "hi", allow_unknown=True)
    assert info.value.code == Code.UNAUTHORIZED and "invite" in info.value.message
    with agent(admin_hub, "mallory", admin_token="wrong") as m, pytest.raises(HubError) as info:
        m.join()
    assert info.value.code == Code.UNAUTHORIZED
    with agent(admin_hub, "root", admin_token=ADMIN) as root:
        assert root.send("root", "in", allow_unknown=True) == 1
    token = invite(admin_hub, "ops")
    with agent(admin_hub, "dana", room="ops", invite=token) as dana:
        assert dana.send("dana", "in ops", allow_unknown=True) == 1
    with agent(admin_hub, "eve", room="default", invite=token) as eve, pytest.raises(HubError) as info:
        eve.join()  # an invite to ops does not open default
    assert info.value.code == Code.UNAUTHORIZED and "does not admit to room 'default'" in info.value.message


def test_an_agent_rejoins_with_its_own_token(admin_hub: ThreadHub) -> None:
    """Re-joining (and rotating the token) needs only the agent's current token; a stale one is refused."""
    with agent(admin_hub, "worker", admin_token=ADMIN) as w:
        first = w.join()
    with agent(admin_hub, "worker", token=first) as w:
        assert w.join() == first  # re-joining with its token keeps it
        second = w.join(rotate=True)
    assert second != first
    with agent(admin_hub, "worker", token=first) as w, pytest.raises(HubError) as info:
        w.join()
    assert info.value.code == Code.NAME_TAKEN


def test_rooms_and_tails_across_rooms_need_the_admin_token(admin_hub: ThreadHub) -> None:
    """room.create, room.invite, room.list and a tail of every room are refused without the admin token."""
    with SyncAgent(hub=admin_hub.url) as op:
        for cmd in (
            c.CreateRoom(id=op.next_id(), room="r1"),
            c.InviteRoom(id=op.next_id(), room="r1", admin_token="nope"),
            c.ListRooms(id=op.next_id()),
            c.Tail(id=op.next_id(), rooms=()),
        ):
            with pytest.raises(HubError) as info:
                op.request(cmd)
            assert info.value.code == Code.UNAUTHORIZED, cmd
        assert op.request(c.CreateRoom(id=op.next_id(), room="r1", admin_token=ADMIN)) == {"room": "r1"}
        with pytest.raises(HubError) as info:
            op.request(c.CreateRoom(id=op.next_id(), room="r1", admin_token=ADMIN))
        assert info.value.code == Code.ALREADY_EXISTS
        listed = op.request(c.ListRooms(id=op.next_id(), admin_token=ADMIN))["rooms"]
        assert [r["name"] for r in listed] == ["r1"]
        member = op.request(c.Join(id=op.next_id(), room="r1", name="m", admin_token=ADMIN))["token"]
        one_room = c.Tail(id=op.next_id(), room="r1", token=member, rooms=("r1",))
        assert op.request(one_room)["after"] >= 1  # one room: open to its members
        assert op.request(c.Tail(id=op.next_id(), rooms=(), admin_token=ADMIN))["after"] >= 1


def test_invites_and_rooms_survive_a_restart_and_a_snapshot(
    db_path: Path, client_env: dict[str, str]
) -> None:
    """Rooms and invites are events: after a restart (folded from a snapshot) the invite still admits."""
    config = hub_config(db_path, admin_token=ADMIN, snapshot_every=2)
    first = ThreadHub(config)
    try:
        token = invite(first, "ops")
        with SyncAgent(hub=first.url) as op:
            op.request(c.CreateRoom(id=op.next_id(), room="empty", admin_token=ADMIN))
    finally:
        first.stop()
    again = ThreadHub(config)
    try:
        with agent(again, "dana", room="ops", invite=token, save_token=False) as dana:  # type: ignore[arg-type]
            assert dana.join().startswith("st_")
        with SyncAgent(hub=again.url) as op:
            names = [r["name"] for r in op.request(c.ListRooms(id=op.next_id(), admin_token=ADMIN))["rooms"]]
        assert names == ["empty", "ops"]
    finally:
        again.stop()
    rows = sqlite3.connect(db_path).execute("select data from events").fetchall()
    stored = b"".join(bytes(r[0]) if not isinstance(r[0], str) else r[0].encode() for r in rows)
    assert token.encode() not in stored and ADMIN.encode() not in stored  # only hashes reach the log


def test_cli_room_create_invite_list_and_join_with_the_invite(
    admin_hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """`synapse room create|invite|list`, then `--invite` joins; without proof the CLI exits 5."""
    cli = Cli(admin_hub.url, client_env)
    result = cli("room", "create", "ops")
    assert result.exit_code == 5 and "admin token" in result.stderr
    assert cli("room", "create", "ops", "--admin-token", ADMIN).stdout == "created room ops\n"
    result = cli("--admin-token", ADMIN, "room", "invite", "ops", "--ttl", "3600")
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert token and "\n" not in token
    refused = cli("--room", "ops", "send", "--name", "dana", "--target", "dana", "hello")
    assert refused.exit_code == 5 and refused.stderr.startswith("unauthorized:")
    sent = cli("--room", "ops", "--invite", token, "send", "--name", "dana", "--target", "dana", "hello")
    assert sent.exit_code == 0, sent.stderr
    again = cli("--room", "ops", "send", "--name", "dana", "--target", "dana", "saved token, no invite")
    assert again.exit_code == 0, again.stderr
    listed = cli("room", "list", "--json", "--admin-token", ADMIN)
    assert [r["name"] for r in json.loads(listed.stdout)] == ["ops"]


# -- binding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only addresses that stay on this machine count as loopback."""
    assert is_loopback(host) is loopback


def test_without_an_admin_token_only_loopback_is_allowed() -> None:
    """A public bind needs the admin token or --insecure; loopback never does."""
    assert bind_problem(HubConfig(host="127.0.0.1")) is None
    problem = bind_problem(HubConfig(host="0.0.0.0"))
    assert problem is not None and "--admin-token" in problem and "--insecure" in problem
    assert bind_problem(HubConfig(host="0.0.0.0", admin_token="t")) is None
    assert bind_problem(HubConfig(host="0.0.0.0", insecure=True)) is None


def test_synapse_hub_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    """`synapse hub --host 0.0.0.0` exits 2 saying why, before it listens or touches the log."""
    from cli.main import synapse

    db = tmp_path / "never.db"
    result = CliRunner().invoke(synapse, ["hub", "--host", "0.0.0.0", "--port", "0", "--db", str(db)])
    assert result.exit_code == 2
    assert "without an admin token" in result.stderr and "--insecure" in result.stderr
    assert not db.exists()


def test_the_hub_itself_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    """Embedding the Hub without the CLI gets the same refusal."""
    from hub.server.hub import Hub

    with pytest.raises(ValueError, match="without an admin token"):
        Hub(HubConfig(host="0.0.0.0", port=0, db=str(tmp_path / "log.db")))
    assert not (tmp_path / "log.db").exists()


# -- in the core -------------------------------------------------------------------------------------------


def test_an_invite_lapses_after_its_ttl() -> None:
    """An invite admits until `ttl` has run out, by the hub's clock, then `unauthorized`; replay agrees."""
    s = Script(HubConfig(rate_per_agent=None, admin_token=ADMIN))
    out = s.run(c.InviteRoom(room="ops", admin_token=ADMIN, ttl=60))
    token = out.effects[0].result.invite  # type: ignore[attr-defined]
    s.run(c.Join(room="ops", name="a", invite=token))
    s.now += 61
    err = s.refused(None, c.Join(room="ops", name="b", invite=token))
    assert err.code == Code.UNAUTHORIZED
    s.check_replay()


def test_invites_are_in_the_snapshot() -> None:
    """A snapshot carries rooms and invite hashes, so a restart from it admits the same joins."""
    s = Script(HubConfig(rate_per_agent=None, admin_token=ADMIN))
    s.run(c.CreateRoom(room="quiet", admin_token=ADMIN))
    token = s.run(c.InviteRoom(room="ops", admin_token=ADMIN)).effects[0].result.invite  # type: ignore[attr-defined]
    loaded = snapshot.load(snapshot.dump(s.machine), s.config)
    assert set(loaded.world.rooms) == {"quiet", "ops"}
    assert loaded.world.part(Invites).by_hash == s.machine.world.part(Invites).by_hash
    assert snapshot.dump(loaded) == snapshot.dump(s.machine)
    s.machine = loaded
    s.run(c.Join(room="ops", name="a", invite=token))
    s.check_replay()


def test_without_an_admin_token_joining_stays_open() -> None:
    """A hub without an admin token admits any join, as before (loopback-only keeps it safe)."""
    s = Script()
    s.run(c.Join(room="anywhere", name="a"))
    assert "a" in s.machine.world.rooms["anywhere"].part(Roster).agents
    s.check_replay()
