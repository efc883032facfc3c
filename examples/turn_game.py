"""Turn-based game (sync seed): two players alternate 10 turns. Each waits for its turn (a CEL condition),
moves with a CAS on the board's version behind a gate on whose turn it is, then advances the turn in one
atomic batch (set the next player, increment the turn).

Run: python examples/turn_game.py [--hub URL]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent  # noqa: E402
from examples._hub import hub_url  # noqa: E402

TURNS = 10
ROOM = f"turn-game-{os.getpid()}"


async def player(url: str, me: str, other: str, moves: int) -> list[str]:
    """Wait for my turn, move (CAS + gate), hand the turn over (batch); `moves` times."""
    log = []
    async with Agent(me, room=ROOM, hub=url, save_token=False) as agent:
        for k in range(moves):
            await agent.wait_for(f'state._shared.currentPlayer == "{me}"', timeout=30)
            board = await agent.state.get("board")
            move = f"{me}:{k}"
            await agent.state.set(
                "board", move, if_=f'state._shared.currentPlayer == "{me}"', if_version=board["version"]
            )
            writes = await agent.state.batch(
                [{"key": "currentPlayer", "value": other}, {"key": "turn", "value": 1, "increment": True}]
            )
            log.append(f"turn {writes[1]['value']:2}: {me} played {move} over {board['value']}")
    return log


async def run(url: str) -> None:
    async with Agent("referee", room=ROOM, hub=url, save_token=False) as referee:
        await referee.state.batch(
            [
                {"key": "phase", "value": "playing"},
                {"key": "currentPlayer", "value": "white"},
                {"key": "turn", "value": 0},
                {"key": "board", "value": "initial"},
            ]
        )
        white, black = await asyncio.gather(
            player(url, "white", "black", TURNS // 2), player(url, "black", "white", TURNS // 2)
        )
        for line in sorted(white + black):
            print(line)
        turn = await referee.state.get("turn")
        board = await referee.state.get("board")
        assert turn["value"] == TURNS and board["version"] == TURNS + 1, (turn, board)
        await referee.state.set("phase", "over")
        print(f"game over after {turn['value']} turns; board version {board['version']}; no turn missed")


def main() -> None:
    with hub_url(__doc__ or "") as (url, _env):
        asyncio.run(run(url))


if __name__ == "__main__":
    main()
