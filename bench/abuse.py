"""Abuse benchmark: a healthy agent's round trip and the hub's memory while one client misbehaves.

Run: `python bench/abuse.py [--quick] [--only NAME]`. Each scenario starts its own hub on 127.0.0.1 (ephemeral
port, durable SQLite log, default limits unless noted), attaches a healthy agent in a room of its own and
measures its send-to-self round trip (send → its own delivery, one at a time) while an abuser in a separate
process does its worst. The hub's VmRSS is sampled every 20 ms. It prints ✓/✗ against the targets; it asserts
nothing.

Scenarios:
  baseline        no abuse: the healthy agent alone on this machine, for comparison
  big-bodies      one client floods 100 KB bodies (--max-body-bytes 131072): the feed window keeps at most
                  feed_window_bytes (64 MB) of bodies, trimmed once past 5/4 of that
  stalled-reader  attached agents pause their transport and never read while 100 KB broadcasts and directed
                  messages are sent to them: each is closed as a slow consumer (1008) past outbox_bytes (8 MB)
  subscriptions   anonymous connections each subscribe max_subscriptions_per_session (1,000) conditions and
                  then some: the extra ones are refused with limit_exceeded
  connections     connections from 127.0.0.1 until refused: the per-address cap (256) answers HTTP 503
  malformed       one client sends garbage frames (bad JSON, unknown ops, deep nesting, oversize) flat out,
                  reconnecting when the hub closes it (past 1,000 at once, then 100/s), three times

The healthy agent sends at most one round trip per millisecond (half its rate limit), so it measures
latency and never meets its own limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import queue
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# Run as `python bench/abuse.py`: the project root first, and not this folder (its cel.py would shadow the
# `cel` module of common-expression-language).
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

import msgspec  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from bench.common import HubProc, RawAgent, pct, rss_mb, table  # noqa: E402
from hub.config import HubConfig  # noqa: E402
from hub.protocol import commands as c  # noqa: E402
from hub.protocol.codec import encode  # noqa: E402
from hub.protocol.errors import HubError  # noqa: E402

MB = 1 << 20
DEFAULTS = HubConfig()
P99_TARGET_MS = 10.0
PACE_S = 0.001  # the healthy agent's round trips start at most this often
SLACK_MB = 32  # interpreter, allocator and SQLite cache headroom on top of each scenario's own budget
BODY = 100_000  # bytes of a big body
SUB_BUDGET_KB = 4.0  # per live subscription (measured ≈ 3.8 KB, the compiled CEL program included)
CONN_BUDGET_KB = 64.0  # memory budget per open (idle) connection
SCENARIOS = ("baseline", "big-bodies", "stalled-reader", "subscriptions", "connections", "malformed")


def params(quick: bool) -> dict[str, dict[str, Any]]:
    return {
        "baseline": {},
        "big-bodies": {"messages": 1000 if quick else 2000, "window": 8},
        "stalled-reader": {"messages": 400 if quick else 600, "sinks": 4, "window": 8},
        "subscriptions": {"conns": 20 if quick else 50, "extra": 5},
        "connections": {"extra": 20, "batch": 32},
        "malformed": {"frames": 20_000 if quick else 50_000},
    }


def hub_args(name: str) -> tuple[str, ...]:
    """The hub's default limits (HubProc lifts the rate limit for throughput runs: it is restored here)."""
    rate = ("--rate-per-agent", str(DEFAULTS.rate_per_agent), "--rate-burst", str(DEFAULTS.rate_burst))
    rate += ("--log-level", "error")  # not the refused-connection warning amid the table
    return (*rate, "--max-body-bytes", "131072") if name == "big-bodies" else rate


def budget_mb(name: str, p: dict[str, Any], result: dict[str, Any]) -> float:
    """The RSS growth (peak − before) the scenario is allowed, in MB."""
    feed = 1.25 * DEFAULTS.feed_window_bytes / MB  # the window is trimmed back once past 5/4 of its bytes
    if name == "big-bodies":
        return feed + SLACK_MB
    if name == "stalled-reader":
        sent = min(result.get("sent", 0) * BODY / MB, feed)
        per_sink = (DEFAULTS.outbox_bytes + MB) / MB  # the outbox, and what one flush buffers past HIGH_WATER
        return sent + p["sinks"] * per_sink + SLACK_MB
    if name == "subscriptions":
        return result.get("subscribed", 0) * SUB_BUDGET_KB / 1024 + SLACK_MB
    if name == "connections":
        return result.get("admitted", 0) * CONN_BUDGET_KB / 1024 + SLACK_MB
    return SLACK_MB


# -- the abusers (each in a process of its own) ----------------------------------------------------------


class Flags:
    """The abuser's side of the handshake with the harness."""

    def __init__(self, started: Any, ready: Any, stop: Any) -> None:
        self.started = started  # the abuse is under way
        self.ready = ready  # the scenario's minimum has been done
        self.stop = stop  # the harness has its samples

    async def hold(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(0.05)


def big_body() -> msgspec.Raw:
    return msgspec.Raw(encode("x" * (BODY - 2)))


async def pump(
    tx: RawAgent, targets: list[str], count: int | None, window: int, flags: Flags, least: int = 0
) -> int:
    """Send 100 KB messages, `window` in flight, to targets in turn: `count` of them, or until stopped (ready
    after `least`)."""
    sem = asyncio.Semaphore(window)
    body = big_body()
    sent = refused = 0
    tasks: set[asyncio.Task[Any]] = set()

    async def one(to: str) -> None:
        nonlocal refused
        try:
            await tx.request(
                c.Send(id=tx.next(), room=tx.room, token=tx.token, name=tx.name, to=(to,), body=body)
            )
        except HubError as exc:  # over the byte rate: the flood goes on regardless (the hub stops reading)
            if exc.code != "rate_limited":
                raise
            refused += 1
        finally:
            sem.release()

    while (count is None or sent < count) and not flags.stop.is_set():
        await sem.acquire()
        task = asyncio.ensure_future(one(targets[sent % len(targets)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        if least and sent >= least:
            flags.ready.set()
    await asyncio.gather(*tasks)
    return sent - refused  # accepted


async def abuse_big_bodies(url: str, p: dict[str, Any], flags: Flags) -> dict[str, Any]:
    tx = await RawAgent(url, "bulk", room="abuse").open(attach=False)
    flags.started.set()
    t0 = time.perf_counter()
    sent = await pump(tx, ["nobody"], None, p["window"], flags, least=p["messages"])
    elapsed = time.perf_counter() - t0
    await tx.close()
    return {"sent": sent, "note": f"{sent} × 100 KB sent ({sent * BODY / MB / elapsed:.0f} MB/s)"}


async def abuse_stalled_reader(url: str, p: dict[str, Any], flags: Flags) -> dict[str, Any]:
    sinks = [await RawAgent(url, f"sink{i}", room="abuse").open() for i in range(p["sinks"])]
    for sink in sinks:
        sink.keep = False
        assert sink.ws is not None
        sink.ws.transport.pause_reading()  # never read again (until the harness is done)
    tx = await RawAgent(url, "tx", room="abuse").open(attach=False)
    flags.started.set()
    targets = [t for s in sinks for t in ("*", s.name)]  # broadcasts and directed messages in turn
    sent = await pump(tx, targets, p["messages"], p["window"], flags)
    flags.ready.set()
    await flags.hold()
    codes = []
    for sink in sinks:  # read again: what the hub had buffered, then its close frame
        assert sink.ws is not None
        sink.ws.transport.resume_reading()
    for sink in sinks:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(sink.reader), 15)  # type: ignore[arg-type]
        assert sink.ws is not None
        rcvd = sink.ws.protocol.close_rcvd
        codes.append(str(rcvd.code) if rcvd is not None else "open")
    got = [s.delivered for s in sinks]
    for x in (tx, *sinks):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(x.close(), 5)
    return {
        "sent": sent,
        "codes": codes,
        "note": f"{sent} × 100 KB sent; {len(sinks)} stalled readers closed with {'/'.join(codes)} "
        f"after {min(got)}–{max(got)} deliveries each",
    }


async def anonymous(url: str, room: str) -> RawAgent:
    """A connection that never joins."""
    agent = RawAgent(url, "", room=room)
    agent.ws = await connect(url, max_size=None, compression=None)
    agent.reader = asyncio.create_task(agent._read())
    return agent


async def abuse_subscriptions(url: str, p: dict[str, Any], flags: Flags) -> dict[str, Any]:
    owner = await RawAgent(url, "owner", room="abuse").open(attach=False)  # makes the room
    conns = [await anonymous(url, "abuse") for _ in range(p["conns"])]
    cap = DEFAULTS.max_subscriptions_per_session or 1000
    tally: dict[str, int] = {}
    flags.started.set()

    async def fill(n: int, agent: RawAgent) -> None:
        sem = asyncio.Semaphore(256)

        async def one(i: int) -> None:
            async with sem:
                try:
                    expr = f"state._shared.c{n}_k{i} == {i}"
                    await agent.request(c.Subscribe(id=agent.next(), room=agent.room, expr=expr))
                    key = "ok"
                except HubError as exc:
                    key = exc.code
                tally[key] = tally.get(key, 0) + 1

        await asyncio.gather(*(one(i) for i in range(cap + p["extra"])))

    t0 = time.perf_counter()
    await asyncio.gather(*(fill(n, a) for n, a in enumerate(conns)))
    elapsed = time.perf_counter() - t0
    flags.ready.set()
    await flags.hold()
    for x in (owner, *conns):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(x.close(), 5)
    refused = ", ".join(f"{v} {k}" for k, v in sorted(tally.items()) if k != "ok") or "none"
    return {
        "subscribed": tally.get("ok", 0),
        "tally": tally,
        "note": f"{tally.get('ok', 0):,} subscriptions on {len(conns)} connections in {elapsed:.1f} s; "
        f"refused: {refused}",
    }


async def abuse_connections(url: str, p: dict[str, Any], flags: Flags) -> dict[str, Any]:
    raise_nofile()
    open_: list[Any] = []
    refusals: dict[str, int] = {}
    flags.started.set()

    async def attempt() -> None:
        try:
            open_.append(await connect(url, compression=None, open_timeout=10))
        except InvalidStatus as exc:
            key = f"HTTP {exc.response.status_code}"
            refusals[key] = refusals.get(key, 0) + 1
        except (OSError, TimeoutError) as exc:
            key = type(exc).__name__
            refusals[key] = refusals.get(key, 0) + 1

    t0 = time.perf_counter()
    while not refusals and len(open_) < 100_000 and not flags.stop.is_set():
        await asyncio.gather(*(attempt() for _ in range(p["batch"])))
    elapsed = time.perf_counter() - t0
    while sum(refusals.values()) < p["extra"] and not flags.stop.is_set():  # a few more: all refused alike?
        await attempt()
    flags.ready.set()
    await flags.hold()
    await asyncio.gather(*(asyncio.wait_for(ws.close(), 5) for ws in open_), return_exceptions=True)
    refused = ", ".join(f"{v} × {k}" for k, v in sorted(refusals.items()))
    return {
        "admitted": len(open_),
        "refusals": refusals,
        "note": f"{len(open_)} admitted in {elapsed:.1f} s (+1: the healthy agent); then refused: {refused}",
    }


def garbage() -> list[str | bytes]:
    return [
        "not json {",
        b"\x00\xff\xfe binary garbage \x81\x82",
        '{"op":"nope","id":1}',
        '{"op":"send","id":2}',
        '{"op":"join","id":3,"name":17}',
        "[" * 5000,
        '{"op":"send","id":4,"name":"x","to":["y"],"body":' + "[" * 200 + "]" * 200 + "}",
        '"' + "\\u0000" * 100 + '"',
    ]


async def abuse_malformed(url: str, p: dict[str, Any], flags: Flags) -> dict[str, Any]:
    small = garbage()
    junk = "x" * 200_000  # under max_frame_bytes
    oversize = "y" * ((DEFAULTS.max_frame_bytes or MB) * 3 // 2)  # over it (the socket limit is 4× that)
    sent = errors = closed = 0
    codes: dict[str, int] = {}

    async def read(ws: Any) -> None:
        nonlocal errors
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                errors += 1

    flags.started.set()
    t0 = time.perf_counter()
    while not flags.stop.is_set():
        ws = await connect(url, max_size=None, compression=None)
        reader = asyncio.create_task(read(ws))
        try:
            while not flags.stop.is_set():
                for _ in range(64):
                    n = sent
                    frame = oversize if n % 512 == 511 else junk if n % 64 == 63 else small[n % len(small)]
                    await ws.send(frame)
                    sent += 1
                if sent >= p["frames"] or closed >= 3:
                    flags.ready.set()
                await asyncio.sleep(0)  # let the replies be read
        except ConnectionClosed:
            closed += 1
            if closed >= 3:
                flags.ready.set()
            rcvd = ws.protocol.close_rcvd
            key = str(rcvd.code) if rcvd is not None else "none"
            codes[key] = codes.get(key, 0) + 1
        elapsed = time.perf_counter() - t0
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 5)
    closes = ", ".join(f"{v} × {k}" for k, v in codes.items()) or "never"
    return {
        "sent": sent,
        "note": f"{sent:,} garbage frames ({sent / elapsed:,.0f}/s), {errors:,} error replies; "
        f"closed by the hub: {closes}",
    }


async def abuse_nothing(url: str, p: dict[str, Any], flags: Flags) -> dict[str, Any]:
    flags.started.set()
    flags.ready.set()
    await flags.hold()
    return {"note": "no abuse: the healthy agent alone, for comparison"}


ABUSERS = {
    "baseline": abuse_nothing,
    "big-bodies": abuse_big_bodies,
    "stalled-reader": abuse_stalled_reader,
    "subscriptions": abuse_subscriptions,
    "connections": abuse_connections,
    "malformed": abuse_malformed,
}


def abuser_main(
    name: str, url: str, p: dict[str, Any], started: Any, ready: Any, stop: Any, out: Any
) -> None:
    try:
        result = asyncio.run(ABUSERS[name](url, p, Flags(started, ready, stop)))
    except Exception as exc:
        result = {"note": f"abuser failed: {type(exc).__name__}: {exc}"}
    started.set()
    ready.set()
    out.put(result)


# -- the harness -----------------------------------------------------------------------------------------


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Sampler:
    """The hub's VmRSS every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid = pid
        self.every = every
        self.peak = 0.0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(self.every)

    def stop(self) -> None:
        self.task.cancel()


async def round_trip(agent: RawAgent, i: int) -> float:
    t0 = time.perf_counter()
    await agent.request(agent.send_cmd(agent.name, i))
    await asyncio.wait_for(agent.deliveries.get(), 10)
    return (time.perf_counter() - t0) * 1000


async def wait_flag(flag: Any, deadline: float) -> bool:
    while not flag.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return flag.is_set()


async def scenario(name: str, p: dict[str, Any], samples: int, limit_s: float) -> dict[str, Any]:
    hub = HubProc(*hub_args(name))
    try:
        with hub:
            return await measure(hub, name, p, samples, limit_s)
    finally:
        shutil.rmtree(hub.tmp, ignore_errors=True)  # the log: hundreds of MB after the big-bodies flood


async def measure(hub: HubProc, name: str, p: dict[str, Any], samples: int, limit_s: float) -> dict[str, Any]:
    healthy = await RawAgent(hub.url, "healthy", room="healthy").open()
    for i in range(100):  # warm up
        await round_trip(healthy, i)
    await asyncio.sleep(0.3)
    before = rss_mb(hub.pid)
    sampler = Sampler(hub.pid)
    ctx = mp.get_context("spawn")
    started, ready, stop, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=abuser_main, args=(name, hub.url, p, started, ready, stop, out))
    proc.start()
    await wait_flag(started, time.monotonic() + 30)
    times: list[float] = []
    deadline = time.monotonic() + limit_s
    failure = ""
    paced = time.monotonic()
    try:
        while (len(times) < samples or not ready.is_set()) and time.monotonic() < deadline:
            paced = max(paced + PACE_S, time.monotonic() - PACE_S)  # a slow trip is not made up for
            await asyncio.sleep(max(0.0, paced - time.monotonic()))
            times.append(await round_trip(healthy, len(times)))
    except (TimeoutError, HubError, ConnectionClosed) as exc:
        failure = f"; healthy agent failed: {type(exc).__name__} {exc}"
    cut_short = len(times) < samples or not ready.is_set()
    stop.set()
    loop = asyncio.get_running_loop()
    try:
        result: dict[str, Any] = await loop.run_in_executor(None, out.get, True, 60)
    except queue.Empty:
        result = {"note": "the abuser gave no result"}
    await loop.run_in_executor(None, proc.join, 30)
    if proc.is_alive():
        proc.kill()
    await asyncio.sleep(1.0)  # settle: closed connections are gone, freed memory is returned (if it is)
    after = rss_mb(hub.pid)
    sampler.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(healthy.close(), 5)
    note = result.get("note", "") + failure
    for unit, key in (("subscription", "subscribed"), ("connection", "admitted")):
        if result.get(key):
            note += f"; ≈ {(max(sampler.peak, after) - before) * 1024 / result[key]:.1f} KB per {unit}"
    if cut_short:
        note += f"; stopped at the {limit_s:.0f} s limit"
    peak = max(sampler.peak, after)
    bound = budget_mb(name, p, result)
    return {
        "name": name,
        "n": len(times),
        "p50": pct(times, 50),
        "p99": pct(times, 99),
        "before": before,
        "peak": peak,
        "after": after,
        "bound": bound,
        "p99_ok": bool(times) and not failure and pct(times, 99) < P99_TARGET_MS,
        "rss_ok": peak - before <= bound,
        "note": note,
    }


def header(quick: bool) -> str:
    return "\n".join(
        [
            f"synapse-hub abuse benchmark{' (--quick)' if quick else ''}: hub on 127.0.0.1, default limits "
            f"(feed_window_bytes {DEFAULTS.feed_window_bytes // MB} MB, outbox_bytes "
            f"{DEFAULTS.outbox_bytes // MB} MB, {DEFAULTS.max_connections_per_address} connections per "
            f"address, {DEFAULTS.max_subscriptions_per_session} subscriptions per session)",
            f"targets: healthy send-to-self round trip p99 < {P99_TARGET_MS:g} ms while the abuse runs; hub RSS "
            "growth (peak − before) within the scenario's bound:",
            f"  big-bodies 5/4 × feed_window_bytes + {SLACK_MB} MB; stalled-reader bodies sent (≤ 5/4 × "
            f"feed_window_bytes) + sinks × (outbox_bytes + 1 MB) + {SLACK_MB} MB;",
            f"  subscriptions {SUB_BUDGET_KB:g} KB each + {SLACK_MB} MB; connections {CONN_BUDGET_KB:g} KB each "
            f"+ {SLACK_MB} MB; malformed {SLACK_MB} MB",
        ]
    )


def render(rows: list[dict[str, Any]]) -> str:
    head = (
        "scenario",
        "n",
        "p50 ms",
        "p99 ms",
        "p99<10",
        "RSS before",
        "peak",
        "after",
        "bound(+)",
        "RSS ok",
    )
    lines = [head]
    for r in rows:
        lines.append(
            (
                r["name"],
                str(r["n"]),
                f"{r['p50']:.2f}",
                f"{r['p99']:.2f}",
                "✓" if r["p99_ok"] else "✗",
                f"{r['before']:.0f}",
                f"{r['peak']:.0f}",
                f"{r['after']:.0f}",
                f"{r['bound']:.0f}",
                "✓" if r["rss_ok"] else "✗",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = [
        "  "
        + "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    return "\n".join(text) + "\n" + table([(r["name"], r["note"]) for r in rows])


async def main_async(quick: bool, only: list[str]) -> list[dict[str, Any]]:
    ps = params(quick)
    samples = 500 if quick else 1000
    limit_s = 25.0 if quick else 60.0
    rows = []
    for name in SCENARIOS:
        if only and name not in only:
            continue
        rows.append(await scenario(name, ps[name], samples, limit_s))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (under a minute)")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, default=[], help="run this scenario only"
    )
    args = parser.parse_args()
    raise_nofile()  # the connection flood needs descriptors (the abuser inherits the limit)
    print(header(args.quick), flush=True)
    rows = asyncio.run(main_async(args.quick, args.only))
    print(render(rows))


if __name__ == "__main__":
    main()
