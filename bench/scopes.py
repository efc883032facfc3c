"""Benchmark ScopeIndex.conflicts against 100, 1,000 and 10,000 live claims (p50/p99 in microseconds)."""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.core.scopes import ScopeIndex  # noqa: E402

QUERIES = 5_000


def claim_paths(rng: random.Random, i: int, n: int) -> list[str]:
    """Three realistic paths for claim i: mostly files, some directories, some globs."""
    pkgs = max(10, n // 10)
    out: list[str] = []
    for _ in range(3):
        pkg, mod = rng.randrange(pkgs), rng.randrange(50)
        roll = rng.random()
        if roll < 0.70:
            out.append(f"src/pkg{pkg}/mod{mod}.py")
        elif roll < 0.85:
            out.append(f"src/pkg{pkg}/sub{mod}/")
        elif roll < 0.95:
            out.append(f"tests/pkg{pkg}/test_*.py")
        else:
            out.append(f"docs/pkg{pkg}/**/*.md")
    if i % 1000 == 0:
        out.append("*.toml")  # a few root-level globs that every query must check
    return out


def query_paths(rng: random.Random, n: int) -> list[str]:
    """A new three-path scope touching one package."""
    pkg, mod = rng.randrange(max(10, n // 10)), rng.randrange(60)
    return [f"src/pkg{pkg}/mod{mod}.py", f"tests/pkg{pkg}/test_mod{mod}.py", f"src/pkg{pkg}/util/"]


def glob_query_paths(rng: random.Random, n: int) -> list[str]:
    """A new three-path scope with globs inside one package."""
    pkg = rng.randrange(max(10, n // 10))
    return [f"src/pkg{pkg}/*.py", f"tests/pkg{pkg}/**", f"docs/pkg{pkg}/*/index.md"]


def measure(index: ScopeIndex[int], scopes: list[list[str]]) -> tuple[float, float, float]:
    """p50, p99 (microseconds) and mean conflicts per call over the given scopes."""
    times: list[float] = []
    found = 0
    for scope in scopes:
        t0 = time.perf_counter_ns()
        hits = index.conflicts(scope)
        times.append((time.perf_counter_ns() - t0) / 1_000)
        found += len(hits)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times), p99, found / len(scopes)


def main() -> None:
    """Print one line per index size and query kind."""
    print(f"{'claims':>7} {'query':>8} {'build ms':>9} {'p50 us':>8} {'p99 us':>8} {'hits/call':>9}")
    for n in (100, 1_000, 10_000):
        rng = random.Random(n)
        index: ScopeIndex[int] = ScopeIndex()
        t0 = time.perf_counter()
        for i in range(n):
            index.add(i, claim_paths(rng, i, n))
        build_ms = (time.perf_counter() - t0) * 1_000
        for kind, make in (("literal", query_paths), ("glob", glob_query_paths)):
            scopes = [make(rng, n) for _ in range(QUERIES)]
            p50, p99, hits = measure(index, scopes)
            print(f"{n:>7} {kind:>8} {build_ms:>9.1f} {p50:>8.1f} {p99:>8.1f} {hits:>9.2f}")


if __name__ == "__main__":
    main()
