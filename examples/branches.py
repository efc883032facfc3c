"""StrataDB's branches for isolation (pattern 2): each agent forks its own branch of the room's state, works
there unseen by the main line, and the lead aggregates the results, diffs each branch and merges it. A merge
is three-way: a key only the branch changed is brought over, a key both sides set to the same value is no
conflict, and a key changed differently on both sides since the fork refuses the whole merge (`conflict`,
naming the keys) and writes nothing.

Run: python examples/branches.py [--hub URL] [--agents N] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, Code, HubError  # noqa: E402
from examples._hub import hub_args  # noqa: E402


async def work_on_branch(url: str, room: str, i: int) -> None:
    """The seed's loop body: `branch create agent-i`, then `--branch agent-i kv put result` and `state set status`."""
    async with Agent(f"agent-{i}", room=room, hub=url, save_token=False) as agent:
        await agent.state.branch_create(f"agent-{i}")
        mine = agent.state_at(f"agent-{i}")
        await mine.set(f"result:agent-{i}", f"Agent {i} result")
        await mine.set("status", "done")  # every branch sets the same key to the same value


async def absent_on_main(lead: Agent, key: str) -> bool:
    try:
        await lead.state.get(key)
    except HubError as exc:
        if exc.code == Code.NOT_FOUND:
            return True
        raise
    return False


async def run(url: str, n: int) -> None:
    room = f"branches-{uuid.uuid4().hex[:8]}"
    async with Agent("lead", room=room, hub=url, save_token=False) as lead:
        await lead.state.batch([{"key": "status", "value": "planning"}, {"key": "summary", "value": "draft"}])
        await asyncio.gather(*(work_on_branch(url, room, i) for i in range(n)))
        listed = await lead.state.branches()
        print("branches: " + ", ".join(f"{b['branch']} ({b['changes']} changes)" for b in listed))
        # Isolation: the main line has seen none of it.
        main_status = (await lead.state.get("status"))["value"]
        assert main_status == "planning" and await absent_on_main(lead, "result:agent-0"), main_status
        print(f"main: status is still {main_status!r}, no agent's result is there")
        for i in range(n):  # aggregate, as the seed's `--branch agent-i --raw kv get result`
            got = await lead.state_at(f"agent-{i}").get(f"result:agent-{i}")
            print(f"agent-{i}: {got['value']}")
        diff = await lead.state.branch_diff("agent-0")
        for ch in diff["changes"]:
            print(f"diff agent-0: {ch['scope']}.{ch['key']}: {ch['source']!r} -> {ch['value']!r}")

        # The last agent also rewrites the summary on its branch, while the lead rewrites it on the main line.
        last = f"agent-{n - 1}"
        await lead.state_at(last).set("summary", f"{last}'s summary")
        await lead.state.set("summary", "lead's summary")

        for i in range(n - 1):
            merged = await lead.state.branch_merge(f"agent-{i}")
            print(f"merge agent-{i}: {merged['merged']} key(s) brought over")
        conflicts = (await lead.state.branch_diff(last))["conflicts"]
        print(f"diff {last}: conflicts {conflicts}")
        try:
            await lead.state.branch_merge(last)
            raise SystemExit(f"a merge with a key changed on both sides was accepted ({last})")
        except HubError as exc:
            assert exc.code == Code.CONFLICT and exc.detail["keys"] == ["_shared.summary"], exc
            print(
                f"merge {last}: refused ({exc.code}): changed on both sides: {', '.join(exc.detail['keys'])}"
            )

        state = {e["key"]: e["value"] for e in await lead.state.list()}
        results = sorted(k for k in state if k.startswith("result:"))
        assert results == [f"result:agent-{i}" for i in range(n - 1)], results
        assert state["summary"] == "lead's summary" and state["status"] == "done", state
        print(
            f"main: {len(results)} results merged, {last}'s result not (its merge wrote nothing), "
            f"summary {state['summary']!r}, status {state['status']!r}"
        )


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--agents", type=int, default=5, help="agents, one branch each (default 5)")
        parser.add_argument("--smoke", action="store_true", help="small and fast: 3 agents")

    with hub_args(__doc__ or "", options) as (url, _env, args):
        n = 3 if args.smoke else args.agents
        if n < 2:
            raise SystemExit("--agents must be at least 2")
        asyncio.run(run(url, n))


if __name__ == "__main__":
    main()
