"""The chaos run's ledger (what clients were told) and its checks against the event log read after the run:
nothing acknowledged lost or duplicated, nothing granted twice, counters are the sum of what landed, the live
hub equals a fold of its log. Pure functions of the log's rows and the ledger: tests/chaos feeds them tampered
logs to show each one can fail."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLI_WAITER",
    "COUNTERS",
    "LEAVER_WORK",
    "Ledger",
    "Verdict",
    "check_claims",
    "check_counters",
    "check_ledger",
    "check_tasks",
    "compare_live",
    "read_log",
]

COUNTERS = ("ctr0", "ctr1", "ctr2")
CLI_WAITER = "cw"
LEAVER_WORK = "leave-w"


@dataclass
class Ledger:
    """What clients were told: acknowledged results, refusals, and the operations left in doubt."""

    acked: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    doubt: Counter[str] = field(default_factory=Counter)
    unreachable: Counter[str] = field(default_factory=Counter)  # never sent: no connection
    unexpected: list[str] = field(default_factory=list)
    sends: dict[str, int] = field(default_factory=dict)  # body id → acknowledged seq
    attempted_sends: set[str] = field(default_factory=set)
    acked_seqs: list[int] = field(default_factory=list)
    message_claims: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    grants: list[tuple[str, str, int]] = field(default_factory=list)  # (work, holder, epoch) acknowledged
    handoffs: list[tuple[str, str, str]] = field(default_factory=list)  # (work, from, to) acknowledged
    tasks: list[str] = field(default_factory=list)  # declared (acknowledged or in doubt)
    task_claims: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    increments: dict[tuple[str, str], list[tuple[int, bool]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # (key, writer) → [(by, acknowledged)] in the order sent
    writes: list[tuple[str, str, int, Any]] = field(default_factory=list)  # (scope, key, version, value)
    since_restart: int = 0
    cli_since_restart: int = 0  # CLI processes are slow to start: each kill waits for one of theirs too
    cli_needed: int = 0
    ceiling: int = 0  # SDK agents wait while this many were acknowledged since the last restart (0: never)
    total: int = 0
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def note(self, kind: str, outcome: str, detail: str = "") -> None:
        if outcome == "acked":
            self.acked[kind] += 1
            self.since_restart += 1
            self.cli_since_restart += kind.startswith("cli.")
            self.total += 1
            async with self.cond:
                self.cond.notify_all()
        elif outcome == "refused":
            self.refused[kind] += 1
        elif outcome == "doubt":
            self.doubt[kind] += 1
        elif outcome == "unreachable":
            self.unreachable[kind] += 1
        else:
            self.unexpected.append(f"{kind}: {detail}")

    async def room(self) -> None:
        """Until an SDK agent may go on (below the ceiling, or the hub was restarted)."""
        if self.ceiling and self.since_restart >= self.ceiling:
            async with self.cond:
                await self.cond.wait_for(lambda: not self.ceiling or self.since_restart < self.ceiling)

    async def restarted(self) -> None:
        self.since_restart = self.cli_since_restart = 0
        async with self.cond:
            self.cond.notify_all()

    async def wait_acks(self, n: int) -> None:
        async with self.cond:
            await self.cond.wait_for(
                lambda: self.since_restart >= n and self.cli_since_restart >= self.cli_needed
            )


@dataclass
class Verdict:
    """What the checks found."""

    violations: list[str]
    lost: int = 0
    duplicated: int = 0
    landed_in_doubt: int = 0


def check_ledger(
    rows: list[dict[str, Any]],
    L: Ledger,
    streams: dict[str, list[int]],
    cli_wakes: list[int],
    wakes_of: dict[str, list[int]],
) -> Verdict:
    """Every acknowledged result against the log (read after the run), and what each client was handed."""
    v: list[str] = []
    v += [f"unexpected refusal: {u}" for u in L.unexpected]
    lost = duplicated = landed = 0

    # messages: every acknowledged body once, at its seq; one in doubt at most once; nothing invented
    bodies: dict[str, list[int]] = defaultdict(list)
    messages = [ev for ev in rows if ev["type"] == "MessageSent"]
    for m in messages:
        body = m["body"]
        if isinstance(body, dict) and "id" in body:
            bodies[body["id"]].append(int(m["seq"]))
    for body, seqs in bodies.items():
        if len(seqs) > 1:
            duplicated += 1
            v.append(f"message {body} is in the feed {len(seqs)} times: {seqs}")
        if body not in L.attempted_sends:
            v.append(f"message {body} was never sent")
        if body not in L.sends:
            landed += 1
    for body, seq in L.sends.items():
        if bodies.get(body, [None])[0] != seq:
            lost += 1
            v.append(f"acknowledged message {body} (seq {seq}) is not in the feed there: {bodies.get(body)}")
    seqs = [int(m["seq"]) for m in messages]
    if seqs != list(range(1, len(seqs) + 1)):
        v.append("the feed's seqs are not 1..N")

    # streams resumed: no message twice, every directed one (and only what was addressed) delivered
    for name, got in streams.items():
        if got != sorted(set(got)):
            v.append(f"{name}: its stream repeated or reordered a message")
        addressed = {int(m["seq"]) for m in messages if name in m["to"] or "*" in m["to"]}
        directed = {int(m["seq"]) for m in messages if name in m["to"]}
        if missing := sorted(directed - set(got)):
            v.append(f"{name}: its stream missed {len(missing)} directed messages: {missing[:10]}")
        if extra := sorted(set(got) - addressed):
            v.append(f"{name}: its stream got messages not addressed to it: {extra[:10]}")
    # the CLI waiter: each wake hands over one message, none twice, none skipped
    for_cw = [int(m["seq"]) for m in messages if CLI_WAITER in m["to"]]
    if cli_wakes != for_cw[: len(cli_wakes)] or len(cli_wakes) != len(for_cw):
        v.append(f"cw: woken for {len(cli_wakes)} messages, {len(for_cw)} addressed to it")
    # waiters: woken once per round, in order
    for name, wakes in wakes_of.items():
        if wakes != list(range(1, len(wakes) + 1)):
            v.append(f"{name}: wakes are not 1..N once each")

    # message claims: one holder per message, the acknowledged one
    claimed: dict[int, list[str]] = defaultdict(list)
    for ev in rows:
        if ev["type"] == "MessageClaimed":
            claimed[int(ev["seq"])].append(ev["holder"])
    for seq, holders in claimed.items():
        if len(holders) > 1:
            duplicated += 1
            v.append(f"message {seq} claimed {len(holders)} times: {holders}")
    for seq, holders in L.message_claims.items():
        if len(set(holders)) > 1 or claimed.get(seq, [None])[0] != holders[0]:
            v.append(f"message {seq}: acknowledged claims {holders}, the log says {claimed.get(seq)}")

    v += check_claims(rows, L)
    v += check_tasks(rows, L)
    landed += check_counters(rows, L, v)

    # state writes: each acknowledged one is in the log at its version
    written = {
        (ev["scope"], ev["key"], int(ev["version"])): ev["value"]
        for ev in rows
        if ev["type"] == "StateWritten" and ev.get("branch") is None
    }
    for scope, key, version, value in L.writes:
        if written.get((scope, key, version), object()) != value:
            lost += 1
            v.append(f"acknowledged write {scope}.{key} v{version}={value!r} is not in the log")
    return Verdict(violations=v, lost=lost, duplicated=duplicated, landed_in_doubt=landed)


def read_log(db: Path, upto: int) -> list[dict[str, Any]]:
    """Every event of the log up to `upto`, decoded to builtins, with its log position as `pos`."""
    from hub.log.store import EventLog
    from hub.protocol.codec import decode_event, to_builtins

    log = EventLog(str(db), owner=False)
    try:
        rows = log.read(upto=upto)
    finally:
        log.close()
    out = []
    for row in rows:
        ev = to_builtins(decode_event(row[3]))
        ev["pos"] = row[0]
        out.append(ev)
    return out


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    def one(x: str, y: str) -> bool:
        x, y = x.rstrip("/"), y.rstrip("/")
        return x == y or x.startswith(y + "/") or y.startswith(x + "/")

    return any(one(x, y) for x in a for y in b)


def check_claims(rows: list[dict[str, Any]], L: Ledger) -> list[str]:
    """Never two live holders of a work or of overlapping paths; epochs strictly increase; an orphaned claim
    lapses only once its grace is over and only if its holder did not come back within it."""
    v: list[str] = []
    live: dict[str, dict[str, Any]] = {}  # work → {holder, paths, epoch, session, expires}
    epochs: dict[str, int] = {}
    granted: set[tuple[str, str, int]] = set()
    handed: set[tuple[str, str]] = set()
    for ev in rows:
        t = ev["type"]
        if t == "HubStarted":
            for work, held in live.items():
                if held["session"] is not None:
                    v.append(f"{work}: still bound to a session of the previous run after a restart")
        elif t == "ClaimGranted":
            work, holder, epoch = ev["work"], ev["holder"], int(ev["epoch"])
            held = live.get(work)
            if held is not None and held["holder"] != holder:
                v.append(f"{work}: granted to {holder} at {ev['pos']} while {held['holder']} holds it")
            for other, h in live.items():
                if other != work and h["holder"] != holder and _overlap(h["paths"], tuple(ev["paths"])):
                    v.append(f"{work} ({holder}) overlaps {other} ({h['holder']}) at {ev['pos']}")
            if (held is None or held["holder"] != holder) and epoch <= epochs.get(work, 0):
                v.append(f"{work}: epoch {epoch} after {epochs.get(work)} at {ev['pos']}")
            epochs[work] = max(epoch, epochs.get(work, 0))
            granted.add((work, holder, epoch))
            live[work] = {
                "holder": holder,
                "paths": tuple(ev["paths"]),
                "epoch": epoch,
                "session": ev.get("session"),
                "expires": ev.get("expires"),
                "orphaned": None,
            }
        elif t == "ClaimHandedOff":
            work, epoch = ev["work"], int(ev["epoch"])
            held = live.get(work)
            if held is None:
                v.append(f"{work}: handed off at {ev['pos']} but not live")
                continue
            if epoch <= epochs.get(work, 0):
                v.append(f"{work}: handoff epoch {epoch} after {epochs.get(work)} at {ev['pos']}")
            epochs[work] = max(epoch, epochs.get(work, 0))
            granted.add((work, ev["to"], epoch))
            handed.add((work, ev["to"]))
            held.update(holder=ev["to"], epoch=epoch, session=ev.get("session"), expires=ev.get("expires"))
            held["orphaned"] = None
        elif t == "ClaimRenewed":
            held = live.get(ev["work"])
            if held is not None:
                held.update(session=ev.get("session"), expires=ev.get("expires"), orphaned=None)
        elif t == "ClaimOrphaned":
            held = live.get(ev["work"])
            if held is not None:
                held.update(session=None, expires=ev["expires"], orphaned=ev["expires"])
        elif t in ("ClaimReleased", "ClaimLapsed"):
            held = live.pop(ev["work"], None)
            if held is None:
                v.append(f"{ev['work']}: {t} at {ev['pos']} but not live")
            elif t == "ClaimLapsed":
                if held["expires"] is not None and ev["at"] < held["expires"]:
                    v.append(
                        f"{ev['work']}: lapsed at {ev['at']:.3f}, before its expiry {held['expires']:.3f}"
                    )
                if "rebind_due" in held:
                    v.append(f"{ev['work']}: lapsed though {held['holder']} came back within its grace")
        if t == "SessionOpened":  # back within grace: its orphaned claims are its own again (SPEC: Claims)
            for held in live.values():
                if (
                    held["holder"] == ev["agent"]
                    and held["orphaned"] is not None
                    and ev["at"] < held["orphaned"]
                ):
                    held["rebind_due"] = ev["pos"]
        elif t == "ClaimRenewed" and live.get(ev["work"]) is not None:
            live[ev["work"]].pop("rebind_due", None)
        elif t == "HubStarted":
            for work, held in live.items():
                if "rebind_due" in held:
                    v.append(
                        f"{work}: {held['holder']} came back within grace at {held['rebind_due']}, not re-bound"
                    )
    for work, holder, epoch in L.grants:
        if (work, holder, epoch) not in granted:
            v.append(f"acknowledged grant {work} to {holder} at epoch {epoch} is not in the log")
    for work, _giver, to in L.handoffs:
        if (work, to) not in handed:
            v.append(f"acknowledged handoff of {work} to {to} is not in the log")
    seen: dict[tuple[str, int], str] = {}
    for work, holder, epoch in L.grants:
        if seen.setdefault((work, epoch), holder) != holder:
            v.append(f"{work} epoch {epoch} acknowledged to {seen[(work, epoch)]} and {holder}")
    if LEAVER_WORK in live:
        v.append(f"{LEAVER_WORK} is still live in the log")
    return v


def check_tasks(rows: list[dict[str, Any]], L: Ledger) -> list[str]:
    """A task is claimed by one holder at a time, epochs strictly increase, and each acknowledged claim is the
    log's (nothing re-offers in this mix, so a task is claimed at most once)."""
    v: list[str] = []
    claims: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for ev in rows:
        if ev["type"] == "TaskUpdated" and ev["status"] == "in_progress" and ev.get("epoch"):
            claims[ev["task"]].append((ev["holder"], int(ev["epoch"])))
    for task, grants in claims.items():
        if len(grants) > 1:
            v.append(f"task {task} claimed {len(grants)} times: {grants}")
    for task, acked in L.task_claims.items():
        if len(set(acked)) > 1 or claims.get(task, [None])[0] != acked[0]:
            v.append(f"task {task}: acknowledged claims {acked}, the log says {claims.get(task)}")
    return v


def check_counters(rows: list[dict[str, Any]], L: Ledger, v: list[str]) -> int:
    """Each writer's increments, in log order, are its acknowledged ones in the order sent, with any of those
    in doubt landed at most once; every counter equals the sum of what landed. Returns how many in doubt landed."""
    landed = 0
    prev: dict[str, Any] = {}
    diffs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for ev in rows:
        if ev["type"] == "StateWritten" and ev["scope"] == "_shared" and ev["key"] in COUNTERS:
            diffs[(ev["key"], ev["by"])].append(int(ev["value"]) - int(prev.get(ev["key"], 0)))
            prev[ev["key"]] = ev["value"]
    for pair in set(diffs) | set(L.increments):
        sent, got = L.increments.get(pair, []), diffs.get(pair, [])
        i = 0
        for by, acked in sent:
            if i < len(got) and got[i] == by:
                i += 1
                landed += not acked
            elif acked:
                v.append(f"{pair}: acknowledged increment by {by} is not in the log (in order)")
                break
        if i != len(got):
            v.append(f"{pair}: the log has increments nobody sent, or one twice: {got[i : i + 5]}")
    for key in COUNTERS:
        total = sum(sum(d) for (k, _w), d in diffs.items() if k == key)
        if total != prev.get(key, 0):
            v.append(f"{key}: {prev.get(key)} is not the sum of its increments {total}")
    return landed


def compare_live(
    rows: list[dict[str, Any]],
    claims: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    state: list[dict[str, Any]],
) -> list[str]:
    """The live hub (restored from snapshots and replay, many times over) against a plain fold of the log."""
    v: list[str] = []
    folded_claims: dict[str, tuple[str, int]] = {}
    folded_tasks: dict[str, tuple[str, str | None]] = {}
    folded_state: dict[str, tuple[Any, int]] = {}
    for ev in rows:
        t = ev["type"]
        if t == "ClaimGranted":
            folded_claims[ev["work"]] = (ev["holder"], int(ev["epoch"]))
        elif t == "ClaimHandedOff":
            folded_claims[ev["work"]] = (ev["to"], int(ev["epoch"]))
        elif t in ("ClaimReleased", "ClaimLapsed"):
            folded_claims.pop(ev["work"], None)
        elif t == "TaskDeclared":
            folded_tasks[ev["task"]] = (ev["status"], None)
        elif t == "TaskUpdated":
            folded_tasks[ev["task"]] = (ev["status"], ev.get("holder"))
        elif t == "StateWritten" and ev["scope"] == "_shared" and ev.get("branch") is None:
            folded_state[ev["key"]] = (ev["value"], int(ev["version"]))
        elif t == "StateDeleted" and ev["scope"] == "_shared" and ev.get("branch") is None:
            folded_state.pop(ev["key"], None)
    live_claims = {c["work"]: (c["holder"], int(c["epoch"])) for c in claims}
    if live_claims != folded_claims:
        v.append(f"live claims differ from the fold of the log: {live_claims} != {folded_claims}")
    live_tasks = {t["id"]: (t["status"], t.get("holder")) for t in tasks}
    if live_tasks != folded_tasks:
        diff = {k for k in set(live_tasks) | set(folded_tasks) if live_tasks.get(k) != folded_tasks.get(k)}
        v.append(f"live tasks differ from the fold of the log: {sorted(diff)[:10]}")
    live_state = {e["key"]: (e["value"], int(e["version"])) for e in state}
    if live_state != folded_state:
        diff = {k for k in set(live_state) | set(folded_state) if live_state.get(k) != folded_state.get(k)}
        v.append(f"live state differs from the fold of the log: {sorted(diff)[:10]}")
    return v
