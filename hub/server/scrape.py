"""GET /metrics: the hub's numbers as Prometheus text, through prometheus_client at scrape time.

Imported by `Metrics.render` at the first scrape. The hub's own counters and histograms (plain numbers,
hub.server.tally) become metric families exactly as prometheus_client's Counter and Histogram would render
them (names, types, labels, buckets, `_created`); the readings of the hub's state and the process's own
figures follow, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from hub.server.tally import Counter, Histogram, LabelledCounter, Readings
from hub.version import __version__

__all__ = ["renderer"]


Number = Counter | LabelledCounter | Histogram


def renderer(recorded: Sequence[Number], read: Callable[[], Readings]) -> Callable[[], bytes]:
    """The body of GET /metrics: the `recorded` numbers, then `read()`'s, from a registry of their own (two
    hubs never mix numbers)."""
    registry = CollectorRegistry()
    registry.register(_Recorded(recorded))
    registry.register(_Collector(read))
    # process_resident_memory_bytes, process_open_fds, ... (read from /proc; nothing where there is none)
    ProcessCollector(registry=registry)
    return lambda: generate_latest(registry)


def _created() -> bool:
    """Whether `_created` samples are exported: prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES,
    `disable_created_metrics()`), which its own Counter and Histogram obey."""
    return bool(getattr(_prometheus_metrics, "_use_created", True))


class _Recorded:
    """The counters and histograms recorded on the way, in their order."""

    def __init__(self, recorded: Sequence[Number]) -> None:
        self.recorded = recorded

    def collect(self) -> Iterator[Metric]:
        created = _created()
        for number in self.recorded:
            if type(number) is Histogram:
                yield _histogram(number, created)
            elif type(number) is LabelledCounter:
                family = CounterMetricFamily(number.name, number.doc, labels=[number.label])
                for value, count in list(number.values.items()):
                    family.add_metric([value], count, number.created[value] if created else None)
                yield family
            else:
                assert type(number) is Counter
                family = CounterMetricFamily(number.name, number.doc)
                family.add_metric([], number.value, number.created if created else None)
                yield family


def _histogram(h: Histogram, created: bool) -> HistogramMetricFamily:
    family = HistogramMetricFamily(h.name, h.doc)
    cumulative, acc = [], 0.0
    for bound, count in zip(h.bounds, list(h.counts), strict=True):
        acc += count
        cumulative.append((floatToGoString(bound), acc))
    family.add_metric([], cumulative, h.sum)
    if created:
        family.samples.append(Sample(h.name + "_created", {}, h.created, None, None))
    return family


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
