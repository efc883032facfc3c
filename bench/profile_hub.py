"""Where the hub's CPU and memory go (issue 17, part 2): py-spy on the hub process, tracemalloc inside it.

Run: `python bench/profile_hub.py [--only rt,flood,conditions,connect,memory] [--rate 200] [--agents 1000]
[--plain] [--keep DIR]` (`--plain`: the CPU per operation alone, no profiled run).
Needs py-spy (`pip install py-spy`); tracemalloc is in the standard library.

CPU: each workload runs twice on a hub subprocess (127.0.0.1, durable SQLite): once plain, for the hub's user
and system CPU per operation (/proc), then with `py-spy record --native` attached for its duration, for where
that CPU goes. The workloads: the raw round trip (messages.py), the 4→1 flood (messages.py), and state writes
with 10,000 live condition subscriptions (conditions.py's layout: 1,000 keys × 10, each write re-evaluates 10),
and connecting `--agents` agents (join + attach) from scale.py's two client processes (their CPU is printed too).
Each active sample (waits left out) is charged to the layer of its innermost frame that belongs to one (the
interpreter's own frames, libc and refcounting charge their caller); a sample inside a syscall goes to
`kernel: ` + what called it. py-spy counts a preempted thread as running, so samples give shares, not CPU: the
user time per operation is split by the samples outside syscalls, the system time by those inside. The table
gives each layer's share of the hub's CPU, µs per operation and its top functions.

Memory: `--agents` idle agents connect, then join, then attach, in three stages: the hub's RSS grows by so much
per agent at each stage (a plain hub), and the Python heap by so much, split by what allocates (the innermost
frame of each tracemalloc trace that belongs to a category; a hub started under tracemalloc, snapshots taken on
SIGUSR1). RSS beyond the traced heap is memory outside Python's allocator (libuv handles, malloc overhead).
It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

# Run as `python bench/profile_hub.py`: the project root first, and not this folder (its cel.py would shadow
# the `cel` module of common-expression-language).
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from bench import messages  # noqa: E402
from bench.common import HubProc, RawAgent, cpu_seconds, cpu_times, rss_mb  # noqa: E402
from bench.conditions import SubAgent, pipelined  # noqa: E402
from bench.scale import Fleet, raise_fd_limit  # noqa: E402
from hub.protocol import commands as c  # noqa: E402

# -- CPU: layers ---------------------------------------------------------------------------------------------

# (layer, markers): a frame whose location (file or library) contains a marker belongs to the layer; the first
# layer listed wins, so the specific paths come before the general ones.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("log: sqlite3 (C)", ("libsqlite3", "_sqlite3", "cursor.c", "connection.c", "microprotocols.c",
                          "statement.c")),
    ("log: SQLAlchemy + hub/log", ("hub/log/", "sqlalchemy/", "_cy.c")),
    ("CEL evaluation", ("hub/core/cel.py", "cel_expr_python", "celpy/", "cel/")),
    ("msgspec decode/encode", ("msgspec/", "hub/protocol/codec.py")),
    ("core decide/apply", ("hub/core/", "hub/protocol/")),
    ("fanout / session outbox", ("hub/server/fanout.py", "hub/server/session.py")),
    ("metrics (prometheus)", ("prometheus_client/", "hub/server/metrics.py", "hub/server/tally.py",
                              "hub/server/scrape.py")),
    ("hub shell (dispatch, submit)", ("hub/server/",)),
    ("websockets framing", ("websockets/",)),
    ("asyncio / uvloop", ("uvloop/", "asyncio/", "loop.c", "_asynciomodule.c", "core.c", "linux.c", "stream.c",
                          "loop-watcher.c", "queue.h", "timer.c", "tcp.c", "uv-common.c")),
]  # fmt: skip
SYSCALLS = {"write", "writev", "send", "sendmsg", "sendto", "read", "readv", "recv", "recvfrom", "recvmsg",
            "pwrite64", "pread64", "fcntl64", "fcntl", "fdatasync", "fsync", "lseek64", "openat64", "close",
            "unlink", "access", "fstat64", "stat64", "mmap64", "munmap", "madvise", "brk", "mprotect"}  # fmt: skip
KERNEL = "kernel: "  # a sample in a syscall: "kernel: " + what its caller does
SYSCALL_OF = {
    "asyncio / uvloop": "socket write/read (uvloop)",
    "log: sqlite3 (C)": "sqlite3 WAL writes, locks",
}
GC = "cyclic GC"
GC_FUNCS = {"gc_collect_main", "gc_collect_with_callback", "collect_generations", "_PyObject_GC_Collect"}
IDLE = {"epoll_pwait", "epoll_wait", "PyThread_acquire_lock_timed", "take_gil", "pthread_cond_timedwait",
        "pthread_cond_wait", "sem_clockwait", "sem_timedwait", "sem_wait", "select", "poll", "clock_nanosleep"}  # fmt: skip
FRAME = re.compile(r"^(?P<func>.*) \((?P<where>[^()]*?)(?::\d+)?\)$")


def split_frame(frame: str) -> tuple[str, str]:
    """`func (file:line)` or `func (lib.so)` → (func, file or lib)."""
    m = FRAME.match(frame)
    return (m.group("func"), m.group("where")) if m else (frame, "")


def layer_of(where: str) -> str | None:
    for layer, markers in LAYERS:
        if any(marker in where for marker in markers):
            return layer
    return None


def short(where: str) -> str:
    """A location's last two parts, a shared library's suffixes dropped: `core/feed.py`, `msgspec/_core`."""
    path = Path(where)
    name = path.name.split(".")[0] if ".so" in path.name else path.name
    return f"{path.parent.name}/{name}" if path.parent.name else name


def charge(frames: list[str]) -> tuple[str, str] | None:
    """(layer, function) an active sample's stack (thread first, then root to leaf) is charged to; None when
    the thread waits (epoll, a lock, the GIL). A sample inside a syscall goes to `kernel: ` + its caller's
    layer (socket writes under uvloop, WAL writes and locks under sqlite3)."""
    funcs = [split_frame(f) for f in frames[1:]]
    if any(func in IDLE for func, _ in funcs[-5:]):
        return None
    if any(func in GC_FUNCS for func, _ in funcs):
        return GC, "gc_collect_main"
    tail = [func for func, where in funcs[-2:] if "libc.so" in where or where == ""]
    syscall = next((func for func in reversed(tail) if func in SYSCALLS), None)
    for func, where in reversed(funcs):
        layer = layer_of(where)
        if layer is None:
            continue
        name = f"{'?' if func.startswith('0x') else func} ({short(where)})"
        if syscall is not None:
            return KERNEL + SYSCALL_OF.get(layer, layer), f"{syscall} ← {name}"
        return layer, name
    return ("interpreter / other" if syscall is None else KERNEL + "other"), funcs[-1][0] if funcs else ""


class Samples:
    """py-spy's raw (collapsed) output: active samples per layer and per function within each layer."""

    def __init__(self, path: Path) -> None:
        self.layers: Counter[str] = Counter()
        self.funcs: dict[str, Counter[str]] = defaultdict(Counter)
        self.idle = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            charged = charge(stack.split(";"))
            if charged is None:
                self.idle += n
                continue
            self.layers[charged[0]] += n
            self.funcs[charged[0]][charged[1]] += n

    def active(self, kernel: bool) -> int:
        return sum(n for layer, n in self.layers.items() if layer.startswith(KERNEL) == kernel)


def cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process: user and system time, and the loop thread's (its main thread's) part."""
    user, system = cpu_times(pid)
    return {"user": user, "system": system, "loop": cpu_seconds(pid, pid)}


class PySpy:
    """`py-spy record --native` attached to a process until stopped; its raw output in `path`."""

    def __init__(self, pid: int, path: Path, rate: int) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--native", "--idle", "--threads"]
        self.path = path
        self.proc = subprocess.Popen(
            [*cmd, "--format", "raw", "--output", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        if not self.path.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")


# -- CPU: workloads ----------------------------------------------------------------------------------------------

# A workload's setup (url → state; not measured) and run (state → operations done).
Setup = Callable[[str], Awaitable[Any]]
Run = Callable[[Any], Awaitable[int]]


async def no_setup(url: str) -> str:
    return url


async def rt_run(url: str, n: int) -> int:
    await messages.round_trip(url, n)
    return n


async def flood_run(url: str, per_sender: int) -> int:
    await messages.flood(url, 4, per_sender)
    return 4 * per_sender


async def conditions_setup(url: str, keys: int = 1000, per_key: int = 10) -> tuple[SubAgent, dict[int, int]]:
    """`keys × per_key` subscriptions `state._shared.kI == J` over 4 connections; every key at -1."""
    writer = await SubAgent(url, "writer").open(attach=False)
    watchers = [await SubAgent(url, f"watch-{i}").open(attach=False) for i in range(4)]
    await pipelined(writer, [writer.set_cmd(f"k{i}", -1) for i in range(keys)])
    spots = [(i, j) for i in range(keys) for j in range(per_key)]
    await asyncio.gather(
        *(
            pipelined(
                w, [c.Subscribe(id=w.next(), room=w.room, expr=f"state._shared.k{i} == {j}") for i, j in mine]
            )
            for w, mine in ((w, spots[n::4]) for n, w in enumerate(watchers))
        )
    )
    return writer, dict.fromkeys(range(keys), -1)


async def conditions_run(state: tuple[SubAgent, dict[int, int]], n: int, per_key: int = 10) -> int:
    """n pipelined writes, each to a key's next value: it re-evaluates that key's subscriptions, triggers one."""
    writer, current = state
    cmds = []
    for w in range(n):
        i = (w * 7919) % len(current)
        current[i] = (current[i] + 1) % per_key
        cmds.append(writer.set_cmd(f"k{i}", current[i]))
    await pipelined(writer, cmds)
    return n


async def connect_setup(url: str, n: int, procs: int = 2, concurrency: int = 64) -> Fleet:
    """scale.py's fleet of `n` agents in `procs` client processes, started, not connected yet."""
    fleet = Fleet(url, n, procs, concurrency)
    await fleet.start()
    return fleet


async def connect_run(fleet: Fleet) -> int:
    """Every agent of the fleet connects, joins and attaches (the clients' CPU is printed: they share the cores)."""
    seconds, client_cpu = await fleet.connect()
    print(
        f"  connect: {fleet.n:,} agents in {seconds:.2f} s; clients' CPU {client_cpu / fleet.n * 1e6:.0f} µs per agent"
    )
    return fleet.n


async def connect_teardown(fleet: Fleet) -> None:
    await fleet.close()


async def profile_workload(
    name: str,
    unit: str,
    hub_args: tuple[str, ...],
    setup: Setup,
    run: Run,
    rate: int,
    keep: Path,
    teardown: Callable[[Any], Awaitable[None]] | None = None,
    plain_only: bool = False,
) -> None:
    """Run plain on a fresh hub (its CPU per op, user and system), then profiled on another; print the table.

    py-spy counts a thread that is runnable but not running (preempted: the machine is shared, and on loopback
    a write wakes the peer, which may take the core) as active, so its samples give shares, not CPU. The user
    time per op is split by the shares of the samples outside syscalls, the system time by those inside."""
    used: dict[bool, dict[str, float]] = {}
    rates: dict[bool, float] = {}
    ops = 0
    for profiled in (False,) if plain_only else (False, True):
        with HubProc(*hub_args) as hub:
            state = await setup(hub.url)
            before = cpu(hub.pid)
            spy = PySpy(hub.pid, keep / f"{name}.raw", rate) if profiled else None
            t0 = time.perf_counter()
            ops = await run(state)
            elapsed = time.perf_counter() - t0
            if spy is not None:
                spy.stop()
            after = cpu(hub.pid)
            if teardown is not None:
                await teardown(state)
        used[profiled] = {k: (after[k] - before[k]) / ops * 1e6 for k in after}
        rates[profiled] = ops / elapsed
    plain = used[False]
    print(
        f"\n{name}: {ops:,} {unit}s; hub CPU {plain['user'] + plain['system']:.1f} µs per {unit} "
        f"(user {plain['user']:.1f}, system {plain['system']:.1f}; loop thread {plain['loop']:.1f})"
    )
    if plain_only:
        print(f"  {rates[False]:,.0f} {unit}s/s")
        return
    samples = Samples(keep / f"{name}.raw")
    print(
        f"  {rates[False]:,.0f} {unit}s/s plain, {rates[True]:,.0f}/s under py-spy (--native, {rate} Hz); "
        f"{samples.active(False):,} samples in user code, {samples.active(True):,} in syscalls "
        f"({samples.idle:,} waiting); raw stacks: {keep / (name + '.raw')}"
    )
    print(f"  {'layer':<36} {'% CPU':>6} {'µs/' + unit:>9}   top functions (% of the layer's samples)")
    rows = []
    for layer, n in samples.layers.items():
        kernel = layer.startswith(KERNEL)
        us = n / (samples.active(kernel) or 1) * plain["system" if kernel else "user"]
        rows.append((us, layer))
    total = sum(us for us, _ in rows) or 1.0
    for us, layer in sorted(rows, reverse=True):
        funcs = samples.funcs[layer]
        n = sum(funcs.values())
        top = ", ".join(f"{f} {k / n:.0%}" for f, k in funcs.most_common(4))
        print(f"  {layer:<36} {us / total:>6.1%} {us:>9.1f}   {top}")


# -- memory ------------------------------------------------------------------------------------------------------

TRACE_DEPTH = 12
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("Session + outbox", ("hub/server/session.py",)),
    ("core world entries", ("hub/core/",)),
    ("hub shell (registry, metrics)", ("hub/server/", "prometheus_client/")),
    ("log writer / SQLite", ("hub/log/", "sqlalchemy/")),
    ("protocol objects (msgspec)", ("hub/protocol/", "msgspec/")),
    ("websockets connection", ("websockets/",)),
    ("asyncio / uvloop (tasks, futures, transports)", ("asyncio/", "uvloop/")),
]


def traced_hub(argv: list[str]) -> None:
    """`--traced-hub SNAPSHOT hub …`: the hub's command line under tracemalloc; SIGUSR1 dumps a snapshot."""
    import tracemalloc

    path = argv[0]
    tracemalloc.start(TRACE_DEPTH)

    def dump(_signum: int, _frame: Any) -> None:
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["synapse", *argv[1:]]
    from cli.main import main

    main()


def category_of(frames: Any) -> tuple[str, str]:
    """(category, site) of one trace: its innermost frame in a category; the site is that frame and, when it is
    in asyncio or websockets, the innermost frame of the hub's own that led there."""
    for frame in reversed(frames):
        for category, markers in CATEGORIES:
            if any(m in frame.filename for m in markers):
                site = f"{Path(frame.filename).name}:{frame.lineno}"
                if category.startswith(("asyncio", "websockets")):
                    caller = next((f for f in reversed(frames) if "/hub/" in f.filename), None)
                    if caller is not None:
                        site += f" ← {Path(caller.filename).name}:{caller.lineno}"
                return category, site
    inner = frames[-1] if len(frames) else None
    return "other", "?" if inner is None else f"{Path(inner.filename).name}:{inner.lineno}"


async def snapshot(hub: HubProc, path: Path, label: str) -> Any:
    """Ask the traced hub for a tracemalloc snapshot and load it (bounded wait); kept as `label`.tracemalloc."""
    import tracemalloc

    path.unlink(missing_ok=True)
    os.kill(hub.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the traced hub wrote no snapshot")
        await asyncio.sleep(0.05)
    return tracemalloc.Snapshot.load(str(path.rename(path.with_name(f"{label}.tracemalloc"))))


STAGES: list[tuple[str, Callable[[RawAgent], Awaitable[Any]]]] = [
    ("connect", RawAgent.connect),
    ("join", RawAgent.join),
    ("attach", RawAgent.attach),
]


async def stage_all(
    agents: list[RawAgent], step: Callable[[RawAgent], Awaitable[Any]], at_once: int = 50
) -> None:
    sem = asyncio.Semaphore(at_once)

    async def one(a: RawAgent) -> None:
        async with sem:
            await step(a)

    await asyncio.gather(*(one(a) for a in agents))


async def memory(n: int, keep: Path) -> None:
    """RSS per agent by stage (plain hub), then the Python heap per agent by stage and category (traced hub)."""
    caps = ("--max-connections", str(n + 64), "--max-connections-per-address", str(n + 64))
    rss: list[float] = []
    with HubProc(*caps) as hub:
        await (await RawAgent(hub.url, "warm").open()).close()  # lazily built parts, allocated once
        rss.append(rss_mb(hub.pid))
        agents = [RawAgent(hub.url, f"mem-{i}") for i in range(n)]
        for _stage, step in STAGES:
            await stage_all(agents, step)
            await asyncio.sleep(0.2)
            rss.append(rss_mb(hub.pid))
        await asyncio.gather(*(a.close() for a in agents))
    snap_path = keep / "snapshot.tmp"
    launcher = (str(Path(__file__).resolve()), "--traced-hub", str(snap_path))
    table: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(STAGES))
    sites: dict[str, Counter[str]] = defaultdict(Counter)
    heap: list[float] = []
    with HubProc(*caps, launcher=launcher) as hub:
        await (await RawAgent(hub.url, "warm").open()).close()
        snaps = [await snapshot(hub, snap_path, "idle")]
        agents = [RawAgent(hub.url, f"mem-{i}") for i in range(n)]
        for k, (stage, step) in enumerate(STAGES):
            await stage_all(agents, step)
            snaps.append(await snapshot(hub, snap_path, stage))
            for stat in snaps[-1].compare_to(snaps[-2], "traceback"):
                category, site = category_of(stat.traceback)
                table[category][k] += stat.size_diff / n
                sites[category][site] += stat.size_diff / n
        heap = [sum(s.size for s in snap.statistics("filename")) / 1024 / 1024 for snap in snaps]
        await asyncio.gather(*(a.close() for a in agents))
    print(f"\nmemory: {n:,} idle agents (raw websockets clients), by stage; KB per agent")
    header = "".join(f"{s:>10}" for s, _ in STAGES)
    print(f"  {'':<48}{header}{'total':>10}")
    per_stage = [(rss[k + 1] - rss[k]) * 1024 / n for k in range(len(STAGES))]
    row = "".join(f"{v:>10.2f}" for v in per_stage)
    print(f"  {'hub RSS (plain hub)':<48}{row}{sum(per_stage):>10.2f}")
    heap_stage = [(heap[k + 1] - heap[k]) * 1024 / n for k in range(len(STAGES))]
    row = "".join(f"{v:>10.2f}" for v in heap_stage)
    print(f"  {'Python heap (traced hub), of which:':<48}{row}{sum(heap_stage):>10.2f}")
    for category, values in sorted(table.items(), key=lambda kv: -sum(kv[1])):
        row = "".join(f"{v / 1024:>10.2f}" for v in values)
        print(f"    {category:<46}{row}{sum(values) / 1024:>10.2f}")
    rest = [a - b for a, b in zip(per_stage, heap_stage, strict=True)]
    row = "".join(f"{v:>10.2f}" for v in rest)
    print(f"  {'RSS outside the Python heap':<48}{row}{sum(rest):>10.2f}")
    print(f"  RSS {rss[0]:.1f} → {rss[-1]:.1f} MB; top allocation sites (KB per agent):")
    for category, counter in sorted(sites.items(), key=lambda kv: -sum(kv[1].values())):
        top = ", ".join(f"{s} {v / 1024:.2f}" for s, v in counter.most_common(8) if v >= 64)
        print(f"    {category}: {top}")


# -- main --------------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    keep = Path(args.keep or tempfile.mkdtemp(prefix="synapse-profile-"))
    keep.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    subs_hub = ("--max-subscriptions-per-session", "100000", "--snapshot-every", "0")
    if "rt" in only:
        rt = partial(rt_run, n=args.rt)
        await profile_workload("round_trip", "round trip", (), no_setup, rt, args.rate, keep)
    if "flood" in only:
        flood = partial(flood_run, per_sender=args.flood // 4)
        await profile_workload("flood", "message", (), no_setup, flood, args.rate, keep)
    if "conditions" in only:
        writes = partial(conditions_run, n=args.writes)
        await profile_workload("conditions", "write", subs_hub, conditions_setup, writes, args.rate, keep)
    if "connect" in only:
        print(raise_fd_limit(args.agents + 256), file=sys.stderr)
        caps = str(args.agents + 64)
        connect_hub = ("--max-connections", caps, "--max-connections-per-address", caps)
        setup = partial(connect_setup, n=args.agents)
        await profile_workload(
            "connect", "agent", connect_hub, setup, connect_run, args.rate, keep, connect_teardown, args.plain
        )
    if "memory" in only:
        print(raise_fd_limit(2 * args.agents + 256), file=sys.stderr)
        await memory(args.agents, keep)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--traced-hub":
        traced_hub(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="rt,flood,conditions,memory", help="workloads, comma-separated")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--rt", type=int, default=10_000, help="round trips")
    parser.add_argument("--flood", type=int, default=80_000, help="flood messages (4 senders)")
    parser.add_argument("--writes", type=int, default=10_000, help="state writes with 10k subscriptions")
    parser.add_argument("--agents", type=int, default=1000, help="agents for the memory split and connect")
    parser.add_argument("--plain", action="store_true", help="CPU per operation only (no py-spy run)")
    parser.add_argument("--keep", help="directory for the raw stacks and snapshots (default: a temp dir)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
