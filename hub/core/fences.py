"""Fences: the epoch of every claim and claimed task, so a holder that lost its lease cannot write (SPEC:
Claims; CLI.md "Fencing").

Each grant of a claim (and each claim of a task) takes the next epoch of that work, never reused: not after
a release, a lapse, a re-offer or a restart. A write carrying `fence={"WORK": epoch}` (a task: `task:ID`)
is refused with `fenced` unless its writer still holds that work at that epoch.
"""

from __future__ import annotations

from hub.core.world import Room
from hub.protocol.errors import Code, HubError
from hub.protocol.types import AgentName

__all__ = ["TASK", "Epochs", "check", "held", "next_epoch", "release", "take"]

TASK = "task:"  # a fence key naming a task: `task:ID`
MAX_FENCES = 64


class Epochs:
    """A room's fencing index: the last epoch of every work (claims, and `task:ID`), and who holds it now."""

    __slots__ = ("holders", "last")

    def __init__(self) -> None:
        self.last: dict[str, int] = {}  # work → the newest epoch given (kept after the claim ends)
        self.holders: dict[
            str, tuple[AgentName, int, float | None]
        ] = {}  # live: work → (holder, epoch, expires)


def next_epoch(room: Room, work: str) -> int:
    """The epoch a new grant of `work` takes."""
    return room.part(Epochs).last.get(work, 0) + 1


def held(room: Room, work: str, now: float) -> tuple[AgentName, int] | None:
    """Who holds `work` now, at which epoch (a claim past its expiry holds nothing)."""
    found = room.part(Epochs).holders.get(work)
    if found is None or (found[2] is not None and found[2] <= now):
        return None
    return found[0], found[1]


def check(room: Room, writer: AgentName, fence: dict[str, int], now: float) -> None:
    """Refuse with `fenced` unless `writer` holds every fenced work at its epoch."""
    if len(fence) > MAX_FENCES:
        raise HubError(Code.LIMIT_EXCEEDED, f"at most {MAX_FENCES} fences per write", {"limit": MAX_FENCES})
    for work, epoch in fence.items():
        now_held = held(room, work, now)
        if now_held is None or now_held != (writer, epoch):
            current = None if now_held is None else {"holder": now_held[0], "epoch": now_held[1]}
            why = "nobody holds it" if now_held is None else f"{now_held[0]} holds it at epoch {now_held[1]}"
            raise HubError(
                Code.FENCED,
                f"{writer} does not hold {work!r} at epoch {epoch} ({why})",
                {"work": work, "epoch": epoch, "current": current},
            )


def take(room: Room, work: str, holder: AgentName, epoch: int, expires: float | None) -> int:
    """Fold a grant: `work` is `holder`'s at `epoch` (0 in older logs: the next one). Returns the epoch."""
    epochs = room.part(Epochs)
    if not epoch:
        epoch = epochs.last.get(work, 0) + 1
    epochs.last[work] = max(epochs.last.get(work, 0), epoch)
    epochs.holders[work] = (holder, epoch, expires)
    return epoch


def release(room: Room, work: str) -> None:
    """Fold an end: nobody holds `work` (its last epoch stays)."""
    room.part(Epochs).holders.pop(work, None)
