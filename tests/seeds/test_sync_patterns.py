"""The sync seed's coordination patterns end to end on a real hub, with several agent processes (the CLI in
bash loops) or concurrent SDK agents: turn-based game, fan-out/fan-in, consensus voting, pipeline, watchdog."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import Agent, Code, HubError, SyncAgent
from tests.conftest import seconds

# Every script gets `synapse` as a shell function running this interpreter's `python -m hub`.
PRELUDE = f"""set -euo pipefail
synapse() {{ "{sys.executable}" -m hub "$@"; }}
"""


class Agents:
    """Agent processes: bash scripts calling the CLI against one hub, reaped at the end."""

    def __init__(self, url: str, env: dict[str, str], folder: Path) -> None:
        self.url = url
        self.env = {**env, "SYNAPSE_HUB": url}
        self.folder = folder
        self.procs: list[subprocess.Popen[str]] = []

    def script(self, name: str, body: str) -> Path:
        path = self.folder / f"{name}.sh"
        path.write_text(PRELUDE + body)
        return path

    def start(self, script: Path, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["bash", str(script), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One `synapse` command, to completion."""
        return subprocess.run(
            [sys.executable, "-m", "hub", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=seconds(30_000),
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=seconds(10_000))


def finish(proc: subprocess.Popen[str], within_ms: float = 60_000) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=seconds(within_ms))
    return proc.returncode, out, err


def poll(check: Callable[[], Any], within_ms: float = 15_000, what: str = "condition") -> Any:
    deadline = time.monotonic() + seconds(within_ms)
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def agents(
    hub: Any, client_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Agents]:
    monkeypatch.setenv("XDG_CONFIG_HOME", client_env["XDG_CONFIG_HOME"])
    a = Agents(hub.url, client_env, tmp_path)
    try:
        yield a
    finally:
        a.close()


def join(url: str, *names: str) -> None:
    """Join names one after another (their tokens saved for the CLI processes)."""
    for name in names:
        with SyncAgent(name, hub=url) as agent:
            agent.join()


def waiting(url: str, name: str, expr: str | None = None) -> Callable[[], bool]:
    """A check: the hub shows `name` waiting (on `expr`, when given)."""

    def check() -> bool:
        with SyncAgent(hub=url) as reader:
            me = next(a for a in reader.agents() if a["name"] == name)
        return me["status"] == "waiting" and (expr is None or me["waiting_on"] == expr)

    return check


# --------------------------------------------------------------------------- turn-based game

PLAYER = """
me=$1; other=$2; moves=$3; board_version=$4   # the board's version before my first move
for k in $(seq 0 $((moves - 1))); do
    synapse wait --name "$me" --condition "state._shared.currentPlayer == \\"$me\\"" --timeout 30 > /dev/null
    # act: CAS on the board version I expect (a missed or doubled turn would be a conflict), gated on my turn
    synapse --name "$me" state set board "$me:$k" --if "state._shared.currentPlayer == \\"$me\\"" \\
        --if-version "$board_version" > /dev/null
    # advance the turn atomically
    synapse --name "$me" state batch "currentPlayer=$other" --increment turn=1 > /dev/null
    echo "$me moved $k at board version $board_version"
    board_version=$((board_version + 2))
done
"""


def test_turn_based_game(agents: Agents, hub: Any) -> None:
    """White and black (two processes) alternate 10 turns with wait --condition, a gated CAS and a batch
    increment; every CAS lands on the version it expects, so no turn is missed or played twice."""
    join(hub.url, "setup", "white", "black")
    agents.run(
        "--name", "setup", "state", "batch", "phase=playing", "currentPlayer=white", "turn=0", "board=initial"
    )
    script = agents.script("player", PLAYER)
    black = agents.start(script, "black", "white", "5", "2")
    white = agents.start(script, "white", "black", "5", "1")
    results = [finish(white), finish(black)]
    for code, _out, err in results:
        assert code == 0, err
    assert results[0][1].splitlines() == [f"white moved {k} at board version {1 + 2 * k}" for k in range(5)]
    assert results[1][1].splitlines() == [f"black moved {k} at board version {2 + 2 * k}" for k in range(5)]
    with SyncAgent(hub=hub.url) as reader:
        assert reader.state.get("turn")["value"] == 10
        board = reader.state.get("board")
        assert (board["value"], board["version"], board["by"]) == ("black:4", 11, "black")
        assert reader.state.get("currentPlayer")["value"] == "white"
        assert reader.state.get("turn")["version"] == 11


# --------------------------------------------------------------------------- fan-out / fan-in


async def test_fan_out_fan_in(hub: Any) -> None:
    """A coordinator posts 12 tasks; 4 concurrent workers race to claim them (each claimed once), reply with
    results and increment tasks_done; the coordinator's wait for tasks_done == tasks_total wakes."""
    n = 12
    async with Agent("coordinator", hub=hub.url) as coord:
        await coord.state.batch([{"key": "tasks_total", "value": n}, {"key": "tasks_done", "value": 0}])
        for i in range(n):
            await coord.send("default/*", f"analyze document {i}", kind="task", allow_unknown=True)
        done = asyncio.ensure_future(
            coord.wait_for("state._shared.tasks_done == state._shared.tasks_total", timeout=seconds(30_000))
        )

        async def worker(name: str) -> list[int]:
            mine: list[int] = []
            async with Agent(name, hub=hub.url) as w:
                while True:
                    tasks = await w.list_messages(kind="task", unclaimed=True)
                    if not tasks:
                        return mine
                    for m in tasks:
                        try:
                            await w.claim_message(m["seq"])
                        except HubError as exc:
                            assert exc.code == Code.ALREADY_CLAIMED and exc.detail["holder"] != name
                            continue  # lost the race: next task
                        mine.append(m["seq"])
                        await w.send(
                            "coordinator",
                            f"done: {m['body']}",
                            kind="result",
                            reply_to=m["seq"],
                            allow_unknown=True,
                        )
                        await w.state.increment("tasks_done")

        claimed = await asyncio.gather(*(worker(f"worker-{i}") for i in range(4)))
        assert await done is True
        every = sorted(seq for mine in claimed for seq in mine)
        assert every == list(range(1, n + 1)), claimed
        results = await coord.list_messages(kind="result")
        assert sorted(m["reply_to"] for m in results) == every
        assert await coord.eval("messages.unclaimed") == n  # the results; every task is claimed
        assert (await coord.state.get("tasks_done"))["version"] == n + 1


# --------------------------------------------------------------------------- consensus / voting

DECIDER = """
me=$1
synapse wait --name "$me" --condition 'state._view.quorum_met == true' --timeout 30 > /dev/null
synapse --name "$me" state batch phase=decided outcome=approved "decided_by=$me" \\
    --if 'state._shared.phase == "voting" && state._view.quorum_met == true'
"""


def test_consensus_voting(agents: Agents, hub: Any) -> None:
    """Voters increment (no conflicts); a `_view` says when quorum is met; three deciders wake together and
    race a gated batch: exactly one passes, the others get precondition_failed."""
    deciders = ("d1", "d2", "d3")
    join(hub.url, "setup", *deciders, "v1", "v2", "v3")
    agents.run(
        "--name", "setup", "state", "batch", "phase=voting", "votes_for=0", "votes_against=0", "quorum=3"
    )
    expr = "state._shared.votes_for + state._shared.votes_against >= state._shared.quorum"
    assert agents.run("--name", "setup", "state", "view", "quorum_met", expr).returncode == 0
    script = agents.script("decider", DECIDER)
    procs = [agents.start(script, d) for d in deciders]
    for d in deciders:
        poll(waiting(hub.url, d, "state._view.quorum_met == true"), what=f"{d} waiting")
    votes = [("v1", "votes_for"), ("v2", "votes_against"), ("v3", "votes_for")]
    voters = [
        subprocess.Popen(
            [sys.executable, "-m", "hub", "--name", v, "state", "set", key, "1", "--increment"],
            env=agents.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v, key in votes
    ]
    for v in voters:
        assert finish(v)[0] == 0
    results = {d: finish(p) for d, p in zip(deciders, procs, strict=True)}
    winners = [d for d, (code, _, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    for d, (code, _, err) in results.items():
        if d not in winners:
            assert code == 1 and err.startswith("precondition_failed:"), err
    with SyncAgent(hub=hub.url) as reader:
        assert reader.eval("state._view.quorum_met") is True
        assert reader.state.get("phase")["value"] == "decided"
        assert reader.state.get("decided_by")["value"] == winners[0]
        assert reader.state.get("phase")["version"] == 2  # set once by setup, once by the one winner
        assert reader.state.get("votes_for")["value"] == 2


# --------------------------------------------------------------------------- pipeline


async def test_pipeline_with_gated_handoffs(hub: Any) -> None:
    """Ingestion → processing → output, each stage waiting for its turn and handing off behind a gate; a
    late duplicate handoff is refused, so a stage never runs twice."""
    async with Agent("setup", hub=hub.url) as setup:
        await setup.state.batch(
            [{"key": "pipeline_stage", "value": "ingestion"}, {"key": "data", "value": ""}]
        )
    ran: list[str] = []

    async def stage(name: str, mine: str, nxt: str | None, work: Callable[[str], str]) -> None:
        async with Agent(name, hub=hub.url) as agent:
            await agent.wait_for(f'state._shared.pipeline_stage == "{mine}"', timeout=seconds(30_000))
            data = (await agent.state.get("data"))["value"]
            ran.append(mine)
            await agent.state.set("data", work(data))
            if nxt is not None:
                gate = f'state._shared.pipeline_stage == "{mine}"'
                await agent.state.set("pipeline_stage", nxt, if_=gate)
                with pytest.raises(HubError) as info:  # a second handoff (a retry, a duplicate) is refused
                    await agent.state.set("pipeline_stage", nxt, if_=gate)
                assert info.value.code == Code.PRECONDITION_FAILED

    await asyncio.gather(
        stage("output", "output", None, lambda d: d + " | output"),
        stage("processor", "processing", "output", lambda d: d + " | processed"),
        stage("ingest", "ingestion", "processing", lambda d: "raw data collected"),
    )
    assert ran == ["ingestion", "processing", "output"]
    with SyncAgent(hub=hub.url) as reader:
        assert reader.state.get("data")["value"] == "raw data collected | processed | output"
        assert reader.state.get("pipeline_stage")["value"] == "output"


# --------------------------------------------------------------------------- watchdog / materializer


def test_watchdog_eval_and_materializer(agents: Agents, hub: Any) -> None:
    """The watchdog reads a worker's status with `eval`, and a `wait --condition` on it wakes when the
    worker starts waiting; the materializer's view stays current with the scores it reads."""
    join(hub.url, "worker-1", "watchdog", "alice", "bob")
    out = agents.run("eval", 'agents["worker-1"].status')
    assert (out.returncode, out.stdout) == (0, '"active"\n')
    watch = agents.start(
        agents.script(
            "watch",
            """synapse wait --json --name watchdog --condition 'agents["worker-1"].status == "waiting"' --timeout 30""",
        )
    )
    poll(waiting(hub.url, "watchdog"), what="the watchdog armed")
    worker = agents.start(
        agents.script(
            "work",
            "synapse wait --name worker-1 --condition 'state._shared.needs_recompute == true' --timeout 30",
        )
    )
    code, out_, err = finish(watch)
    assert code == 0, err
    assert json.loads(out_)["woken_by"] == "condition"
    out = agents.run("--json", "eval", '[agents["worker-1"].status, agents["worker-1"].waiting_on]')
    assert json.loads(out.stdout) == ["waiting", "state._shared.needs_recompute == true"]

    scoreboard = '"Alice: " + string(state.alice.score) + " | Bob: " + string(state.bob.score)'
    agents.run("--name", "alice", "state", "set", "score", "1", "--scope", "alice")
    agents.run("--name", "bob", "state", "set", "score", "2", "--scope", "bob")
    assert agents.run("--name", "alice", "state", "view", "scoreboard", scoreboard).returncode == 0
    agents.run("--name", "bob", "state", "set", "score", "5", "--scope", "bob", "--increment")
    out = agents.run("state", "get", "scoreboard", "--scope", "_view", "--raw")
    assert out.stdout == "Alice: 1 | Bob: 7\n"
    agents.run("--name", "alice", "state", "set", "needs_recompute", "true")
    assert finish(worker)[0] == 0
    assert json.loads(agents.run("--json", "eval", 'agents["worker-1"].status').stdout) == "active"


# --------------------------------------------------------------------------- bad CEL


async def test_bad_cel_is_refused_and_the_hub_keeps_serving(hub: Any) -> None:
    """Bad CEL at subscribe, wait, gate, view and eval time is bad_expression; the same connection and the
    hub keep working, and nothing was written."""
    async with Agent("alice", hub=hub.url) as alice:
        await alice.state.set("x", 1)
        bad = ["state._shared.x ==", "state.(x", "unknown_root.x", "size(", "1 +* 2", "x" * 5000]
        for expr in bad:
            with pytest.raises(HubError) as info:
                await anext(alice.subscribe(expr))
            assert info.value.code == Code.BAD_EXPRESSION, expr
            for call in (
                alice.state.set("y", 1, if_=expr),
                alice.state.view("v", expr),
                alice.eval(expr),
                alice.state.batch([{"key": "y", "value": 1}], if_=expr),
            ):
                with pytest.raises(HubError) as info:
                    await call
                assert info.value.code == Code.BAD_EXPRESSION, expr
        with SyncAgent("other", hub=hub.url, save_token=False) as other:
            with pytest.raises(HubError) as info:
                other.arm("w", None, condition="state._shared.x ==")
            assert info.value.code == Code.BAD_EXPRESSION
        assert await alice.eval("state._shared.x + 1") == 2
        assert [e["key"] for e in await alice.state.list()] == ["x"]
        assert await alice.wait_for("state._shared.x == 1", timeout=seconds(10_000)) is True
