"""SIGKILL the hub holding claims and a plan, restart it on the same file: live claims are back with their expiry,
session-bound ones get the grace period and lapse by the same rules, checkpoints wait, the plan is intact."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from agent_sdk import Agent, SyncAgent
from hub.core import tasks
from hub.core.claims import Claims
from hub.core.machine import Machine
from hub.log.store import EventLog
from hub.protocol.codec import to_builtins
from tests.conftest import HubProcess, seconds

GRACE = seconds(3_000)  # covers the SDK's reconnect backoff while the hub restarts


def close_pipes(hp: HubProcess) -> None:
    assert hp.proc is not None
    for pipe in (hp.proc.stdout, hp.proc.stderr):
        if pipe is not None:
            pipe.close()


def fold(db: Path) -> Machine:
    """A fresh Machine folded from every row of the log."""
    log = EventLog(str(db))
    try:
        rows = log.read()
    finally:
        log.close()
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), "log positions are not 1..N"
    machine = Machine()
    machine.fold(rows)
    return machine


async def until(check: Any, within_ms: float = 15_000, what: str = "it") -> Any:
    deadline = time.monotonic() + seconds(within_ms)
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def listed(url: str) -> dict[str, dict[str, Any]]:
    with SyncAgent(hub=url) as reader:
        return {v["work"]: v for v in reader.claims()}


def plan(url: str) -> list[dict[str, Any]]:
    with SyncAgent(hub=url) as reader:
        return reader.tasks.list()


async def test_claims_and_plan_survive_sigkill(
    db_path: Path, client_env: dict[str, str], monkeypatch: Any
) -> None:
    """TTL claims keep their expiry; bob's session-bound claim gets grace and lapses (its checkpoint waits);
    carol's comes back to her reconnected session; a released checkpoint waits; tasks keep status and etag."""
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    hp = HubProcess(db_path, client_env, "--claim-grace", str(GRACE), "--snapshot-every", "7").start()
    port, url = hp.port, hp.url
    try:
        with SyncAgent("alice", hub=url) as alice:
            alice.claim("ttl-work", ["src/ttl"], ttl=600, checkpoint="alice was here")
            alice.claim("dave-work", ["src/dave"])
            alice.release("dave-work", checkpoint="dave: half done")
            alice.tasks.declare("auth", "Auth", epic=True)
            alice.tasks.declare("jwt", "JWT", parent="auth")
            alice.tasks.declare("oauth", "OAuth", parent="auth")
            alice.tasks.declare("deploy", "Deploy", depends_on=["auth"])
            alice.tasks.claim("jwt")
            alice.tasks.update("jwt", status="done", note="merged")
            alice.tasks.claim("oauth")
        bob = Agent("bob", hub=url, reconnect=False)
        carol = Agent("carol", hub=url)
        await bob.connect()
        await carol.connect()
        try:
            await bob.claim("bob-work", paths=["src/bob"], checkpoint="bob: step 2")
            await carol.claim("carol-work", paths=["src/carol"])
            before = listed(url)
            tasks_before = plan(url)
            assert {w: v["held_by"] for w, v in before.items()} == {
                "bob-work": "session",
                "carol-work": "session",
                "ttl-work": "ttl",
            }

            killed_at = time.time()
            hp.kill()
            close_pipes(hp)
            await until(lambda: not carol.connected.is_set(), what="carol to notice the hub is gone")
            hp.start(port=port)

            after = listed(url)
            assert sorted(after) == sorted(before), "a claim was dropped or duplicated"
            assert after["ttl-work"] == before["ttl-work"]
            assert after["bob-work"]["held_by"] == "grace"
            assert killed_at + GRACE <= after["bob-work"]["expires"] <= time.time() + GRACE
            for w in before:
                assert (after[w]["holder"], after[w]["paths"], after[w]["checkpoint"]) == (
                    before[w]["holder"],
                    before[w]["paths"],
                    before[w]["checkpoint"],
                )
            assert plan(url) == tasks_before

            await until(carol.connected.is_set, what="carol to reconnect")
            await until(
                lambda: listed(url)["carol-work"]["held_by"] == "session", what="carol's claim rebound"
            )
            await until(lambda: "bob-work" not in listed(url), what="bob's claim to lapse after the grace")
            final = listed(url)
            assert sorted(final) == ["carol-work", "ttl-work"]
            assert final["carol-work"]["held_by"] == "session" and final["carol-work"]["expires"] is None

            with SyncAgent("erin", hub=url) as erin:
                assert erin.claim("bob-work", ["src/bob"]).checkpoint == "bob: step 2"
                assert erin.claim("dave-work", ["src/dave"]).checkpoint == "dave: half done"
            with SyncAgent("alice", hub=url) as alice:  # only the task's holder may mark it done
                alice.tasks.update("oauth", status="done")
            with SyncAgent("erin", hub=url) as erin:
                assert erin.tasks.show("auth")["status"] == "done"
                assert erin.tasks.show("deploy")["status"] == "ready"
            now_listed = listed(url)
            now_plan = plan(url)
        finally:
            await bob.close()
            await carol.close()
        assert hp.terminate() == 0
        close_pipes(hp)
    finally:
        hp.kill()

    machine = fold(db_path)
    room = machine.world.rooms["default"]
    folded = {w: to_builtins(h.view()) for w, h in sorted(room.part(Claims).live.items())}
    # carol closed before the hub stopped: her claim is in its grace period in the log, otherwise the same
    assert folded["carol-work"]["held_by"] == "grace"
    assert {w: (v["holder"], v["paths"], v["checkpoint"]) for w, v in folded.items()} == {
        w: (v["holder"], v["paths"], v["checkpoint"]) for w, v in now_listed.items()
    }
    assert to_builtins(tasks.listed(room, None, False, None)) == now_plan
