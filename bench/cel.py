"""Benchmark hub.core.cel: compile cost, evals/s per engine on a realistic room, and path extraction cost."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as `python bench/cel.py`: put the project root first, and keep this file from shadowing the
# `cel` module of common-expression-language (cel-rust).
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from hub.core import cel  # noqa: E402

EXPRESSIONS = [
    "state._shared.turn == 2",
    'state["agent-3"].score > 40 && agents["agent-3"].status == "active"',
    "state._shared.votes_for + state._shared.votes_against >= state._shared.quorum",
    'tasks.exists(t, tasks[t].status == "done" && tasks[t].holder == "agent-1")',
    '"Turn " + string(state._shared.turn) + ": " + state._shared.phase',
]


def room(n_agents: int = 14, n_tasks: int = 14, n_claims: int = 5) -> dict:
    """A realistic room context: ~50 keys across the five roots."""
    agents = {
        f"agent-{i}": {
            "status": "active" if i % 3 else "waiting",
            "waiting_on": None if i % 3 else f"agent-{i + 1}",
            "last_heartbeat": 1732460000.5 + i,
            "role": "lead" if i == 0 else "worker",
        }
        for i in range(n_agents)
    }
    state: dict = {
        "_shared": {
            "turn": 3,
            "phase": "voting",
            "votes_for": 4,
            "votes_against": 2,
            "quorum": 5,
            "topic": "api",
        },
        "_view": {"quorum_met": True, "leader": "agent-0"},
    }
    state.update({f"agent-{i}": {"score": i * 7, "notes": ["draft", "review"]} for i in range(n_agents)})
    tasks = {
        f"T-{i}": {
            "status": ("ready", "claimed", "done")[i % 3],
            "holder": None if i % 3 == 0 else f"agent-{i}",
        }
        for i in range(n_tasks)
    }
    claims = {f"claim-{i}": {"holder": f"agent-{i}", "paths": [f"src/mod{i}/"]} for i in range(n_claims)}
    return {
        "state": state,
        "agents": agents,
        "messages": {"count": 42, "unclaimed": 3},
        "claims": claims,
        "tasks": tasks,
    }


def rate(fn: Callable[[], object], seconds: float = 0.5) -> float:
    """Calls per second of `fn`: best of three runs of about `seconds` / 3 each, after a warm-up call."""
    fn()
    best = 0.0
    for _ in range(3):
        n, batch, start = 0, 1, time.perf_counter()
        while True:
            for _ in range(batch):
                fn()
            n += batch
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 3:
                break
            batch = min(batch * 2, 5_000)
        best = max(best, n / elapsed)
    return best


def fresh(ctx: dict) -> dict:
    """A new top-level dict per state change (roots shared), as the hub builds one after each change."""
    return dict(ctx)


def bench_engine(engine: cel.Engine, ctx: dict, budget: float) -> None:
    """Print compile/s, evals/s (fresh context each call: sliced to the paths read), bound evals/s
    (one context, bound once), and evaluations per state change."""
    print(f"\n{engine.name}")
    print(f"  {'compile/s':>11} {'evals/s':>11} {'bound/s':>11}  expression")
    engine.compile("true")  # load the engine before timing
    compiled = []
    for expr in EXPRESSIONS:
        c_rate = rate(lambda e=expr: engine.compile(e), budget)
        c = engine.compile(expr)
        compiled.append(c)
        e_rate = rate(lambda c=c: engine.evaluate(c, fresh(ctx)), budget)
        bound = engine.bind(ctx)
        b_rate = rate(lambda c=c, b=bound: engine.evaluate(c, b), budget)
        print(f"  {c_rate:>11,.0f} {e_rate:>11,.0f} {b_rate:>11,.0f}  {expr[:60]}")

    def change_then_all() -> None:
        bound = engine.bind(fresh(ctx))
        for c in compiled:
            engine.evaluate(c, bound)

    def change_then_all_sliced() -> None:
        current = fresh(ctx)
        for c in compiled:
            engine.evaluate(c, current)

    for label, fn in (
        ("bind, evaluate all 5", change_then_all),
        ("evaluate all 5 (sliced)", change_then_all_sliced),
    ):
        per_change = rate(fn, budget)
        print(f"  state change, {label}: {per_change:,.0f} /s ({per_change * 5:,.0f} evals/s)")


def main() -> None:
    ctx = room()
    keys = sum(len(v) for v in ctx.values())
    print(f"context: {keys} keys under {len(ctx)} roots")
    print(f"NATIVE = {cel.NATIVE.name}")

    print("\npath extraction (our parser, per expression)")
    for expr in EXPRESSIONS:
        print(f"  {rate(lambda e=expr: cel.paths(e)):>12,.0f} /s   {expr[:60]}")

    for factory in (cel.CelCppEngine, cel.CelRustEngine):
        try:
            engine = factory()
        except ImportError as exc:
            print(f"\n{factory.__name__}: unavailable ({exc})")
            continue
        bench_engine(engine, ctx, 0.3)
    bench_engine(cel.REFERENCE, ctx, 0.2)

    print(f"\n{cel.NATIVE.name}: evals/s of expression 1 vs room size (fresh context / bound)")
    compiled = cel.compile(EXPRESSIONS[0])
    for n in (10, 50, 250):
        big = room(n_agents=n, n_tasks=n, n_claims=n // 2)
        size = sum(len(v) for v in big.values())
        fresh_rate = rate(lambda b=big: cel.evaluate(compiled, fresh(b)), 0.3)
        bound = cel.bind(big)
        bound_rate = rate(lambda b=bound: cel.evaluate(compiled, b), 0.3)
        print(f"  {size:>5} keys: {fresh_rate:>10,.0f} {bound_rate:>10,.0f}")

    try:
        native = cel.CelCppEngine()
    except ImportError:
        return
    raw = native._env.compile(EXPRESSIONS[0], disable_check=True)  # adapter overhead vs the raw binding
    activation = native._env.Activation(ctx)
    print("\ncel-cpp raw binding, expression 1 (no adapter)")
    print(f"  eval(data=ctx): {rate(lambda: raw.eval(data=fresh(ctx))):,.0f} /s")
    print(f"  eval(activation): {rate(lambda: raw.eval(activation)):,.0f} /s")


if __name__ == "__main__":
    main()
