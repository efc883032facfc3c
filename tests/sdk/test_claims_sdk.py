"""Claims through the SDK on a real hub: a parallel race, notices, checkpoints, grace after a SIGKILLed worker."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Agent, Code, HubError, SyncAgent
from agent_sdk.claims import Claim
from hub.core.scopes import overlaps
from hub.protocol.frames import Notice
from tests.conftest import ROOT, ThreadHub, hub_config, seconds

SCOPES = [
    ["src"],
    ["src/api"],
    ["src/api/user.py"],
    ["src/web/**/*.js"],
    ["src/web/app.js", "docs/web.md"],
    ["docs"],
    ["docs/*.md"],
    ["tests/**/test_*.py"],
    ["tests/unit"],
    ["README.md"],
]


@pytest.fixture(autouse=True)
def _tokens_here(client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


@pytest.fixture
def quick_hub(db_path: Path) -> Iterator[ThreadHub]:
    """A hub whose orphaned claims lapse half a second after their session ends."""
    th = ThreadHub(hub_config(db_path, claim_grace=0.5))
    try:
        yield th
    finally:
        th.stop()


async def until(check: Callable[[], Awaitable[Any]], within_ms: float = 10_000, what: str = "it") -> Any:
    """Ask the hub through `check` until it answers truthy."""
    deadline = asyncio.get_running_loop().time() + seconds(within_ms)
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_parallel_race_winners_never_overlap(hub: ThreadHub) -> None:
    """8 agents claim overlapping scopes at once (5 rounds): winners are pairwise disjoint, every loser got
    `claim_overlap` naming a winner it overlaps, and every loser overlaps some winner."""
    rng = random.Random(20250611)
    for round_ in range(5):
        room = f"race{round_}"
        agents = [Agent(f"r{i}", room=room, hub=hub.url, save_token=False) for i in range(8)]
        await asyncio.gather(*(a.connect() for a in agents))
        try:
            scopes = rng.sample(SCOPES, 8)

            async def attempt(agent: Agent, paths: list[str]) -> Claim | HubError:
                try:
                    return await agent.claim(f"work-{agent.name}", paths=paths)
                except HubError as exc:
                    return exc

            results = await asyncio.gather(*(attempt(a, s) for a, s in zip(agents, scopes, strict=True)))
            winners = {
                a.name: s for a, s, r in zip(agents, scopes, results, strict=True) if isinstance(r, Claim)
            }
            assert winners, f"round {round_}: nobody won"
            names = sorted(winners)
            for i, x in enumerate(names):
                for y in names[i + 1 :]:
                    assert not any(overlaps(p, q) for p in winners[x] for q in winners[y]), (x, y, winners)
            for agent, paths, result in zip(agents, scopes, results, strict=True):
                if isinstance(result, Claim):
                    assert result.held_by == "session" and result.holder == agent.name
                    continue
                assert result.code == Code.CLAIM_OVERLAP, result
                holder = result.detail["holder"]
                assert holder in winners and any(overlaps(p, q) for p in paths for q in winners[holder])
            listed = await agents[0].claims()
            assert {v["holder"]: v["paths"] for v in listed} == {
                n: [p.rstrip("/") for p in s] for n, s in winners.items()
            }
        finally:
            await asyncio.gather(*(a.close() for a in agents))


async def test_claim_handle_and_checkpoint_reach_the_next_claimer(hub: ThreadHub) -> None:
    """A released claim's checkpoint is on the next claimer's Claim; `async with` releases on exit."""
    async with Agent("api-dev", hub=hub.url) as api, Agent("test-dev", hub=hub.url) as tests:
        cl = await api.claim("edit-api", paths=["src/app/api.py"])
        assert (cl.work, cl.holder, cl.paths, cl.checkpoint) == (
            "edit-api",
            "api-dev",
            ["src/app/api.py"],
            None,
        )
        with pytest.raises(HubError) as info:
            await tests.claim("edit-tests", paths=["src/app/"])
        assert info.value.code == Code.CLAIM_OVERLAP and info.value.detail["holder"] == "api-dev"
        await cl.release(checkpoint="routes done; auth next")
        async with await tests.claim("edit-api", paths=["src/app/api.py"]) as mine:
            assert mine.checkpoint == "routes done; auth next" and mine.holder == "test-dev"
        assert await tests.claims() == []


async def test_handoff_pushes_a_notice_to_the_new_holder(hub: ThreadHub) -> None:
    """Alice hands her claim to Bob: Bob's agent gets a `claim.handed` Notice and holds it by his session."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        notices = bob.notices()
        await alice.claim("migrate", paths=["db/"], checkpoint="schema v2 drafted")
        await alice.handoff("migrate", "bob")
        notice = await asyncio.wait_for(anext(notices), seconds(5_000))
        assert isinstance(notice, Notice) and notice.kind == "claim.handed"
        assert notice.detail["from"] == "alice" and notice.detail["work"] == "migrate"
        assert notice.detail["checkpoint"] == "schema v2 drafted"
        (v,) = await bob.claims()
        assert (v["holder"], v["held_by"], v["checkpoint"]) == ("bob", "session", "schema v2 drafted")
        with pytest.raises(HubError) as info:
            await alice.handoff("migrate", "nobody")
        assert info.value.code == Code.FORBIDDEN  # no longer hers


async def test_ttl_lapse_pushes_a_notice(hub: ThreadHub) -> None:
    """A TTL claim (made before the agent connected) lapses while it is connected: `claim.lapsed` Notice."""
    ttl = seconds(1_000)
    with SyncAgent("alice", hub=hub.url, save_token=True) as one_shot:
        v = one_shot.claim("w", ["src/w"], ttl=ttl, checkpoint="cp")
        assert v.held_by == "ttl"
    async with Agent("alice", hub=hub.url) as alice:
        notices = alice.notices()
        notice = await asyncio.wait_for(anext(notices), seconds(10_000))
        assert notice.kind == "claim.lapsed"
        assert (notice.detail["work"], notice.detail["checkpoint"]) == ("w", "cp")
        assert await alice.claims() == []
        assert (await alice.claim("w", paths=["src/w"])).checkpoint == "cp"


async def test_renew_extends_a_ttl_claim(hub: ThreadHub) -> None:
    """`renew` on a TTL claim moves its expiry forward, keeping its scope."""
    with SyncAgent("alice", hub=hub.url) as one_shot:
        first = one_shot.claim("w", ["a"], ttl=100)
        second = one_shot.claim("w", ttl=200, renew=True)
    assert second.expires > first.expires and second.paths == ["a"]


WORKER = """
import asyncio, sys
from agent_sdk import Agent

async def main() -> None:
    async with Agent(sys.argv[2], hub=sys.argv[1], save_token=False) as agent:
        await agent.claim("edit-api", paths=["src/app/api.py"], checkpoint="half the routes")
        print("claimed", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_grace_expiry_after_a_worker_is_sigkilled(
    quick_hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """A worker holding a session-bound claim is SIGKILLed: its claim goes to grace, then lapses, and the
    next claimer gets its checkpoint."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, quick_hub.url, "worker-1"],
        stdout=subprocess.PIPE,
        env=client_env,
        cwd=ROOT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), seconds(20_000))
        assert line.strip() == "claimed"
        async with Agent("next", hub=quick_hub.url) as nxt:
            (v,) = await nxt.claims()
            assert (v["holder"], v["held_by"]) == ("worker-1", "session")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

            async def held_by() -> str | None:
                listed = await nxt.claims()
                return listed[0]["held_by"] if listed else "gone"

            seen = await until(lambda: _changed(held_by, "session"), what="the claim to leave its session")
            assert seen in ("grace", "gone")
            await until(lambda: _is(held_by, "gone"), what="the claim to lapse after the grace period")
            cl = await nxt.claim("edit-api", paths=["src/app/api.py"])
            assert cl.checkpoint == "half the routes"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def _changed(read: Callable[[], Awaitable[Any]], old: Any) -> Any:
    value = await read()
    return value if value != old else None


async def _is(read: Callable[[], Awaitable[Any]], want: Any) -> bool:
    return await read() == want


async def test_claim_epoch_fences_async_writes(hub: ThreadHub) -> None:
    """`Claim.epoch` / `Claim.fence`: writes fenced on it land while the claim is held; once it is handed on,
    the old holder's fenced writes get `fenced` and its handle's new owner holds a higher epoch."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        claim = await alice.claim("api", paths=["src/api"])
        assert (claim.epoch, claim.fence, claim.already_held) == (1, {"api": 1}, False)
        assert (await alice.claim("api", paths=["src/api"])).already_held
        assert await alice.state.set("k", 1, fence=claim.fence) == 1
        assert await alice.send("bob", "api ready", fence=claim.fence, allow_unknown=True) > 0
        await alice.handoff("api", "bob", fence=claim.fence)
        for write in (
            alice.state.set("k", 2, fence=claim.fence),
            alice.state.init("j", 1, fence=claim.fence),
            alice.state.cas("k", 1, 2, fence=claim.fence),
            alice.state.increment("n", fence=claim.fence),
            alice.state.batch([{"key": "k", "value": 2}], fence=claim.fence),
            alice.state.delete("k", fence=claim.fence),
            alice.send("bob", "still mine?", fence=claim.fence, allow_unknown=True),
            alice.release("api", fence=claim.fence),
        ):
            with pytest.raises(HubError) as info:
                await write
            assert info.value.code == Code.FENCED
        (held,) = await bob.claims()
        assert (held["holder"], held["epoch"]) == ("bob", 2)
        await bob.tasks.declare("T", "t")
        task = await bob.tasks.claim("T")
        done = await bob.tasks.update("T", status="done", fence={"task:T": task["epoch"], "api": 2})
        assert done["status"] == "done"


# -- the git guard ----------------------------------------------------------------------------------------------


async def test_check_paths_says_who_holds_each_file(hub: ThreadHub) -> None:
    """Agent.check_paths and SyncAgent.check_paths give the same answer: mine, another's (named), unclaimed."""
    async with Agent("alice", hub=hub.url) as alice, Agent("bob", hub=hub.url) as bob:
        await alice.claim("api", paths=["src/api"])
        await bob.claim("ui", paths=["src/ui/**/*.ts"])
        files = ["src/api/x.py", "src/ui/a/b.ts", "src/ui/a/b.css", "README.md"]
        got = await alice.check_paths(files)
        assert [(p["path"], p["held"], p["holder"], p["work"]) for p in got] == [
            ("src/api/x.py", True, "alice", "api"),
            ("src/ui/a/b.ts", False, "bob", "ui"),
            ("src/ui/a/b.css", False, None, None),
            ("README.md", False, None, None),
        ]
        with SyncAgent("alice", hub=hub.url, token=alice.token) as sync:
            assert await asyncio.to_thread(sync.check_paths, files) == got
        with pytest.raises(HubError) as info:
            await alice.check_paths(["../outside"])
        assert info.value.code == Code.BAD_REQUEST
