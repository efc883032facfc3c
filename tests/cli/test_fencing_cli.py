"""`--fence WORK=EPOCH` on the CLI's writes, and the epoch `claim` / `task claim` print (CLI.md "Fencing")."""

from __future__ import annotations

import json
from typing import Any

import pytest


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.startswith(("{", "[")) else result.stdout


def test_claim_and_task_claim_print_the_epoch(cli: Any) -> None:
    """`claim` prints `epoch=N` (--json "epoch"); re-claiming one's own work keeps it and says so; `task claim`
    prints the task's epoch too."""
    text = ok(cli("claim", "api", "-p", "src/api", "--name", "alice"))
    assert "epoch=1" in text and "already held" not in text
    again = ok(cli("--json", "claim", "api", "-p", "src/api", "--name", "alice"))
    assert (again["epoch"], again["already_held"]) == (1, True)
    assert "already held by you" in ok(cli("claim", "api", "-p", "src/api", "--name", "alice"))
    ok(cli("release", "api", "--name", "alice"))
    assert ok(cli("--json", "claim", "api", "-p", "src/api", "--name", "bob"))["epoch"] == 2

    ok(cli("task", "declare", "T-1", "--title", "first", "--name", "alice"))
    assert "epoch=1" in ok(cli("task", "claim", "T-1", "--name", "alice"))
    ok(cli("task", "declare", "T-2", "--title", "second", "--name", "alice"))
    assert ok(cli("--json", "task", "claim", "T-2", "--name", "bob"))["epoch"] == 1


WRITES = [
    ("state set", ["state", "set", "k", "2"]),
    ("state init", ["state", "init", "fresh", "1"]),
    ("state cas", ["state", "cas", "k", "1", "2"]),
    ("state delete", ["state", "delete", "k"]),
    ("state batch", ["state", "batch", "k=2", "j=3"]),
    ("send", ["send", "--allow-unknown", "--target", "bob", "hello"]),
    ("task update", ["task", "update", "T", "--note", "done-ish"]),
    ("release", ["release", "w"]),
    ("handoff", ["handoff", "w", "--to", "bob"]),
]


@pytest.mark.parametrize(("what", "argv"), WRITES, ids=[w for w, _ in WRITES])
def test_a_stale_fence_is_refused_with_exit_1(cli: Any, what: str, argv: list[str]) -> None:
    """Alice's claim was handed to Bob (a new epoch): her write fenced on the old epoch exits 1 with `fenced`
    (the JSON error names the work, her epoch and the current holder) and changes nothing."""
    ok(cli("join", "bob"))
    ok(cli("state", "set", "k", "1", "--name", "alice"))
    ok(cli("task", "declare", "T", "--title", "t", "--name", "alice"))
    task = ok(cli("--json", "task", "claim", "T", "--name", "alice"))
    epoch = ok(cli("--json", "claim", "w", "-p", "src/w", "--name", "alice"))["epoch"]
    fresh = ok(cli("--json", "claim", "other", "-p", "docs", "--name", "alice"))["epoch"]
    ok(cli("handoff", "w", "--to", "bob", "--name", "alice", "--fence", f"w={epoch}"))
    ok(cli("claim", "w", "-p", "src/w", "--renew", "--name", "bob"))
    before = [cli("--json", *cmd).stdout for cmd in (["state", "list"], ["claims"], ["message", "list"])]

    stale = cli("--json", *argv, "--name", "alice", "--fence", f"w={epoch}", "--fence", f"other={fresh}")
    assert stale.exit_code == 1, stale.output
    err = json.loads(stale.stderr)["error"]
    assert (err["code"], err["work"], err["epoch"]) == ("fenced", "w", epoch)
    assert err["current"] == {"holder": "bob", "epoch": epoch + 1}
    after = [cli("--json", *cmd).stdout for cmd in (["state", "list"], ["claims"], ["message", "list"])]
    assert after == before

    text = cli(*argv, "--name", "alice", "--fence", f"task:T={task['epoch']}", "--fence", f"w={epoch}")
    assert text.exit_code == 1 and text.stderr.startswith("fenced: "), text.output


@pytest.mark.parametrize(("what", "argv"), WRITES, ids=[w for w, _ in WRITES])
def test_a_current_fence_lets_the_write_through(cli: Any, what: str, argv: list[str]) -> None:
    """The same writes land while the writer holds every fenced claim (a task as `task:ID`) at its epoch."""
    ok(cli("join", "bob"))
    ok(cli("state", "set", "k", "1", "--name", "alice"))
    ok(cli("task", "declare", "T", "--title", "t", "--name", "alice"))
    task = ok(cli("--json", "task", "claim", "T", "--name", "alice"))["epoch"]
    work = ok(cli("--json", "claim", "w", "-p", "src/w", "--name", "alice"))["epoch"]
    ok(cli(*argv, "--name", "alice", "--fence", f"w={work}", "--fence", f"task:T={task}"))


@pytest.mark.parametrize("bad", ["w", "w=", "=3", "w=x", "w=0", "w=-1"])
def test_a_malformed_fence_is_a_usage_error(cli: Any, bad: str) -> None:
    """`--fence` takes WORK=EPOCH with a whole EPOCH from 1: anything else exits 2 before reaching the hub."""
    r = cli("state", "set", "k", "1", "--name", "alice", "--fence", bad)
    assert r.exit_code == 2 and "--fence" in r.output, r.output


def test_one_work_fenced_at_two_epochs_is_a_usage_error(cli: Any) -> None:
    """Two different epochs for one work cannot both hold: exit 2."""
    r = cli(
        "send",
        "--allow-unknown",
        "--target",
        "all",
        "x",
        "--name",
        "alice",
        "--fence",
        "w=1",
        "--fence",
        "w=2",
    )
    assert r.exit_code == 2 and "two epochs" in r.output, r.output
