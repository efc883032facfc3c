"""Parallel coding agents on one repository (the SYNAPSE recipe): two workers claim disjoint file scopes, a
third is refused with `claim_overlap` naming the holder, the first releases with a checkpoint, and the next
claimer of the same work receives it. The plan readies `ship-api` once `edit-api` is done; `synapse board`
shows it all, as a turn-based assistant would see it.

Run: python examples/coding_agents_demo.py [--hub URL]
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, Code, HubError  # noqa: E402
from examples._hub import hub_url, synapse  # noqa: E402


async def run(url: str, room: str) -> None:
    async with (
        Agent("api-dev", room=room, hub=url, save_token=False) as api,
        Agent("test-dev", room=room, hub=url, save_token=False) as tests,
        Agent("docs-dev", room=room, hub=url, save_token=False) as docs,
    ):
        await api.tasks.declare("edit-api", "Edit the API")
        await api.tasks.declare("ship-api", "Implement + test the API", depends_on=["edit-api"])
        await api.tasks.claim("edit-api")

        # 2. Claim your scope before you edit: disjoint scopes are both granted.
        mine = await api.claim("edit-api", paths=["src/app/api.py", "src/app/routes/"])
        theirs = await tests.claim("edit-tests", paths=["tests/test_api.py"])
        print(f"{mine.holder}: claimed {mine.work} on {', '.join(mine.paths)} (held by {mine.held_by})")
        print(f"{theirs.holder}: claimed {theirs.work} on {', '.join(theirs.paths)}")

        # An overlapping scope is refused at claim time, naming who holds what.
        try:
            await docs.claim("tidy-app", paths=["src/app/"])
            raise SystemExit("docs-dev's overlapping claim was granted")
        except HubError as exc:
            assert exc.code == Code.CLAIM_OVERLAP, exc
            d = exc.detail
            print(
                f"docs-dev: refused ({exc.code}): {d['holder']} holds {d['work']!r} on {', '.join(d['paths'])}"
            )
            assert d["holder"] == "api-dev" and d["work"] == "edit-api"

        # 3. Tell the others what changed; release with a checkpoint for whoever continues.
        await api.send("test-dev", "API ready on src/app/api.py - update the tests")
        await mine.release(checkpoint="routes done; auth middleware still to do")
        await api.tasks.update("edit-api", status="done")
        print("api-dev: released edit-api with a checkpoint and marked the task done")

        # The next claimer of the same work gets the checkpoint.
        nxt = await docs.claim("edit-api", paths=["src/app/api.py"])
        print(f"docs-dev: claimed edit-api; checkpoint from the previous holder: {nxt.checkpoint!r}")
        assert nxt.checkpoint == "routes done; auth middleware still to do"
        note = await anext(tests.messages())
        print(f"test-dev: got {note.body!r} from {note.sender}")

        # 4. Keep the plan current: ship-api became ready when edit-api was done.
        ship = await tests.tasks.show("ship-api")
        print(f"plan: ship-api is {ship['status']}")
        assert ship["status"] == "ready"


def main() -> None:
    with hub_url(__doc__ or "") as (url, env):
        room = f"repo-{uuid.uuid4().hex[:8]}"
        asyncio.run(run(url, room))
        board = synapse(env, "board", "--room", room)
        print("synapse board:")
        print(board.stdout.rstrip())
        assert "ship-api" in board.stdout and "edit-api  docs-dev" in board.stdout


if __name__ == "__main__":
    main()
