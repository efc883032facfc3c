"""sync's watchdog (liveness monitor): a worker takes a task and a file-scope claim, works under their fencing
epochs, then goes silent (its process hangs and its connection drops). The watchdog waits, in the hub, for
the worker to go stale, with CEL `now`:

    now - agents["worker"].last_heartbeat > S

then re-offers the worker's task and claim (the supervisor's verbs: the hub refuses while the holder has a
live session or was active in the last S seconds). A second worker takes both over, under new epochs. When
the first worker comes back late and writes under its old epochs, every write is refused with `fenced` and
nothing of it lands; the second worker finishes.

`--detect offline` waits on `agents["worker"].status == "offline"` instead (for a hub without CEL `now`):
the watchdog then re-offers as soon as the worker has no session.

Run: python examples/watchdog.py [--hub URL] [--stale-seconds S] [--detect stale|offline] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, Code, HubError  # noqa: E402
from examples._hub import hub_args  # noqa: E402
from hub.protocol import commands as c  # noqa: E402

TASK, WORK, PATHS = "index-docs", "index-docs", ["docs/"]


async def reoffer_task(agent: Agent, task: str, idle_seconds: float) -> dict[str, Any]:
    """The supervisor's `task.reoffer` (the async Agent has no method for it: SyncAgent.reoffer_task)."""
    return await agent.request(  # type: ignore[no-any-return]
        lambda: agent.mutation(c.ReofferTask, task=task, idle_seconds=idle_seconds)
    )


async def reoffer_claim(agent: Agent, work: str, idle_seconds: float) -> dict[str, Any]:
    """The supervisor's `claim.reoffer` (SyncAgent.reoffer_claim)."""
    return await agent.request(  # type: ignore[no-any-return]
        lambda: agent.mutation(c.ReofferClaim, work=work, idle_seconds=idle_seconds)
    )


async def refused(what: str, write: Any) -> str:
    """Run a late write that must be refused; return its error code."""
    try:
        await write
    except HubError as exc:
        print(f"worker (late): {what} refused ({exc.code}): {exc.message}")
        return str(exc.code)
    raise SystemExit(f"a late write under a lost epoch was accepted: {what}")


async def run(url: str, stale: float, detect: str) -> None:
    room = f"watchdog-{uuid.uuid4().hex[:8]}"
    async with Agent("watchdog", room=room, hub=url, save_token=False) as watchdog:
        await watchdog.tasks.declare(TASK, "Index the docs")

        # The worker: takes the task and the claim, reports progress under their epochs, then goes silent.
        worker = Agent("worker", room=room, hub=url, save_token=False, reconnect=False)
        await worker.connect()
        taken = await worker.tasks.claim(TASK)
        claim = await worker.claim(WORK, paths=PATHS)
        old = {f"task:{TASK}": taken["epoch"], **claim.fence}
        await worker.state.set("index:progress", "10%", fence=old)
        print(f"worker: took task {TASK} (epoch {taken['epoch']}) and claim {WORK} (epoch {claim.epoch})")
        token = worker.token
        await worker.close()  # it hangs, and its connection drops
        print("worker: went silent")

        if detect == "stale":
            condition = f'now - agents["worker"].last_heartbeat > {stale}'
            idle = stale
        else:
            condition = 'agents["worker"].status == "offline"'
            idle = 0.0
        await watchdog.wait_for(condition, timeout=max(60.0, 10 * stale))
        print(f"watchdog: woken by {condition}")
        task = await reoffer_task(watchdog, TASK, idle)
        freed = await reoffer_claim(watchdog, WORK, idle)
        print(f"watchdog: re-offered task {TASK} (now {task['status']}) and claim {freed['work']}")

        async with Agent("worker-2", room=room, hub=url, save_token=False) as second:
            retaken = await second.tasks.claim(TASK)
            reclaim = await second.claim(WORK, paths=PATHS)
            new = {f"task:{TASK}": retaken["epoch"], **reclaim.fence}
            assert retaken["epoch"] > taken["epoch"] and reclaim.epoch > claim.epoch, (retaken, reclaim)
            print(
                f"worker-2: took task {TASK} (epoch {retaken['epoch']}) and claim {WORK} (epoch {reclaim.epoch})"
            )

            # The first worker wakes up and carries on as if nothing happened: fenced, every time.
            async with Agent("worker", room=room, hub=url, token=token, save_token=False) as late:
                codes = [
                    await refused(
                        "state set index:result", late.state.set("index:result", "stale", fence=old)
                    ),
                    await refused(
                        f"task update {TASK} done",
                        late.tasks.update(TASK, status="done", fence={f"task:{TASK}": taken["epoch"]}),
                    ),
                    await refused(f"release {WORK}", late.release(WORK, fence=claim.fence)),
                    await refused("send", late.send("watchdog", "index done", fence=old)),
                ]
            # A task update by a non-holder is `forbidden` before its fence is looked at (release checks the
            # fence first): refused either way, nothing written.
            assert codes[1] in (Code.FENCED, Code.FORBIDDEN) and codes[:1] + codes[2:] == [Code.FENCED] * 3, (
                codes
            )

            await second.state.set("index:result", "42 pages", fence=new)
            await second.tasks.update(TASK, status="done", fence=new)
            await second.release(WORK, fence=reclaim.fence)  # the task, done, is no longer held
            print("worker-2: index:result written, task done, claim released")

        result = await watchdog.state.get("index:result")
        shown = await watchdog.tasks.show(TASK)
        assert result["value"] == "42 pages" and result["version"] == 1, result
        assert shown["status"] == "done" and shown["holder"] in (None, "worker-2"), shown
        print(
            f"index:result = {result['value']!r} (version {result['version']}); task {TASK} {shown['status']}"
        )


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--stale-seconds", type=float, default=3.0, help="silence that is stale (default 3)"
        )
        parser.add_argument(
            "--detect",
            choices=["stale", "offline"],
            default="stale",
            help="what the watchdog waits on: staleness with CEL now (default), or the worker being offline",
        )
        parser.add_argument("--smoke", action="store_true", help="small and fast: stale after 1 s")

    with hub_args(__doc__ or "", options) as (url, _env, args):
        asyncio.run(run(url, 1.0 if args.smoke else args.stale_seconds, args.detect))


if __name__ == "__main__":
    main()
