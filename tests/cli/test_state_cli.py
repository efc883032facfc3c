"""`synapse state|eval|branch` and `synapse wait --condition` against a real hub: output, JSON, exit codes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from agent_sdk import SyncAgent
from tests.conftest import seconds

Cli = Any  # tests/conftest.py's Cli


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.output, result.stderr)
    return str(result.stdout)


def doc(result: Any) -> Any:
    """The one JSON document a --json command printed."""
    [line] = ok(result).splitlines()
    return json.loads(line)


def refused(result: Any, code: str, exit_code: int = 1) -> dict[str, Any]:
    """A refusal under --json: the exit code and the error document on stderr."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


def poll(check: Callable[[], Any], within_ms: float = 15_000, what: str = "condition") -> Any:
    deadline = time.monotonic() + seconds(within_ms)
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_set_get_and_raw(cli: Cli) -> None:
    """set prints the entry and version; get --json the whole entry; --raw the value only."""
    assert ok(cli("--name", "alice", "state", "set", "turn", "3")) == "_shared.turn = 3  (version 1)\n"
    got = doc(cli("state", "get", "turn", "--json"))
    assert (got["value"], got["version"], got["by"]) == (3, 1, "alice")
    assert ok(cli("state", "get", "turn", "--raw")) == "3\n"
    cli("--name", "alice", "state", "set", "word", "hello world")
    assert ok(cli("state", "get", "word", "--raw")) == "hello world\n"
    assert doc(cli("--json", "state", "get", "word", "--raw")) == "hello world"


def test_values_are_json_when_they_parse(cli: Cli) -> None:
    """`3`, `true`, `{"a":1}` and `"x"` are JSON; anything else is a string."""
    for raw, value in (("3", 3), ("true", True), ('{"a":1}', {"a": 1}), ('"7"', "7"), ("e2e4", "e2e4")):
        cli("--name", "alice", "state", "set", "v", raw)
        assert doc(cli("state", "get", "v", "--raw", "--json")) == value


def test_init_then_already_exists(cli: Cli) -> None:
    """init writes once; the second is exit 1 `already_exists` with the current entry."""
    ok(cli("--name", "a", "state", "init", "task:next", "0"))
    error = refused(cli("--json", "--name", "b", "state", "init", "task:next", "5"), "already_exists")
    assert error["current"]["value"] == 0


def test_cas_with_version_and_none(cli: Cli) -> None:
    """cas at the current version writes; a stale one is `conflict` carrying current; `none` means absent."""
    ok(cli("--name", "a", "state", "cas", "leader", "none", "a"))
    error = refused(cli("--json", "--name", "b", "state", "cas", "leader", "none", "b"), "conflict")
    assert error["current"]["value"] == "a"
    assert doc(cli("--json", "--name", "b", "state", "cas", "leader", "1", "b"))["version"] == 2
    refused(cli("--json", "--name", "a", "state", "cas", "leader", "1", "a"), "conflict")
    assert cli("--name", "a", "state", "cas", "leader", "soon", "a").exit_code == 2


def test_gate_and_if_version_on_set(cli: Cli) -> None:
    """--if false is `precondition_failed` with the expression; --if-version stale is `conflict`."""
    cli("--name", "w", "state", "set", "player", "white")
    gate = 'state._shared.player == "black"'
    error = refused(
        cli("--json", "--name", "w", "state", "set", "board", "e2e4", "--if", gate), "precondition_failed"
    )
    assert error["expression"] == gate and error["value"] is False
    ok(cli("--name", "w", "state", "set", "board", "e2e4", "--if", 'state._shared.player == "white"'))
    refused(cli("--json", "--name", "w", "state", "set", "board", "x", "--if-version", "7"), "conflict")


def test_increment_and_batch(cli: Cli) -> None:
    """--increment adds; batch mixes writes and increments all or nothing, behind an optional gate."""
    cli("--name", "a", "state", "set", "done", "1", "--increment")
    cli("--name", "b", "state", "set", "done", "2", "--increment")
    assert doc(cli("state", "get", "done", "--raw", "--json")) == 3
    out = doc(cli("--json", "--name", "a", "state", "batch", "player=black", "--increment", "done=1"))
    assert [(w["key"], w["value"]) for w in out] == [("player", "black"), ("done", 4)]
    refused(
        cli("--json", "--name", "a", "state", "batch", "x=1", "--increment", "player=1"), "conflict"
    )  # `player` holds a string: the whole batch is refused
    assert cli("state", "get", "x").exit_code == 1
    refused(cli("--json", "--name", "a", "state", "batch", "x=1", "--if", "false"), "precondition_failed")
    assert cli("--name", "a", "state", "batch", "novalue").exit_code == 2


def test_own_scope_and_forbidden(cli: Cli) -> None:
    """An agent writes its own scope; another's is `forbidden` (exit 5)."""
    ok(cli("--name", "alice", "state", "set", "score", "42", "--scope", "alice"))
    cli("--name", "bob", "join")
    refused(cli("--json", "--name", "bob", "state", "set", "score", "1", "--scope", "alice"), "forbidden", 5)
    assert ok(cli("eval", "state.alice.score")) == "42\n"


def test_delete(cli: Cli) -> None:
    """delete removes the key; a stale --if-version is `conflict`; an absent key `not_found`."""
    cli("--name", "a", "state", "set", "k", "1")
    refused(cli("--json", "--name", "a", "state", "delete", "k", "--if-version", "2"), "conflict")
    assert ok(cli("--name", "a", "state", "delete", "k")) == "deleted _shared.k\n"
    refused(cli("--json", "--name", "a", "state", "delete", "k"), "not_found")


def test_view_list_and_eval(cli: Cli) -> None:
    """A view resolves on get, list and eval; eval prints JSON; a bad view is `bad_expression`."""
    cli("--name", "a", "state", "batch", "votes_for=2", "votes_against=0", "quorum=3")
    expr = "state._shared.votes_for + state._shared.votes_against >= state._shared.quorum"
    assert ok(cli("--name", "a", "state", "view", "quorum_met", expr)) == "_view.quorum_met = false\n"
    cli("--name", "b", "state", "set", "votes_against", "1", "--increment")
    assert doc(cli("state", "get", "quorum_met", "--scope", "_view", "--json"))["value"] is True
    listed = [json.loads(x) for x in ok(cli("--json", "state", "list")).splitlines()]
    assert [(x["scope"], x["key"]) for x in listed][-1] == ("_view", "quorum_met")
    assert ok(cli("eval", "state._view.quorum_met && state._shared.quorum == 3")) == "true\n"
    assert doc(cli("--json", "eval", '{"n": state._shared.quorum}')) == {"n": 3}
    error = refused(
        cli("--json", "--name", "a", "state", "view", "bad", "state._view.quorum_met &&"), "bad_expression"
    )
    assert error["position"] is not None
    error = refused(cli("--json", "eval", "state._shared.quorum ="), "bad_expression")
    assert "position" in error
    refused(cli("--json", "eval", "state._shared.missing"), "bad_request")


def test_branches(cli: Cli) -> None:
    """branch create/list/diff/merge, --branch on state and eval (per command and on the `state` group)."""
    cli("--name", "a", "state", "set", "x", "1")
    ok(cli("--name", "a", "branch", "create", "exp"))
    ok(cli("--name", "a", "state", "set", "x", "2", "--branch", "exp"))
    ok(cli("--name", "a", "state", "--branch", "exp", "set", "y", "5"))
    assert ok(cli("state", "get", "x", "--raw")) == "1\n"
    assert ok(cli("state", "get", "x", "--raw", "--branch", "exp")) == "2\n"
    assert ok(cli("state", "--branch", "exp", "get", "y", "--raw")) == "5\n"
    assert ok(cli("eval", "state._shared.x + state._shared.y", "--branch", "exp")) == "7\n"
    [b] = [json.loads(x) for x in ok(cli("--json", "branch", "list")).splitlines()]
    assert (b["branch"], b["from"], b["changes"]) == ("exp", None, 2)
    diff = doc(cli("--json", "branch", "diff", "exp"))
    assert [(c["key"], c["value"], c["source"]) for c in diff["changes"]] == [("x", 2, 1), ("y", 5, None)]
    ok(cli("--name", "a", "branch", "create", "exp2", "--from", "exp"))
    ok(cli("--name", "a", "state", "set", "y", "6", "--branch", "exp2"))
    assert "merged 1 changes" in ok(cli("--name", "a", "branch", "merge", "exp2"))
    assert ok(cli("state", "get", "y", "--raw", "--branch", "exp")) == "6\n"
    cli("--name", "a", "state", "set", "x", "9")  # both sides changed x: the merge is refused
    error = refused(cli("--json", "--name", "a", "branch", "merge", "exp"), "conflict")
    assert error["keys"] == ["_shared.x"]
    assert "! _shared.x: 9 → 2" in ok(cli("branch", "diff", "exp"))


# --------------------------------------------------------------------------- wait --condition as a process


def test_wait_condition_shows_waiting_and_wakes(cli: Cli, hub: Any, procs: Any) -> None:
    """While `wait --condition` blocks, the agent shows `waiting` with `waiting_on`; a write wakes it, exit 0."""
    cli("--name", "white", "state", "set", "player", "black")
    cli("--name", "black", "join")
    cond = 'state._shared.player == "black" && state._shared.turn >= 1'
    proc = procs("wait", "--json", "--name", "black", "--condition", cond, "--timeout", "60")
    with SyncAgent(hub=hub.url) as reader:

        def waiting() -> bool:
            me = next(a for a in reader.agents() if a["name"] == "black")
            return me["status"] == "waiting" and me["waiting_on"] == cond

        poll(waiting, what="black to show as waiting")
        assert reader.eval('agents["black"].waiting_on') == cond
        cli("--name", "white", "state", "set", "turn", "1")
        out, err = proc.communicate(timeout=seconds(20_000))
        assert proc.returncode == 0, err
        assert json.loads(out) == {"woken_by": "condition", "condition": cond, "value": True}
        poll(lambda: next(a for a in reader.agents() if a["name"] == "black")["status"] != "waiting")


def test_wait_condition_already_true_exits_at_once(cli: Cli, procs: Any) -> None:
    """A condition already true wakes the waiter at once (level): a turn is never missed."""
    cli("--name", "white", "state", "set", "player", "white")
    proc = procs(
        "wait", "--name", "white", "--condition", 'state._shared.player == "white"', "--timeout", "60"
    )
    out, err = proc.communicate(timeout=seconds(20_000))
    assert proc.returncode == 0, err
    assert out == 'state._shared.player == "white" → true\n'


def test_wait_condition_timeout_and_bad_expression(procs: Any) -> None:
    """A condition that stays false exits 3 at the timeout; a bad one exits 1 with `bad_expression`."""
    slow = procs("wait", "--name", "w", "--condition", "state._shared.never == 1", "--timeout", "0.3")
    bad = procs("wait", "--json", "--name", "w2", "--condition", "state._shared.x ==", "--timeout", "30")
    _, err = bad.communicate(timeout=seconds(20_000))
    assert bad.returncode == 1 and json.loads(err.splitlines()[-1])["error"]["code"] == "bad_expression"
    slow.communicate(timeout=seconds(20_000))
    assert slow.returncode == 3
