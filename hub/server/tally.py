"""The hub's numbers as plain values: counters, histograms and the readings of a scrape (no prometheus_client:
hub.server.metrics records them on the hot path, hub.server.scrape renders them at scrape time)."""

from __future__ import annotations

import time
from bisect import bisect_left

import msgspec

from hub.core.status import Counts

__all__ = ["Counter", "Histogram", "LabelledCounter", "Readings"]


class Counter:
    """A Prometheus counter as a plain float (`name` without `_total`); `created` as prometheus_client's."""

    __slots__ = ("created", "doc", "name", "value")

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.doc = doc
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LabelledCounter:
    """A counter by one label: a value and a creation time per label value, in the order they first came."""

    __slots__ = ("created", "doc", "label", "name", "values")

    def __init__(self, name: str, doc: str, label: str) -> None:
        self.name = name
        self.doc = doc
        self.label = label
        self.values: dict[str, float] = {}
        self.created: dict[str, float] = {}

    def inc(self, value: str) -> None:
        if value not in self.values:
            self.values[value] = 0.0
            self.created[value] = time.time()
        self.values[value] += 1


class Histogram:
    """A Prometheus histogram as a count per bucket (not cumulative; the last is +Inf) and a sum."""

    __slots__ = ("bounds", "counts", "created", "doc", "name", "sum")

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.doc = doc
        self.bounds = (*(float(b) for b in buckets), float("inf"))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bucket with amount <= its bound
        self.sum += amount


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
