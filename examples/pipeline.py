"""sync's pipeline (sequential handoff): each stage waits until `pipeline_stage` names it, reads the previous
stage's `data`, and writes its own result and the next stage's name in one batch gated on
`pipeline_stage` still naming it. The gate makes the handover exactly-once: two processing agents race
for every item, and only one of them moves it on; the other's batch is refused (`precondition_failed`) and
writes nothing. The output stage collects each item and starts the next one, until the stage is `done`.

Run: python examples/pipeline.py [--hub URL] [--items N] [--smoke]
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

STAGES = ("ingestion", "processing", "output")


def gate(stage: str, item: int | None = None) -> str:
    """`pipeline_stage` names the stage (and, to gate a write, `item` is still the one read: a stage that comes
    round again for the next item must not take a late write meant for this one)."""
    expr = f'state._shared.pipeline_stage == "{stage}"'
    return expr if item is None else f"{expr} && state._shared.item == {item}"


async def stage_turn(agent: Agent, stage: str) -> dict[str, Any] | None:
    """Wait for this stage's turn (a level condition: already true is fine); None once the pipeline is done."""
    while True:
        await agent.wait_for(f"{gate(stage)} || {gate('done')}", timeout=60)
        shared = {e["key"]: e["value"] for e in await agent.state.list("_shared")}
        if shared["pipeline_stage"] == "done":
            return None
        if shared["pipeline_stage"] == stage:  # else it moved on between the wake and the read: wait again
            return shared


async def hand_over(agent: Agent, stage: str, item: int, writes: list[dict[str, Any]]) -> bool:
    """The stage's result and the next stage, all or nothing, only while the item is still at this stage."""
    try:
        await agent.state.batch(writes, if_=gate(stage, item))
    except HubError as exc:
        if exc.code != Code.PRECONDITION_FAILED:
            raise
        return False
    return True


async def ingestion(url: str, room: str, items: list[str]) -> None:
    async with Agent("ingester", room=room, hub=url, save_token=False) as agent:
        while (shared := await stage_turn(agent, "ingestion")) is not None:
            item = items[shared["item"]]
            print(f"ingester: item {shared['item']} collected ({item!r})")
            await hand_over(
                agent,
                "ingestion",
                shared["item"],
                [{"key": "data", "value": f"raw:{item}"}, {"key": "pipeline_stage", "value": "processing"}],
            )


async def processing(url: str, room: str, name: str, moved: dict[str, int]) -> None:
    async with Agent(name, room=room, hub=url, save_token=False) as agent:
        while (shared := await stage_turn(agent, "processing")) is not None:
            result = shared["data"].removeprefix("raw:").upper()
            writes = [
                {"key": "data", "value": f"processed:{result}"},
                {"key": "processed_by", "value": name},
                {"key": "pipeline_stage", "value": "output"},
            ]
            if await hand_over(agent, "processing", shared["item"], writes):
                moved[name] += 1
                print(f"{name}: item {shared['item']} processed")
            else:
                moved["refused"] += 1
                print(
                    f"{name}: item {shared['item']} already moved on (precondition_failed); nothing written"
                )


async def output(url: str, room: str, count: int) -> list[str]:
    async with Agent("publisher", room=room, hub=url, save_token=False) as agent:
        published: list[str] = []
        while (shared := await stage_turn(agent, "output")) is not None:
            published.append(shared["data"].removeprefix("processed:"))
            print(
                f"publisher: item {shared['item']} published ({published[-1]!r} by {shared['processed_by']})"
            )
            last = shared["item"] + 1 == count
            writes = [
                {"key": "published", "value": published},
                {"key": "data", "value": ""},
                {"key": "item", "value": shared["item"] + 1},
                {"key": "pipeline_stage", "value": "done" if last else "ingestion"},
            ]
            if not await hand_over(agent, "output", shared["item"], writes):
                raise SystemExit("the output stage lost its turn: only it moves the pipeline on from output")
        return published


async def run(url: str, count: int) -> None:
    room = f"pipeline-{uuid.uuid4().hex[:8]}"
    items = [f"document {chr(ord('a') + i % 26)}{i // 26 or ''}" for i in range(count)]
    moved = {"processor-1": 0, "processor-2": 0, "refused": 0}
    async with Agent("setup", room=room, hub=url, save_token=False) as setup:
        # The stage agents are started first: each waits for its turn, and none has come yet.
        await setup.state.batch([{"key": "pipeline_stage", "value": "idle"}, {"key": "data", "value": ""}])
        stages = [
            asyncio.ensure_future(ingestion(url, room, items)),
            asyncio.ensure_future(processing(url, room, "processor-1", moved)),
            asyncio.ensure_future(processing(url, room, "processor-2", moved)),
        ]
        publisher = asyncio.ensure_future(output(url, room, count))
        await setup.state.batch(
            [{"key": "item", "value": 0}, {"key": "pipeline_stage", "value": "ingestion"}]
        )
        published = await publisher
        await asyncio.gather(*stages)
        expected = [i.upper() for i in items]
        assert published == expected, (published, expected)
        assert moved["processor-1"] + moved["processor-2"] == count, moved
        final = await setup.state.get("published")
        assert final["value"] == expected, final
        print(
            f"pipeline done: {count} items through {len(STAGES)} stages, each processed exactly once "
            f"(processor-1 {moved['processor-1']}, processor-2 {moved['processor-2']}; "
            f"{moved['refused']} late handover(s) refused)"
        )


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--items", type=int, default=10, help="items through the pipeline (default 10)")
        parser.add_argument("--smoke", action="store_true", help="small and fast: 3 items")

    with hub_args(__doc__ or "", options) as (url, _env, args):
        count = 3 if args.smoke else args.items
        if count < 1:
            raise SystemExit("--items must be at least 1")
        asyncio.run(run(url, count))


if __name__ == "__main__":
    main()
