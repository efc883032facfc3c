"""Metrics: the hub's numbers, one set per Hub (two hubs in one process keep separate numbers).

Counters that need the hot path (commits, errors, triggers) are plain numbers bumped where they happen (a commit
records three for well under a microsecond); everything that is a plain reading of the hub's state
(connections, agents online, live claims, queue depth, messages, the feed held in memory, the loop's tasks) is
read at scrape time, so it costs nothing between scrapes. `render()` turns both into Prometheus text
(hub.server.scrape, with the process's own figures: `process_resident_memory_bytes`, `process_open_fds`, ...,
what bench/soak.py watches for drift). The numbers' types are in hub.server.tally.
"""

from __future__ import annotations

from collections.abc import Callable

from hub.server.tally import Counter, Histogram, LabelledCounter, Readings

__all__ = ["CONTENT_TYPE", "Metrics", "Readings"]

# The classic text format every Prometheus reads (our names are plain ASCII, so the body fits it exactly).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000)
WAKE_BUCKETS = (1, 2, 5, 10, 20, 50, 100)  # messages one wake hands over (at most WAKE_CAP, 100)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The hub's numbers; `render()` is the body of GET /metrics.

    The writer thread records commits (`durable`) while the loop records the rest and renders: each number has
    one writer at a time (a commit on the loop happens only while the writer thread holds nothing), and a scrape
    may see a commit half-recorded, as prometheus_client's own metrics allow.
    """

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.read = read
        self.events = Counter("synapse_events_appended", "Events committed to the log by this process")
        self.batch_events = Histogram("synapse_commit_batch_events", "Events per group commit", BATCH_BUCKETS)
        self.commit_seconds = Histogram(
            "synapse_commit_seconds", "Group-commit latency: INSERT of the batch plus COMMIT", COMMIT_BUCKETS
        )
        self.errors = LabelledCounter("synapse_errors", "Refusals sent to clients, by error code", "code")
        self.triggers = Counter(
            "synapse_condition_triggers",
            "Conditions that became true and were pushed (subscription triggers and condition wakes)",
        )
        self.wakes = Counter(
            "synapse_wakes", "Waiters woken by messages (each wake one turn of a turn-based agent)"
        )
        self.wake_messages = Histogram(
            "synapse_wake_messages",
            "Messages handed over per message wake (a burst read in one turn)",
            WAKE_BUCKETS,
        )
        self.loops_broken = Counter(
            "synapse_wake_loops_broken",
            "Sends refused by --loop-limit: two agents waking each other too often (rate_limited)",
        )
        self.log_failures = LabelledCounter(
            "synapse_log_failures",
            "Commits the log refused (a full disk, a read-only file, a lost database): each one degrades the hub",
            "reason",
        )
        self._render: Callable[[], bytes] | None = None

    def durable(self, rows: int, seconds: float) -> None:
        """One group commit of `rows` events took `seconds` (called from the log writer thread)."""
        self.events.inc(rows)
        self.batch_events.observe(rows)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        if self._render is None:
            # prometheus_client, with the http.server, wsgiref, urllib and email modules it imports (≈ 2 MB of
            # RSS), is needed only to render a scrape: imported here, at the first one, not at the hub's start.
            from hub.server import scrape

            self._render = scrape.renderer(
                [
                    *(self.events, self.batch_events, self.commit_seconds, self.errors, self.triggers),
                    *(self.wakes, self.wake_messages, self.loops_broken, self.log_failures),
                ],
                self.read,
            )
        return self._render()
