"""The cost of idempotency keys on send: the raw round trip and 4→1 flood with and without a key per send.

Run: `python bench/idempotent.py [--quick] [--repeat N]`. Each workload runs on a fresh hub (durable SQLite),
keyed and unkeyed alternately, `--repeat` times; it prints the medians and keyed ÷ unkeyed. A keyed send is
what every SDK send is now (a fresh key each, remembered by the hub per sender: `--send-keys-per-agent`).
It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import messages  # noqa: E402
from bench.common import RawAgent, median, table  # noqa: E402


class KeyedAgent(RawAgent):
    """A raw client whose every send carries a fresh idempotency key, as the SDK's do."""

    keys = itertools.count()


async def both(quick: bool, repeat: int) -> dict[str, list[float]]:
    n, per_sender = (300, 1000) if quick else (2000, 5000)
    runs: dict[str, list[float]] = {}
    for _ in range(repeat):
        for keyed in (False, True):
            messages.RawAgent = KeyedAgent if keyed else RawAgent  # type: ignore[misc]
            tag = "keyed" if keyed else "plain"
            rt = await messages.on_hub(messages.round_trip, n)
            fl = await messages.on_hub(messages.flood, 4, per_sender)
            runs.setdefault(f"{tag} rt", []).append(rt["round_trip_p50_ms"])
            runs.setdefault(f"{tag} flood", []).append(fl["flood_msgs_per_s"])
    messages.RawAgent = RawAgent  # type: ignore[misc]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (medians printed)")
    args = parser.parse_args()
    runs = asyncio.run(both(args.quick, args.repeat))
    m = {k: median(v) for k, v in runs.items()}
    rows = [
        ("round trip p50, no key", f"{m['plain rt']:.3f} ms"),
        ("round trip p50, keyed", f"{m['keyed rt']:.3f} ms ({m['keyed rt'] - m['plain rt']:+.3f} ms)"),
        ("4→1 flood, no key", f"{m['plain flood']:,.0f} msgs/s"),
        ("4→1 flood, keyed", f"{m['keyed flood']:,.0f} msgs/s ({m['keyed flood'] / m['plain flood']:.2f}×)"),
    ]
    print(table(rows))


if __name__ == "__main__":
    main()
