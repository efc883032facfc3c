"""Consensus voting (sync seed): voters increment counters (no conflicts), a computed view says when the
quorum is met, and three decision agents wake together and race a gated batch: the gate lets exactly one
of them decide.

Run: python examples/voting.py [--hub URL]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, Code, HubError  # noqa: E402
from examples._hub import hub_url  # noqa: E402

ROOM = f"voting-{os.getpid()}"
VOTES = {"v1": "for", "v2": "against", "v3": "for", "v4": "for", "v5": "against"}
GATE = 'state._shared.phase == "voting" && state._view.quorum_met == true'


async def decider(url: str, name: str) -> str:
    """Wait for the quorum (a level condition: true already is fine), then try to decide behind the gate."""
    async with Agent(name, room=ROOM, hub=url, save_token=False) as agent:
        await agent.wait_for("state._view.quorum_met == true", timeout=30)
        try:
            await agent.state.batch(
                [
                    {"key": "phase", "value": "decided"},
                    {"key": "outcome", "value": "approved"},
                    {"key": "decided_by", "value": name},
                ],
                if_=GATE,
            )
        except HubError as exc:
            if exc.code != Code.PRECONDITION_FAILED:
                raise
            return f"{name}: too late ({exc.code}: the gate is {exc.detail.get('value')})"
        return f"{name}: decided"


async def voter(url: str, name: str, side: str) -> None:
    async with Agent(name, room=ROOM, hub=url, save_token=False) as agent:
        total = await agent.state.increment(f"votes_{side}")
        print(f"{name} voted {side} ({side}: {total})")


async def run(url: str) -> None:
    async with Agent("setup", room=ROOM, hub=url, save_token=False) as setup:
        await setup.state.batch(
            [
                {"key": "phase", "value": "voting"},
                {"key": "votes_for", "value": 0},
                {"key": "votes_against", "value": 0},
                {"key": "quorum", "value": 4},
            ]
        )
        met = await setup.state.view(
            "quorum_met", "state._shared.votes_for + state._shared.votes_against >= state._shared.quorum"
        )
        print(f"quorum_met = {met}")
        deciders = [asyncio.ensure_future(decider(url, f"d{i}")) for i in range(3)]
        await asyncio.gather(*(voter(url, name, side) for name, side in VOTES.items()))
        results = await asyncio.gather(*deciders)
        for line in results:
            print(line)
        winners = [r for r in results if r.endswith(": decided")]
        assert len(winners) == 1, results
        state = {e["key"]: e["value"] for e in await setup.state.list()}
        print(
            f"outcome {state['outcome']} by {state['decided_by']}: "
            f"{state['votes_for']} for, {state['votes_against']} against, quorum_met = {state['quorum_met']}"
        )


def main() -> None:
    with hub_url(__doc__ or "") as (url, _env):
        asyncio.run(run(url))


if __name__ == "__main__":
    main()
