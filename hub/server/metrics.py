"""Metrics: one prometheus_client registry per Hub (two hubs in one process keep separate numbers).

Counters that need the hot path (commits, errors, triggers) are bumped where they happen; everything that is a
plain reading of the hub's state (connections, agents online, live claims, queue depth, messages) is read at
scrape time by a collector, so it costs nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from hub import __version__

if TYPE_CHECKING:
    from hub.server.hub import Hub

__all__ = ["CONTENT_TYPE", "Metrics"]

# The classic text format every Prometheus reads (our names are plain ASCII, so the body fits it exactly).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The hub's numbers in Prometheus form; `render()` is the body of GET /metrics."""

    def __init__(self, hub: Hub) -> None:
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
        r.register(_Readings(hub))

    def durable(self, rows: int, seconds: float) -> None:
        """One group commit of `rows` events took `seconds` (called from the log writer thread)."""
        self.events.inc(rows)
        self.batch_events.observe(rows)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Readings:
    """Gauges and counters read off the hub at scrape time (on its loop, so they are consistent)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        created = hub.machine.created
        rooms = [r for r in hub.machine.rooms.values() if r.agents or r.feed or r.name in created]
        info = InfoMetricFamily("synapse_hub", "The hub's version")
        info.add_metric([], {"version": __version__})
        yield info
        yield _gauge("synapse_up", "1 while the hub serves and its log is writable", hub.failed is None)
        yield _gauge("synapse_ready", "1 once replay is done and the hub accepts connections", _ready(hub))
        yield _gauge("synapse_uptime_seconds", "Seconds since the hub started", hub.clock() - hub.started_at)
        yield _gauge(
            "synapse_replay_seconds", "Seconds the last start spent replaying the log", hub.replay_seconds
        )
        yield _gauge(
            "synapse_replayed_events", "Events the last start replayed after its snapshot", hub.replayed
        )
        yield _gauge("synapse_log_position", "Position of the newest durable event", hub.durable_position)
        yield _gauge("synapse_connections", "Open WebSocket sessions", len(hub.sessions))
        yield _gauge(
            "synapse_tails", "Sessions following the event feed (tails, dashboards)", len(hub.tails.followers)
        )
        yield _gauge("synapse_rooms", "Rooms (created, or with agents or messages)", len(rooms))
        yield _gauge("synapse_agents", "Agents that joined a room", sum(len(r.agents) for r in rooms))
        online = sum(1 for r in rooms for a in r.agents.values() if a.sessions)
        yield _gauge("synapse_agents_online", "Agents with at least one live session", online)
        yield _gauge(
            "synapse_claims_live",
            "Live claims (leases) in every room",
            sum(len(r.claims.live) for r in rooms),
        )
        subs = sum(len(r.conditions.subs) for r in hub.machine.rooms.values())
        yield _gauge("synapse_subscriptions", "Condition subscriptions (waits on a condition included)", subs)
        yield _gauge(
            "synapse_fanout_queue_depth", "Effects waiting for their batch to commit", hub.fanout.depth
        )
        messages = CounterMetricFamily(
            "synapse_messages", "Messages sent, over the log's whole life (rate() gives messages/s)"
        )
        messages.add_metric([], sum(len(r.feed) for r in rooms))
        yield messages
        delivered = CounterMetricFamily("synapse_deliveries", "Frames pushed to sessions by the fan-out")
        delivered.add_metric([], hub.fanout.delivered)
        yield delivered


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _ready(hub: Hub) -> bool:
    return hub.ready and hub.failed is None and not hub.draining
