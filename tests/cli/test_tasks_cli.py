"""`synapse task ...`, `synapse supervisor` and `synapse board` against a real hub: the SYNAPSE and Orkestra flows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from agent_sdk import SyncAgent
from tests.conftest import ROOT, ThreadHub, seconds


def poll(check: Callable[[], Any], within_ms: float = 15_000, what: str = "condition") -> Any:
    """Ask the hub (through `check`) until it answers truthy, or fail after `within_ms` (scaled)."""
    deadline = time.monotonic() + seconds(within_ms)
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def show(cli: Any, task: str) -> dict[str, Any]:
    r = cli("--json", "task", "show", task)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_synapse_flow_depends_on(cli: Any) -> None:
    """The seed's step 4: ship-api depends on edit-api; `update edit-api --status done` makes ship-api ready."""
    r = cli("task", "declare", "edit-api", "--title", "Edit the API", "--name", "api-dev")
    assert r.exit_code == 0, r.output
    assert r.stdout.split()[:2] == ["ready", "edit-api"]
    r = cli(
        "task", "declare", "ship-api", "--title", "Implement + test the API", "--depends-on", "edit-api",
        "--name", "api-dev",
    )  # fmt: skip
    assert r.stdout.split()[:2] == ["pending", "ship-api"] and r.stdout.rstrip().endswith("after edit-api")
    r = cli("--json", "task", "claim", "ship-api", "--name", "test-dev")
    assert r.exit_code == 1
    err = json.loads(r.stderr)["error"]
    assert (err["code"], err["open_dependencies"]) == ("not_ready", ["edit-api"])
    r = cli("task", "update", "edit-api", "--status", "done", "--name", "api-dev")
    assert r.exit_code == 0 and r.stdout.split()[:3] == ["done", "edit-api", "etag=2"]  # the task, new etag
    assert show(cli, "ship-api")["status"] == "ready"
    ready = [json.loads(line)["id"] for line in cli("--json", "task", "list", "--ready").stdout.splitlines()]
    assert ready == ["ship-api"]


def test_core_loop_with_etags(cli: Any) -> None:
    """claim prints the task with its etag; `update --etag` with a stale etag exits 1 `conflict` with the current."""
    cli("task", "declare", "app-003", "--title", "Fix login", "--name", "lead")
    t = json.loads(cli("--json", "task", "claim", "app-003", "--name", "a").stdout)
    assert (t["status"], t["holder"]) == ("in_progress", "a")
    r = cli("task", "claim", "app-003", "--name", "b")
    assert r.exit_code == 1 and r.stderr.startswith("conflict: ") and "by a" in r.stderr
    r = cli("task", "update", "app-003", "--status", "done", "--etag", str(t["etag"]), "--name", "a")
    assert r.exit_code == 0 and f"etag={t['etag'] + 1}" in r.stdout.split()
    r = cli(
        "--json", "task", "update", "app-003", "--status", "blocked", "--etag", str(t["etag"]), "--name", "b"
    )
    assert r.exit_code == 1
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "conflict" and err["current"]["etag"] == t["etag"] + 1
    fresh = show(cli, "app-003")["etag"]
    r = cli(
        "task",
        "update",
        "app-003",
        "--status",
        "blocked",
        "--etag",
        str(fresh),
        "--note",
        "regressed",
        "--name",
        "b",
    )
    assert r.exit_code == 0, r.output
    text = cli("task", "show", "app-003").stdout
    assert text.startswith("blocked     app-003 @a") and "note (b): regressed" in text


def test_seq_pipeline_and_epic(cli: Any) -> None:
    """A seq pipeline refuses step 2 with `seq_blocked` naming step 1; an --epic is done once its children are."""
    cli("task", "declare", "deploy", "--title", "Deploy", "--mode", "seq", "--name", "ops")
    for order, step in enumerate(("tests", "image", "push"), start=1):
        cli(
            "task",
            "declare",
            step,
            "--title",
            step,
            "--parent",
            "deploy",
            "--order",
            str(order),
            "--name",
            "ops",
        )
    r = cli("--json", "task", "claim", "image", "--name", "ops")
    assert r.exit_code == 1
    err = json.loads(r.stderr)["error"]
    assert (err["code"], err["blocked_by"]) == ("seq_blocked", ["tests"])
    assert "  blocked by: tests" in cli("task", "show", "image").stdout
    listed = {
        t["id"]: t["status"] for t in map(json.loads, cli("--json", "task", "list").stdout.splitlines())
    }
    assert (listed["tests"], listed["image"], listed["push"]) == ("ready", "seq_blocked", "seq_blocked")
    blocked = [
        json.loads(x)["id"] for x in cli("--json", "task", "list", "--status", "seq_blocked").stdout.split()
    ]
    assert blocked == ["image", "push"]
    ready = [
        json.loads(x)["id"] for x in cli("--json", "task", "list", "--status", "ready").stdout.splitlines()
    ]
    assert "image" not in ready and "tests" in ready
    cli("task", "declare", "auth", "--title", "Auth", "--epic", "--name", "lead")
    for child in ("jwt", "oauth"):
        cli("task", "declare", child, "--title", child, "--parent", "auth", "--name", "lead")
        assert cli("task", "claim", child, "--name", f"dev-{child}").exit_code == 0
        cli("task", "update", child, "--status", "done", "--name", f"dev-{child}")
    epic = show(cli, "auth")
    assert epic["status"] == "done" and epic["kind"] == "epic"
    assert [c["id"] for c in epic["children"]] == ["jwt", "oauth"]


def test_cycle_is_refused_naming_it(cli: Any) -> None:
    """A dependency cycle is `bad_request` (exit 1) naming the cycle."""
    cli("task", "declare", "a", "--title", "a", "--depends-on", "b", "--name", "lead")
    r = cli("task", "declare", "b", "--title", "b", "--depends-on", "a", "--name", "lead")
    assert r.exit_code == 1 and r.stderr.startswith("bad_request: ") and "b → a → b" in r.stderr


def test_task_list_text_and_empty(cli: Any) -> None:
    """`task list` prints ready work first; an empty plan says `no tasks` on stderr."""
    r = cli("task", "list")
    assert r.stdout == "" and r.stderr.strip() == "no tasks"
    cli("task", "declare", "later", "--title", "later", "--depends-on", "first", "--name", "lead")
    cli("task", "declare", "first", "--title", "first", "--name", "lead")
    assert [line.split()[:2] for line in cli("task", "list").stdout.splitlines()] == [
        ["ready", "first"],
        ["pending", "later"],
    ]


def test_board_shows_plan_claims_and_intents(cli: Any) -> None:
    """`board` shows the plan (ready first), live claims and intents, as text and as one JSON document."""
    cli("task", "declare", "auth", "--title", "Auth system", "--epic", "--name", "lead")
    cli("task", "declare", "jwt", "--title", "JWT middleware", "--parent", "auth", "--name", "lead")
    cli("task", "claim", "jwt", "--name", "alice")
    cli("claim", "jwt", "--paths", "src/auth/jwt.py", "--name", "alice")
    cli("board", "intent", "--paths", "src/auth/", "--note", "session store", "--name", "bob")
    text = cli("board").stdout.splitlines()
    assert text[0] == "PLAN (ready first)"
    assert text[1].split()[:3] == ["ready", "auth", "[epic]"]
    assert text[2].split()[:3] == ["in_progress", "jwt", "@alice"]
    assert text[3] == "CLAIMS" and text[4].split()[:2] == ["jwt", "alice"]
    assert text[5] == "INTENTS" and text[6].split()[:2] == ["bob", "src/auth"]
    assert text[7].strip() == "! overlaps claim jwt by alice on src/auth/jwt.py"
    doc = json.loads(cli("--json", "board").stdout)
    assert [t["id"] for t in doc["plan"]] == ["auth", "jwt"]
    assert doc["claims"][0]["work"] == "jwt" and doc["intents"][0]["agent"] == "bob"


WORKER = """
import asyncio, sys
from agent_sdk import Agent

async def main() -> None:
    async with Agent(sys.argv[2], hub=sys.argv[1], save_token=False) as agent:
        await agent.tasks.claim("build")
        await agent.claim("build", paths=["src/build/"])
        print("working", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_supervisor_reoffers_the_task_of_a_killed_worker(
    cli: Any, hub: ThreadHub, client_env: dict[str, str]
) -> None:
    """A worker holding a task is SIGKILLed; once it has been quiet for N seconds, `supervisor --once`
    re-offers its task (ready, no holder, a note), says so in the feed, and another agent can claim it."""
    cli("task", "declare", "build", "--title", "Build the image", "--name", "lead")
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, hub.url, "worker-1"],
        stdout=subprocess.PIPE,
        env=client_env,
        cwd=ROOT,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "working"
        r = cli("--json", "supervisor", "--idle-seconds", "1", "--once")
        assert r.exit_code == 0 and r.stdout == ""  # the worker is alive: nothing to re-offer
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def sweep() -> list[dict[str, Any]]:
        r = cli("--json", "supervisor", "--idle-seconds", "1", "--once")
        assert r.exit_code == 0, r.output
        return [json.loads(line) for line in r.stdout.splitlines()]

    report = poll(lambda: [x for x in sweep() if "reoffered" in x], what="the supervisor to re-offer `build`")
    assert report[0]["reoffered"] == "build" and report[0]["holder"] == "worker-1"
    t = show(cli, "build")
    assert (t["status"], t["holder"]) == ("ready", None)
    assert t["notes"][-1]["note"].startswith("re-offered by supervisor: worker-1 idle")
    with SyncAgent(hub=hub.url) as reader:
        said = reader.list_messages(kind="supervisor")
    assert said[0]["from"] == "supervisor" and said[0]["body"]["task"] == "build"
    assert (
        json.loads(cli("--json", "task", "claim", "build", "--name", "worker-2").stdout)["holder"]
        == "worker-2"
    )


def test_supervisor_releases_the_claim_of_a_quiet_holder(cli: Any) -> None:
    """A CLI agent's claim whose holder went quiet is released by `supervisor --once`; the checkpoint stays
    for the next claimer, and the feed says so."""
    assert (
        cli(
            "claim", "edit-api", "--paths", "src/api/", "--checkpoint", "routes done", "--name", "idler"
        ).exit_code
        == 0
    )

    def sweep() -> list[dict[str, Any]]:
        r = cli("--json", "supervisor", "--idle-seconds", "1", "--once")
        assert r.exit_code == 0, r.output
        return [json.loads(line) for line in r.stdout.splitlines()]

    report = poll(lambda: [x for x in sweep() if "reoffered_claim" in x], what="the claim to be re-offered")
    assert report[0]["reoffered_claim"] == "edit-api" and report[0]["holder"] == "idler"
    got = json.loads(cli("--json", "claim", "edit-api", "--paths", "src/api/", "--name", "next").stdout)
    assert got["holder"] == "next" and got["checkpoint"] == "routes done"
