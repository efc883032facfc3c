"""The wake governor: deferred wakes (settle, stagger) and the loop limit between two agents (CLI.md "Additions":
Delivery, wake governor).

Ten messages in a burst should cost a turn-based agent one turn, not ten. A wake hands over every message
waiting (feed.py); a waiter with `settle`, or one woken by a staggered `*`/`all` send, is woken later by a
Tick, collecting what arrives meanwhile; a pair of agents waking each other more than `loop_limit` times a
minute has the send that would wake the partner refused. All of it is ephemeral, like the waiters it serves:
nothing here reaches the log, and a restart starts it empty.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from hub.protocol.errors import Code, HubError
from hub.protocol.types import AgentName, RoomName, SessionId

__all__ = [
    "LOOP_WINDOW",
    "MAX_PAIRS",
    "Deferred",
    "Loops",
    "Pair",
    "check_loop",
    "check_seconds",
    "count_wake",
    "due",
    "pop_due",
    "schedule",
    "stagger_offsets",
]

LOOP_WINDOW = 60.0  # the loop limit counts wakes within this many seconds
MAX_PAIRS = 10_000  # pairs tracked at once; past it the least recently active pair is forgotten


class Deferred:
    """Hub-wide: wakes due later (a min-heap of (due, order, room, waiter, session)) and how many were deferred.

    An entry goes stale when its waiter is disarmed, taken over or woken early; a Tick skips those.
    """

    __slots__ = ("count", "heap", "order")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, RoomName, AgentName, SessionId]] = []
        self.order = 0  # ties on `due` keep the order the wakes were deferred in
        self.count = 0  # wakes deferred since the hub started (a number for /metrics)


class Pair:
    """Two agents' recent wakes of each other: who woke whom last, and when the direction flipped."""

    __slots__ = ("at", "flips", "last")

    def __init__(self, limit: int) -> None:
        self.at = 0.0  # when the pair's latest wake was
        self.last: bool | None = None  # whether the lesser name woke the other, at the pair's latest wake
        self.flips: deque[float] = deque(maxlen=limit + 1)  # more is never needed to decide


class Loops:
    """Hub-wide: recent wakes between pairs of agents, for the loop limit (bounded by time and MAX_PAIRS)."""

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs: dict[tuple[RoomName, AgentName, AgentName], Pair] = {}  # (room, a, b), a < b


def check_seconds(value: float, field: str, limit: float) -> float:
    """A settle or stagger: finite, 0..limit seconds, else `bad_request` naming the field."""
    if not math.isfinite(value) or not 0.0 <= value <= limit:
        raise HubError(
            Code.BAD_REQUEST,
            f"{field} must be 0..{limit:g} seconds, not {value!r}",
            {"field": field, "reason": "range"},
        )
    return value


def stagger_offsets(count: int, stagger: float) -> list[float]:
    """When each of `count` waiters (in a fixed order) is woken after a staggered send: spread evenly over
    `stagger` seconds, the first at once (deterministic: replaying the same inputs gives the same spread)."""
    if count <= 1 or stagger <= 0.0:
        return [0.0] * count
    return [stagger * i / count for i in range(count)]


def schedule(d: Deferred, at: float, room: RoomName, waiter: AgentName, session: SessionId) -> None:
    """Remember a deferred wake (a staged change: only a command that succeeds defers anything)."""
    d.order += 1
    d.count += 1
    heapq.heappush(d.heap, (at, d.order, room, waiter, session))


def due(
    d: Deferred, now: float
) -> tuple[list[tuple[float, int, RoomName, AgentName, SessionId]], float | None]:
    """The entries due at `now`, oldest first, and the earliest one after it; reads only (deciding)."""
    found = sorted(entry for entry in d.heap if entry[0] <= now) if d.heap and d.heap[0][0] <= now else []
    later = min((entry[0] for entry in d.heap if entry[0] > now), default=None) if d.heap else None
    return found, later


def pop_due(d: Deferred, now: float) -> None:
    """Drop the entries due at `now` (a staged change, once their wakes were decided)."""
    while d.heap and d.heap[0][0] <= now:
        heapq.heappop(d.heap)


def _key(
    room: RoomName, sender: AgentName, partner: AgentName
) -> tuple[tuple[RoomName, AgentName, AgentName], bool]:
    a, b = sorted((sender, partner))
    return (room, AgentName(a), AgentName(b)), sender == a


def check_loop(
    loops: Loops, limit: int, room: RoomName, sender: AgentName, partner: AgentName, now: float
) -> None:
    """Refuse (`rate_limited`) a wake of `partner` by `sender` that answers the partner's last wake when the two
    have woken each other back and forth more than `limit` times in the last minute. Only a wake that flips the
    direction counts: a producer feeding a consumer, however fast, is not a loop."""
    if limit <= 0 or sender == partner:
        return
    key, forward = _key(room, sender, partner)
    pair = loops.pairs.get(key)
    if pair is None or pair.last is None or pair.last == forward:
        return
    recent = [at for at in pair.flips if now - at < LOOP_WINDOW]
    if len(recent) < limit:
        return
    retry = max(LOOP_WINDOW - (now - recent[len(recent) - limit]), 0.001)
    raise HubError(
        Code.RATE_LIMITED,
        f"{sender} and {partner} woke each other more than {limit} times in {LOOP_WINDOW:g}s (a wake loop): "
        f"this send would wake {partner} again; retry in {retry:.1f}s",
        {"retry_after": retry, "loop": sorted((sender, partner)), "limit": limit},
    )


def count_wake(
    loops: Loops, limit: int, room: RoomName, sender: AgentName, partner: AgentName, now: float
) -> None:
    """Count a wake of `partner` by `sender` (a staged change). Pairs quiet for LOOP_WINDOW are forgotten (they
    can loop no more than a new pair), and past MAX_PAIRS the least recently active ones: the counters stay
    bounded."""
    if limit <= 0 or sender == partner:
        return
    key, forward = _key(room, sender, partner)
    pairs = loops.pairs
    pair = pairs.pop(key, None)  # re-inserted last: the dict's order is least recently active first
    if pair is None:
        pair = Pair(limit)
    if pair.last is not None and pair.last != forward:
        pair.flips.append(now)
    pair.last, pair.at = forward, now
    pairs[key] = pair
    while pairs:  # least recently active first: stop at the first pair still within the window
        oldest = next(iter(pairs))
        if len(pairs) <= MAX_PAIRS and now - pairs[oldest].at < LOOP_WINDOW:
            break
        del pairs[oldest]
