"""Metrics: one prometheus_client registry per Hub (two hubs in one process keep separate numbers).

Counters that need the hot path (commits, errors, triggers) are bumped where they happen; everything that is a
plain reading of the hub's state (connections, agents online, live claims, queue depth, messages, the feed held
in memory, the loop's tasks) is read at scrape time by a collector, so it costs nothing between scrapes. The
process's own figures (`process_resident_memory_bytes`, `process_open_fds`, ...) come from prometheus_client's
ProcessCollector: what bench/soak.py watches for drift.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from hub.core.status import Counts
from hub.version import __version__

__all__ = ["CONTENT_TYPE", "Metrics", "Readings"]

# The classic text format every Prometheus reads (our names are plain ASCII, so the body fits it exactly).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000)
WAKE_BUCKETS = (1, 2, 5, 10, 20, 50, 100)  # messages one wake hands over (at most WAKE_CAP, 100)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The hub's numbers in Prometheus form; `render()` is the body of GET /metrics."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "synapse_events_appended", "Events committed to the log by this process", registry=r
        )
        self.batch_events = Histogram(
            "synapse_commit_batch_events", "Events per group commit", buckets=BATCH_BUCKETS, registry=r
        )
        self.commit_seconds = Histogram(
            "synapse_commit_seconds",
            "Group-commit latency: INSERT of the batch plus COMMIT",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "synapse_errors", "Refusals sent to clients, by error code", ["code"], registry=r
        )
        self.triggers = Counter(
            "synapse_condition_triggers",
            "Conditions that became true and were pushed (subscription triggers and condition wakes)",
            registry=r,
        )
        self.wakes = Counter(
            "synapse_wakes",
            "Waiters woken by messages (each wake one turn of a turn-based agent)",
            registry=r,
        )
        self.wake_messages = Histogram(
            "synapse_wake_messages",
            "Messages handed over per message wake (a burst read in one turn)",
            buckets=WAKE_BUCKETS,
            registry=r,
        )
        self.loops_broken = Counter(
            "synapse_wake_loops_broken",
            "Sends refused by --loop-limit: two agents waking each other too often (rate_limited)",
            registry=r,
        )
        self.log_failures = Counter(
            "synapse_log_failures",
            "Commits the log refused (a full disk, a read-only file, a lost database): each one degrades the hub",
            ["reason"],
            registry=r,
        )
        r.register(_Collector(read))
        # process_resident_memory_bytes, process_open_fds, ... (read from /proc; nothing where there is none)
        ProcessCollector(registry=r)

    def durable(self, rows: int, seconds: float) -> None:
        """One group commit of `rows` events took `seconds` (called from the log writer thread)."""
        self.events.inc(rows)
        self.batch_events.observe(rows)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Readings(msgspec.Struct, kw_only=True):
    """What the hub reads off itself at scrape time (on its loop, so the numbers are consistent)."""

    up: bool
    ready: bool
    uptime: float
    replay_seconds: float
    replayed: int
    position: int
    connections: int
    tails: int
    fanout_depth: int
    delivered: int
    counts: Counts
    degraded: bool = False  # the log refuses writes (hub.server.degraded)
    deferred_wakes: int = 0


class _Collector:
    """Gauges and counters taken from `read()` at scrape time."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        n = now.counts
        info = InfoMetricFamily("synapse_hub", "The hub's version")
        info.add_metric([], {"version": __version__})
        yield info
        yield _gauge("synapse_up", "1 while the hub serves and its log is writable", now.up)
        yield _gauge("synapse_ready", "1 once replay is done and the hub accepts connections", now.ready)
        yield _gauge("synapse_uptime_seconds", "Seconds since the hub started", now.uptime)
        yield _gauge(
            "synapse_replay_seconds", "Seconds the last start spent replaying the log", now.replay_seconds
        )
        yield _gauge(
            "synapse_replayed_events", "Events the last start replayed after its snapshot", now.replayed
        )
        yield _gauge("synapse_log_position", "Position of the newest durable event", now.position)
        yield _gauge(
            "synapse_log_degraded",
            "1 while the log refuses writes: the hub refuses writes with `unavailable`, serves reads",
            now.degraded,
        )
        yield _gauge("synapse_connections", "Open WebSocket sessions", now.connections)
        yield _gauge("synapse_tails", "Sessions following the event feed (tails, dashboards)", now.tails)
        yield _gauge("synapse_rooms", "Rooms (created, or with agents or messages)", n.rooms)
        yield _gauge("synapse_agents", "Agents that joined a room", n.agents)
        yield _gauge("synapse_agents_online", "Agents with at least one live session", n.online)
        yield _gauge("synapse_claims_live", "Live claims (leases) in every room", n.claims)
        yield _gauge(
            "synapse_subscriptions",
            "Condition subscriptions (waits on a condition included)",
            n.subscriptions,
        )
        yield _gauge(
            "synapse_fanout_queue_depth", "Effects waiting for their batch to commit", now.fanout_depth
        )
        yield _gauge(
            "synapse_feed_messages", "Messages held in memory in the rooms' feed windows", n.feed_messages
        )
        yield _gauge("synapse_feed_bytes", "Body bytes of the messages held in memory", n.feed_bytes)
        yield _gauge("synapse_asyncio_tasks", "Tasks alive on the hub's event loop", _tasks())
        messages = CounterMetricFamily(
            "synapse_messages", "Messages sent, over the log's whole life (rate() gives messages/s)"
        )
        messages.add_metric([], n.messages)
        yield messages
        delivered = CounterMetricFamily("synapse_deliveries", "Frames pushed to sessions by the fan-out")
        delivered.add_metric([], now.delivered)
        yield delivered
        deferred = CounterMetricFamily(
            "synapse_wakes_deferred", "Wakes the wake governor deferred (wait --settle, send --stagger)"
        )
        deferred.add_metric([], now.deferred_wakes)
        yield deferred


def _tasks() -> int:
    """The loop's live tasks (scrapes run on the hub's loop; 0 if read from elsewhere)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))
