"""The seed-pattern examples (pipeline, watchdog, CAS counter, branches, staggered send) run in their --smoke
mode to completion on a real hub they start themselves, and print what happened."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Cli, seconds


def run(script: str, *args: str) -> list[str]:
    """Run an example (give it `--smoke`, or its own sizes); its stdout lines, once it exited 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=seconds(120_000),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_pipeline() -> None:
    """Three items go through the three stages in order; every item is moved on by exactly one processor."""
    lines = run("pipeline.py", "--smoke")
    published = [x for x in lines if x.startswith("publisher: ")]
    assert len(published) == 3, lines
    for i, (x, c) in enumerate(zip(published, "ABC", strict=True)):
        assert re.fullmatch(rf"publisher: item {i} published \('DOCUMENT {c}' by processor-[12]\)", x), x
    processed = [x for x in lines if x.endswith(" processed")]
    assert sorted(x.split(": ")[1] for x in processed) == [
        "item 0 processed",
        "item 1 processed",
        "item 2 processed",
    ]
    assert [x for x in lines if x.startswith("ingester: ")] == [
        f"ingester: item {i} collected ('document {c}')" for i, c in enumerate("abc")
    ]
    last = re.fullmatch(
        r"pipeline done: 3 items through 3 stages, each processed exactly once "
        r"\(processor-1 (\d), processor-2 (\d); (\d+) late handover\(s\) refused\)",
        lines[-1],
    )
    assert last is not None, lines[-1]
    assert int(last[1]) + int(last[2]) == 3
    assert int(last[3]) == sum("precondition_failed" in x for x in lines)


def test_cas_counter() -> None:
    """Three writers take five numbers each through a CAS loop: the counter ends at 15, each number once."""
    lines = run("cas_counter.py", "--smoke")
    assert sorted(x.split(":")[0] for x in lines[:3]) == ["agent-0", "agent-1", "agent-2"]
    assert all(
        re.fullmatch(r"agent-\d: took 5 tasks, lost \d+ CAS race\(s\) and retried", x) for x in lines[:3]
    )
    assert lines[-2] == "counter task:next = 15 (version 16); expected 15"
    lost = sum(int(re.search(r"lost (\d+)", x)[1]) for x in lines[:3])  # type: ignore[index]
    assert lines[-1] == f"tasks 0..14 each taken exactly once; {lost} races lost in all, no update lost"


def test_cas_counter_more_writers() -> None:
    """The sizes are flags: eight writers contend harder and still lose no update."""
    lines = run("cas_counter.py", "--writers", "8", "--rounds", "4")
    assert len([x for x in lines if x.startswith("agent-")]) == 8
    assert lines[-2] == "counter task:next = 32 (version 33); expected 32"


def test_branches() -> None:
    """Isolated branches, aggregated; two merges land (the second skips the key both sides set alike); the
    third is refused for the key changed on both sides and writes nothing."""
    lines = run("branches.py", "--smoke")
    assert lines[0] == "branches: agent-0 (2 changes), agent-1 (2 changes), agent-2 (2 changes)"
    assert "main: status is still 'planning', no agent's result is there" in lines
    assert [x for x in lines if re.fullmatch(r"agent-\d: Agent \d result", x)] == [
        f"agent-{i}: Agent {i} result" for i in range(3)
    ]
    assert "diff agent-0: _shared.status: 'planning' -> 'done'" in lines
    assert "merge agent-0: 2 key(s) brought over" in lines
    assert "merge agent-1: 1 key(s) brought over" in lines
    assert "diff agent-2: conflicts ['_shared.summary']" in lines
    assert "merge agent-2: refused (conflict): changed on both sides: _shared.summary" in lines
    assert lines[-1] == (
        "main: 2 results merged, agent-2's result not (its merge wrote nothing), "
        "summary \"lead's summary\", status 'done'"
    )


WATCHDOG_TAIL = [
    "worker-2: took task index-docs (epoch 2) and claim index-docs (epoch 2)",
    "worker (late): state set index:result refused (fenced): worker does not hold 'task:index-docs' at epoch 1 "
    "(worker-2 holds it at epoch 2)",
    "worker (late): release index-docs refused (fenced): worker does not hold 'index-docs' at epoch 1 "
    "(worker-2 holds it at epoch 2)",
    "worker (late): send refused (fenced): worker does not hold 'task:index-docs' at epoch 1 "
    "(worker-2 holds it at epoch 2)",
    "worker-2: index:result written, task done, claim released",
    "index:result = '42 pages' (version 1); task index-docs done",
]


def check_watchdog(lines: list[str], woken_by: str) -> None:
    assert lines[:4] == [
        "worker: took task index-docs (epoch 1) and claim index-docs (epoch 1)",
        "worker: went silent",
        f"watchdog: woken by {woken_by}",
        "watchdog: re-offered task index-docs (now ready) and claim index-docs",
    ], lines
    assert [x for x in lines[4:] if "task update" not in x] == WATCHDOG_TAIL, lines
    [update] = [x for x in lines if "task update" in x]
    assert update.startswith("worker (late): task update index-docs done refused (") and (
        "(fenced)" in update or "(forbidden)" in update
    ), update


def test_watchdog_offline() -> None:
    """Without CEL `now`: the watchdog wakes when the silent worker is offline, re-offers its task and claim;
    the replacement takes them at epoch 2 and every late write of the first worker is refused."""
    check_watchdog(
        run("watchdog.py", "--smoke", "--detect", "offline"), 'agents["worker"].status == "offline"'
    )


def test_watchdog_stale(cli: Cli) -> None:
    """With CEL `now`: the watchdog waits in the hub until the worker has been silent over a second."""
    probe = cli("--name", "probe", "eval", "now")
    if probe.exit_code != 0:
        pytest.skip(f"this hub has no CEL `now` yet (`synapse eval now`: {probe.output.strip()})")
    check_watchdog(run("watchdog.py", "--smoke"), 'now - agents["worker"].last_heartbeat > 1.0')


def test_staggered_send() -> None:
    """Three `synapse wait` processes per round: paced directed sends wake each by its own message; one
    `all` send wakes each (with --wake-jitter) by that message. The times are printed, never asserted."""
    lines = run("staggered_send.py", "--smoke")
    directed = [
        re.fullmatch(r"directed: (r\d) woken by #(\d+) \(its own\) at \+\d+\.\d\d s", x) for x in lines[:3]
    ]
    assert [(m[1], m[2]) for m in directed if m] == [("r1", "1"), ("r2", "2"), ("r3", "3")], lines
    assert lines[3].startswith("directed: wakes spread over ")
    broadcast = [
        re.fullmatch(r"broadcast: (r\d) woken by #(\d+) \(all\) at \+\d+\.\d\d s", x) for x in lines[4:7]
    ]
    assert [(m[1], m[2]) for m in broadcast if m] == [("r1", "4"), ("r2", "4"), ("r3", "4")], lines
    assert lines[7].startswith("broadcast with --wake-jitter 0.5: wakes spread over ")
    assert lines[-1] == "3 receivers, each woken exactly once per round, by the message meant for it"
