"""`synapse claim|release|handoff|claims|presence|board` against a real hub: TTL vs session, checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent_sdk import SyncAgent
from tests.conftest import ROOT, ThreadHub, seconds, synapse_cmd


def poll(check: Callable[[], Any], within_ms: float = 15_000, what: str = "condition") -> Any:
    """Ask the hub (through `check`) until it answers truthy, or fail after `within_ms` (scaled)."""
    deadline = time.monotonic() + seconds(within_ms)
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def claims_of(cli: Any) -> dict[str, dict[str, Any]]:
    r = cli("--json", "claims")
    assert r.exit_code == 0, r.output
    return {v["work"]: v for v in map(json.loads, r.stdout.splitlines())}


class Presence:
    """`synapse presence --name NAME --json` as a real process; its stdout lines are kept."""

    def __init__(self, hub: ThreadHub, env: dict[str, str], name: str) -> None:
        self.proc = subprocess.Popen(
            synapse_cmd("presence", "--name", name, "--json", "--interval", "1"),
            env={**env, "SYNAPSE_HUB": hub.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        assert text, self.proc.stderr.read() if self.proc.stderr else "presence exited"
        return json.loads(text)  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def presence(hub: ThreadHub, client_env: dict[str, str]) -> Iterator[Callable[[str], Presence]]:
    started: list[Presence] = []

    def start(name: str) -> Presence:
        p = Presence(hub, client_env, name)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_claim_without_presence_is_held_by_ttl(cli: Any) -> None:
    """No live session for --name: the claim is TTL-held (default 600 s), `--ttl` sets it, `--renew` extends it."""
    before = time.time()
    r = cli("--json", "claim", "edit-api", "--paths", "src/app/api.py", "--name", "api-dev")
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)
    assert (v["holder"], v["held_by"], v["paths"]) == ("api-dev", "ttl", ["src/app/api.py"])
    assert before + 600 <= v["expires"] <= time.time() + 600
    r = cli("--json", "claim", "edit-docs", "-p", "docs/", "README.md", "--ttl", "30", "--name", "api-dev")
    assert json.loads(r.stdout)["paths"] == ["docs", "README.md"]
    first = json.loads(r.stdout)["expires"]
    r = cli("--json", "claim", "edit-docs", "--renew", "--ttl", "90", "--name", "api-dev")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["expires"] >= first + 60
    text = cli("claim", "edit-web", "--paths", "src/web", "--name", "api-dev").stdout
    assert text.startswith("edit-web  api-dev  [ttl] (expires in ") and text.rstrip().endswith("src/web")


def test_overlap_is_exit_1_naming_holder_work_and_paths(cli: Any) -> None:
    """An overlapping claim exits 1 with `claim_overlap` naming the holder, its work and the paths."""
    assert cli("claim", "api", "--paths", "src/api/", "--name", "alice").exit_code == 0
    r = cli("claim", "fix", "--paths", "src/api/user.py", "--name", "bob")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith("claim_overlap: ")
    assert "alice" in r.stderr and "'api'" in r.stderr and "src/api" in r.stderr
    r = cli("--json", "claim", "fix", "--paths", "src/api/user.py", "--name", "bob")
    err = json.loads(r.stderr)["error"]
    assert (err["code"], err["holder"], err["work"], err["paths"]) == (
        "claim_overlap",
        "alice",
        "api",
        ["src/api"],
    )


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "src/[oops"])
def test_bad_path_is_exit_1_bad_request(cli: Any, path: str) -> None:
    """A path that escapes the root, is absolute, or is a broken glob is `bad_request` (exit 1)."""
    r = cli("--json", "claim", "w", "--paths", path, "--name", "alice")
    assert r.exit_code == 1
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "bad_request" and err["path"] == path


def test_claim_needs_paths_and_a_name(cli: Any) -> None:
    """No scope or no --name is a usage error (exit 2)."""
    assert cli("claim", "w", "--name", "alice").exit_code == 2
    assert cli("claim", "w", "--paths", "a").exit_code == 2


def test_checkpoint_is_printed_to_the_next_claimer(cli: Any) -> None:
    """`release --checkpoint` leaves notes that the next `claim` of the same work prints."""
    cli("claim", "edit-api", "--paths", "src/app/api.py", "--name", "api-dev")
    r = cli("release", "edit-api", "--checkpoint", "routes done; tests next", "--name", "api-dev")
    assert r.exit_code == 0 and r.stdout.strip() == "released edit-api"
    r = cli("claim", "edit-api", "--paths", "src/app/api.py", "--name", "test-dev")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == "checkpoint: routes done; tests next"
    assert claims_of(cli)["edit-api"]["holder"] == "test-dev"


def test_release_of_someone_elses_claim_is_refused(cli: Any) -> None:
    """Releasing another agent's claim is `forbidden` (exit 5); releasing nothing is `not_found` (exit 1)."""
    cli("claim", "api", "--paths", "src/api", "--name", "alice")
    r = cli("release", "api", "--name", "bob")
    assert r.exit_code == 5 and r.stderr.startswith("forbidden: ")
    r = cli("release", "nothing", "--name", "bob")
    assert r.exit_code == 1 and r.stderr.startswith("not_found: ")


def test_handoff_moves_the_claim(cli: Any) -> None:
    """`handoff WORK --to AGENT` moves the claim with its checkpoint; an unknown agent is `not_found`."""
    cli("join", "bob")
    cli("claim", "migrate", "--paths", "db/", "--checkpoint", "v2 drafted", "--name", "alice")
    r = cli("handoff", "migrate", "--to", "ghost", "--name", "alice")
    assert r.exit_code == 1 and r.stderr.startswith("not_found: ")
    r = cli("handoff", "migrate", "--to", "bob", "--name", "alice")
    assert r.exit_code == 0 and r.stdout.strip() == "handed migrate to bob"
    v = claims_of(cli)["migrate"]
    assert (v["holder"], v["checkpoint"], v["held_by"]) == ("bob", "v2 drafted", "ttl")
    assert cli("release", "migrate", "--name", "alice").exit_code == 5


def test_claims_lists_text_and_ndjson(cli: Any) -> None:
    """`claims` prints one line per live claim (NDJSON with --json); none → `no live claims` on stderr."""
    r = cli("claims")
    assert r.stdout == "" and r.stderr.strip() == "no live claims"
    cli("claim", "b-work", "--paths", "b", "--name", "bob")
    cli("claim", "a-work", "--paths", "a", "a2", "--name", "alice")
    lines = cli("claims").stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["a-work", "alice"], ["b-work", "bob"]]
    assert lines[0].endswith("a a2")
    assert list(claims_of(cli)) == ["a-work", "b-work"]


def test_claim_with_presence_running_is_session_bound(cli: Any, presence: Callable[[str], Presence]) -> None:
    """With `synapse presence` holding a session for --name, `synapse claim` is held by that session; when the
    connector stops the claim enters its grace period."""
    cli("join", "alice")
    p = presence("alice")
    assert p.line()["presence"] == "connected"
    r = cli("--json", "claim", "edit-api", "--paths", "src/app/api.py", "--name", "alice")
    v = json.loads(r.stdout)
    assert (v["held_by"], v["expires"]) == ("session", None)
    p.stop()
    v = poll(
        lambda: claims_of(cli)["edit-api"]["held_by"] == "grace" and claims_of(cli)["edit-api"], what="grace"
    )
    assert v["expires"] > time.time()


def test_presence_prints_a_handed_claim_notice(cli: Any, presence: Callable[[str], Presence]) -> None:
    """A claim handed to an agent reaches its `synapse presence` connector as a `claim.handed` notice."""
    cli("join", "bob")
    p = presence("bob")
    assert p.line()["presence"] == "connected"
    cli("claim", "migrate", "--paths", "db/", "--name", "alice")
    assert cli("handoff", "migrate", "--to", "bob", "--name", "alice").exit_code == 0
    notice = p.line()
    assert (notice["notice"], notice["work"], notice["from"]) == ("claim.handed", "migrate", "alice")
    assert claims_of(cli)["migrate"]["held_by"] == "session"


def test_board_shows_claims_and_intents(cli: Any, hub: ThreadHub) -> None:
    """`board intent` declares advisory intent; `board` shows claims and intents with overlaps, text and JSON."""
    cli("claim", "api", "--paths", "src/api", "--name", "alice")
    r = cli("board", "intent", "--paths", "src/api/user.py", "--note", "fix the user model", "--name", "bob")
    assert r.exit_code == 0, r.output
    text = cli("board").stdout
    assert "CLAIMS" in text and "INTENTS" in text
    assert "bob  src/api/user.py  — fix the user model" in text
    assert "! overlaps claim api by alice on src/api" in text
    doc = json.loads(cli("--json", "board").stdout)
    assert [c["work"] for c in doc["claims"]] == ["api"]
    assert doc["intents"][0]["agent"] == "bob"
    assert doc["intents"][0]["overlaps"] == [{"holder": "alice", "work": "api", "paths": ["src/api"]}]
    assert cli("board", "intent", "--clear", "--name", "bob").exit_code == 0
    assert json.loads(cli("--json", "board").stdout)["intents"] == []
    with SyncAgent(hub=hub.url) as reader:
        assert reader.board()["claims"][0]["holder"] == "alice"
