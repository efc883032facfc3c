"""Degraded mode: the log refused a commit (a full disk, a read-only file, a lost database); serve reads, refuse
writes with `unavailable`, probe the log, and take writes again once it does, without a restart.

Why it is safe (STYLE.md §1, "durable before visible"): memory moves when a command is decided, its effects
wait for the commit. When a commit fails, memory is ahead of the log by the failed batch and by every batch
decided after it. So the hub

1. marks the writer failed: it drops (never commits) whatever it is given until `resume()`, so nothing decided
   on the lost state reaches the log later;
2. rejects every effect still waiting for a commit (`Fanout.reject`): each command among them is answered
   `unavailable` (a write was not made; a read's answer or a wake could have shown what was not made); pushes
   to others are dropped. Nothing of those batches was ever visible;
3. rebuilds its machine from the log, the start-up path (newest snapshot + the events after it), and carries
   the live sessions' ephemeral state (bindings, waiters, subscriptions, spent rates: never in the log) over
   (`sessions.carry`); memory equals the log again, sessions stay open;
4. refuses, from then on, every command whose outcome has events (`unavailable`, saying why) before anything
   is applied, exactly as any refusal: reads, waits, subscriptions and tails need no commit and keep working.
   A session that ends meanwhile is told to the core once the log takes writes (its SessionClosed is an event);
5. probes the log on a timer with backoff (`EventLog.probe`: one small commit of the meta row `probe`); when
   a probe commits, the writer resumes and writes are taken again. On PostgreSQL the probe reconnects and
   re-takes the ownership lock first; if another hub took the log meanwhile, this one stops (exit 1).

If the log cannot even be read (a database that is gone), step 3 waits for the probe: until then every
command is refused, reads included, as memory may hold what the log lost. A commit whose outcome is unknown
(the connection died during COMMIT) may be in the log after all: its command was told `unavailable`, and the
rebuild, which reads the log, shows it; memory still equals the log.
"""

from __future__ import annotations

import time

from hub.log.store import why_unwritable
from hub.protocol.errors import Code, HubError

__all__ = ["PROBE_FIRST", "PROBE_MAX", "Degraded"]

PROBE_FIRST = 0.05  # seconds before the first probe of a failed log...
PROBE_MAX = 2.0  # ...doubling up to this


class Degraded:
    """Why the log refuses writes (None: it takes them), since when, and how soon to probe it again."""

    __slots__ = ("delay", "failures", "reason", "since", "stale")

    def __init__(self) -> None:
        self.reason: str | None = None  # "the log's disk is full: cannot append to the log: ..."
        self.since = 0.0
        self.stale = False  # memory not rebuilt yet (the log could not be read): refuse every command
        self.delay = PROBE_FIRST
        self.failures = 0

    def __bool__(self) -> bool:
        return self.reason is not None

    def enter(self, message: str) -> str:
        """Note a failed commit; returns the short cause (for the metric's label)."""
        cause = why_unwritable(message)
        self.reason = f"{cause}: {message}"
        self.since = time.monotonic()
        self.delay = PROBE_FIRST
        self.failures += 1
        return cause

    def next_delay(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, PROBE_MAX)
        return delay

    def leave(self) -> float:
        """The log takes writes again; returns the seconds it did not."""
        self.reason = None
        self.stale = False
        return time.monotonic() - self.since

    def refusal(self) -> HubError:
        """What a command that needs the log is told meanwhile."""
        assert self.reason is not None
        if self.stale:
            why = f"{self.reason}; the hub waits to read its log again, nothing is served meanwhile; retry"
        else:
            why = f"{self.reason}; writes are refused until it takes them again (reads, waits and tails work); retry"
        return HubError(Code.UNAVAILABLE, why)
