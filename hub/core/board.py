"""The board: the plan, live claims and declared intents in one read."""

from __future__ import annotations

from hub.core.effects import Context, Outcome
from hub.protocol import commands as c

__all__ = ["BoardRules"]


class BoardRules:
    """The board: the plan, live claims and declared intents in one read. Mixed into Machine: `self` is the machine."""

    def _board(self, cmd: c.Board, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        if room is None:
            self._reply(
                out, ctx, cmd, {"room": cmd.room, "tasks": [], "plan": [], "claims": [], "intents": []}
            )
            return
        plan = room.plan
        board = {
            "room": cmd.room,
            "tasks": plan.tree(),
            "plan": plan.listed(None, False, None),
            **room.claims.board(),
        }
        self._reply(out, ctx, cmd, board)
