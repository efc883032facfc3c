"""The plan through the SDK on a real hub: Orkestra's flows (core loop, epics, pipelines, queue races)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from agent_sdk import Agent, Code, HubError
from tests.conftest import ThreadHub, seconds


@pytest.fixture(autouse=True)
def _tokens_here(client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


async def test_core_loop_with_a_stale_etag(hub: ThreadHub) -> None:
    """backlog → claim → update with etag; a stale etag is `conflict` carrying the current task; re-read, retry."""
    async with Agent("lead", hub=hub.url) as lead, Agent("a", hub=hub.url) as a, Agent("b", hub=hub.url) as b:
        await lead.tasks.declare("app-001", "Fix the login form")
        (backlog,) = await a.tasks.list(ready=True)
        assert backlog["id"] == "app-001"
        t = await a.tasks.claim("app-001")
        etag = t["etag"]
        seen_by_b = (await b.tasks.show("app-001"))["etag"]
        done = await a.tasks.update("app-001", status="done", etag=etag)
        assert done["etag"] == etag + 1
        with pytest.raises(HubError) as info:
            await b.tasks.update("app-001", status="blocked", etag=seen_by_b)
        assert info.value.code == Code.CONFLICT
        assert info.value.detail["current"]["etag"] == done["etag"]
        fresh = await b.tasks.show("app-001")
        again = await b.tasks.update(
            "app-001", status="blocked", etag=fresh["etag"], note="found a regression"
        )
        assert again["status"] == "blocked" and again["etag"] == fresh["etag"] + 1


async def test_epic_children_claimed_concurrently_complete_the_epic(hub: ThreadHub) -> None:
    """Three agents claim the three `par` children of an epic at the same time; the epic is done by itself."""
    async with Agent("lead", hub=hub.url) as lead:
        await lead.tasks.declare("auth", "Auth system", epic=True)
        for child, title in (
            ("jwt", "JWT middleware"),
            ("oauth", "OAuth provider"),
            ("store", "Session store"),
        ):
            await lead.tasks.declare(child, title, parent="auth")
        workers = [Agent(f"agent-{i}", hub=hub.url, save_token=False) for i in range(3)]
        await asyncio.gather(*(w.connect() for w in workers))
        try:
            taken = await asyncio.gather(
                *(w.tasks.claim(c) for w, c in zip(workers, ("jwt", "oauth", "store"), strict=True))
            )
            assert [t["holder"] for t in taken] == ["agent-0", "agent-1", "agent-2"]
            await asyncio.gather(
                *(w.tasks.update(t["id"], status="done") for w, t in zip(workers, taken, strict=True))
            )
        finally:
            await asyncio.gather(*(w.close() for w in workers))
        epic = await lead.tasks.show("auth")
        assert epic["status"] == "done" and {c["status"] for c in epic["children"]} == {"done"}
        assert epic["notes"][-1]["note"] == "all children done"


async def test_seq_pipeline_blocks_out_of_order_claims(hub: ThreadHub) -> None:
    """Step 2 of a seq pipeline is `seq_blocked` naming step 1 until step 1 is done; the agent claims step 1."""
    async with Agent("ops", hub=hub.url) as ops:
        await ops.tasks.declare("deploy", "Deploy pipeline", mode="seq")
        for order, (step, title) in enumerate(
            (("test", "Run tests"), ("build", "Build image"), ("push", "Push to registry")), start=1
        ):
            await ops.tasks.declare(step, title, parent="deploy", order=order)
        with pytest.raises(HubError) as info:
            await ops.tasks.claim("build")
        assert info.value.code == Code.SEQ_BLOCKED and info.value.detail["blocked_by"] == ["test"]
        children = await ops.tasks.list(parent="deploy")
        first = next(c for c in children if c["order"] == 1)
        for step in (first["id"], "build", "push"):
            await ops.tasks.claim(step)
            await ops.tasks.update(step, status="done")
        assert [c["status"] for c in await ops.tasks.list(parent="deploy")] == ["done"] * 3


async def test_nested_parents_outer_par_inner_seq(hub: ThreadHub) -> None:
    """An outer `par` epic holding an inner `seq` pipeline and a plain task: parallel outside, ordered inside."""
    async with Agent("a", hub=hub.url) as a, Agent("b", hub=hub.url) as b:
        await a.tasks.declare("release", "Release 1.0", epic=True)
        await a.tasks.declare("notes", "Release notes", parent="release")
        await a.tasks.declare("ship", "Ship it", parent="release", mode="seq")
        await a.tasks.declare("build", "Build", parent="ship", order=1)
        await a.tasks.declare("upload", "Upload", parent="ship", order=2)
        await asyncio.gather(a.tasks.claim("notes"), b.tasks.claim("build"))
        with pytest.raises(HubError) as info:
            await a.tasks.claim("upload")
        assert info.value.code == Code.SEQ_BLOCKED
        await b.tasks.update("build", status="done")
        await a.tasks.update("notes", status="done")
        await b.tasks.claim("upload")
        await b.tasks.update("upload", status="done")
        await b.tasks.update("ship", status="done")
        assert (await a.tasks.show("release"))["status"] == "done"


async def test_agents_racing_to_clear_a_queue_claim_each_task_once(hub: ThreadHub) -> None:
    """8 agents run the core loop over 120 tasks at once: every task is claimed and done exactly once."""
    async with Agent("lead", hub=hub.url) as lead:
        for i in range(120):
            await lead.tasks.declare(f"q-{i:03}", f"queue item {i}")
    wins: Counter[str] = Counter()
    conflicts = Counter[str]()

    async def worker(agent: Agent) -> None:
        while True:
            backlog = await agent.tasks.list(ready=True)
            if not backlog:
                return
            for t in backlog:
                try:
                    await agent.tasks.claim(t["id"])
                except HubError as exc:
                    assert exc.code == Code.CONFLICT, exc
                    conflicts[agent.name] += 1
                    continue
                wins[t["id"]] += 1
                await agent.tasks.update(t["id"], status="done")
                break

    agents = [Agent(f"w{i}", hub=hub.url, save_token=False) for i in range(8)]
    await asyncio.gather(*(a.connect() for a in agents))
    try:
        await asyncio.gather(*(worker(a) for a in agents))
        done = await agents[0].tasks.list(status="done")
    finally:
        await asyncio.gather(*(a.close() for a in agents))
    assert sorted(wins) == [f"q-{i:03}" for i in range(120)]
    assert set(wins.values()) == {1}
    assert len(done) == 120 and len({t["holder"] for t in done}) > 1


async def test_dependency_done_makes_the_dependent_ready_and_cycles_are_refused(hub: ThreadHub) -> None:
    """SYNAPSE: ship-api depends on edit-api (pending, `not_ready`); edit-api done → ready. A cycle is named."""
    async with Agent("api-dev", hub=hub.url) as dev:
        await dev.tasks.declare("edit-api", "Edit the API")
        t = await dev.tasks.declare("ship-api", "Implement + test the API", depends_on=["edit-api"])
        assert t["status"] == "pending"
        with pytest.raises(HubError) as info:
            await dev.tasks.claim("ship-api")
        assert info.value.code == Code.NOT_READY and info.value.detail["open_dependencies"] == ["edit-api"]
        await dev.tasks.declare("docs", "Document it", depends_on=["review"])  # review: not declared yet
        with pytest.raises(HubError) as info:
            await dev.tasks.declare("review", "Review", depends_on=["docs"])
        assert info.value.code == Code.BAD_REQUEST and info.value.detail["cycle"] == [
            "review",
            "docs",
            "review",
        ]
        await dev.tasks.update("edit-api", status="done")
        assert (await dev.tasks.show("ship-api"))["status"] == "ready"
        assert [x["id"] for x in await dev.tasks.list(ready=True)] == ["ship-api"]


async def test_waiting_on_the_plan_and_claims_in_cel(hub: ThreadHub) -> None:
    """Waits on `tasks["ship-api"].status == "ready"` and on `claims["edit-api"].holder` (level-triggered, so
    arming before or after the change is the same) are woken by the claim and the done transition."""
    async with Agent("api-dev", hub=hub.url) as dev, Agent("test-dev", hub=hub.url) as tester:
        await dev.tasks.declare("edit-api", "Edit the API")
        await dev.tasks.declare("ship-api", "Ship it", depends_on=["edit-api"])
        ready = asyncio.ensure_future(
            tester.wait_for('tasks["ship-api"].status == "ready"', timeout=seconds(10_000))
        )
        held = asyncio.ensure_future(
            tester.wait_for(
                '"edit-api" in claims && claims["edit-api"].holder == "api-dev"', timeout=seconds(10_000)
            )
        )
        await dev.claim("edit-api", paths=["src/app/api.py"])
        assert await held is True
        assert not ready.done()
        await dev.tasks.update("edit-api", status="done")
        assert await ready is True
