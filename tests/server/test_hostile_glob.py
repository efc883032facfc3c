"""Hostile claim scopes against a real hub (issue 10): a glob that made the old regex backtrack for ever, entries
over the limits and a claim too costly to check are each answered at once, and the other clients keep being
answered; refusals change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_sdk import Agent
from hub.core.scopes import MAX_CHECK_STEPS
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError
from tests.conftest import ThreadHub, seconds

LONG_LITERAL = "src/" + "a" * 255
HOSTILE_GLOB = "src/" + "*a" * 31 + "*b"  # vs LONG_LITERAL: 2^31-ish ways to fail for a backtracking regex


class Room:
    """Three agents of one room: `alice` holds things, `mallory` sends hostile scopes, `bob` is ordinary."""

    def __init__(self, alice: Agent, mallory: Agent, bob: Agent) -> None:
        self.alice, self.mallory, self.bob = alice, mallory, bob
        self.inbox = alice.messages()
        self.sent = 0

    async def answered(self, hostile: Any) -> Any:
        """Run `hostile` while bob sends alice a message and lists the claims; all three are answered."""
        self.sent += 1
        text = f"still here {self.sent}"
        outcome, seq, _ = await asyncio.wait_for(
            asyncio.gather(
                hostile,
                self.bob.send("alice", text, allow_unknown=True),
                self.bob.claims(),
                return_exceptions=True,
            ),
            seconds(20_000),
        )
        message = await asyncio.wait_for(anext(self.inbox), seconds(5_000))
        assert (message.seq, message.body) == (seq, text)
        return outcome

    async def refused(self, hostile: Any) -> HubError:
        """`hostile` is refused, bob is answered meanwhile, and the live claims are as they were."""
        before = await self.bob.claims()
        err = await self.answered(hostile)
        assert isinstance(err, HubError), err
        assert await self.bob.claims() == before
        return err


async def declare_intent(agent: Agent, paths: list[str]) -> Any:
    """Declare `agent`'s intent on `paths` (the async SDK has no verb for it)."""
    return await agent.request(lambda: agent.mutation(c.DeclareIntent, paths=tuple(paths)))


@pytest.fixture
async def room(hub: ThreadHub) -> AsyncIterator[Room]:
    async with (
        Agent("alice", hub=hub.url, save_token=False) as alice,
        Agent("mallory", hub=hub.url, save_token=False) as mallory,
        Agent("bob", hub=hub.url, save_token=False) as bob,
    ):
        yield Room(alice, mallory, bob)


async def test_hostile_glob_against_a_held_long_path(room: Room) -> None:
    """alice holds src/aaa…a; mallory claims src/*a*a…*a*b (no overlap: granted) while bob is answered."""
    await room.alice.claim("long", [LONG_LITERAL])
    claim = await room.answered(room.mallory.claim("hostile", [HOSTILE_GLOB]))
    assert not isinstance(claim, BaseException), claim
    assert claim.view["paths"] == [HOSTILE_GLOB]
    err = await room.refused(room.mallory.claim("hostile-2", [HOSTILE_GLOB[:-1] + "a"]))  # this one overlaps
    assert err.code == Code.CLAIM_OVERLAP and err.detail["holder"] == "alice"


async def test_long_path_against_a_held_hostile_glob(room: Room) -> None:
    """The other way round: the hostile glob is held and the long literal is the one checked."""
    await room.mallory.claim("hostile", [HOSTILE_GLOB])
    claim = await room.answered(room.alice.claim("long", [LONG_LITERAL, LONG_LITERAL + "/" + "b" * 200]))
    assert not isinstance(claim, BaseException), claim
    assert {c["work"] for c in await room.bob.claims()} == {"hostile", "long"}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/".join(["a" * 200] * 6), "longer than 1024 characters"),
        ("/".join(["a"] * 65), "more than 64 path segments"),
        ("src/" + "a" * 256, "segment longer than 255 characters"),
        ("src/" + "*a" * 32 + "?", "more than 32 wildcards"),
        ("src/[" + "a" * 65 + "]", "'[...]' longer than 64 characters"),
    ],
)
async def test_entries_over_the_limits_are_bad_requests(room: Room, path: str, reason: str) -> None:
    """An entry over a limit → bad_request naming the field, the entry and the limit; nothing changes."""
    await room.alice.claim("held", ["docs"])
    err = await room.refused(room.mallory.claim("over", ["src/ok.py", path]))
    assert err.code == Code.BAD_REQUEST
    assert err.detail["field"] == "paths" and err.detail["path"] == path and reason in err.detail["reason"]
    err = await room.refused(declare_intent(room.mallory, [path]))
    assert err.code == Code.BAD_REQUEST and reason in err.detail["reason"]
    assert (await room.bob.board())["intents"] == []


async def test_claim_too_costly_to_check_is_limit_exceeded(room: Room) -> None:
    """Many deep glob entries held, many deep literal entries asked: refused at the step budget, quickly."""
    held = ["/".join(f"*[a{chr(0x100 + k)}{chr(0x200 + i)}]*" for i in range(60)) + "/zz" for k in range(256)]
    mine = ["/".join(f"{k:03d}{i:02d}aaaaaaaaa" for i in range(60)) + "/END" for k in range(256)]
    await room.mallory.claim("hostile", held)
    err = await room.refused(room.alice.claim("deep", mine))
    assert err.code == Code.LIMIT_EXCEEDED and err.detail["limit"] == MAX_CHECK_STEPS
    err = await room.refused(room.alice.claim("data", ["data/a.py"]))  # an ordinary claim: an ordinary answer
    assert err.code == Code.CLAIM_OVERLAP and err.detail["holder"] == "mallory"
    claim = await room.answered(room.alice.claim("lib", ["lib/x.py", "docs/guide.md"]))
    assert not isinstance(claim, BaseException), claim
    await declare_intent(
        room.alice, mine
    )  # an intent is not checked when declared; the board stays answerable
    board = await room.answered(room.bob.board())
    (intent,) = board["intents"]
    assert {c["holder"] for c in intent["overlaps"]} == {"mallory"}  # undecided within the budget: a clash
