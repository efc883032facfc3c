"""A long-running worker on the SDK: it holds a session, answers every message addressed to it, and
claims messages of kind `task` from a shared queue (first claimer wins).

Run: python examples/sdk_worker.py [--hub URL]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, HubError  # noqa: E402
from examples._hub import hub_url  # noqa: E402


async def run(url: str) -> None:
    async with (
        Agent("worker-1", hub=url, save_token=False) as w1,
        Agent("worker-2", hub=url, save_token=False) as w2,
        Agent("coord", hub=url, save_token=False) as coord,
    ):
        for doc in ("A", "B", "C"):
            await coord.send("*", f"analyze document {doc}", kind="task")
        done = 0
        for worker in (w1, w2, w1, w2, w1, w2):
            for m in await worker.list_messages(kind="task", unclaimed=True):
                try:
                    await worker.claim_message(m["seq"])
                except HubError as exc:
                    print(f"{worker.name}: #{m['seq']} {exc.code} (held by {exc.detail.get('holder')})")
                    continue
                await worker.send("coord", f"done: {m['body']}", kind="result", reply_to=m["seq"])
                print(f"{worker.name}: claimed #{m['seq']} and answered")
                done += 1
                break
        results = []
        async for msg in coord.messages():
            results.append(msg)
            if len(results) == done:
                break
        print(
            f"coord received {len(results)} results for 3 tasks: " + ", ".join(str(m.body) for m in results)
        )
        assert done == 3


def main() -> None:
    with hub_url(__doc__ or "") as (url, _env):
        asyncio.run(run(url))


if __name__ == "__main__":
    main()
