"""/metrics: the hub's numbers in Prometheus text, from a per-hub registry (two hubs never mix numbers)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from agent_sdk import Agent, HubError
from agent_sdk.sync import SyncAgent
from tests.conftest import ThreadHub, hub_config, seconds

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _tokens_here(client_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])


def scrape(hub: ThreadHub) -> dict[str, float]:
    """Every sample of /metrics by name (labels folded into the name as name{k=v})."""
    url = hub.url.replace("ws://", "http://", 1) + "/metrics"
    with urllib.request.urlopen(url, timeout=seconds(5_000)) as r:
        text = r.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def test_counts_follow_what_happens_on_the_hub(hub: ThreadHub) -> None:
    """Messages, events, commits, connections, agents online, live claims and refusals by code all show."""
    before = scrape(hub)
    with SyncAgent("alice", hub=hub.url) as alice, SyncAgent("bob", hub=hub.url) as bob:
        bob.attach()
        for i in range(5):
            alice.send("bob", f"m{i}", allow_unknown=True)
        alice.claim("api", ["src/api/"])
        with pytest.raises(HubError, match="claim_overlap"):
            bob.claim("fix", ["src/api/user.py"])
        now = scrape(hub)
        assert now["synapse_connections"] == 2
        assert now["synapse_agents_online"] == 1  # bob attached; alice only sends
        assert now["synapse_agents"] == 2
        assert now["synapse_claims_live"] == 1
        assert now["synapse_messages_total"] - before.get("synapse_messages_total", 0) == 5
    assert now["synapse_errors_total{code=claim_overlap}"] == 1
    assert now["synapse_events_appended_total"] >= before["synapse_events_appended_total"] + 8
    commits = now["synapse_commit_batch_events_count"]
    assert commits >= 1 and now["synapse_commit_batch_events_sum"] == now["synapse_events_appended_total"]
    assert now["synapse_commit_seconds_count"] == commits and now["synapse_commit_seconds_sum"] > 0
    assert now["synapse_fanout_queue_depth"] >= 0
    assert now["synapse_up"] == 1 and now["synapse_ready"] == 1
    assert now["synapse_log_position"] >= now["synapse_events_appended_total"]
    deadline = time.monotonic() + seconds(5_000)
    while (after := scrape(hub))["synapse_connections"] and time.monotonic() < deadline:
        time.sleep(0.01)  # the hub notices the two closes on its own loop
    assert after["synapse_connections"] == 0 and after["synapse_agents_online"] == 0


async def test_condition_triggers_and_tails_are_counted(hub: ThreadHub) -> None:
    """A subscription that becomes true counts as a trigger; a tailing session counts as a tail."""
    async with Agent("carol", hub=hub.url) as carol, connect(hub.url) as ws:
        await ws.send(json.dumps({"op": "tail", "id": 1, "rooms": ["default"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), seconds(5_000)))["type"] == "Ok"
        base = await asyncio.to_thread(scrape, hub)
        assert base["synapse_tails"] == 1
        stream = carol.subscribe("state._shared.turn == 2")
        await carol.state.set("turn", 1)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        await carol.state.set("turn", 2)
        trigger = await asyncio.wait_for(first, seconds(5_000))
        assert trigger.value is True
        now = await asyncio.to_thread(scrape, hub)
        assert now["synapse_condition_triggers_total"] >= base["synapse_condition_triggers_total"] + 1
        assert now["synapse_subscriptions"] >= 1
        await stream.aclose()


def test_two_hubs_in_one_process_keep_their_own_numbers(tmp_path: Path) -> None:
    """Each hub has its own registry: traffic on one never shows on the other's /metrics."""
    one = ThreadHub(hub_config(tmp_path / "one.db"))
    two = ThreadHub(hub_config(tmp_path / "two.db"))
    try:
        with SyncAgent("a", hub=one.url) as a:
            for i in range(3):
                a.send("a", i, allow_unknown=True)
        m1, m2 = scrape(one), scrape(two)
        assert m1["synapse_messages_total"] == 3 and m2["synapse_messages_total"] == 0
        assert m1["synapse_events_appended_total"] > m2["synapse_events_appended_total"]
    finally:
        one.stop()
        two.stop()


def test_soak_gauges_process_loop_and_feed_held_in_memory(tmp_path: Path) -> None:
    """RSS, open fds, the loop's tasks and the feed held in memory are on /metrics; the feed gauge stops at
    --feed-window however many messages are sent (what bench/soak.py watches for drift)."""
    th = ThreadHub(hub_config(tmp_path / "log.db", feed_window=4))
    try:
        with SyncAgent("a", hub=th.url) as a:
            a.send("a", "x" * 100)
            one = scrape(th)
            assert one["synapse_feed_messages"] == 1 and one["synapse_feed_bytes"] >= 100
            for i in range(9):
                a.send("a", i)
            now = scrape(th)
        assert now["synapse_feed_messages"] == 4 and now["synapse_messages_total"] == 10
        assert now["process_resident_memory_bytes"] > 10_000_000
        assert now["process_open_fds"] >= 3
        assert now["synapse_asyncio_tasks"] >= 1  # read on the hub's loop: its server task at least
    finally:
        th.stop()


def test_recorded_numbers_render_as_prometheus_clients_own() -> None:
    """The counters and histograms the hub records as plain numbers render exactly as prometheus_client's Counter
    and Histogram fed the same values would (names, types, labels, buckets, sums, `_created`)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from hub.core.status import Counts
    from hub.server import metrics as m

    reference = CollectorRegistry()
    events = Counter(
        "synapse_events_appended", "Events committed to the log by this process", registry=reference
    )
    batch = Histogram(
        "synapse_commit_batch_events", "Events per group commit", buckets=m.BATCH_BUCKETS, registry=reference
    )
    commit = Histogram(
        "synapse_commit_seconds",
        "Group-commit latency: INSERT of the batch plus COMMIT",
        buckets=m.COMMIT_BUCKETS,
        registry=reference,
    )
    errors = Counter(
        "synapse_errors", "Refusals sent to clients, by error code", ["code"], registry=reference
    )
    counts = Counts(rooms=0, agents=0, online=0, sessions=0, claims=0, subscriptions=0, messages=0)
    now = m.Readings(
        up=True,
        ready=True,
        uptime=1.0,
        replay_seconds=0.0,
        replayed=0,
        position=0,
        connections=0,
        tails=0,
        fanout_depth=0,
        delivered=0,
        counts=counts,
    )
    ours = m.Metrics(lambda: now)
    for rows, took in [
        (1, 0.0001),
        (2, 0.0009),
        (5, 0.0025),
        (7, 0.2),
        (10_000, 3.0),
        (20_000, 7.5),
        (1, 0.0005),
    ]:
        ours.durable(rows, took)
        events.inc(rows)
        batch.observe(rows)
        commit.observe(took)
    for code in ("rate_limited", "claim_overlap", "rate_limited"):
        ours.errors.inc(code)
        errors.labels(code).inc()

    def lines(text: str) -> list[str]:  # creation times differ by the microseconds between the two
        return [re.sub(r"^(\S+_created(\{[^}]*\})?) \S+$", r"\1 T", line) for line in text.splitlines()]

    expected = lines(generate_latest(reference).decode())
    assert lines(ours.render().decode())[: len(expected)] == expected


def test_a_serving_hub_imports_prometheus_client_only_to_render_a_scrape() -> None:
    """What `synapse hub` imports to serve leaves prometheus_client (and the HTTP servers it imports) out."""
    code = "import sys, cli.main, cli.hub, hub.server.hub; print(sorted({'prometheus_client', 'wsgiref'} & {*sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
