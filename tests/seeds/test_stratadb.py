"""StrataDB's multi-agent recipes on the hub through the CLI, as racing agent processes: a `state init` + CAS
claim loop, per-agent branches aggregated side by side, and leader election by `state cas leader none NAME`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import SyncAgent
from tests.conftest import seconds

PRELUDE = f"""set -euo pipefail
synapse() {{ "{sys.executable}" -m hub "$@"; }}
"""

# Pattern 1 as the recipe writes it (`kv put` is `state set`), claiming `rounds` tasks instead of one.
CLAIMER = """
AGENT_ID="$1"; rounds="$2"
synapse --name "$AGENT_ID" state init task:next 0 > /dev/null 2>&1 || true   # idempotent
for r in $(seq 1 "$rounds"); do
    while true; do
        # one read for value and version (the recipe reads them with two commands: another agent's CAS in
        # between pairs a stale value with a fresh version, and two agents claim the same task)
        entry=$(synapse --json state get task:next)
        current=$(echo "$entry" | sed -E 's/.*"value":([0-9]+).*/\\1/')
        version=$(echo "$entry" | sed -E 's/.*"version":([0-9]+).*/\\1/')
        next=$((current + 1))
        if synapse --name "$AGENT_ID" state cas task:next "$version" "$next" 2>/dev/null > /dev/null; then
            echo "Agent $AGENT_ID claimed task $current"
            synapse --name "$AGENT_ID" state set "task:${current}:owner" "$AGENT_ID" > /dev/null
            synapse --name "$AGENT_ID" state set "task:${current}:status" in_progress > /dev/null
            break
        fi
        echo "CAS failed, retrying..." >&2
    done
done
"""

# Pattern 2: each agent forks its own branch and writes there.
BRANCHER = """
i="$1"
synapse --name "agent-$i" branch create "agent-$i" > /dev/null
synapse --name "agent-$i" state --branch "agent-$i" set result "Agent $i result" > /dev/null
synapse --name "agent-$i" state set status done --branch "agent-$i" > /dev/null
"""

# Pattern 3.
ELECTION = """
AGENT_ID="$1"
if synapse --name "$AGENT_ID" state cas leader none "$AGENT_ID" 2>/dev/null > /dev/null; then
    echo "$AGENT_ID is now the leader"
else
    current=$(synapse state get leader --raw)
    echo "$AGENT_ID is not the leader (current: $current)"
fi
"""


class Shell:
    """Bash agent scripts against one hub, sharing one token file."""

    def __init__(self, url: str, env: dict[str, str], folder: Path) -> None:
        self.env = {**env, "SYNAPSE_HUB": url}
        self.folder = folder
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str, body: str, *args: str) -> subprocess.Popen[str]:
        path = self.folder / f"{name}.sh"
        path.write_text(PRELUDE + body)
        proc = subprocess.Popen(
            ["bash", str(path), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=seconds(10_000))


@pytest.fixture
def shell(
    hub: Any, client_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Shell]:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    s = Shell(hub.url, client_env, tmp_path)
    try:
        yield s
    finally:
        s.close()


def finish(proc: subprocess.Popen[str], within_ms: float = 60_000) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=seconds(within_ms))
    return proc.returncode, out, err


def join(url: str, *names: str) -> None:
    for name in names:
        with SyncAgent(name, hub=url) as agent:
            agent.join()


def test_cas_claim_loop_gives_distinct_numbers(shell: Shell, hub: Any) -> None:
    """Four racing agents each claim a task with init + get + CAS retries: 0..3, each exactly once."""
    names = [f"a{i}" for i in range(4)]
    join(hub.url, *names)
    procs = {n: shell.start(f"claim-{n}", CLAIMER, n, "1") for n in names}
    claimed: dict[int, str] = {}
    for name, proc in procs.items():
        code, out, err = finish(proc)
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 1 and all(x.startswith(f"Agent {name} claimed task ") for x in lines), out
        for x in lines:
            number = int(x.rsplit(" ", 1)[1])
            assert number not in claimed, f"task {number} claimed by {claimed.get(number)} and {name}"
            claimed[number] = name
    assert sorted(claimed) == list(range(4))
    with SyncAgent(hub=hub.url) as reader:
        nxt = reader.state.get("task:next")
        assert (nxt["value"], nxt["version"]) == (4, 5)
        for number, name in claimed.items():
            owner = reader.state.get(f"task:{number}:owner")
            assert (owner["value"], owner["version"], owner["by"]) == (name, 1, name)
            assert reader.state.get(f"task:{number}:status")["value"] == "in_progress"


def test_per_agent_branches_are_aggregated(shell: Shell, hub: Any) -> None:
    """Three agents fork a branch each and write in isolation; the results are read side by side, the main
    line is untouched, and a diff shows each branch's own changes."""
    join(hub.url, "agent-0", "agent-1", "agent-2")
    with SyncAgent("agent-0", hub=hub.url) as a0:
        a0.state.set("status", "planning")
    procs = [shell.start(f"branch-{i}", BRANCHER, str(i)) for i in range(3)]
    for proc in procs:
        code, _, err = finish(proc)
        assert code == 0, err
    env = shell.env
    for i in range(3):
        out = subprocess.run(
            [sys.executable, "-m", "hub", "state", "--branch", f"agent-{i}", "get", "result", "--raw"],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds(30_000),
        )
        assert (out.returncode, out.stdout) == (0, f"Agent {i} result\n"), out.stderr
    with SyncAgent(hub=hub.url) as reader:
        assert reader.state.get("status")["value"] == "planning"
        assert [e["key"] for e in reader.state.list()] == ["status"]
        for i in range(3):
            view = reader.state_at(f"agent-{i}")
            assert {e["key"]: e["value"] for e in view.list()} == {
                "status": "done",
                "result": f"Agent {i} result",
            }
            diff = reader.state.branch_diff(f"agent-{i}")
            assert [(c["key"], c["source"]) for c in diff["changes"]] == [
                ("result", None),
                ("status", "planning"),
            ]
        assert [b["branch"] for b in reader.state.branches()] == ["agent-0", "agent-1", "agent-2"]


def test_leader_election_has_exactly_one_winner(shell: Shell, hub: Any) -> None:
    """Five processes race `state cas leader none NAME`: exactly one is leader, the rest name it."""
    names = [f"node-{i}" for i in range(5)]
    join(hub.url, *names)
    procs = {n: shell.start(f"elect-{n}", ELECTION, n) for n in names}
    outs = {}
    for name, proc in procs.items():
        code, out, err = finish(proc)
        assert code == 0, err
        outs[name] = out.strip()
    leaders = [n for n, line in outs.items() if line == f"{n} is now the leader"]
    assert len(leaders) == 1, outs
    for name, line in outs.items():
        if name != leaders[0]:
            assert line == f"{name} is not the leader (current: {leaders[0]})"
    with SyncAgent(hub=hub.url) as reader:
        leader = reader.state.get("leader")
        assert (leader["value"], leader["version"], leader["by"]) == (leaders[0], 1, leaders[0])
