"""Append and replay rates of the event log, SQLite and PostgreSQL side by side.

    python bench/log.py [--events N] [--pg postgresql+psycopg://user@127.0.0.1:5432/db] [--sync normal|full]

PostgreSQL runs only with --pg or SYNAPSE_TEST_PG_URL; the bench creates a database of its own on that server
and drops it afterwards. Appends go through the hub's LogWriter (group commit); replay is what a restarting hub
does: scan the log, decode every event, fold it into a Machine.
"""

from __future__ import annotations

import argparse
import os
import queue
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402

from hub.config import HubConfig  # noqa: E402
from hub.core.machine import Context, Machine  # noqa: E402
from hub.log.store import EventLog, Row  # noqa: E402
from hub.log.writer import LogWriter  # noqa: E402
from hub.protocol import commands as c  # noqa: E402
from hub.protocol.codec import decode_event, encode  # noqa: E402
from hub.protocol.types import Address, AgentName  # noqa: E402

COMMITS = 500  # single-row group commits timed for the latency line


def history(events: int, machine: Machine | None = None) -> list[Row]:
    """A realistic log: one agent joins, then sends `events - 1` short messages (rows as the hub writes them),
    folded into `machine` (a fresh one by default) as they are made."""
    machine = machine or Machine(HubConfig(rate_per_agent=None))
    t = 1_700_000_000.0
    name, to = AgentName("w"), (Address("x"),)
    out = machine.run(c.Join(name=name), Context(t, None, lambda: "tok"))
    first = machine.position - len(out.events) + 1
    rows: list[Row] = [
        (first + i, ev.room, type(ev).__name__, encode(ev), ev.at) for i, ev in enumerate(out.events)
    ]
    body = msgspec.Raw(b'{"text":"a typical short message body","n":1}')
    send = c.Send(name=name, token="tok", to=to, body=body, allow_unknown=True)
    for i in range(events - len(rows)):
        (ev,) = machine.run(send, Context(t + i * 1e-4, None)).events
        rows.append((machine.position, ev.room, type(ev).__name__, encode(ev), ev.at))
    return rows


@contextmanager
def sqlite_log() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="synapse-logbench-") as tmp:
        yield os.path.join(tmp, "log.db")


@contextmanager
def postgres_log(server: str) -> Iterator[str]:
    """A database of the bench's own on `server`, dropped afterwards."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from hub.log.store import db_url

    url = make_url(db_url(server))
    name = f"synapse_bench_{os.getpid()}_{secrets.token_hex(3)}"
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def writer_rate(log: EventLog, rows: list[Row], per_batch: int) -> tuple[float, float]:
    """Rows per second and median commit latency (ms) through the LogWriter, one batch in flight at a time."""
    done: queue.SimpleQueue[float] = queue.SimpleQueue()
    failed: list[BaseException] = []
    writer = LogWriter(log, lambda _t, _n, seconds: done.put(seconds), failed.append)
    writer.start()
    latencies: list[float] = []
    started = time.perf_counter()
    for ticket, first in enumerate(range(0, len(rows), per_batch)):
        writer.submit(ticket, rows[first : first + per_batch])
        latencies.append(done.get(timeout=60))
    elapsed = time.perf_counter() - started
    writer.stop()
    assert not failed, failed
    return len(rows) / elapsed, statistics.median(latencies) * 1000


def replay_rate(log: EventLog) -> tuple[float, float]:
    """(events read per second, events read + decoded + folded per second)."""
    started = time.perf_counter()
    count = sum(1 for _ in log.scan())
    read = count / (time.perf_counter() - started)
    started = time.perf_counter()
    machine = Machine()
    apply = machine.apply
    for row in log.scan():
        apply(decode_event(row[3]))
    assert machine.position == count
    return read, count / (time.perf_counter() - started)


def measure(make: Callable[[], object], rows: list[Row], sync: str) -> dict[str, str]:
    with make() as where:  # type: ignore[attr-defined]
        log = EventLog(where, sync)
        try:
            single, single_ms = writer_rate(log, rows[:COMMITS], 1)
            batched, batched_ms = writer_rate(log, rows[COMMITS : COMMITS + 20_000], 100)
            bulk, _ = writer_rate(log, rows[COMMITS + 20_000 :], 5_000)
            read, replay = replay_rate(log)
            size = log.size()
        finally:
            log.close()
    return {
        "append, 1 event per commit": f"{single:,.0f} ev/s (p50 {single_ms:.2f} ms)",
        "append, 100 events per commit": f"{batched:,.0f} ev/s (p50 {batched_ms:.2f} ms)",
        "append, 5000 events per commit": f"{bulk:,.0f} ev/s",
        "read (scan)": f"{read:,.0f} ev/s",
        "replay (scan + decode + fold)": f"{replay:,.0f} ev/s",
        "size on disk": f"{(size or 0) / 1e6:.1f} MB",
        "_replay": str(replay),
        "_single": str(single),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pg", default=os.environ.get("SYNAPSE_TEST_PG_URL"), help="a PostgreSQL server URL")
    parser.add_argument("--sync", default="normal", choices=["normal", "full"], help="SQLite's sync setting")
    args = parser.parse_args()
    events = max(args.events, COMMITS + 25_000)
    rows = history(events)
    print(f"log bench: {events:,} events (~{statistics.mean(len(r[3]) for r in rows[:1000]):.0f} B each)")
    results = {"sqlite": measure(sqlite_log, rows, args.sync)}
    if args.pg:
        results["postgresql"] = measure(lambda: postgres_log(args.pg), rows, args.sync)
    else:
        print("  (PostgreSQL skipped: give --pg URL or set SYNAPSE_TEST_PG_URL)")
    names = list(results)
    keys = [k for k in results["sqlite"] if not k.startswith("_")]
    width = max(map(len, keys))
    print(f"  {'':<{width}}  " + "  ".join(f"{n:<34}" for n in names))
    for key in keys:
        print(f"  {key:<{width}}  " + "  ".join(f"{results[n][key]:<34}" for n in names))
    if "postgresql" in results:
        pg, lite = results["postgresql"], results["sqlite"]
        print(
            f"  postgresql / sqlite: replay {float(pg['_replay']) / float(lite['_replay']):.2f}x, "
            f"single-event commits {float(pg['_single']) / float(lite['_single']):.2f}x"
        )


if __name__ == "__main__":
    main()
