"""Synapse Hub beside synapse-channel 0.99.38 (the closest existing hub), same workloads, same run.

Run: `python bench/compare_peer.py [--quick]`. Installs the peer into its own virtualenv (bench/peer.py),
runs both hubs on 127.0.0.1 with durable logs, prints each number and the ratio (ours ÷ peer, with whether
higher or lower is better), and our target beside our figure with a met/missed mark (issue 17's where it sets
one, else messages.py's). It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import messages, peer  # noqa: E402
from bench.common import HubProc  # noqa: E402

# (label, our key, peer workload, peer key, better)
PAIRS = [
    ("round trip p50 ms", "round_trip_p50_ms", "round_trip", "p50_ms", "lower"),
    ("round trip p99 ms", "round_trip_p99_ms", "round_trip", "p99_ms", "lower"),
    ("4→1 flood msgs/s", "flood_msgs_per_s", "flood_4to1", "msgs_per_s", "higher"),
    ("fan-out 20 deliveries/s", "fanout20_deliveries_per_s", "fanout_20", "deliveries_per_s", "higher"),
    ("fan-out 200 deliveries/s", "fanout200_deliveries_per_s", "fanout_200", "deliveries_per_s", "higher"),
    ("RSS with 200 agents MB", "rss_200_agents_mb", "rss_200_agents", "rss_mb", "lower"),
    ("`synapse send` wall ms", "cli_send_ms", "cli_send", "wall_p50_ms", "lower"),
    ("`synapse wait` arm ms", "wait_arm_ms", "cli_wait", "spawn_to_armed_p50_ms", "lower"),
    ("`synapse wait` send→exit ms", "wait_send_to_exit_ms", "cli_wait", "send_to_exit_p50_ms", "lower"),
]

# Issue 17's targets (2-core machine, raw client, durable SQLite); messages.py's for the rest.
TARGETS = {
    **messages.TARGETS,
    "round_trip_p50_ms": ("≤", 0.25),
    "round_trip_p99_ms": ("≤", 0.5),
    "flood_msgs_per_s": ("≥", 30_000),
    "fanout20_deliveries_per_s": ("≥", 150_000),
    "fanout200_deliveries_per_s": ("≥", 200_000),
}


def verdict(key: str, value: float) -> tuple[str, str]:
    """The target for `key` ("≤ 0.25") and whether `value` meets it ("met", "MISSED", or "" without one)."""
    if key not in TARGETS:
        return "", ""
    op, goal = TARGETS[key]
    ok = value <= goal if op == "≤" else value >= goal
    return f"{op} {goal:,g}", "met" if ok else "MISSED"


async def ours(quick: bool) -> dict[str, float]:
    r: dict[str, float] = {}
    n = 300 if quick else 2000
    r.update(await messages.on_hub(messages.round_trip, n))
    r.update(await messages.on_hub(messages.flood, 4, 1000 if quick else 5000))
    r["fanout20_deliveries_per_s"] = await messages.on_hub(messages.fanout, 20, 100 if quick else 500)
    r["fanout200_deliveries_per_s"] = await messages.on_hub(messages.fanout, 200, 50 if quick else 500)
    with HubProc() as h:
        r["rss_200_agents_mb"] = await messages.rss_with_agents(h.url, h.pid, 200)
        r["cli_send_ms"] = messages.cli_send(h.url, h.tmp, 3 if quick else 10)
        r.update(await messages.cli_wait(h.url, h.tmp, 3 if quick else 10))
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    args = parser.parse_args()
    mine = asyncio.run(ours(args.quick))
    theirs = peer.run_all(quick=args.quick)
    print(f"synapse-hub vs {peer.PEER_PACKAGE} {peer.PEER_VERSION}")
    print(f"  {'workload':<30} {'ours':>12} {'peer':>12} {'ours/peer':>10}  better  {'target':>10}")
    rows: list[dict[str, Any]] = []
    for label, key, workload, peer_key, better in PAIRS:
        a = mine.get(key, float("nan"))
        b = theirs.get(workload, {}).get(peer_key, float("nan"))
        ratio = a / b if b else float("nan")
        target, mark = verdict(key, a)
        print(f"  {label:<30} {a:>12,.2f} {b:>12,.2f} {ratio:>10.2f}  {better:<6}  {target:>10}  {mark}")
        row = {"workload": label, "ours": a, "peer": b, "ratio": ratio, "better": better}
        rows.append({**row, "target": target, "met": mark})
    print(json.dumps({"ours": mine, "peer": theirs, "rows": rows}))


if __name__ == "__main__":
    main()
