"""Standby: a hub that follows a log another hub owns, keeps its state warm, and takes over the moment the
owner's lock is free (its process died, its database session ended)."""

from __future__ import annotations

import asyncio
import logging
import time

from hub.core.machine import Machine
from hub.log.store import EventLog, LogError

__all__ = ["FOLLOW_EVERY", "follow"]

logger = logging.getLogger(__name__)

FOLLOW_EVERY = 0.1  # seconds between two looks at the log: the events committed since, and whether it is free
_WARN_EVERY = 10.0  # seconds between two "cannot reach the log" lines while it stays unreachable


def step(log: EventLog, machine: Machine) -> bool:
    """One look (in a worker thread): try to take the log, then fold what was committed since the last look.
    After a take the owner can commit nothing more, so what is folded then is the whole tail. Returns whether
    this process owns the log now."""
    owned = log.take()
    machine.fold(log.scan(machine.position))
    return owned


async def follow(
    log: EventLog, machine: Machine, stopping: asyncio.Event, every: float = FOLLOW_EVERY
) -> bool:
    """Fold every event the owner commits into `machine` until this process owns the log (True) or `stopping`
    is set (False). An unreachable log is tried again each look; the state kept so far stays warm."""
    loop = asyncio.get_running_loop()
    warned = 0.0
    while not stopping.is_set():
        try:
            owned = await loop.run_in_executor(None, step, log, machine)
        except LogError as exc:
            now = time.monotonic()
            if now - warned >= _WARN_EVERY:
                warned = now
                logger.warning("standby.log_unreachable error=%r", exc.message)
            owned = False
        if owned:
            return True
        try:
            await asyncio.wait_for(stopping.wait(), every)
        except TimeoutError:
            pass
    return False
