"""Who may do what (CLI.md "Identity and authorization"): every wire verb, sent as raw frames to a real hub by
six kinds of caller, on a hub with an admin token ("gated") and on one without ("open"); then the regressions
of the identity issue, each on its own, and a few of the same cells through the `synapse` CLI's exit codes.

The callers, each in a room of its own set up afresh for every cell (alice and bob are its members; alice holds
a claim, a task, a scope, a waiter and a subscription):
  admin     the hub's admin token (on the open hub: a guess at one), acting as alice
  member    alice, with her own token, on her own things
  other     bob, with his own token, as himself, on alice's things (her claim, task, scope, waiter, subscription)
  impostor  bob's token, claiming to be alice
  outsider  carol's token (an agent of another room), claiming to be alice
  anon      no token, claiming to be alice
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.sync.client import ClientConnection, connect

from agent_sdk import Agent, Code, HubError, SyncAgent
from hub.protocol import commands as c
from hub.protocol.codec import decode_frame, encode
from hub.protocol.frames import Error, Ok
from tests.conftest import ROOT, Cli, ThreadHub, hub_config, seconds, synapse_cmd

ADMIN = "admin-token-for-the-matrix"
NOT_ADMIN = "a-guess-at-an-admin-token"  # what the `admin` caller presents to the open hub
ACTORS = ("admin", "member", "other", "impostor", "outsider", "anon")
SHORT = {
    "ok": "ok",
    "U": Code.UNAUTHORIZED,
    "F": Code.FORBIDDEN,
    "N": Code.NAME_TAKEN,
    "C": Code.CONFLICT,
    "NF": Code.NOT_FOUND,
}


# -- one cell -----------------------------------------------------------------------------------------------


class Wire:
    """A raw WebSocket to the hub: send a command Struct, get "ok" or the error code of its reply."""

    def __init__(self, url: str) -> None:
        self.stack = contextlib.ExitStack()
        self.ws: ClientConnection = self.stack.enter_context(connect(url, open_timeout=seconds(5_000)))
        self.ids = 0

    def ask(self, cmd: Any) -> tuple[str, Any]:
        self.ids += 1
        cmd = msgspec.structs.replace(cmd, id=self.ids)
        self.ws.send(encode(cmd))
        while True:
            frame = decode_frame(self.ws.recv(seconds(5_000)))
            if isinstance(frame, Ok | Error) and frame.id == self.ids:
                return ("ok", frame.result) if isinstance(frame, Ok) else (str(frame.code), frame.detail)

    def ok(self, cmd: Any) -> Any:
        outcome, result = self.ask(cmd)
        assert outcome == "ok", (type(cmd).__name__, outcome, result)
        return result

    def close(self) -> None:
        self.stack.close()


@dataclass
class Cell:
    """One caller in a fresh room: what it presents, and the room's things it may act on."""

    room: str
    actor: str
    name: str  # the agent it acts as
    token: str | None
    admin_token: str | None
    seq: int = 0  # alice's broadcast
    sub: int = 0  # alice's subscription (on her own session)
    fresh: str = ""  # a room that does not exist yet
    tokens: dict[str, str] = field(default_factory=dict)

    def read(self, **kw: Any) -> dict[str, Any]:
        return {"room": self.room, "token": self.token, "admin_token": self.admin_token, **kw}

    def act(self, **kw: Any) -> dict[str, Any]:
        return self.read(name=self.name, **kw)


@dataclass
class Row:
    """A verb's command as a cell sends it, and the outcome per caller on each hub (in ACTORS order)."""

    build: Callable[[Cell], Any]
    gated: str
    open: str
    on_alices_session: bool = False  # the member's cell runs on the session that owns alice's things

    def expected(self, hub: str) -> dict[str, str]:
        cells = (self.gated if hub == "gated" else self.open).split()
        assert len(cells) == len(ACTORS)
        return {actor: str(SHORT[cell]) for actor, cell in zip(ACTORS, cells, strict=True)}


RAW = msgspec.Raw(b'"hello"')
ACT = "ok ok ok F F U", "U ok ok F F U"  # acting as alice: only her token (or the admin token) does
HOLDER = "ok ok F F F U", "U ok F F F U"  # acting on alice's claim, task or scope: only she (or the admin)
READ = "ok ok ok ok U U", "ok ok ok ok ok ok"  # a gated hub's rooms are read by members and the admin only
OPERATOR = "ok U U U U U", "ok ok ok ok ok ok"  # operators' verbs need the admin token where there is one

#       verb                  command as a cell sends it                                           gated / open
ROWS: dict[type, Row] = {
    c.Join: Row(lambda x: c.Join(**x.read(name="alice")), "ok ok N N N N", "N ok N N N N"),
    c.Attach: Row(lambda x: c.Attach(**x.act(stream=False)), *ACT),
    c.Send: Row(lambda x: c.Send(**x.act(to=("bob",), body=RAW)), *ACT),
    c.ListMessages: Row(lambda x: c.ListMessages(**x.read()), *READ),
    c.ClaimMessage: Row(lambda x: c.ClaimMessage(**x.act(seq=x.seq)), *ACT),
    c.AckMessages: Row(lambda x: c.AckMessages(**x.act(seq=x.seq)), *ACT),
    c.Heartbeat: Row(lambda x: c.Heartbeat(**x.act()), *ACT),
    c.Agents: Row(lambda x: c.Agents(**x.read()), *READ),
    c.Wait: Row(lambda x: c.Wait(**x.read(waiter="alice-w", for_=x.name)), "ok ok F F U U", "U ok F F U U"),
    c.Status: Row(lambda x: c.Status(**x.read()), "ok ok ok ok ok ok", "ok ok ok ok ok ok"),
    c.Claim: Row(lambda x: c.Claim(**x.act(work="w", paths=("src/w",))), "ok ok C F F U", "U ok C F F U"),
    c.Release: Row(lambda x: c.Release(**x.act(work="w")), *HOLDER),
    c.Handoff: Row(lambda x: c.Handoff(**x.act(work="w", to="bob")), *HOLDER),
    c.ListClaims: Row(lambda x: c.ListClaims(**x.read()), *READ),
    c.DeclareIntent: Row(lambda x: c.DeclareIntent(**x.act(paths=("docs/",))), *ACT),
    c.Board: Row(lambda x: c.Board(**x.read()), *READ),
    c.DeclareTask: Row(lambda x: c.DeclareTask(**x.act(task="t3", title="new")), *ACT),
    c.ClaimTask: Row(lambda x: c.ClaimTask(**x.act(task="t2")), *ACT),
    c.UpdateTask: Row(lambda x: c.UpdateTask(**x.act(task="t", status="done")), *HOLDER),
    c.ListTasks: Row(lambda x: c.ListTasks(**x.read()), *READ),
    c.ShowTask: Row(lambda x: c.ShowTask(**x.read(task="t")), *READ),
    c.SetState: Row(lambda x: c.SetState(**x.act(key="k", value=2, scope="alice")), *HOLDER),
    c.InitState: Row(lambda x: c.InitState(**x.act(key="n", value=1, scope="alice")), *HOLDER),
    c.DeleteState: Row(lambda x: c.DeleteState(**x.act(key="k", scope="alice")), *HOLDER),
    c.BatchState: Row(lambda x: c.BatchState(**x.act(writes=(c.Write(key="k", scope="alice"),))), *HOLDER),
    c.DefineView: Row(lambda x: c.DefineView(**x.act(key="v", expr="1 + 1")), *ACT),
    c.GetState: Row(lambda x: c.GetState(**x.read(key="k", scope="alice")), *READ),
    c.ListState: Row(lambda x: c.ListState(**x.read()), *READ),
    c.Eval: Row(lambda x: c.Eval(**x.read(expr="1 + 1")), *READ),
    c.Subscribe: Row(
        lambda x: c.Subscribe(**x.read(expr="false", name=x.name)), "ok ok ok F U U", "U ok ok F F U"
    ),
    c.Unsubscribe: Row(
        lambda x: c.Unsubscribe(**x.read(sub=x.sub)), "NF ok NF NF NF NF", "NF ok NF NF NF NF", True
    ),
    c.CreateBranch: Row(lambda x: c.CreateBranch(**x.act(branch="b2")), *ACT),
    c.ListBranches: Row(lambda x: c.ListBranches(**x.read()), *READ),
    c.DiffBranch: Row(lambda x: c.DiffBranch(**x.read(branch="b")), *READ),
    c.MergeBranch: Row(lambda x: c.MergeBranch(**x.act(branch="b")), *ACT),
    c.Tail: Row(lambda x: c.Tail(**x.read(rooms=(x.room,))), "ok ok ok ok F U", "ok ok ok ok ok ok"),
    c.CreateRoom: Row(lambda x: c.CreateRoom(**x.read(room=x.fresh)), *OPERATOR),
    c.InviteRoom: Row(lambda x: c.InviteRoom(**x.read()), *OPERATOR),
    c.ListRooms: Row(lambda x: c.ListRooms(**x.read()), *OPERATOR),
    c.ReofferClaim: Row(lambda x: c.ReofferClaim(**x.act(work="w", idle_seconds=0)), *ACT),
    c.ReofferTask: Row(lambda x: c.ReofferTask(**x.act(task="t", idle_seconds=0)), *ACT),
    c.ResetToken: Row(lambda x: c.ResetToken(**x.read(name="alice")), "ok U U U U U", "U U U U U U"),
    c.CheckPaths: Row(lambda x: c.CheckPaths(**x.act(paths=("src/w/a.py",))), *ACT),  # the git guard
}
# Explanations (`synapse why`, `synapse state history`): reads, with the read rules.
ROWS.update(
    {
        c.WhyTask: Row(lambda x: c.WhyTask(**x.read(task="t")), *READ),
        c.WhyClaim: Row(lambda x: c.WhyClaim(**x.read(work="w")), *READ),
        c.WhyWait: Row(lambda x: c.WhyWait(**x.read(waiter="alice-w")), *READ),
        c.WhyCondition: Row(lambda x: c.WhyCondition(**x.read(expr="1 + 1 == 2")), *READ),
        c.StateHistory: Row(lambda x: c.StateHistory(**x.read(key="k", scope="alice")), *READ),
    }
)
# Notes on the rows:
# - `other` on Claim gets `conflict`: the work is alice's. On the re-offers it gets `ok`: re-offering an idle
#   holder's (no session) work is the supervisor's verb, open to every member; fencing stops the old holder.
# - Reads by a token of another room are `unauthorized` (not a member's token), but a tail is `forbidden`: the
#   token is known and follows its own room only. On the open hub anyone reads (directed messages stay private).
# - A subscription belongs to the session that made it: from any other session it is `not_found`, whoever asks.


def _verbs() -> list[type]:
    return list(typing.get_args(c.Command))


def test_every_wire_verb_has_a_row() -> None:
    """A new command class without a row here fails: its authorization has to be decided and written down."""
    assert {v.__name__ for v in _verbs()} == {v.__name__ for v in ROWS}


class Hub:
    """A hub of one kind and its long-lived parts: carol's room, a connection for setting rooms up."""

    def __init__(self, kind: str, db: Path) -> None:
        self.kind = kind
        self.admin = ADMIN if kind == "gated" else None
        self.th = ThreadHub(hub_config(db, admin_token=self.admin))
        self.setup = Wire(self.th.url)
        self.carol = self.setup.ok(c.Join(room="elsewhere", name="carol", admin_token=self.admin))["token"]
        self.rooms = 0

    def join(self, room: str, name: str) -> str:
        return str(self.setup.ok(c.Join(room=room, name=name, admin_token=self.admin))["token"])

    def cell(self, verb: type, actor: str, row: Row) -> str:
        """Set up a fresh room, run the verb as `actor`, return "ok" or the error code."""
        self.rooms += 1
        room = f"r{self.rooms}"
        alice, bob = self.join(room, "alice"), self.join(room, "bob")
        as_alice = {"room": room, "token": alice, "name": "alice"}
        s = self.setup
        s.ok(c.Claim(**as_alice, work="w", paths=("src/w",), ttl=600))
        s.ok(c.DeclareTask(**as_alice, task="t", title="alice's"))
        s.ok(c.ClaimTask(**as_alice, task="t"))
        s.ok(c.DeclareTask(**as_alice, task="t2", title="ready"))
        s.ok(c.SetState(**as_alice, key="k", value=1, scope="alice"))
        seq = s.ok(c.Send(**as_alice, to=("*",), body=RAW))["seq"]
        s.ok(c.CreateBranch(**as_alice, branch="b"))
        alices = Wire(self.th.url)  # her own session: her waiter and her subscription live on it
        alices.ok(c.Wait(room=room, token=alice, waiter="alice-w", for_="alice"))
        sub = alices.ok(c.Subscribe(room=room, token=alice, expr="false"))["sub"]
        token, admin_token, name = {
            "admin": (None, ADMIN if self.kind == "gated" else NOT_ADMIN, "alice"),
            "member": (alice, None, "alice"),
            "other": (bob, None, "bob"),
            "impostor": (bob, None, "alice"),
            "outsider": (self.carol, None, "alice"),
            "anon": (None, None, "alice"),
        }[actor]
        cell = Cell(room, actor, name, token, admin_token, seq=seq, sub=sub, fresh=f"{room}-new")
        wire = alices if actor == "member" and row.on_alices_session else Wire(self.th.url)
        try:
            return wire.ask(row.build(cell))[0]
        finally:
            wire.close()
            alices.close()

    def stop(self) -> None:
        self.setup.close()
        self.th.stop()


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Hub]]:
    made = {kind: Hub(kind, tmp_path_factory.mktemp(kind) / "log.db") for kind in ("gated", "open")}
    try:
        yield made
    finally:
        for h in made.values():
            h.stop()


@pytest.mark.parametrize("kind", ["gated", "open"])
@pytest.mark.parametrize("verb", _verbs(), ids=lambda v: v.__name__)
def test_authorization_matrix(hubs: dict[str, Hub], kind: str, verb: type) -> None:
    """Each caller gets the documented outcome for this verb on this kind of hub."""
    row = ROWS[verb]
    got = {actor: hubs[kind].cell(verb, actor, row) for actor in ACTORS}
    assert got == row.expected(kind)


# -- the regressions, one by one ----------------------------------------------------------------------------


@pytest.fixture(params=["open", "gated"])
def any_hub(
    request: pytest.FixtureRequest, db_path: Path, client_env: dict[str, str], monkeypatch: Any
) -> Iterator[ThreadHub]:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    th = ThreadHub(hub_config(db_path, admin_token=ADMIN if request.param == "gated" else None))
    try:
        yield th
    finally:
        th.stop()


def member(th: ThreadHub, name: str, room: str = "default") -> SyncAgent:
    """A connected agent of the room that acts with its own token only (the admin token, where the hub has
    one, only lets it in)."""
    agent = SyncAgent(name, room=room, hub=th.url, admin_token=th.config.admin_token, save_token=False)
    agent.join()
    agent.admin_token = None
    return agent


def refused(call: Callable[[], Any]) -> HubError:
    with pytest.raises(HubError) as info:
        call()
    return info.value


async def test_a_name_takeover_is_refused_and_the_real_holder_keeps_working(any_hub: ThreadHub) -> None:
    """Joining a name someone holds without its token (none, a guessed one, another agent's) is `name_taken`
    and acting as it is refused; the holder's session is not closed, and it keeps sending, claiming and
    receiving its messages."""
    with member(any_hub, "bob") as bob:
        bob_token = bob.token
    async with Agent("alice", hub=any_hub.url, admin_token=any_hub.config.admin_token) as alice:
        alice.admin_token = None
        for token, acting in (
            (None, Code.UNAUTHORIZED),
            ("st_guessed", Code.UNAUTHORIZED),
            (bob_token, Code.FORBIDDEN),
        ):
            with SyncAgent(hub=any_hub.url) as thief:
                err = refused(lambda t=thief, token=token: t.request(c.Join(name="alice", token=token)))
                assert err.code == Code.NAME_TAKEN and err.detail == {"name": "alice", "room": "default"}
                send = c.Send(name="alice", token=token, to=("bob",))
                assert refused(lambda t=thief, send=send: t.request(send)).code == acting
        with SyncAgent("bob", hub=any_hub.url, token=bob_token, save_token=False) as bob:
            seq = bob.send("alice", "still there?", allow_unknown=True)
        messages = alice.messages()
        assert (await anext(messages)).seq == seq  # her session was never closed
        assert (await alice.claim("w", paths=["src"])).holder == "alice"
        assert await alice.send("bob", "yes", allow_unknown=True) > seq


def test_an_invite_cannot_take_over_an_existing_agent(tmp_path: Path) -> None:
    """An invite joins new names only: joining an existing name with it is `name_taken`, and the agent keeps
    its token; a new name joins with the same invite."""
    th = ThreadHub(hub_config(tmp_path / "log.db", admin_token=ADMIN))
    try:
        with SyncAgent("alice", hub=th.url, admin_token=ADMIN, save_token=False) as alice:
            alice.join()
            invite = str(alice.request(c.InviteRoom(id=alice.next_id(), admin_token=ADMIN))["invite"])
            with SyncAgent("alice", hub=th.url, invite=invite, save_token=False) as thief:
                assert refused(thief.join).code == Code.NAME_TAKEN
            assert alice.send("*", "my token still works", allow_unknown=True) == 1
            with SyncAgent("dave", hub=th.url, invite=invite, save_token=False) as dave:
                dave.join()
                assert dave.send("alice", "hi", allow_unknown=True) == 2
    finally:
        th.stop()


def test_a_task_claimed_by_a_cannot_be_marked_done_by_b(any_hub: ThreadHub) -> None:
    """Bob's updates of Alice's claimed task (done, back to ready, a note, a title) are `forbidden` and change
    nothing; Alice finishes it."""
    with member(any_hub, "alice") as a, member(any_hub, "bob") as b:
        a.tasks.declare("T", "alice's")
        claimed = a.tasks.claim("T")
        for change in ({"status": "done"}, {"status": "ready"}, {"note": "mine now"}, {"title": "bob's"}):
            err = refused(lambda change=change: b.tasks.update("T", **change))
            assert err.code == Code.FORBIDDEN and err.detail == {"holder": "alice"}
        assert b.tasks.show("T")["etag"] == claimed["etag"]
        assert a.tasks.update("T", status="done")["status"] == "done"


def test_a_wait_naming_anothers_waiter_without_its_token_does_not_disarm_it(any_hub: ThreadHub) -> None:
    """Bob (his own token), an agent of another room and a caller with no token each send a wait frame naming
    Alice's armed waiter: each is refused, and her waiter still wakes on her next message."""
    with (
        member(any_hub, "alice") as alice,
        member(any_hub, "bob") as bob,
        member(any_hub, "carol", room="elsewhere") as carol,
    ):
        alice.arm("alice-w", "alice")
        attempts = {
            "bob as himself": c.Wait(token=bob.token, waiter="alice-w", for_="bob"),
            "bob for alice": c.Wait(token=bob.token, waiter="alice-w", for_="alice"),
            "bob, a condition": c.Wait(token=bob.token, waiter="alice-w", condition="true"),
            "another room's agent": c.Wait(token=carol.token, waiter="alice-w", for_="alice"),
            "no token": c.Wait(waiter="alice-w", for_="alice"),
        }
        for what, frame in attempts.items():
            with SyncAgent(hub=any_hub.url) as raw:
                err = refused(lambda raw=raw, frame=frame: raw.request(frame))
                assert err.code in (Code.FORBIDDEN, Code.UNAUTHORIZED), what
        seq = bob.send("alice", "wake up", allow_unknown=True)
        wake = alice.woken(seconds(5_000))
    assert wake.reason == "message" and wake.message is not None and wake.message.seq == seq


def test_processes_sharing_a_name_claim_the_same_work_at_once(
    hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """8 `synapse claim` processes with one --name and one token file, at once: exactly one grant, the other 7
    are told `"already_held": true` at the same epoch, and none is refused (no exit 5: they share the join)."""
    env = {**client_env, "SYNAPSE_HUB": hub.url}
    argv = synapse_cmd("--json", "claim", "build", "--paths", "src/", "--name", "worker")
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(8)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds(60_000))
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(bool(r.get("already_held")) for r in results) == [False] + [True] * 7
    assert {(r["holder"], r["epoch"]) for r in results} == {("worker", 1)}
    with SyncAgent(hub=hub.url) as reader:
        (held,) = reader.claims()
    assert (held["holder"], held["work"], held["epoch"]) == ("worker", "build", 1)


# -- the same through the CLI: exit codes ---------------------------------------------------------------------


def test_cli_cells_exit_5_when_not_authorized(cli: Cli, hub: ThreadHub) -> None:
    """`task update`, `release` and `handoff` of another's task or claim exit 5 (`forbidden`); joining a taken
    name exits 5 (`name_taken`); the holders are untouched."""
    assert cli("task", "declare", "T", "--title", "t", "--name", "alice").exit_code == 0
    assert cli("task", "claim", "T", "--name", "alice").exit_code == 0
    assert cli("claim", "w", "-p", "src/w", "--name", "alice").exit_code == 0
    assert cli("join", "bob").exit_code == 0
    for argv, code in (
        (["task", "update", "T", "--status", "done", "--name", "bob"], "forbidden"),
        (["release", "w", "--name", "bob"], "forbidden"),
        (["handoff", "w", "--to", "bob", "--name", "bob"], "forbidden"),
        (["join", "alice", "--token", "st_guess"], "name_taken"),
    ):
        r = cli("--json", *argv)
        assert r.exit_code == 5, (argv, r.output)
        assert json.loads(r.stderr)["error"]["code"] == code, argv
    assert json.loads(cli("--json", "task", "show", "T").stdout)["holder"] == "alice"
    (claim,) = map(json.loads, cli("--json", "claims").stdout.splitlines())
    assert claim["holder"] == "alice"
    assert cli("release", "w", "--name", "alice").exit_code == 0


def test_cli_on_a_gated_hub(tmp_path: Path, client_env: dict[str, str], monkeypatch: Any) -> None:
    """On a hub with an admin token: reads without a member's token exit 5; the admin token acts as an
    existing agent without taking its name over (the agent's own token keeps working)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    th = ThreadHub(hub_config(tmp_path / "log.db", admin_token=ADMIN))
    try:
        cli = Cli(th.url, client_env)
        assert cli("--admin-token", ADMIN, "join", "alice").exit_code == 0
        for argv in (["claims"], ["state", "list"], ["task", "list"], ["agents"], ["message", "list"]):
            r = cli("--json", *argv)
            assert r.exit_code == 5 and json.loads(r.stderr)["error"]["code"] == "unauthorized", argv
            assert cli("--json", *argv, "--name", "alice").exit_code == 0, argv  # her saved token reads
        tokens = Path(client_env["XDG_CONFIG_HOME"]) / "synapse" / "tokens.json"
        saved = tokens.read_text()
        tokens.unlink()  # an operator's machine: the admin token, no agent token
        r = cli("--admin-token", ADMIN, "state", "set", "k", "1", "--name", "alice")
        assert r.exit_code == 0, r.output
        tokens.write_text(saved)
        assert cli("state", "set", "k", "2", "--name", "alice").exit_code == 0  # not taken over
    finally:
        th.stop()


async def test_the_admin_token_acts_as_an_agent_without_taking_it_over(tmp_path: Path) -> None:
    """An operator's Agent or SyncAgent holding only the admin token acts as an existing agent (attaches,
    sends, claims) without joining: the agent's own token keeps working."""
    th = ThreadHub(hub_config(tmp_path / "log.db", admin_token=ADMIN))
    try:
        with member(th, "alice") as alice:
            async with Agent("alice", hub=th.url, admin_token=ADMIN, save_token=False) as operator:
                assert operator.token is None
                seq = await operator.send("*", "from the operator, as alice", allow_unknown=True)
                assert (await operator.claim("ops", paths=["ops/"])).holder == "alice"
            with SyncAgent("alice", hub=th.url, admin_token=ADMIN, save_token=False) as blocking:
                assert blocking.heartbeat()["name"] == "alice" and blocking.token is None
            assert alice.send("*", "still me", allow_unknown=True) == seq + 1
            assert alice.replies.release("ops")["holder"] == "alice"
    finally:
        th.stop()
