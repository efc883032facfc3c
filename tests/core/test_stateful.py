"""Stateful property test of the core: random command sequences through Machine.handle/commit (STYLE.md §1, §5).

After every command: a refusal changes nothing (neither the durable snapshot nor the ephemeral session
tables), deciding changes nothing even when it succeeds, every accepted event survives the log's codec, the
state equals the fold of the log, a snapshot loads to the same state, the live CEL context cache equals one
built afresh, and agents' durable sessions are the sessions bound to them. At the end: the log folds into a
fresh Machine, mid-run snapshots fold on to the same state, closing every session leaves nothing behind,
and a machine restored from the snapshot decides like the live one.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from hub.config import HubConfig
from hub.core import cel, conditions, snapshot
from hub.core.agents import Roster, Tokens, Waiters
from hub.core.claims import Claims, Deadlines
from hub.core.conditions import Conditions, Subscriptions
from hub.core.effects import CloseSession, Deliver, LogRead, Outcome, ReadLog, Reply
from hub.core.feed import Feed, Streams
from hub.core.fences import Epochs
from hub.core.limits import Buckets
from hub.core.machine import Context, Machine, SessionGone, Start, Tick
from hub.core.state import State
from hub.core.tasks import Plan
from hub.protocol import commands as c
from hub.protocol import results as r
from hub.protocol.codec import decode_event, encode
from hub.protocol.errors import HubError
from hub.protocol.events import Event, MessageSent
from tests.protocol.strategies import json_values

ADMIN = "admin-secret"
HOME, LAB = "default", "lab"
AGENTS = ("alice", "bob", "carol", "dave")
MEMBERS = {HOME: ("alice", "bob", "carol"), LAB: ("alice", "dave")}
NATURAL = {(HOME, "alice"): 1, (HOME, "bob"): 2, (HOME, "carol"): 3, (LAB, "alice"): 4, (LAB, "dave"): 5}
READER = {HOME: "alice", LAB: "dave"}
PAGE = 2  # messages per emulated log page: small, so a read behind the window takes several pages

OPEN = HubConfig(
    rate_per_agent=None,
    feed_window=2,  # messages leave memory quickly: reads behind the window go through ReadLog/LogRead
    max_body_bytes=4096,
    max_subscriptions_per_session=3,
    max_sessions_per_agent=3,
    max_list_limit=50,
)
GATED = HubConfig(
    admin_token=ADMIN,
    rate_per_agent=2.0,
    rate_burst=8,
    feed_window=0,
    max_body_bytes=4096,
    max_subscriptions_per_session=2,
    max_sessions_per_agent=2,
)

COVERAGE: Counter[tuple[str, str]] = Counter()  # (command, "ok" or code): read it when changing the rules


def make(cls: type[Any], admin: str | None = None, **fields: Any) -> Any:
    """A command of `cls`, with the admin token if given; a text `x*N` stands for N x's (a failing case then
    prints short)."""
    if admin is not None:
        fields["admin_token"] = admin
    return cls(**{k: huge(v) for k, v in fields.items()})


def huge(value: Any) -> Any:
    if type(value) is str and value.startswith("x*"):
        return "x" * int(value[2:])
    return value


def deep(levels: int) -> Any:
    """A list nested `levels` deep."""
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def mostly(good: tuple[Any, ...], bad: tuple[Any, ...], rare: float = 0.12) -> st.SearchStrategy[Any]:
    """Good values, and bad ones in about `rare` of the draws (refusals compound over a command's fields)."""
    times = math.ceil(len(bad) * (1 - rare) / (rare * len(good)))
    return st.sampled_from(good * times + bad)


# -- pools of good and bad inputs ----------------------------------------------------------------------------

GOOD_EXPRS = (
    "true",
    "false",
    "state._shared.k1 == 1",
    "has(state._shared.n) && state._shared.n > 6",
    "messages.count > 3",
    "messages.unclaimed == 0",
    "size(claims) > 1",
    "'w2' in claims",
    "agents.bob.status == 'waiting'",
    "agents.carol.status == 'offline'",
    "has(tasks.t1) && tasks.t1.status == 'done'",
    "tasks.t2.status == 'ready'",
    "state._view.v1 == true",
    "has(state._view.v2)",
    "state._shared.f > 1.0",
    "state._shared.n + 1 > 0",
    "state.alice.k1 == 'x'",
    "tasks.all(t, tasks[t].status != 'in_progress')",
    "state._view.v2 == 1",
    "state._view.v1 == 1",
    "!has(state.alice.k1)",  # errs while alice's scope is absent: a scope coming and going re-evaluates it
    "!has(state._shared.k2) && !has(state._shared.n)",
)
BAD_EXPRS = (
    "(",
    "state._shared.",
    "nope.x",
    "1 +",
    "!!true",
    "x*5000",
    "(" * 40 + "1" + ")" * 40,
    "[1].map(x, [1].map(y, [1].map(z, z)))",
    "'unterminated",
)
exprs = mostly(GOOD_EXPRS, BAD_EXPRS)

GOOD_PATHS = (
    "src/",
    "src/api",
    "src/api/user.py",
    "docs/**",
    "**/*.py",
    "src/*.py",
    "[a-c]*/x",
    "lib/[!b]c",
    ".",
    "tests/unit",
    "src/api/**",
)
BAD_PATHS = ("/abs", "../up", "a/../../b", "", "a\x00b", "[", "a/[z-a]", "C:/x", "src/**/**/[")
paths = st.builds(
    lambda empty, chosen: () if empty else tuple(chosen),
    mostly((False,), (True,), 0.05),
    st.lists(mostly(GOOD_PATHS, BAD_PATHS), min_size=1, max_size=3),
)

STRANGERS = ((HOME, "dave"), (LAB, "bob"), ("nowhere", "alice"), ("bad room", "alice"), (HOME, "ghost"))
STRANGERS += ((HOME, "bad/name"), (HOME, ""))
rooms = mostly((HOME, HOME, LAB), ("nowhere", "bad room"), 0.08)
names = mostly(AGENTS, ("ghost", "bad/name", ""))
members = mostly(tuple(NATURAL), STRANGERS, 0.08)  # (room, name): mostly agents of their room
TOKENS = ("other", "other_room", "none", "bogus", "admin", "admin_as_token", "wrong_admin")
tokens = mostly(("own",), TOKENS, 0.1)
sessions = mostly(("mine",), (1, 2, 3, 4, 5, 6), 0.1)
actors = st.builds(lambda who, tok, ses: (*who, tok, ses), members, tokens, sessions)

works = mostly(("held", "held", "w1", "w2", "w3"), ("", "x*201", "w\x00"), 0.06)
ttls = mostly((None, None, 5.0, 60.0, 30 * 86_400.0), (0.0, -1.0, 1e9), 0.06)
checkpoints = mostly((None, None, "cp"), ("x*70000",), 0.05)
fences = mostly(({},), ("held", "held", "stale", {"w1": 1}, {"task:t1": 1}, {"nope": 1}), 0.25)
notes = mostly((None, "note"), ("x*5000",), 0.05)

TASKS = ("t1", "t2", "t3", "t4", "t5", "e1", "s1")
task_ids = mostly(TASKS, ("", "nope", "x*201", "t\x1b"), 0.08)
statuses = st.sampled_from((None, "pending", "ready", "in_progress", "blocked", "done", "done", "cancelled"))

KEYS = ("k1", "k2", "n", "f")
keys = mostly(KEYS, ("", "x*300", "a\nb"), 0.08)
scopes = mostly(("_shared", "_shared", "own"), ("other", "_view", "", "bad\x01"))
branches = mostly((None, None, None, "b1"), ("b2", "feat/x", "nope"), 0.1)
branch_names = mostly(("b1", "b2", "feat/x"), ("", "/bad", "-x", "nope"))
versions = mostly((None, None, "current"), (0, 1, 2, 3))
views = mostly(("v1", "v2", "v3"), ("", "x*300"), 0.08)

EDGE_VALUES = (0, 1, -1, 7, 2**63 - 1, -(2**63), 2**63, 2**70, -(2**70), 1e308, -1e308, 1.5, 0.1, -0.0)
values = st.one_of(
    st.sampled_from(EDGE_VALUES + (True, None, "x", "", [], {})),
    json_values,
    st.sampled_from((deep(63), deep(64), deep(65), deep(70), {"a": deep(70)})),
)
BODIES = {
    "null": b"null",
    "object": b'{"text": "hi"}',
    "text": b'"plain"',
    "numbers": b"[1, 2.5, -3]",
    "depth 64": b"[" * 64 + b"]" * 64,
    "brackets in a string": b'"[[[[' + b"[" * 80 + b'"',  # they do not nest
    "depth 65": b"[" * 65 + b"]" * 65,
    "over max_body_bytes": b'"' + b"x" * 5000 + b'"',
    "a 70-bit integer": b"1180591620717411303424",
}
bodies = mostly(tuple(BODIES)[:6], tuple(BODIES)[6:])
targets = st.builds(
    lambda empty, chosen: () if empty else tuple(chosen),
    mostly((False,), (True,), 0.05),
    st.lists(
        mostly(
            ("bob", "alice", "carol", "*", "all", "lab/dave", "lab/*", "default/alice", "dave"),
            ("nowhere/x", "ghost", "bad target!", "", "lab/", "/x", "a/b/c"),
        ),
        min_size=1,
        max_size=3,
    ),
)
cursors = st.sampled_from((None, None, 0, 1, 3, 6, 50, -5, 2**62))


# -- pictures of the state -----------------------------------------------------------------------------------


def canon(value: Any) -> Any:
    """A type-strict, order-free form of plain data (1, 1.0 and True differ; dict order does not matter)."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), canon(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("list", tuple(canon(v) for v in value))
    return (type(value).__name__, repr(value))


def _part(owner: Any, kind: type) -> Any:
    """A part if it was ever made (a part made empty by a read must not count as a change)."""
    return owner.parts.get(kind)


def picture(m: Machine) -> Any:
    """The ephemeral state a refusal must leave alone: session bindings, waiters, streams, subscriptions,
    agents shown waiting, the subscription counter and touched paths, the rate buckets, the deadline heap."""
    w = m.world
    bound = sorted(
        (sid, i.room, i.agent, i.stream, i.waiter, tuple(sorted(i.subs))) for sid, i in w.sessions.items()
    )
    per_room = []
    for name, room in sorted(w.rooms.items()):
        waiters, streams = _part(room, Waiters), _part(room, Streams)
        cond, roster = _part(room, Conditions), _part(room, Roster)
        per_room.append(
            (
                name,
                sorted(
                    (n, wt.session, wt.id, wt.owner, wt.for_, wt.directed_only, wt.sub)
                    for n, wt in (waiters.by_name.items() if waiters else ())
                ),
                sorted((a, tuple(sorted(ss))) for a, ss in (streams.of.items() if streams else ()) if ss),
                sorted(
                    (sid, s.session, s.compiled.source, s.include, s.agent, s.wait_id, s.once, s.held)
                    for sid, s in (cond.subs.items() if cond else ())
                ),
                sorted((a, tuple(d.items())) for a, d in (roster.waiting.items() if roster else ()) if d),
            )
        )
    subs, buckets, deadlines = _part(w, Subscriptions), _part(w, Buckets), _part(w, Deadlines)
    return (
        bound,
        per_room,
        (subs.last_id, sorted((k, sorted(v)) for k, v in subs.touched.items()), sorted(subs.owned.items()))
        if subs
        else None,
        sorted((k, b.level, b.stamp) for k, b in (buckets.of.items() if buckets else ())),
        sorted((k, b.level, b.stamp) for k, b in (buckets.bytes_of.items() if buckets else ())),
        list(deadlines.heap) if deadlines else [],
    )


def residue(m: Machine) -> list[str]:
    """Ephemeral state left once every session is gone (there should be none)."""
    w = m.world
    left = [f"session {sid}" for sid in w.sessions]
    for name, room in w.rooms.items():
        waiters, streams = _part(room, Waiters), _part(room, Streams)
        cond, roster = _part(room, Conditions), _part(room, Roster)
        left += [f"{name}: waiter {n}" for n in (waiters.by_name if waiters else ())]
        left += [f"{name}: stream of {a}" for a, ss in (streams.of.items() if streams else ()) if ss]
        left += [f"{name}: subscription {sid}" for sid in (cond.subs if cond else ())]
        left += [f"{name}: {a} shown waiting" for a, d in (roster.waiting.items() if roster else ()) if d]
        agents = roster.agents.values() if roster else ()
        left += [f"{name}: {a.name} has sessions {sorted(a.sessions)}" for a in agents if a.sessions]
    return left


def unbound_sessions(m: Machine) -> list[str]:
    """Agents whose durable sessions differ from the live sessions bound to them."""
    w = m.world
    live: dict[tuple[str, str], set[int]] = {}
    for sid, info in w.sessions.items():
        if info.agent is not None:
            live.setdefault((info.room, info.agent), set()).add(sid)
    out = []
    for name, room in w.rooms.items():
        roster = _part(room, Roster)
        for agent in roster.agents.values() if roster else ():
            mine = live.pop((name, agent.name), set())
            if agent.sessions != mine:
                out.append(f"{name}/{agent.name}: durable {sorted(agent.sessions)}, bound {sorted(mine)}")
    return out + [f"{room}/{agent}: bound {sorted(s)}, not an agent" for (room, agent), s in live.items()]


def stale_contexts(m: Machine) -> list[str]:
    """Rooms whose cached CEL context differs from one built afresh (conditions would read stale data)."""
    w = m.world
    out = []
    for name, room in w.rooms.items():
        cond = _part(room, Conditions)
        if cond is None or cond.ctx is None:
            continue
        fresh = conditions.context_of(w, room)
        fresh["now"] = cond.ctx.get("now", w.now)  # the clock is set when read, not folded from events
        fresh["state"]["_view"] = conditions.resolve_views(cond.view_programs, fresh)
        if canon(cond.ctx) != canon(fresh):
            out.append(f"{name}: cached {cond.ctx!r} != fresh {fresh!r}")
    return out


def tables_disagree(m: Machine) -> list[str]:
    """Session bindings, waiters, streams, subscriptions and `waiting` that do not point at each other."""
    w = m.world
    out = []
    for sid, info in w.sessions.items():
        if info.waiter is not None:
            room = w.rooms.get(info.waiter[0])
            waiters = _part(room, Waiters) if room is not None else None
            waiter = waiters.by_name.get(info.waiter[1]) if waiters else None
            if waiter is None or waiter.session != sid:
                out.append(f"session {sid}: waiter {info.waiter} is not armed on it")
        for room_name, sub_id in info.subs:
            cond = _part(w.rooms[room_name], Conditions) if room_name in w.rooms else None
            sub = cond.subs.get(sub_id) if cond else None
            if sub is None or sub.session != sid:
                out.append(f"session {sid}: subscription {room_name}/{sub_id} is not its own")
    for name, room in w.rooms.items():
        waiters, streams = _part(room, Waiters), _part(room, Streams)
        cond, roster = _part(room, Conditions), _part(room, Roster)
        for waiter_name, waiter in waiters.by_name.items() if waiters else ():
            info = w.sessions.get(waiter.session)
            if info is None or info.waiter != (name, waiter_name):
                out.append(f"{name}: waiter {waiter_name} is not its session's")
            if waiter.sub is not None and (cond is None or waiter.sub not in cond.subs):
                out.append(f"{name}: waiter {waiter_name} has lost its condition {waiter.sub}")
        for agent, ss in streams.of.items() if streams else ():
            for sid in ss:
                info = w.sessions.get(sid)
                if info is None or not info.stream or info.agent != agent or info.room != name:
                    out.append(f"{name}: session {sid} streams {agent} unbound")
        for sub_id, sub in cond.subs.items() if cond else ():
            info = w.sessions.get(sub.session)
            if info is None or (name, sub_id) not in info.subs:
                out.append(f"{name}: subscription {sub_id} is not in its session's table")
        shown = {(a, i) for a, d in (roster.waiting.items() if roster else ()) for i in d}
        armed = {(sub.agent, i) for i, sub in (cond.subs.items() if cond else ()) if sub.agent is not None}
        if shown != armed:
            out.append(f"{name}: shown waiting {sorted(shown)} but armed {sorted(armed)}")
    return out


def unheld(m: Machine) -> list[str]:
    """Subscriptions whose `held` flag is not their value now (the next edge would be missed or doubled)."""
    out = []
    for name, room in m.world.rooms.items():
        cond = _part(room, Conditions)
        for sub in cond.subs.values() if cond is not None and cond.ctx is not None else ():
            holds = cel.is_true(conditions.value_of(sub.compiled, cond.ctx))
            if sub.held != holds:
                out.append(
                    f"{name}: subscription {sub.id} on {sub.compiled.source!r} held={sub.held}, is {holds}"
                )
    return out


def derived(m: Machine) -> Any:
    """The indexes folds derive from the durable state (whoever folds them: live, replay or snapshot load)."""
    w = m.world
    rooms_ = []
    heap = set(w.part(Deadlines).heap)
    for name, room in sorted(w.rooms.items()):
        claims, plan, cond = room.part(Claims), room.part(Plan), room.part(Conditions)
        rooms_.append(
            (
                name,
                sorted((s, tuple(sorted(ws))) for s, ws in claims.by_session.items()),
                sorted(work for work in claims.live if work in claims.index),
                sorted(
                    h.work
                    for h in claims.live.values()
                    if h.expires is not None and (h.expires, name, h.work) not in heap
                ),
                sorted((t, tuple(sorted(ds))) for t, ds in plan.dependents.items() if ds),
                sorted((t, tuple(cs)) for t, cs in plan.children.items()),
                sorted((k, p.source) for k, p in cond.view_programs.items()),
                sorted(room.part(Epochs).last.items()),
                sorted(room.part(Epochs).holders.items()),
            )
        )
    return sorted(w.part(Tokens).owner.items()), rooms_


def fold(events: list[Event], config: HubConfig) -> Machine:
    fresh = Machine(config)
    for event in events:
        fresh.apply(event)
    return fresh


def decision(m: Machine, cmd: Any, now: float) -> Any:
    """What `m` decides for `cmd`, as comparable bytes (a probe: never committed)."""
    try:
        out = m.handle(cmd, Context(now, 99, lambda: "probe-token"))  # type: ignore[arg-type]
    except HubError as err:
        return ("refused", str(err.code), err.message, encode(err.detail))
    return ("ok", [encode(ev) for ev in out.events], [encode(fx) for fx in out.effects], len(out.staged))


# -- the state machine ---------------------------------------------------------------------------------------


class HubStateMachine(RuleBasedStateMachine):
    """Drives one core Machine with random commands of every verb, good and bad, checking it after each."""

    CONFIG: HubConfig = OPEN

    def __init__(self) -> None:
        super().__init__()
        self.config = self.CONFIG
        self.machine = Machine(self.config)
        self.shadow = Machine(self.config)  # the log folded as it grows
        self.events: list[Event] = []
        self.marks: list[tuple[bytes, int]] = []  # (snapshot, how many events it holds)
        self.now = 1_000.0
        self.tokens: dict[tuple[str, str], str] = {}
        self.invites: list[str] = []
        self.subs: list[tuple[int, int]] = []  # (session, subscription id) as replies gave them
        self._secrets = 0
        self._ids = 0

    # -- plumbing --------------------------------------------------------------------------------------------

    def secret(self) -> str:
        self._secrets += 1
        return f"tok-{self._secrets}"

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def creds(self, room: str, name: str, choice: str) -> dict[str, Any]:
        """A command's credentials: `token` (see `token`), or the admin token (`admin`, the right one or not)."""
        if choice == "admin":
            return {"token": None, "admin": ADMIN}
        if choice == "wrong_admin":
            return {"token": None, "admin": "not-the-admin-token"}
        return {"token": self.token(room, name, choice), "admin": None}

    def token(self, room: str, name: str, choice: str) -> str | None:
        """The agent's own token, another's, another room's, none, a bogus one, or the admin token as a token."""
        if choice == "own":
            return self.tokens.get((room, name))
        if choice == "other":
            others = [t for (rm, n), t in sorted(self.tokens.items()) if rm == room and n != name]
            return others[0] if others else None
        if choice == "other_room":
            others = [t for (rm, _), t in sorted(self.tokens.items()) if rm != room]
            return self.tokens.get((LAB if room == HOME else HOME, name)) or (others[0] if others else None)
        if choice == "bogus":
            return "bogus-token"
        if choice == "admin_as_token":
            return ADMIN
        return None

    def who(self, actor: tuple[str, str, str, Any]) -> tuple[str, str, dict[str, Any], int]:
        """(room, name, credentials, session) of an actor drawn as (room, name, token choice, session)."""
        room, name, choice, session = actor
        if session == "mine":
            session = NATURAL.get((room, name), 6)
        return room, name, self.creds(room, name, choice), session

    def run(self, cmd: Any, session: int | None) -> Outcome | None:
        """Decide and commit `cmd` as the shell would, checking every promise of the core around it."""
        m = self.machine
        op = type(cmd).__name__
        before, pic, index = snapshot.dump(m), picture(m), derived(m)
        try:
            out = m.handle(cmd, Context(self.now, session, self.secret))  # type: ignore[arg-type]
        except HubError as err:
            COVERAGE[(op, str(err.code))] += 1
            assert snapshot.dump(m) == before, f"refused {cmd!r} ({err.code}) changed the durable state"
            assert picture(m) == pic, f"refused {cmd!r} ({err.code}) changed the session tables"
            assert derived(m) == index, f"refused {cmd!r} ({err.code}) changed an index"
            return None
        COVERAGE[(op, "ok")] += 1
        assert snapshot.dump(m) == before, f"deciding {cmd!r} changed the durable state"
        assert picture(m) == pic, f"deciding {cmd!r} changed the session tables"
        assert derived(m) == index, f"deciding {cmd!r} changed an index"
        for event in out.events:
            assert decode_event(encode(event)) == event, f"{event!r} does not survive the log"
        for effect in out.effects:
            if type(effect) is Reply:
                encode(effect.result)
            elif type(effect) is Deliver:
                encode(effect.frame)
        m.commit(out)
        self.events.extend(out.events)
        for event in out.events:
            self.shadow.apply(event)
        now = snapshot.dump(m)
        assert snapshot.dump(self.shadow) == now, f"after {cmd!r} the state is not the fold of the log"
        loaded = snapshot.load(now, self.config)
        assert snapshot.dump(loaded) == now, f"after {cmd!r} a snapshot reloads otherwise"
        assert derived(m) == derived(self.shadow) == derived(loaded), f"after {cmd!r} the indexes differ"
        assert not stale_contexts(m), stale_contexts(m)
        assert not unheld(m), unheld(m)
        assert not unbound_sessions(m), unbound_sessions(m)
        assert not tables_disagree(m), tables_disagree(m)
        self.follow(out)
        return out

    def follow(self, out: Outcome) -> None:
        """Keep what replies hand out (tokens, invites, subscriptions) and act as the shell on effects."""
        reads: list[ReadLog] = []
        closing: list[int] = []
        for effect in out.effects:
            if type(effect) is Reply:
                result = effect.result
                if type(result) is r.Joined:
                    self.tokens[(result.room, result.name)] = result.token
                elif type(result) is r.Invite:
                    self.invites.append(result.invite)
                elif type(result) is r.Subscribed:
                    self.subs.append((effect.session, result.sub))
            elif type(effect) is ReadLog:
                reads.append(effect)
            elif type(effect) is CloseSession:
                closing.append(effect.session)
        for read in reads:
            self.run(self.page(read), read.session)
        for session in closing:
            self.run(SessionGone(session), session)  # type: ignore[arg-type]

    def page(self, read: ReadLog) -> LogRead:
        """One page of the log as hub/server/older.py reads it (the room's MessageSent, after < seq <= until)."""
        found: list[MessageSent] = []
        position = read.start
        for pos, event in enumerate(self.events[read.start :], start=read.start + 1):
            if type(event) is MessageSent and event.room == read.room:
                if event.seq > read.until:
                    return LogRead(read, tuple(found), read.until, position)
                if event.seq > read.after:
                    found.append(event)
                    if len(found) >= PAGE:
                        return LogRead(read, tuple(found), event.seq, pos)
            position = pos
        return LogRead(read, tuple(found), read.until, position)

    def act(self, cls: type[Any], actor: tuple[str, str, str, Any], **fields: Any) -> Outcome | None:
        """Run a command as `actor` (room, name, token choice, session)."""
        room, name, creds, session = self.who(actor)
        self.now += 0.5
        fields = {k: self.fence(room, name, v) if k == "fence" else v for k, v in fields.items()}
        return self.run(make(cls, id=self.next_id(), room=room, name=name, **creds, **fields), session)

    def fence(self, room: str, name: str, fence: Any) -> dict[str, int]:
        """`held`/`stale`: the epoch of a claim (or claimed task) the writer holds now, or the one before it."""
        if not isinstance(fence, str):
            return fence  # type: ignore[no-any-return]
        epochs = self.machine.world.rooms[room].part(Epochs) if room in self.machine.world.rooms else Epochs()
        mine = sorted((work, epoch) for work, (holder, epoch, _) in epochs.holders.items() if holder == name)
        if not mine:
            return {"w1": 1}
        work, epoch = mine[0]
        return {work: epoch if fence == "held" else epoch - 1}

    def read(self, cls: type[Any], room: str, choice: str, **fields: Any) -> Outcome | None:
        """Run a read in `room` with a member's token (an admin hub wants one for reads)."""
        self.now += 0.5
        creds = self.creds(room, READER.get(room, "alice"), choice)
        return self.run(make(cls, id=self.next_id(), room=room, **creds, **fields), 1)

    def seed(self, room: str, name: str, cmd: Any) -> None:
        """A set-up command that must be accepted."""
        cmd = msgspec.structs.replace(cmd, id=self.next_id(), room=room, token=self.tokens[(room, name)])
        assert self.run(cmd, NATURAL[(room, name)]) is not None, cmd

    # -- set-up ----------------------------------------------------------------------------------------------

    @initialize()
    def populate(self) -> None:
        """Two rooms with agents (an admin hub creates its rooms and admits its agents), a plan with an epic
        and a seq parent, entries, a view and branches, TTL and session-bound claims, and messages."""
        gated = self.config.admin_token is not None
        for room, members_ in MEMBERS.items():
            if gated:
                assert self.run(make(c.CreateRoom, room=room, admin=ADMIN), 6) is not None
            for name in members_:
                joined = make(c.Join, id=self.next_id(), room=room, name=name, admin=ADMIN if gated else None)
                assert self.run(joined, 6) is not None
        self.seed(HOME, "alice", c.DeclareTask(name="alice", task="e1", title="Epic", epic=True))
        self.seed(HOME, "alice", c.DeclareTask(name="alice", task="s1", title="Steps", mode="seq"))
        self.seed(HOME, "alice", c.DeclareTask(name="alice", task="t1", title="First", parent="e1"))
        self.seed(HOME, "alice", c.DeclareTask(name="alice", task="t2", title="Then", depends_on=("t1",)))
        self.seed(HOME, "bob", c.DeclareTask(name="bob", task="t3", title="A", parent="s1", order=1))
        self.seed(HOME, "bob", c.DeclareTask(name="bob", task="t4", title="B", parent="s1", order=2))
        self.seed(
            HOME, "bob", c.DeclareTask(name="bob", task="t5", title="Last", parent="e1", depends_on=("t2",))
        )
        self.seed(LAB, "dave", c.DeclareTask(name="dave", task="t1", title="Elsewhere"))
        self.seed(LAB, "dave", c.SetState(name="dave", key="n", value=1))
        self.seed(LAB, "dave", c.CreateBranch(name="dave", branch="b1"))
        self.seed(HOME, "bob", c.SetState(name="bob", key="n", value=5))
        self.seed(HOME, "bob", c.SetState(name="bob", key="f", value=1.5))
        self.seed(HOME, "carol", c.DefineView(name="carol", key="v1", expr="state._shared.k1 == 1"))
        # errs until bob's scope appears, then holds: a scope coming or going re-resolves what reads into it
        self.seed(HOME, "carol", c.DefineView(name="carol", key="v3", expr="!has(state.bob.k1)"))
        self.seed(HOME, "carol", c.CreateBranch(name="carol", branch="b1"))
        self.seed(HOME, "carol", c.Claim(name="carol", work="w1", paths=("src/api",), ttl=60.0))
        self.seed(HOME, "alice", c.Claim(name="alice", work="w2", paths=("docs",), ttl=30 * 86_400.0))
        self.seed(HOME, "bob", c.Attach(name="bob"))
        self.seed(HOME, "bob", c.Claim(name="bob", work="w3", paths=("lib/*",)))  # held by its session
        self.seed(LAB, "dave", c.Claim(name="dave", work="w1", paths=("src",), ttl=30 * 86_400.0))
        self.seed(LAB, "dave", c.Send(name="dave", to=("alice",), body=msgspec.Raw(b'"hello"')))
        for to in (("*",), ("bob",), ("all",)):
            self.seed(HOME, "alice", c.Send(name="alice", to=to, body=msgspec.Raw(b'{"n": 1}')))
        self.marks.append((snapshot.dump(self.machine), len(self.events)))

    # -- identity and presence -------------------------------------------------------------------------------

    @rule(
        actor=actors,
        role=st.sampled_from((None, None, "dev", "")),
        invite=st.sampled_from((None, None, None, "issued", "bogus-invite")),
        rotate=st.booleans(),
        force=st.booleans(),
    )
    def join(self, actor: Any, role: str | None, invite: str | None, rotate: bool, force: bool) -> None:
        room, name, creds, session = self.who(actor)
        if invite == "issued":
            invite = self.invites[-1] if self.invites else None
        self.now += 0.5
        cmd = make(
            c.Join,
            **creds,
            id=self.next_id(),
            room=room,
            name=name,
            role=role,
            invite=invite,
            rotate=rotate,
            force=force,
        )
        self.run(cmd, session)

    @rule(who=members, choice=mostly(("admin",), TOKENS + ("own",)))
    def reset_token(self, who: Any, choice: str) -> None:
        self.act(c.ResetToken, (*who, choice, 6))

    @rule(actor=actors, after=cursors, stream=st.booleans())
    def attach(self, actor: Any, after: int | None, stream: bool) -> None:
        self.act(c.Attach, actor, after=after, stream=stream)

    @rule(
        actor=actors, status=st.sampled_from((None, "active", "busy", "waiting", "idle", "done", "offline"))
    )
    def heartbeat(self, actor: Any, status: str | None) -> None:
        self.act(c.Heartbeat, actor, status=status)

    @rule(session=st.integers(1, 6))
    def session_gone(self, session: int) -> None:
        self.now += 0.5
        self.run(SessionGone(session), session)  # type: ignore[arg-type]

    @rule(dt=st.sampled_from((0.5, 5.0, 31.0, 100.0, 700.0, 4_000.0, -20.0)), tick=st.booleans())
    def tick(self, dt: float, tick: bool) -> None:
        """Time passes (a wall clock may step back a little); claims past their TTL or grace lapse on the Tick
        (or at the next claim verb)."""
        self.now += dt
        if tick:
            self.run(Tick(), None)

    @rule(via_log=st.booleans())
    def restart(self, via_log: bool) -> None:
        """The hub restarts from its snapshot (or from the log alone): every session is gone, then Start."""
        data = snapshot.dump(self.machine)
        self.machine = fold(self.events, self.config) if via_log else snapshot.load(data, self.config)
        assert snapshot.dump(self.machine) == data
        self.subs.clear()
        self.now += 1.0
        assert self.run(Start(), None) is not None

    @rule()
    def mark(self) -> None:
        """Keep a snapshot: at the end, it and the rest of the log must fold to the live state."""
        if len(self.marks) < 4:
            self.marks.append((snapshot.dump(self.machine), len(self.events)))

    # -- messages --------------------------------------------------------------------------------------------

    @rule(
        actor=actors,
        to=targets,
        body=bodies,
        kind=mostly(("message", "task"), ("x*129",), 0.05),
        reply_to=mostly((None,), (1, 2, 10**6, -1), 0.15),
        priority=st.booleans(),
        fence=fences,
    )
    def send(
        self, actor: Any, to: Any, body: Any, kind: str, reply_to: Any, priority: bool, fence: Any
    ) -> None:
        self.act(
            c.Send,
            actor,
            to=to,
            body=msgspec.Raw(BODIES[body]),
            kind=kind,
            reply_to=reply_to,
            priority=priority,
            fence=fence,
        )

    @rule(actor=actors, seq=mostly(("last", "last", 1, 2), (0, -1, 10**6)))
    def claim_message(self, actor: Any, seq: Any) -> None:
        if seq == "last":
            room = self.machine.world.rooms.get(actor[0])
            seq = room.part(Feed).seq if room is not None else 1
        self.act(c.ClaimMessage, actor, seq=seq)

    @rule(
        actor=actors,
        waiter=mostly(("wt-a", "wt-b", "alice"), ("bad waiter",), 0.05),
        for_=mostly(("own", "own", None), ("bob", "bad/x"), 0.1),
        condition=st.none() | exprs,
        directed_only=st.booleans(),
        after=cursors,
        since=st.sampled_from((None, None, None, 0.0, 1_000.0, 1e12)),
    )
    def wait(
        self, actor: Any, waiter: str, for_: Any, condition: Any, directed_only: bool, after: Any, since: Any
    ) -> None:
        room, name, creds, session = self.who(actor)
        self.now += 0.5
        cmd = make(
            c.Wait,
            **creds,
            id=self.next_id(),
            room=room,
            waiter=waiter,
            for_=name if for_ == "own" else for_,
            condition=condition,
            directed_only=directed_only,
            after=after,
            since=since,
        )
        self.run(cmd, session)

    @rule(
        actor=actors,
        expr=exprs,
        named=st.booleans(),
        include=st.sampled_from(((), (), ("state",), ("agents", "tasks"), ("nope",))),
        once=st.booleans(),
    )
    def subscribe(self, actor: Any, expr: str, named: bool, include: Any, once: bool) -> None:
        room, name, creds, session = self.who(actor)
        self.now += 0.5
        cmd = make(
            c.Subscribe,
            **creds,
            id=self.next_id(),
            room=room,
            expr=expr,
            name=name if named else None,
            include=include,
            once=once,
        )
        self.run(cmd, session)

    @rule(
        pick=st.integers(0, 7),
        session=mostly(("its",), (1, 2, 6)),
        any_id=st.sampled_from(("waiter", "waiter", 1, 0, 10**6, -(10**6))),
    )
    def unsubscribe(self, pick: int, session: Any, any_id: Any) -> None:
        """Drop a subscription given out (on its own session, or another's), or any id: unknown, or one
        behind a condition waiter (refused: its waiter would never wake)."""
        if any_id == "waiter":  # the condition of an armed waiter, on the waiter's session
            armed = [
                (sub.session, sub.id)
                for room in self.machine.world.rooms.values()
                for sub in room.part(Conditions).subs.values()
                if sub.wait_id is not None
            ]
            any_id = armed[pick % len(armed)] if armed else (1, 1)
        else:
            any_id = (1, any_id)
        its, sub = self.subs[pick % len(self.subs)] if self.subs and pick < 4 else any_id
        self.now += 0.5
        self.run(make(c.Unsubscribe, id=self.next_id(), sub=sub), its if session == "its" else session)

    # -- claims, intents, the plan ---------------------------------------------------------------------------

    def work_of(self, actor: Any, work: str, mine: bool = True) -> str:
        """`held`: a work the actor holds now (or, not `mine`, someone else does), else w2."""
        if work != "held":
            return work
        room = self.machine.world.rooms.get(actor[0])
        live = room.part(Claims).live.values() if room is not None else ()
        held = sorted(h.work for h in live if (h.holder == actor[1]) == mine)
        return held[0] if held else "w2"

    @rule(
        actor=actors,
        work=works,
        paths=paths,
        ttl=ttls,
        checkpoint=checkpoints,
        renew=mostly((False,), (True,), 0.25),
    )
    def claim(self, actor: Any, work: str, paths: Any, ttl: Any, checkpoint: Any, renew: bool) -> None:
        work = self.work_of(actor, work)
        self.act(c.Claim, actor, work=work, paths=paths, ttl=ttl, checkpoint=checkpoint, renew=renew)

    @rule(actor=actors, work=works, checkpoint=checkpoints, fence=fences)
    def release(self, actor: Any, work: str, checkpoint: Any, fence: Any) -> None:
        work = self.work_of(actor, work)
        self.act(c.Release, actor, work=work, checkpoint=checkpoint, fence=fence)

    @rule(actor=actors, work=works, to=names, fence=fences)
    def handoff(self, actor: Any, work: str, to: str, fence: Any) -> None:
        work = self.work_of(actor, work)
        self.act(c.Handoff, actor, work=work, to=to, fence=fence)

    @rule(
        actor=actors,
        work=works,
        task=task_ids,
        idle=st.sampled_from((0.0, 10.0, 1e9, -1.0)),
        claim=st.booleans(),
    )
    def reoffer(self, actor: Any, work: str, task: str, idle: float, claim: bool) -> None:
        """The supervisor's re-offer of a quiet holder's claim or task."""
        if claim:
            work = self.work_of(actor, work, mine=False)
            self.act(c.ReofferClaim, actor, work=work, idle_seconds=idle)
        else:
            self.act(c.ReofferTask, actor, task=task, idle_seconds=idle)

    @rule(actor=actors, paths=paths, note=notes)
    def intent(self, actor: Any, paths: Any, note: Any) -> None:
        self.act(c.DeclareIntent, actor, paths=paths, note=note)

    @rule(
        actor=actors,
        task=task_ids,
        title=mostly(("Title", "Other"), ("", "x*1001"), 0.08),
        depends_on=st.lists(mostly(TASKS, ("", "nope")), max_size=2).map(tuple),
        parent=st.sampled_from((None, None, None, "e1", "s1", "t1", "nope")),
        mode=st.sampled_from(("par", "seq")),
        order=st.sampled_from((None, None, 1, 2, 3, -1)),
        epic=mostly((False,), (True,), 0.2),
    )
    def task_declare(
        self,
        actor: Any,
        task: str,
        title: str,
        depends_on: Any,
        parent: Any,
        mode: str,
        order: Any,
        epic: bool,
    ) -> None:
        self.act(
            c.DeclareTask,
            actor,
            task=task,
            title=title,
            depends_on=depends_on,
            parent=parent,
            mode=mode,
            order=order,
            epic=epic,
        )

    @rule(actor=actors, task=task_ids)
    def task_claim(self, actor: Any, task: str) -> None:
        self.act(c.ClaimTask, actor, task=task)

    @rule(
        actor=actors,
        task=task_ids,
        etag=mostly(("current", None), (1, 99)),
        status=statuses,
        title=mostly((None, None, "Renamed"), ("",), 0.05),
        note=notes,
        fence=fences,
    )
    def task_update(
        self, actor: Any, task: str, etag: Any, status: Any, title: Any, note: Any, fence: Any
    ) -> None:
        if etag == "current":
            room = self.machine.world.rooms.get(actor[0])
            found = room.part(Plan).tasks.get(task) if room is not None else None
            etag = found.etag if found is not None else None
        self.act(
            c.UpdateTask, actor, task=task, etag=etag, status=status, title=title, note=note, fence=fence
        )

    # -- shared state and branches ---------------------------------------------------------------------------

    def scope_of(self, name: str, scope: str) -> str:
        if scope == "own":
            return name
        return ("bob" if name != "bob" else "alice") if scope == "other" else scope

    def version_of(self, room: str, scope: str, key: str, branch: Any, given: Any) -> Any:
        if given != "current":
            return given
        found = self.machine.world.rooms.get(room)
        if found is None:
            return None
        state = found.part(State)
        entry = state.lookup(scope, key, state.branches.get(branch) if branch is not None else None)
        return entry.version if entry is not None else 0

    @rule(
        actor=actors,
        key=keys,
        scope=scopes,
        value=values,
        gate=mostly((None, None), GOOD_EXPRS + BAD_EXPRS, 0.3),
        if_version=versions,
        branch=branches,
        fence=fences,
    )
    def state_set(
        self,
        actor: Any,
        key: str,
        scope: str,
        value: Any,
        gate: Any,
        if_version: Any,
        branch: Any,
        fence: Any,
    ) -> None:
        scope = self.scope_of(actor[1], scope)
        if_version = self.version_of(actor[0], scope, key, branch, if_version)
        self.act(
            c.SetState,
            actor,
            key=key,
            scope=scope,
            value=value,
            if_=gate,
            if_version=if_version,
            branch=branch,
            fence=fence,
        )

    @rule(
        actor=actors,
        key=mostly(("n", "f"), ("k1", "k2")),
        by=st.sampled_from((1, -1, 7, 1.5, 1e308, -1e308, 2**62, 2**63 - 1, 2**63, 2**70, "x", None, True)),
        branch=branches,
        own=st.booleans(),
    )
    def state_increment(self, actor: Any, key: str, by: Any, branch: Any, own: bool) -> None:
        """Increments (in `_shared` or the agent's own scope, which comes and goes): a sum past 64 bits or
        reaching infinity is refused like such a value."""
        scope = actor[1] if own else "_shared"
        self.act(c.SetState, actor, key=key, scope=scope, value=by, increment=True, branch=branch)

    @rule(actor=actors, key=keys, scope=scopes, value=values, branch=branches, fence=fences)
    def state_init(self, actor: Any, key: str, scope: str, value: Any, branch: Any, fence: Any) -> None:
        scope = self.scope_of(actor[1], scope)
        self.act(c.InitState, actor, key=key, scope=scope, value=value, branch=branch, fence=fence)

    @rule(
        actor=actors,
        key=mostly(("present", "present"), KEYS + ("v1", "v2", "", "a\nb")),
        scope=scopes,
        if_version=versions,
        branch=branches,
        fence=fences,
    )
    def state_delete(
        self, actor: Any, key: str, scope: str, if_version: Any, branch: Any, fence: Any
    ) -> None:
        scope = "_view" if key.startswith("v") and scope == "_shared" else self.scope_of(actor[1], scope)
        if key == "present":  # a key the scope holds (as seen from the branch), views included
            room = self.machine.world.rooms.get(actor[0])
            state = room.part(State) if room is not None else State()
            if scope == "_view":
                held = sorted(state.views)
            else:
                held = sorted(state.entries(state.branches.get(branch) if branch else None).get(scope, {}))
            key = held[0] if held else "k1"
        if_version = self.version_of(actor[0], scope, key, branch, if_version)
        self.act(
            c.DeleteState, actor, key=key, scope=scope, if_version=if_version, branch=branch, fence=fence
        )

    @rule(
        actor=actors,
        writes=st.lists(
            st.tuples(keys, scopes, values, st.booleans(), st.sampled_from((None, None, None, 0, 1, 2))),
            min_size=1,
            max_size=4,
        )
        | st.just([]),
        gate=mostly((None, None), GOOD_EXPRS + BAD_EXPRS, 0.3),
        branch=branches,
        fence=fences,
    )
    def state_batch(self, actor: Any, writes: Any, gate: Any, branch: Any, fence: Any) -> None:
        batch = tuple(
            c.Write(key=huge(k), scope=self.scope_of(actor[1], s), value=v, increment=inc, if_version=ver)
            for k, s, v, inc, ver in writes
        )
        self.act(c.BatchState, actor, writes=batch, if_=gate, branch=branch, fence=fence)

    @rule(actor=actors, key=views, expr=exprs)
    def state_view(self, actor: Any, key: str, expr: str) -> None:
        self.act(c.DefineView, actor, key=key, expr=expr)

    @rule(actor=actors, branch=branch_names, from_=st.sampled_from((None, None, "b1", "nope")))
    def branch_create(self, actor: Any, branch: str, from_: Any) -> None:
        self.act(c.CreateBranch, actor, branch=branch, from_=from_)

    @rule(actor=actors, branch=branch_names)
    def branch_merge(self, actor: Any, branch: str) -> None:
        self.act(c.MergeBranch, actor, branch=branch)

    # -- reads -----------------------------------------------------------------------------------------------

    @rule(
        room=rooms,
        choice=tokens,
        which=st.sampled_from(("agents", "messages", "messages")),
        for_=st.sampled_from((None, "alice", "bob", "dave", "ghost")),
        after=st.sampled_from((0, 0, 2, 5, -3, 2**62)),
        kind=st.sampled_from((None, None, "message", "task")),
        unclaimed=st.booleans(),
        limit=mostly((50, 3, 1), (0, 10**9)),
    )
    def read_feed(
        self,
        room: str,
        choice: str,
        which: str,
        for_: Any,
        after: int,
        kind: Any,
        unclaimed: bool,
        limit: int,
    ) -> None:
        """Presence, and the feed (behind the window too) with every filter."""
        if which == "agents":
            self.read(c.Agents, room, choice)
        else:
            fields = {"for_": for_, "after": after, "kind": kind, "unclaimed": unclaimed, "limit": limit}
            self.read(c.ListMessages, room, choice, **fields)

    @rule(
        room=rooms,
        choice=tokens,
        which=st.sampled_from(("claims", "board", "tasks", "task")),
        status=statuses,
        ready=st.booleans(),
        parent=st.sampled_from((None, None, "e1", "s1", "nope")),
        task=task_ids,
    )
    def read_plan(
        self, room: str, choice: str, which: str, status: Any, ready: bool, parent: Any, task: str
    ) -> None:
        """Claims, the board, the plan and one task."""
        if which == "tasks":
            self.read(c.ListTasks, room, choice, status=status, ready=ready, parent=parent)
        elif which == "task":
            self.read(c.ShowTask, room, choice, task=task)
        else:
            self.read(c.Board if which == "board" else c.ListClaims, room, choice)

    @rule(
        room=rooms,
        choice=tokens,
        which=st.sampled_from(("get", "list", "eval", "branches", "diff")),
        key=keys | views,
        scope=st.sampled_from(("_shared", "_shared", "_view", "alice", "bad\x01")),
        list_scope=st.sampled_from((None, "_shared", "_view", "alice")),
        branch=branches,
        name=branch_names,
        expr=exprs,
    )
    def read_state(
        self,
        room: str,
        choice: str,
        which: str,
        key: str,
        scope: str,
        list_scope: Any,
        branch: Any,
        name: str,
        expr: str,
    ) -> None:
        """Entries, views, CEL, branches and their diffs."""
        if which == "get":
            scope = "_view" if key.startswith("v") else scope
            self.read(c.GetState, room, choice, key=key, scope=scope, branch=branch)
        elif which == "list":
            self.read(c.ListState, room, choice, scope=list_scope, branch=branch)
        elif which == "eval":
            self.read(c.Eval, room, choice, expr=expr, branch=branch)
        elif which == "branches":
            self.read(c.ListBranches, room, choice)
        else:
            self.read(c.DiffBranch, room, choice, branch=name)

    # -- rooms and operators ---------------------------------------------------------------------------------

    @rule(
        which=st.sampled_from(("create", "invite", "list", "status", "tail")),
        room=mostly(("extra", LAB, HOME), ("bad room", "")),
        choice=mostly(("admin", "own"), TOKENS),
        ttl=st.sampled_from((None, 60.0, 0.0, 1e9)),
        after=st.sampled_from((None, 0, 3, -1)),
        which_rooms=st.sampled_from(((), (HOME,), (HOME, LAB), ("nowhere",))),
    )
    def operators(self, which: str, room: str, choice: str, ttl: Any, after: Any, which_rooms: Any) -> None:
        """Room create, invite and list, status and tail: the admin token, a member's, or none."""
        fields = {"id": self.next_id(), **self.creds(HOME, "alice", choice)}
        self.now += 0.5
        if which == "create":
            cmd = make(c.CreateRoom, room=room, **fields)
        elif which == "invite":
            cmd = make(c.InviteRoom, room=room, ttl=ttl, **fields)
        elif which == "list":
            cmd = make(c.ListRooms, **fields)
        elif which == "status":
            cmd = make(c.Status, **fields)
        else:
            cmd = make(c.Tail, after=after, rooms=which_rooms, **fields)
        self.run(cmd, 2)

    # -- the end ---------------------------------------------------------------------------------------------

    def probes(self) -> list[Any]:
        """Reads and mutations whose decisions depend only on durable state (no waiters or subscriptions)."""
        out: list[Any] = [c.Status(), make(c.ListRooms, admin=ADMIN)]
        for room in (HOME, LAB, "nowhere"):
            reader = self.tokens.get((room, READER.get(room, "alice")))
            out += [
                c.Agents(room=room, token=reader),
                c.ListMessages(room=room, limit=50, token=reader),
                c.ListMessages(room=room, for_="alice", after=-5, token=reader),
                c.ListClaims(room=room, token=reader),
                c.Board(room=room, token=reader),
                c.ListTasks(room=room, token=reader),
                c.ListTasks(room=room, ready=True, token=reader),
                c.ListState(room=room, token=reader),
                c.ListBranches(room=room, token=reader),
            ]
            out += [c.ShowTask(room=room, task=t, token=reader) for t in TASKS]
            out += [c.GetState(room=room, key=k, token=reader) for k in KEYS]
            out += [c.GetState(room=room, key=v, scope="_view", token=reader) for v in ("v1", "v2", "v3")]
            out += [c.DiffBranch(room=room, branch=b, token=reader) for b in ("b1", "b2", "feat/x")]
            out += [c.ListState(room=room, branch=b, token=reader) for b in ("b1", "b2")]
            out += [c.Eval(room=room, expr=x, token=reader) for x in GOOD_EXPRS]
            for name in AGENTS:
                t = self.tokens.get((room, name))
                out += [
                    c.Heartbeat(room=room, name=name, token=t),
                    c.Claim(room=room, name=name, token=t, work="probe", paths=("src/api",)),
                    c.Claim(room=room, name=name, token=t, work="w1", paths=("docs",)),
                    c.Release(room=room, name=name, token=t, work="w1"),
                    c.Handoff(room=room, name=name, token=t, work="w2", to="alice"),
                    c.Send(room=room, name=name, token=t, to=("all",)),
                    c.ClaimMessage(room=room, name=name, token=t, seq=1),
                    c.SetState(room=room, name=name, token=t, key="n", value=1, increment=True),
                    c.SetState(room=room, name=name, token=t, key="k1", value=1, if_version=1),
                    c.MergeBranch(room=room, name=name, token=t, branch="b1"),
                    c.UpdateTask(room=room, name=name, token=t, task="t1", status="done"),
                ]
                out += [c.ClaimTask(room=room, name=name, token=t, task=x) for x in TASKS]
                out += [
                    make(c.SetState, room=room, name=name, token=t, key="k2", fence=f)
                    for f in ({"w1": 1}, {"w1": 2}, {"w2": 1}, {"w2": 2}, {"task:t1": 1}, {"task:t1": 2})
                ]
                out += [  # the admin token acts as any agent
                    make(c.Release, admin=ADMIN, room=room, name=name, work="w1"),
                    make(c.UpdateTask, admin=ADMIN, room=room, name=name, task="t1", status="ready"),
                    make(c.Join, admin=ADMIN, room=room, name=name),
                ]
        return out

    def teardown(self) -> None:
        live = snapshot.dump(self.machine)
        assert snapshot.dump(fold(self.events, self.config)) == live, "the log does not fold to the state"
        for data, n in self.marks:
            restored = snapshot.load(data, self.config)
            for event in self.events[n:]:
                restored.apply(event)
            assert snapshot.dump(restored) == live, f"the snapshot at event {n} does not fold on to the state"
        for session in sorted(self.machine.world.sessions):
            self.run(SessionGone(session), session)
        assert not residue(self.machine), residue(self.machine)
        loaded = snapshot.load(snapshot.dump(self.machine), self.config)
        later = self.now + 10_000.0  # rate buckets (not durable) are full again on both
        for cmd in self.probes():
            assert decision(self.machine, cmd, later) == decision(loaded, cmd, later), f"restored: {cmd!r}"


STATEFUL = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class OpenHub(HubStateMachine):
    """A hub without an admin token (joins make rooms), a 2-message feed window, no rate limit."""

    CONFIG = OPEN


class GatedHub(HubStateMachine):
    """A hub with an admin token (rooms made by the admin, joins admitted), a rate limit, the whole feed."""

    CONFIG = GATED


TestOpenHub = OpenHub.TestCase
TestOpenHub.settings = STATEFUL
TestGatedHub = GatedHub.TestCase
TestGatedHub.settings = STATEFUL


# -- one value at a time -------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    value=st.one_of(
        json_values,
        st.sampled_from(EDGE_VALUES + (deep(64), deep(65), {"k": deep(64)})),
        st.integers(),
        st.floats(allow_nan=False),
    )
)
def test_a_state_value_is_refused_or_kept_exactly(value: Any) -> None:
    """A state value is refused with bad_request, or kept exactly through the log and the snapshot."""
    m = Machine(OPEN)
    joined = m.run(c.Join(name="alice"), Context(1.0, 1, lambda: "tok"))
    cmd = c.SetState(name="alice", token="tok", key="k", value=value)
    try:
        out = m.handle(cmd, Context(2.0, 1))
    except HubError as err:
        assert err.code == "bad_request"
        return
    m.commit(out)
    (written,) = out.events
    assert canon(decode_event(encode(written)).value) == canon(value)
    restored = snapshot.load(snapshot.dump(m), OPEN)
    got = restored.run(c.GetState(key="k"), Context(3.0, 1))
    (reply,) = [fx for fx in got.effects if type(fx) is Reply]
    assert canon(reply.result.value) == canon(value)
    assert joined.events and snapshot.dump(fold([*joined.events, written], OPEN)) == snapshot.dump(m)


# -- core defects found by the machine above, kept as reproducers ----------------------------------------


def _script() -> tuple[Machine, Any]:
    m = Machine(HubConfig(rate_per_agent=None))
    m.run(c.Join(name="alice"), Context(1.0, 1, lambda: "tok"))

    def run(cmd: Any, session: int = 1) -> Outcome:
        return m.run(cmd, Context(2.0, session, lambda: "tok"))

    return m, run


def _result(out: Outcome) -> Any:
    (reply,) = [fx for fx in out.effects if type(fx) is Reply]
    return reply.result


def test_a_condition_on_a_key_of_a_new_scope_is_re_evaluated() -> None:
    """`!has(state._shared.n)` becomes true when the first `_shared` key is written: the subscription fires."""
    m, run = _script()
    assert _result(run(c.Subscribe(expr="!has(state._shared.n)"), session=2)).holds is False
    out = run(c.SetState(name="alice", token="tok", key="k1", value=1))
    assert _result(run(c.Eval(expr="!has(state._shared.n)"))).value is True
    assert [fx for fx in out.effects if type(fx) is Deliver and fx.sessions == (2,)]


def test_a_condition_on_a_scope_that_goes_is_re_evaluated() -> None:
    """`has(state.alice.k2)` errs (never holds) once alice's scope is gone with its last key: the condition
    reading it is re-evaluated, so it fires again when the scope comes back."""
    m, run = _script()
    run(c.SetState(name="alice", token="tok", scope="alice", key="k1", value=1))
    assert _result(run(c.Subscribe(expr="!has(state.alice.k2)"), session=2)).holds is True
    run(c.DeleteState(name="alice", token="tok", scope="alice", key="k1"))
    assert not m.world.rooms["default"].part(Conditions).subs[1].held
    out = run(c.SetState(name="alice", token="tok", scope="alice", key="k1", value=2))
    assert [fx for fx in out.effects if type(fx) is Deliver and fx.sessions == (2,)]


def test_a_view_over_a_new_scope_reads_the_same_after_a_restart() -> None:
    """A view over `has(state._shared.n)` reads the same on the live hub and on one restored from its snapshot."""
    m, run = _script()
    run(c.DefineView(name="alice", token="tok", key="v", expr="has(state._shared.n)"))
    run(c.SetState(name="alice", token="tok", key="k1", value=1))
    restored = snapshot.load(snapshot.dump(m), m.config)
    get = c.GetState(key="v", scope="_view")
    live = _result(run(get)).value
    assert live == _result(restored.run(get, Context(3.0, 1))).value is False


def test_deleting_a_view_on_a_branch_is_refused() -> None:
    """Views have no branches: deleting one (scope `_view`) with a branch given is refused with bad_request,
    and the view stays computed."""
    m, run = _script()
    run(c.DefineView(name="alice", token="tok", key="v", expr="true"))
    run(c.CreateBranch(name="alice", token="tok", branch="b1"))
    before = snapshot.dump(m)
    with pytest.raises(HubError) as err:
        run(c.DeleteState(name="alice", token="tok", key="v", scope="_view", branch="b1"))
    assert err.value.code == "bad_request" and err.value.detail["field"] == "branch"
    assert snapshot.dump(m) == before
    assert _result(run(c.Eval(expr="has(state._view.v)"))).value is True


def test_unsubscribing_a_waiters_condition_is_refused() -> None:
    """`unsubscribe` of the id behind a `wait --condition` is refused with bad_request: the waiter stays
    armed on its condition and wakes when it holds."""
    m, run = _script()
    run(c.Wait(waiter="w", condition="state._shared.k1 == 1", token="tok"))  # its condition is subscription 1
    with pytest.raises(HubError) as err:
        run(c.Unsubscribe(sub=1))
    assert err.value.code == "bad_request"
    out = run(c.SetState(name="alice", token="tok", key="k1", value=1), session=2)
    assert [fx for fx in out.effects if type(fx) is Deliver and fx.sessions == (1,)]
    assert not m.world.rooms["default"].part(Waiters).by_name
