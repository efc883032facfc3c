"""The sync seed's patterns (fan-out/fan-in, voting, leader election) with HTTP-only agents, one thread each."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import ThreadHub, seconds
from tests.server.http_api import join


def run_all(*targets: Any) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds(60_000))
        assert not t.is_alive()


def test_fan_out_fan_in_over_http(hub: ThreadHub) -> None:
    """A coordinator waits (long-poll, a condition) until every worker incremented `done`."""
    assert hub.hub is not None
    port = hub.hub.port
    boss = join(port, "boss")
    workers = [join(port, f"w{i}") for i in range(4)]
    boss.ok("state.set", {"name": "boss", "key": "done", "value": 0})
    results: list[Any] = []

    def coordinator() -> None:
        results.append(
            boss.ok("wait", {"waiter": "boss", "condition": "state._shared.done == 4", "timeout": 60})
        )

    def work(agent: Any) -> Any:
        return lambda: agent.ok(
            "state.set", {"name": agent.name, "key": "done", "value": 1, "increment": True}
        )

    run_all(coordinator, *[work(w) for w in workers])
    assert results[0]["reason"] == "condition"
    assert boss.ok("state.get", {"key": "done"})["value"] == 4
    for a in (boss, *workers):
        a.close()


def test_voting_and_leader_election_over_http(hub: ThreadHub) -> None:
    """Each voter increments its choice; exactly one candidate wins the `leader` init (already_exists for the
    rest)."""
    assert hub.hub is not None
    port = hub.hub.port
    agents = [join(port, f"a{i}") for i in range(5)]
    outcomes: dict[str, int] = {}

    def vote_and_run(agent: Any, choice: str) -> Any:
        def go() -> None:
            agent.ok(
                "state.set", {"name": agent.name, "key": f"votes_{choice}", "value": 1, "increment": True}
            )
            status, _ = agent.call("state.init", {"name": agent.name, "key": "leader", "value": agent.name})
            outcomes[agent.name] = status

        return go

    run_all(*[vote_and_run(a, "yes" if i % 2 == 0 else "no") for i, a in enumerate(agents)])
    assert sorted(outcomes.values()) == [200, 409, 409, 409, 409]
    winner = [name for name, status in outcomes.items() if status == 200][0]
    assert agents[0].ok("state.get", {"key": "leader"})["value"] == winner
    assert agents[0].ok("eval", {"expr": "state._shared.votes_yes > state._shared.votes_no"})["value"] is True
    for a in agents:
        a.close()
