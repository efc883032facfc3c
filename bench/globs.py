"""Benchmark glob overlap decisions (issue 10): pathological and ordinary pairs, microseconds per decision.

Cold = memo caches cleared before each decision (compiling included); warm = the pair asked again. The old
regex approach (before issue 10: one `re` per glob segment, `*` as `.*`, fullmatch against the literal)
is timed for comparison on the issue's glob only, and only up to n = 22: it backtracks through about
C(n, 9) ways, so each further character multiplies its time (n = 40 took seconds, n = 255 never ends).
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.core import scopes  # noqa: E402
from hub.core.scopes import MAX_CHECK_STEPS, Budget, ScopeIndex, TooCostly, normalize, overlaps  # noqa: E402

ISSUE = "src/" + "*a" * 9 + "*b"  # the glob of issue 10
HOSTILE = "src/" + "*a" * 31 + "*b"  # the same at the wildcard limit


def clear() -> None:
    for cached in (scopes._compile, scopes._glob, scopes._meet_cached):
        cached.cache_clear()


def timed(fn: Callable[[], object], cold: bool, repeat: int = 50) -> float:
    """Median microseconds of fn() over `repeat` runs, caches cleared before each run when `cold`."""
    times: list[float] = []
    for _ in range(repeat):
        if cold:
            clear()
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1_000)
    return statistics.median(times)


def old_regex(glob_seg: str) -> re.Pattern[str]:
    """What `_glob_regex` compiled for a glob of `*` and plain characters before issue 10."""
    return re.compile("".join(".*" if ch == "*" else re.escape(ch) for ch in glob_seg), re.DOTALL)


def wide_glob(seed: int) -> str:
    """A 255-character glob segment with 31 wildcards, most of them classes of scattered characters."""
    out, k = "*", 0
    while len(out) < 200 and k < 15:
        body = "".join(chr(0x100 + 3 * ((seed * 7 + k * 5 + i * 11) % 500)) for i in range(5)) + ".a"
        out += ("[!" if k % 2 else "[") + body + "]" + ("*" if k % 3 == 0 else "?")
        k += 1
    return (out + "ab." * 255)[:255]


def pairs() -> list[tuple[str, str, str]]:
    deep = "/".join(["a" * 15] * 64)
    chain = "/".join(["**", "a"] * 31 + ["z"])
    return [
        ("ordinary", "src/*.py", "src/app/models.py"),
        ("ordinary", "**/*.md", "docs/guide/intro.md"),
        ("ordinary", "tests/test_*.py", "tests/test_[a-m]*.py"),
        ("ordinary", "src/[a-z]*/x?.py", "src/*/x1.py"),
        ("issue", ISSUE, "src/" + "a" * 22),
        ("issue", ISSUE, "src/" + "a" * 255),
        ("hostile", HOSTILE, "src/" + "a" * 255),
        ("hostile", chain, deep),
        ("hostile", "/".join(["*a*"] * 63 + ["b"]), deep),
        ("hostile", wide_glob(1) + "/x", wide_glob(2) + "/y"),
    ]


def many_entries(n: int) -> tuple[list[str], list[str]]:
    """n deep glob entries each meeting n deep literal entries down to their last segment."""
    held = ["/".join(f"*[a{chr(0x100 + k)}{chr(0x200 + i)}]*" for i in range(60)) + "/zz" for k in range(n)]
    mine = ["/".join(f"{k:03d}{i:02d}aaaaaaaaa" for i in range(60)) + "/END" for k in range(n)]
    return held, mine


def main() -> None:
    """One line per pair, then the old regex, then many-entry claims with and without the budget."""
    print(f"{'case':>9} {'a':>24} {'b':>24} {'overlap':>7} {'cold us':>9} {'warm us':>8}")
    for kind, a, b in pairs():
        normalize(a), normalize(b)
        cold, warm = (
            timed(lambda a=a, b=b: overlaps(a, b), True),
            timed(lambda a=a, b=b: overlaps(a, b), False),
        )
        short = [s if len(s) <= 24 else s[:14] + f"…({len(s)})" for s in (a, b)]
        print(f"{kind:>9} {short[0]:>24} {short[1]:>24} {overlaps(a, b)!s:>7} {cold:>9.1f} {warm:>8.2f}")

    print("\nold regex approach, issue glob vs src/a…a (for comparison; it is exponential, so n <= 22 only)")
    print(f"{'n':>4} {'old regex us':>13} {'now cold us':>12}")
    rx = old_regex(ISSUE.split("/")[1])
    for n in (12, 14, 16, 18, 20, 22):
        literal = "a" * n
        old = timed(lambda literal=literal: rx.fullmatch(literal), False, repeat=5)
        now = timed(lambda n=n: overlaps(ISSUE, "src/" + "a" * n), True, repeat=5)
        print(f"{n:>4} {old:>13.0f} {now:>12.1f}")

    print(
        f"\nmany-entry claims: n deep glob entries held, n deep literal entries asked (budget {MAX_CHECK_STEPS})"
    )
    print(f"{'n':>4} {'pairs':>6} {'no budget ms':>13} {'with budget ms':>15} {'outcome':>10}")
    per_pair = 0.0  # ms, measured without a budget at n = 16, extrapolated beyond
    for n in (4, 16, 64, 256):
        held, mine = many_entries(n)
        index: ScopeIndex[str] = ScopeIndex()
        index.add("held", held)
        if n <= 16:
            clear()
            t0 = time.perf_counter()
            index.conflicts(mine)
            per_pair = (time.perf_counter() - t0) * 1_000 / (n * n)
            free = f"{per_pair * n * n:.1f}"
        else:
            free = f"~{per_pair * n * n:.0f} (est.)"
        clear()
        t0 = time.perf_counter()
        try:
            index.conflicts(mine, budget=Budget())
            outcome = "decided"
        except TooCostly:
            outcome = "TooCostly"
        budgeted = (time.perf_counter() - t0) * 1_000
        print(f"{n:>4} {n * n:>6} {free:>13} {budgeted:>15.1f} {outcome:>10}")


if __name__ == "__main__":
    main()
