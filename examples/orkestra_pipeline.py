"""Orkestra's workflows on the hub's plan: an epic whose three parallel children are claimed by three agents at
once (the epic completes itself), a sequential pipeline that refuses an out-of-order step with `seq_blocked`,
and the core loop's etag race (a stale etag is `conflict`: re-read, retry).

Run: python examples/orkestra_pipeline.py [--hub URL]
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, Code, HubError  # noqa: E402
from examples._hub import hub_url  # noqa: E402


async def epic(lead: Agent, agents: list[Agent]) -> None:
    await lead.tasks.declare("auth", "Auth system", epic=True)
    children = {"jwt": "JWT middleware", "oauth": "OAuth provider", "sessions": "Session store"}
    for child, title in children.items():
        await lead.tasks.declare(child, title, parent="auth")
    # All three children are ready; each agent claims one at the same time. A claim is atomic.
    taken = await asyncio.gather(*(a.tasks.claim(c) for a, c in zip(agents, children, strict=True)))
    for t in taken:
        print(f"epic: {t['holder']} claimed {t['id']} ({t['title']})")
    await asyncio.gather(
        *(a.tasks.update(t["id"], status="done") for a, t in zip(agents, taken, strict=True))
    )
    shown = await lead.tasks.show("auth")
    print(f"epic: auth is {shown['status']} ({shown['notes'][-1]['note']})")
    assert shown["status"] == "done"


async def pipeline(ops: Agent) -> None:
    await ops.tasks.declare("deploy", "Deploy pipeline", mode="seq")
    for order, (step, title) in enumerate(
        (("run-tests", "Run tests"), ("build-image", "Build image"), ("push", "Push to registry")), start=1
    ):
        await ops.tasks.declare(step, title, parent="deploy", order=order)
    try:
        await ops.tasks.claim("build-image")
        raise SystemExit("an out-of-order step was granted")
    except HubError as exc:
        assert exc.code == Code.SEQ_BLOCKED, exc
        print(f"pipeline: build-image refused ({exc.code}): blocked by {', '.join(exc.detail['blocked_by'])}")
    # Find the first step among the pipeline's children, then run them in order.
    for step in sorted(await ops.tasks.list(parent="deploy"), key=lambda t: t["order"]):
        await ops.tasks.claim(step["id"])
        await ops.tasks.update(step["id"], status="done")
        print(f"pipeline: #{step['order']} {step['id']} done")


async def race(a: Agent, b: Agent) -> None:
    await a.tasks.declare("app-001", "Fix the login form")
    t1 = (await a.tasks.show("app-001"))["etag"]
    seen_by_b = (await b.tasks.show("app-001"))["etag"]
    await a.tasks.update("app-001", status="done", etag=t1)
    try:
        await b.tasks.update("app-001", status="blocked", etag=seen_by_b)
        raise SystemExit("a stale etag was accepted")
    except HubError as exc:
        assert exc.code == Code.CONFLICT, exc
        print(f"race: B's update with etag {seen_by_b} -> {exc.code} (now {exc.detail['current']['etag']})")
    fresh = (await b.tasks.show("app-001"))["etag"]
    t3 = await b.tasks.update("app-001", status="blocked", etag=fresh)
    print(f"race: B re-read etag {fresh}, retried: {t3['status']} at etag {t3['etag']}")


async def run(url: str) -> None:
    room = f"orkestra-{uuid.uuid4().hex[:8]}"
    names = ["lead", "agent-1", "agent-2", "agent-3"]
    agents = [Agent(n, room=room, hub=url, save_token=False) for n in names]
    await asyncio.gather(*(a.connect() for a in agents))
    try:
        await epic(agents[0], agents[1:])
        await pipeline(agents[0])
        await race(agents[1], agents[2])
    finally:
        await asyncio.gather(*(a.close() for a in agents))


def main() -> None:
    with hub_url(__doc__ or "") as (url, _env):
        asyncio.run(run(url))


if __name__ == "__main__":
    main()
