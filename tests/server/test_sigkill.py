"""SIGKILL the hub at a seeded random moment under three busy senders: every acknowledged send survives the
restart, seqs are 1..N with no gap or repeat, and the restarted hub's state is the fold of its log."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

from agent_sdk import Code, HubError, SyncAgent
from hub.core import agents as agents_
from hub.core.feed import Feed
from hub.core.machine import Machine
from hub.log.store import EventLog
from hub.protocol.codec import to_builtins
from tests.conftest import HubProcess, seconds

SEED = int(os.environ.get("SYNAPSE_TEST_SEED", "20250611"))
SENDERS = ("s1", "s2", "s3")
TARGETS = ("sink", "default/*", "sink,other", "all")


def close_pipes(hp: HubProcess) -> None:
    """A killed hub's pipes (the fixture leaves them open)."""
    assert hp.proc is not None
    for pipe in (hp.proc.stdout, hp.proc.stderr):
        if pipe is not None:
            pipe.close()


class Senders:
    """Three SyncAgents in threads sending as fast as acknowledgements come back, until the hub dies."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: dict[str, list[tuple[int, int]]] = {name: [] for name in SENDERS}  # (seq, i)
        self.errors: dict[str, BaseException] = {}
        self.count = 0
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._run, args=(name,), daemon=True) for name in SENDERS]

    def _run(self, name: str) -> None:
        try:
            with SyncAgent(name, hub=self.url, save_token=False) as agent:
                agent.join()
                i = 0
                while True:
                    seq = int(
                        agent.send(TARGETS[i % len(TARGETS)], {"from": name, "i": i}, allow_unknown=True)
                    )
                    self.acked[name].append((seq, i))
                    with self.cond:
                        self.count += 1
                        self.cond.notify_all()
                    i += 1
        except BaseException as exc:  # the hub going away ends the thread; the test checks how
            self.errors[name] = exc
            with self.cond:
                self.cond.notify_all()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def wait_for(self, acks: int) -> None:
        with self.cond:
            reached = self.cond.wait_for(
                lambda: self.count >= acks or len(self.errors) == len(SENDERS), seconds(60_000)
            )
        assert reached and not self.errors, f"seed {SEED}: senders stopped early: {self.errors}"

    def join(self) -> None:
        for t in self.threads:
            t.join(seconds(30_000))
            assert not t.is_alive(), f"seed {SEED}: a sender hung after the kill"


def read_feed(agent: SyncAgent) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = agent.list_messages(after=out[-1]["seq"] if out else 0, limit=10_000)
        out.extend(page)
        if len(page) < 10_000:
            return out


def fold(db: Path) -> tuple[Machine, int]:
    """A fresh Machine folded from every row of the log, and the number of rows."""
    log = EventLog(str(db))
    try:
        rows = log.read()
    finally:
        log.close()
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), "log positions are not 1..N"
    machine = Machine()
    return machine, machine.fold(rows)


def test_acknowledged_sends_survive_sigkill(hub_process: HubProcess, db_path: Path) -> None:
    """Every send acknowledged before a SIGKILL is in the restarted hub's feed, once, at its seq."""
    rng = random.Random(SEED)
    kill_after = rng.randint(150, 1500)
    with SyncAgent("sink", hub=hub_process.url) as sink:  # its token kept: sink reads every message below
        token = sink.join()
    senders = Senders(hub_process.url)
    senders.start()
    try:
        senders.wait_for(kill_after)
        hub_process.kill()
    finally:
        senders.join()
    close_pipes(hub_process)
    for name, exc in senders.errors.items():
        assert isinstance(exc, HubError) and exc.code == Code.DISCONNECTED, f"seed {SEED}: {name}: {exc!r}"
    assert len(senders.errors) == len(SENDERS)

    hub_process.start()  # the same file, a new port
    try:
        with SyncAgent(
            "sink", hub=hub_process.url, token=token
        ) as reader:  # every message is to sink or to everyone
            feed = read_feed(reader)
            status = reader.status()
            presence = {a["name"]: a for a in reader.agents()}
    finally:
        assert hub_process.terminate() == 0
        close_pipes(hub_process)

    seqs = [m["seq"] for m in feed]
    assert seqs == list(range(1, len(feed) + 1)), f"seed {SEED}: seqs are not contiguous 1..N"
    total_acked = sum(len(v) for v in senders.acked.values())
    assert total_acked >= kill_after
    for name, acked in senders.acked.items():
        for seq, i in acked:
            m = feed[seq - 1]
            assert (m["from"], m["body"]) == (name, {"from": name, "i": i}), f"seed {SEED}: seq {seq} lost"
        # each sender's messages are 0..k in order: every acknowledged one, plus at most the one in flight
        mine = [m["body"]["i"] for m in feed if m["from"] == name]
        assert mine == list(range(len(mine))), f"seed {SEED}: {name} has a gap or a repeat"
        assert len(acked) <= len(mine) <= len(acked) + 1

    machine, rows = fold(db_path)
    assert status["log_events"] == rows, f"seed {SEED}: the hub's position is not the log's length"
    room = machine.world.rooms["default"]
    folded = [(int(ev.seq), ev.sender, ev.to, bytes(ev.body)) for ev in room.part(Feed).messages]
    listed = [(m["seq"], m["from"], tuple(m["to"]), m["body"]) for m in feed]
    assert [f[:3] for f in folded] == [m[:3] for m in listed]
    assert [decode_body(f[3]) for f in folded] == [m[3] for m in listed]
    roster = room.part(agents_.Roster)
    assert {name: to_builtins(agents_.presence(roster, a)) for name, a in roster.agents.items()} == presence


def decode_body(raw: bytes) -> Any:
    from hub.protocol.codec import decode_json

    return decode_json(raw)
