"""The board: the plan, live claims and declared intents in one read (SPEC: Plan)."""

from __future__ import annotations

from hub.core import agents, claims, tasks
from hub.core.effects import Context, Outcome
from hub.core.world import World
from hub.protocol import commands as c
from hub.protocol import results as r

__all__ = ["decide_board"]


def decide_board(w: World, cmd: c.Board, ctx: Context) -> Outcome:
    room = agents.reader(w, cmd).room
    out = Outcome()
    if room is None:
        out.reply(ctx, cmd.id, r.BoardView(room=cmd.room, tasks=[], plan=[], claims=[], intents=[]))
        return out
    live, intents = claims.board(room)
    plan = tasks.listed(room, None, False, None)
    out.reply(
        ctx,
        cmd.id,
        r.BoardView(room=cmd.room, tasks=tasks.tree(room), plan=plan, claims=live, intents=intents),
    )
    return out
