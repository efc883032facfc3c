"""Tests for hub.core.claims through the Machine: overlap, TTL, grace, checkpoints, handoff, intents, board."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.config import HubConfig
from hub.core.claims import Claims
from hub.core.effects import ArmTimer, Deliver, Outcome, Reply
from hub.core.machine import SessionGone, Start, Tick
from hub.core.scopes import MAX_CHECK_STEPS, overlaps
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.codec import to_builtins
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Notice
from tests.core.conftest import Script

GRACE = HubConfig().claim_grace
TTL = HubConfig().claim_ttl
CLI = 99  # a connection that never attached, like one `synapse claim` run


def reply(out: Outcome) -> Any:
    """The result of the one Reply effect in `out`."""
    results = [to_builtins(fx.result) for fx in out.effects if isinstance(fx, Reply)]
    assert len(results) == 1, out.effects
    return results[0]


def notices(out: Outcome) -> list[tuple[tuple[int, ...], Notice]]:
    """Every Notice pushed by `out`, with the sessions it goes to."""
    return [
        (fx.sessions, fx.frame) for fx in out.effects if isinstance(fx, Deliver) and type(fx.frame) is Notice
    ]


def kinds(out: Outcome) -> list[str]:
    return [type(ev).__name__ for ev in out.events]


def claim(script: Script, name: str, work: str, *paths: str, session: int = CLI, **kw: Any) -> Any:
    """`name` claims `work` on `paths` (by TTL unless `session` is attached); returns the reply."""
    return reply(script.do(name, c.Claim(name=name, work=work, paths=paths, **kw), session=session))


def live(script: Script, room: str = "default") -> dict[str, Any]:
    return {w: to_builtins(h.view()) for w, h in script.machine.world.rooms[room].part(Claims).live.items()}


def attach(script: Script, name: str, session: int) -> None:
    script.do(name, c.Attach(name=name), session=session)


# --------------------------------------------------------------------------- overlap


def test_directory_claim_blocks_file_below(script: Script) -> None:
    """Bob cannot claim src/api/user.py while Alice holds src/api/; the error names Alice, her work, the paths."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/api/", "docs/api.md")
    err = script.refused("bob", c.Claim(name="bob", work="fix", paths=("README.md", "src/api/user.py")))
    assert err.code == Code.CLAIM_OVERLAP
    assert (err.detail["holder"], err.detail["work"], err.detail["paths"]) == ("alice", "api", ["src/api"])
    assert err.detail["conflicts"] == [
        {"holder": "alice", "work": "api", "path": "src/api", "yours": "src/api/user.py"}
    ]
    assert "alice" in err.message and "api" in err.message and "src/api" in err.message


def test_glob_overlap_is_matched(script: Script) -> None:
    """`src/*.py` blocks `src/app.py` (and anything a path under it could be) but not `src/api/x.py`."""
    script.join("alice", "bob")
    claim(script, "alice", "py", "src/*.py")
    err = script.refused("bob", c.Claim(name="bob", work="t", paths=("src/app.py",)))
    assert err.code == Code.CLAIM_OVERLAP and err.detail["paths"] == ["src/*.py"]
    assert claim(script, "bob", "api", "src/api/x.py")["holder"] == "bob"
    err = script.refused("bob", c.Claim(name="bob", work="t", paths=("src/**/test_*.py",)))
    assert err.code == Code.CLAIM_OVERLAP and err.detail["holder"] == "alice"  # src/a.py/test_x.py


def test_disjoint_scopes_are_both_granted(script: Script) -> None:
    """Two agents on disjoint scopes both hold live claims; the grant is one ClaimGranted with normalized paths."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/api")
    out = script.do(
        "bob", c.Claim(name="bob", work="web", paths=("./src/web/", "src/web/x/../y")), session=CLI
    )
    (ev,) = out.events
    assert isinstance(ev, e.ClaimGranted) and ev.paths == ("src/web", "src/web/y")
    assert sorted(live(script)) == ["api", "web"]


def test_an_agents_own_claims_may_overlap(script: Script) -> None:
    """Overlap is refused only against other agents: Alice may hold src/ and src/api/x.py under two works."""
    script.join("alice")
    claim(script, "alice", "all", "src")
    assert claim(script, "alice", "one", "src/api/x.py")["paths"] == ["src/api/x.py"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "absolute path"),
        ("C:/x", "absolute path"),
        ("../x", "escapes the repository root"),
        ("src/../../x", "escapes the repository root"),
        ("src/\x00x", "NUL byte"),
        ("src/\x1bx", "control character"),
        ("src/[a", "unclosed '[' in glob"),
        ("src/a**", "'**' must be a whole path segment"),
        ("", "empty path"),
        ("/".join(["a" * 200] * 6), "longer than 1024 characters"),
        ("/".join(["a"] * 65), "more than 64 path segments"),
        ("src/" + "a" * 256, "a segment longer than 255 characters"),
        ("src/" + "*a" * 32 + "?", "more than 32 wildcards in one segment"),
        ("src/[" + "a" * 65 + "]", "a '[...]' longer than 64 characters"),
    ],
)
def test_bad_paths_are_bad_request(script: Script, path: str, reason: str) -> None:
    """A path that is absolute, escapes the root, holds control characters, is a bad glob or over a limit of
    hub.core.scopes is `bad_request`."""
    script.join("alice")
    err = script.refused("alice", c.Claim(name="alice", work="w", paths=("ok.py", path)))
    assert err.code == Code.BAD_REQUEST
    assert err.detail == {"field": "paths", "path": path, "reason": reason}


def test_no_paths_is_bad_request(script: Script) -> None:
    """A claim needs a scope."""
    script.join("alice")
    err = script.refused("alice", c.Claim(name="alice", work="w"))
    assert err.code == Code.BAD_REQUEST and err.detail["reason"] == "empty"


@pytest.mark.parametrize("work", ["", "x" * 201, "a\x00b", "tab\there", "\x7f", "c1\x85"])
def test_bad_work_name_is_bad_request(script: Script, work: str) -> None:
    """Work names are 1..200 characters, none of them a control character (NUL, C0, DEL, C1)."""
    script.join("alice")
    err = script.refused("alice", c.Claim(name="alice", work=work, paths=("a",)))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "work"


def test_reclaiming_own_work_with_new_paths_swaps_the_scope_atomically(script: Script) -> None:
    """Alice re-claims `api` on src/b: src/a is free at once, src/b is hers; one live claim, still `api`."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/a", checkpoint="cp")
    v = claim(script, "alice", "api", "src/b")
    assert (v["paths"], v["checkpoint"]) == (["src/b"], "cp")
    assert list(live(script)) == ["api"]
    assert claim(script, "bob", "a", "src/a/x.py")["holder"] == "bob"
    err = script.refused("bob", c.Claim(name="bob", work="b", paths=("src/b/y.py",)))
    assert err.code == Code.CLAIM_OVERLAP and err.detail["work"] == "api"


def test_reclaim_refused_by_overlap_keeps_the_old_scope(script: Script) -> None:
    """A re-claim whose new scope overlaps Bob's is refused and Alice keeps her old scope."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/a")
    claim(script, "bob", "b", "src/b")
    err = script.refused("alice", c.Claim(name="alice", work="api", paths=("src/b",)))
    assert err.code == Code.CLAIM_OVERLAP and err.detail["holder"] == "bob"
    assert live(script)["api"]["paths"] == ["src/a"]


def test_another_agents_work_name_is_conflict(script: Script) -> None:
    """Claiming work another agent holds is `conflict` naming the holder, even on disjoint paths."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/a")
    err = script.refused("bob", c.Claim(name="bob", work="api", paths=("elsewhere",)))
    assert err.code == Code.CONFLICT
    assert err.detail["holder"] == "alice" and err.detail["current"]["paths"] == ["src/a"]


def test_claims_are_per_room(script: Script) -> None:
    """The same scope in two rooms does not overlap."""
    script.join("alice")
    script.join("bob", room="lab")
    claim(script, "alice", "api", "src")
    reply(script.do("bob", c.Claim(room="lab", name="bob", work="api", paths=("src",)), session=CLI))
    assert list(live(script, "lab")) == ["api"]


# --------------------------------------------------------------------------- TTL and renewal


def test_ttl_claim_lapses_at_its_expiry(script: Script) -> None:
    """A TTL claim asks for a timer at its expiry; a Tick before it does nothing, at it lapses the claim."""
    script.join("alice")
    out = script.do("alice", c.Claim(name="alice", work="w", paths=("a",), ttl=10), session=CLI)
    assert ArmTimer(script.now + 10) in out.effects
    v = reply(out)
    assert (v["held_by"], v["expires"]) == ("ttl", script.now + 10)
    script.now += 9.99
    assert script.run(Tick(), session=None).events == []
    script.now += 0.01
    out = script.run(Tick(), session=None)
    assert out.events == [e.ClaimLapsed(room="default", at=script.now, work="w")]
    assert live(script) == {}


def test_default_ttl_without_a_session(script: Script) -> None:
    """Without a live session and without --ttl a claim is held by the hub's default TTL."""
    script.join("alice")
    v = claim(script, "alice", "w", "a")
    assert (v["held_by"], v["expires"]) == ("ttl", script.now + TTL)


@pytest.mark.parametrize("ttl", [0, -1, 31 * 86_400])
def test_ttl_out_of_range_is_bad_request(script: Script, ttl: float) -> None:
    """TTL must be in (0, 30 days]."""
    script.join("alice")
    err = script.refused("alice", c.Claim(name="alice", work="w", paths=("a",), ttl=ttl))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "ttl"


def test_renewal_moves_the_expiry(script: Script) -> None:
    """Renewing at +8 s with a 10 s TTL moves the expiry to +18 s: alive at +12, lapsed at +18."""
    script.join("alice")
    start = script.now
    claim(script, "alice", "w", "a", ttl=10)
    script.now = start + 8
    v = claim(script, "alice", "w", ttl=10, renew=True)
    assert v["expires"] == start + 18 and v["paths"] == ["a"]
    script.now = start + 12
    assert script.run(Tick(), session=None).events == []
    assert "w" in live(script)
    script.now = start + 18
    assert kinds(script.run(Tick(), session=None)) == ["ClaimLapsed"]


def test_renewal_refusals(script: Script) -> None:
    """Renewing nothing is `not_found`; renewing with another scope is `bad_request`; another's is `conflict`."""
    script.join("alice", "bob")
    assert script.refused("alice", c.Claim(name="alice", work="w", renew=True)).code == Code.NOT_FOUND
    claim(script, "alice", "w", "a")
    err = script.refused("alice", c.Claim(name="alice", work="w", paths=("b",), renew=True))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "paths"
    assert script.refused("bob", c.Claim(name="bob", work="w", renew=True)).code == Code.CONFLICT


def test_expired_claim_does_not_block_even_before_its_tick(script: Script) -> None:
    """Past its expiry a claim blocks nothing; the grant first records the lapse, then the new claim."""
    script.join("alice", "bob")
    claim(script, "alice", "w", "src", ttl=10, checkpoint="half done")
    script.now += 10
    out = script.do("bob", c.Claim(name="bob", work="w", paths=("src/x",)), session=CLI)
    assert kinds(out) == ["ClaimLapsed", "ClaimGranted"]
    assert reply(out)["checkpoint"] == "half done"


def test_refused_claim_records_nothing_even_when_a_lapse_is_due(script: Script) -> None:
    """A refusal emits no event, even when another claim is past its expiry (the Tick will lapse it)."""
    script.join("alice", "bob")
    claim(script, "alice", "a", "src/a", ttl=10)
    claim(script, "alice", "b", "src/b", ttl=100)
    script.now += 20
    err = script.refused("bob", c.Claim(name="bob", work="x", paths=("src/a", "src/b")))
    assert err.code == Code.CLAIM_OVERLAP and err.detail["work"] == "b"
    assert script.refused("bob", c.Release(name="bob", work="a")).code == Code.NOT_FOUND
    assert script.refused("alice", c.Handoff(name="alice", work="a", to="bob")).code == Code.NOT_FOUND
    assert script.refused("alice", c.Claim(name="alice", work="a", renew=True)).code == Code.NOT_FOUND
    assert kinds(script.run(Tick(), session=None)) == ["ClaimLapsed"]


# --------------------------------------------------------------------------- release and checkpoints


def test_release_checkpoint_reaches_the_next_claimer(script: Script) -> None:
    """Alice releases `api` with a checkpoint; Bob's claim of `api` carries it; it is handed over once."""
    script.join("alice", "bob", "carol")
    claim(script, "alice", "api", "src/api")
    out = script.do("alice", c.Release(name="alice", work="api", checkpoint="step 3 of 5"), session=CLI)
    assert out.events == [
        e.ClaimReleased(room="default", at=script.now, work="api", checkpoint="step 3 of 5")
    ]
    assert reply(out)["checkpoint"] == "step 3 of 5"
    assert claim(script, "bob", "api", "src/api")["checkpoint"] == "step 3 of 5"
    reply(script.do("bob", c.Release(name="bob", work="api", checkpoint="step 4 of 5"), session=CLI))
    assert claim(script, "carol", "api", "src/api")["checkpoint"] == "step 4 of 5"


def test_a_new_checkpoint_on_claim_replaces_the_inherited_one(script: Script) -> None:
    """A claimer that gives its own checkpoint gets that one recorded."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/api")
    script.do("alice", c.Release(name="alice", work="api", checkpoint="old"), session=CLI)
    assert claim(script, "bob", "api", "src/api", checkpoint="new")["checkpoint"] == "new"


def test_release_is_the_holders_alone(script: Script) -> None:
    """Releasing another agent's claim is `forbidden`; releasing nothing is `not_found`."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/api")
    err = script.refused("bob", c.Release(name="bob", work="api"))
    assert err.code == Code.FORBIDDEN and err.detail["holder"] == "alice"
    assert script.refused("bob", c.Release(name="bob", work="nope")).code == Code.NOT_FOUND


def test_lapsed_claim_keeps_its_checkpoint(script: Script) -> None:
    """A claim that lapses leaves its checkpoint for whoever claims the same work next."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/api", ttl=5, checkpoint="tests written")
    script.now += 5
    script.run(Tick(), session=None)
    assert claim(script, "bob", "api", "src/other")["checkpoint"] == "tests written"


def test_oversized_checkpoint_is_too_large(script: Script) -> None:
    """A checkpoint over 64 KiB characters is `too_large`."""
    script.join("alice")
    err = script.refused("alice", c.Claim(name="alice", work="w", paths=("a",), checkpoint="x" * 65_537))
    assert err.code == Code.TOO_LARGE


# --------------------------------------------------------------------------- handoff


def test_handoff_moves_claim_and_checkpoint(script: Script) -> None:
    """Handoff moves the claim with its checkpoint to Bob atomically; Bob's attached session gets a Notice."""
    script.join("alice", "bob")
    attach(script, "bob", 7)
    claim(script, "alice", "api", "src/api", checkpoint="cp")
    out = script.do("alice", c.Handoff(name="alice", work="api", to="bob"), session=CLI)
    (ev,) = out.events
    assert isinstance(ev, e.ClaimHandedOff) and (ev.to, ev.session, ev.expires) == ("bob", 7, None)
    v = live(script)["api"]
    assert (v["holder"], v["checkpoint"], v["held_by"], v["paths"]) == ("bob", "cp", "session", ["src/api"])
    ((sessions, notice),) = notices(out)
    assert sessions == (7,) and notice.kind == "claim.handed"
    assert notice.detail["from"] == "alice" and notice.detail["holder"] == "bob"
    # bob holds it now: alice may not release it, bob may, and the checkpoint passes on
    assert script.refused("alice", c.Release(name="alice", work="api")).code == Code.FORBIDDEN
    reply(script.do("bob", c.Release(name="bob", work="api"), session=7))
    assert claim(script, "alice", "api", "src/api")["checkpoint"] == "cp"


def test_handoff_to_an_agent_without_a_session_is_ttl_held(script: Script) -> None:
    """A target with no live session holds the handed claim by the default TTL."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/api")
    script.now += 100
    script.do("alice", c.Handoff(name="alice", work="api", to="bob"), session=CLI)
    v = live(script)["api"]
    assert (v["held_by"], v["expires"]) == ("ttl", script.now + TTL)


def test_handoff_target_must_be_a_member(script: Script) -> None:
    """Handing off to an agent that is not in the room is `not_found`; only the holder hands off."""
    script.join("alice", "bob")
    script.join("xena", room="lab")
    claim(script, "alice", "api", "src/api")
    err = script.refused("alice", c.Handoff(name="alice", work="api", to="xena"))
    assert err.code == Code.NOT_FOUND and err.detail == {"what": "agent", "name": "xena"}
    assert script.refused("bob", c.Handoff(name="bob", work="api", to="bob")).code == Code.FORBIDDEN


# --------------------------------------------------------------------------- sessions and grace


def test_claim_with_a_session_is_session_bound(script: Script) -> None:
    """An attached agent's claim lives with its session: no expiry, no timer."""
    script.join("alice")
    attach(script, "alice", 1)
    out = script.do("alice", c.Claim(name="alice", work="w", paths=("a",)), session=1)
    assert not [fx for fx in out.effects if isinstance(fx, ArmTimer)]
    v = reply(out)
    assert (v["held_by"], v["expires"]) == ("session", None)


def test_claim_through_a_presence_connector_is_bound_to_it(script: Script) -> None:
    """A claim sent on an unattached connection while the agent has a live session binds to that session."""
    script.join("alice")
    attach(script, "alice", 5)  # `synapse presence`
    claim(script, "alice", "w", "a", session=9)  # a one-shot CLI connection
    assert script.machine.world.rooms["default"].part(Claims).live["w"].session == 5


def test_session_bound_claim_orphans_then_lapses_after_grace(script: Script) -> None:
    """When the session ends the claim is orphaned with the grace period, then lapses when it runs out."""
    script.join("alice", "bob")
    attach(script, "alice", 1)
    claim(script, "alice", "w", "src", session=1, checkpoint="cp")
    out = script.run(SessionGone(1), session=1)
    assert kinds(out) == ["ClaimOrphaned", "SessionClosed"]
    assert out.events[0].expires == script.now + GRACE and ArmTimer(script.now + GRACE) in out.effects
    v = live(script)["w"]
    assert (v["held_by"], v["expires"]) == ("grace", script.now + GRACE)
    err = script.refused("bob", c.Claim(name="bob", work="x", paths=("src/y",)))
    assert err.code == Code.CLAIM_OVERLAP  # still held during the grace period
    script.now += GRACE
    assert kinds(script.run(Tick(), session=None)) == ["ClaimLapsed"]
    assert claim(script, "bob", "w", "src/y")["checkpoint"] == "cp"


def test_holder_back_within_grace_gets_its_claim_rebound(script: Script) -> None:
    """The holder re-attaching within the grace period re-binds its orphaned claims to the new session."""
    script.join("alice")
    attach(script, "alice", 1)
    claim(script, "alice", "w", "src", session=1)
    script.run(SessionGone(1), session=1)
    script.now += GRACE / 2
    out = script.do("alice", c.Attach(name="alice"), session=2)
    assert [ev for ev in out.events if isinstance(ev, e.ClaimRenewed)] == [
        e.ClaimRenewed(room="default", at=script.now, work="w", session=2)
    ]
    script.now += GRACE
    assert script.run(Tick(), session=None).events == []
    v = live(script)["w"]
    assert (v["held_by"], v["expires"]) == ("session", None)
    assert script.machine.world.rooms["default"].part(Claims).live["w"].session == 2


def test_holder_back_after_grace_finds_the_claim_gone(script: Script) -> None:
    """Re-attaching after the grace ran out (before the Tick) does not revive the claim."""
    script.join("alice")
    attach(script, "alice", 1)
    claim(script, "alice", "w", "src", session=1)
    script.run(SessionGone(1), session=1)
    script.now += GRACE
    out = script.do("alice", c.Attach(name="alice"), session=2)
    assert not [ev for ev in out.events if isinstance(ev, e.ClaimRenewed)]
    assert kinds(script.run(Tick(), session=None)) == ["ClaimLapsed"]


def test_claim_moves_to_another_live_session_of_its_holder(script: Script) -> None:
    """If the holder still has another live session when the bound one ends, the claim stays session-held."""
    script.join("alice")
    attach(script, "alice", 1)
    attach(script, "alice", 2)
    claim(script, "alice", "w", "src", session=1)
    out = script.run(SessionGone(1), session=1)
    assert [ev for ev in out.events if isinstance(ev, e.ClaimRenewed)] == [
        e.ClaimRenewed(room="default", at=script.now, work="w", session=2)
    ]
    script.now += GRACE * 2
    assert script.run(Tick(), session=None).events == []
    assert live(script)["w"]["held_by"] == "session"


def test_start_orphans_session_bound_claims(script: Script) -> None:
    """At hub start every session-bound claim gets the grace period; TTL claims keep their expiry."""
    script.join("alice", "bob")
    attach(script, "alice", 1)
    claim(script, "alice", "bound", "a", session=1)
    claim(script, "bob", "ttl", "b", ttl=1_000)
    ttl_expires = live(script)["ttl"]["expires"]
    script.now += 50
    out = script.run(Start(), session=None)
    assert kinds(out) == ["ClaimOrphaned", "HubStarted"]
    assert ArmTimer(script.now + GRACE) in out.effects
    v = live(script)
    assert (v["bound"]["held_by"], v["bound"]["expires"]) == ("grace", script.now + GRACE)
    assert v["ttl"]["expires"] == ttl_expires
    script.now += GRACE
    assert kinds(script.run(Tick(), session=None)) == ["ClaimLapsed"]
    assert list(live(script)) == ["ttl"]


def test_lapse_notifies_the_holders_live_session(script: Script) -> None:
    """A TTL claim that lapses while its holder is attached pushes it a `claim.lapsed` Notice."""
    script.join("alice")
    claim(script, "alice", "w", "a", ttl=5)
    attach(script, "alice", 3)
    script.now += 5
    out = script.run(Tick(), session=None)
    ((sessions, notice),) = notices(out)
    assert sessions == (3,) and notice.kind == "claim.lapsed" and notice.detail["work"] == "w"


# --------------------------------------------------------------------------- intents and the board


def test_intents_show_on_the_board_with_overlaps(script: Script) -> None:
    """Declared intents are listed with every overlapping claim of another agent and other intents."""
    script.join("alice", "bob", "carol")
    claim(script, "alice", "api", "src/api")
    script.do("bob", c.DeclareIntent(name="bob", paths=("src/api/user.py",), note="fix user"), session=CLI)
    board = reply(script.do("carol", c.DeclareIntent(name="carol", paths=("src/**/*.py",)), session=CLI))
    assert [cl["work"] for cl in board["claims"]] == ["api"]
    by = {i["agent"]: i for i in board["intents"]}
    assert by["bob"]["note"] == "fix user" and by["bob"]["paths"] == ["src/api/user.py"]
    assert by["bob"]["overlaps"] == [
        {"holder": "alice", "work": "api", "paths": ["src/api"]},
        {"intent": "carol", "paths": ["src/**/*.py"]},
    ]
    assert by["carol"]["overlaps"] == [
        {"holder": "alice", "work": "api", "paths": ["src/api"]},
        {"intent": "bob", "paths": ["src/api/user.py"]},
    ]
    full = reply(script.run(c.Board()))
    assert full["claims"] == board["claims"] and full["intents"] == board["intents"]


def test_intent_clashes_list_each_overlapping_pair(script: Script) -> None:
    """A claimed path overlapping two of an intent's paths is listed twice, in the claim's path order."""
    script.join("alice", "bob")
    claim(script, "alice", "two", "docs", "src", "lib/*.py")
    board = reply(
        script.do("bob", c.DeclareIntent(name="bob", paths=("src/a", "lib/x.py", "src/b")), session=CLI)
    )
    (intent,) = board["intents"]
    assert intent["overlaps"] == [{"holder": "alice", "work": "two", "paths": ["src", "src", "lib/*.py"]}]


HOSTILE_HELD = tuple(
    "/".join(f"*[a{chr(0x100 + k)}{chr(0x200 + i)}]*" for i in range(60)) + "/zz" for k in range(256)
)
DEEP = tuple("/".join(f"{k:03d}{i:02d}aaaaaaaaa" for i in range(60)) + "/END" for k in range(256))


def test_claim_too_costly_to_check_is_limit_exceeded(script: Script) -> None:
    """Deciding 256 deep entries against 256 deep globs runs out of steps: `limit_exceeded`, nothing
    recorded; a cheap claim in the same room is decided as usual."""
    script.join("alice", "mallory")
    claim(script, "mallory", "hostile", *HOSTILE_HELD)
    err = script.refused("alice", c.Claim(name="alice", work="deep", paths=DEEP))
    assert err.code == Code.LIMIT_EXCEEDED
    assert err.detail == {"limit": MAX_CHECK_STEPS, "what": "scope check steps"}
    err = script.refused("alice", c.Claim(name="alice", work="data", paths=("data/a.py",)))
    assert err.code == Code.CLAIM_OVERLAP
    assert claim(script, "alice", "lib", "lib/x.py")["paths"] == ["lib/x.py"]


def test_board_shows_a_pair_it_cannot_decide_as_a_clash(script: Script) -> None:
    """The board decides intents under one budget; past it, a pair counts as a clash on all their paths."""
    script.join("alice", "mallory", "bob")
    claim(script, "mallory", "hostile", *HOSTILE_HELD)
    claim(script, "bob", "docs", "docs")
    board = reply(script.do("alice", c.DeclareIntent(name="alice", paths=DEEP), session=CLI))
    (intent,) = board["intents"]
    assert [(o["holder"], len(o["paths"])) for o in intent["overlaps"]] == [("mallory", 256), ("bob", 1)]


def test_intent_is_advisory_and_clearable(script: Script) -> None:
    """An intent never blocks a claim; empty paths clear it; a bad path in it is `bad_request`."""
    script.join("alice", "bob")
    script.do("bob", c.DeclareIntent(name="bob", paths=("src",)), session=CLI)
    claim(script, "alice", "api", "src/api")
    board = reply(script.do("bob", c.DeclareIntent(name="bob"), session=CLI))
    assert board["intents"] == []
    err = script.refused("bob", c.DeclareIntent(name="bob", paths=("../up",)))
    assert err.code == Code.BAD_REQUEST


def test_list_claims_is_sorted_by_work(script: Script) -> None:
    """`claims` lists every live claim with holder, paths, how it is held, expiry and checkpoint."""
    script.join("alice", "bob")
    claim(script, "bob", "zeta", "z")
    claim(script, "alice", "alpha", "a", checkpoint="cp")
    listed = reply(script.run(c.ListClaims()))["claims"]
    assert [(v["work"], v["holder"], v["checkpoint"]) for v in listed] == [
        ("alpha", "alice", "cp"),
        ("zeta", "bob", None),
    ]
    assert reply(script.run(c.ListClaims(room="nowhere"))) == {"claims": []}


# --------------------------------------------------------------------------- property

AGENTS = ("alice", "bob", "carol")
UNIVERSE = (
    "src",
    "src/api",
    "src/api/user.py",
    "src/web",
    "src/*/x.py",
    "src/**/test_*.py",
    "docs",
    "*.md",
    ".",
)
WORKS = ("w1", "w2", "w3", "w4")

action = st.one_of(
    st.tuples(
        st.just("claim"),
        st.sampled_from(AGENTS),
        st.sampled_from(WORKS),
        st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=3),
        st.sampled_from([None, 5.0, 50.0]),
    ),
    st.tuples(st.just("release"), st.sampled_from(AGENTS), st.sampled_from(WORKS)),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 10.0, 40.0])),
    st.tuples(st.just("attach"), st.sampled_from(AGENTS)),
    st.tuples(st.just("gone"), st.sampled_from(AGENTS)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, max_size=40))
def test_no_two_agents_ever_hold_overlapping_claims(actions: list[tuple[Any, ...]]) -> None:
    """Any sequence of claims, releases, ticks and sessions leaves no overlapping live claims of two agents."""
    script = Script()
    script.join(*AGENTS)
    sessions = {name: 10 + i for i, name in enumerate(AGENTS)}
    for act in actions:
        try:
            if act[0] == "claim":
                _, who, work, paths, ttl = act
                script.do(
                    who, c.Claim(name=who, work=work, paths=tuple(paths), ttl=ttl), session=sessions[who]
                )
            elif act[0] == "release":
                script.do(act[1], c.Release(name=act[1], work=act[2]), session=CLI)
            elif act[0] == "tick":
                script.now += act[1]
                script.run(Tick(), session=None)
            elif act[0] == "attach":
                script.do(act[1], c.Attach(name=act[1]), session=sessions[act[1]])
            else:
                script.run(SessionGone(sessions[act[1]]), session=sessions[act[1]])
                sessions[act[1]] += 100  # a new connection next time
        except HubError as exc:
            assert exc.code in (Code.CLAIM_OVERLAP, Code.CONFLICT, Code.NOT_FOUND, Code.FORBIDDEN), exc
        held = list(script.machine.world.rooms["default"].part(Claims).live.values())
        for i, a in enumerate(held):
            for b in held[i + 1 :]:
                if a.holder != b.holder:
                    assert not any(overlaps(x, y) for x in a.paths for y in b.paths), (a.view(), b.view())
    script.check_replay()


def test_ttl_renewal_of_an_orphaned_claim_makes_it_ttl_held(script: Script) -> None:
    """An orphaned claim renewed without a session is held by TTL from then on (not shown as grace)."""
    script.join("alice")
    attach(script, "alice", 1)
    claim(script, "alice", "w", "src", session=1)
    script.run(SessionGone(1), session=1)
    v = claim(script, "alice", "w", ttl=100, renew=True)
    assert (v["held_by"], v["expires"]) == ("ttl", script.now + 100)
    script.now += GRACE
    assert script.run(Tick(), session=None).events == []


# --------------------------------------------------------------------------- supervisor re-offer


def test_reoffer_frees_a_quiet_holders_claim_and_keeps_its_checkpoint(script: Script) -> None:
    """A claim whose holder has no session and has been idle long enough is freed; the checkpoint stays."""
    script.join("alice", "sup", "bob")
    claim(script, "alice", "api", "src/api/", checkpoint="half done")
    script.now += 400
    out = script.do("sup", c.ReofferClaim(name="sup", work="api", idle_seconds=300), session=CLI)
    assert kinds(out) == ["ClaimReleased"] and out.events[0].by == "sup"  # type: ignore[attr-defined]
    assert live(script) == {}
    assert claim(script, "bob", "api", "src/api/x.py")["checkpoint"] == "half done"


def test_reoffer_refuses_a_recent_or_connected_holder(script: Script) -> None:
    """Too recent an activity, or a live session, keeps the claim with its holder (`conflict`)."""
    script.join("alice", "sup", "carol")
    claim(script, "alice", "api", "src/api/")
    script.now += 10
    err = script.refused("sup", c.ReofferClaim(name="sup", work="api", idle_seconds=300), session=CLI)
    assert err.code == Code.CONFLICT and err.detail["holder"] == "alice"
    attach(script, "carol", 7)
    claim(script, "carol", "docs", "docs/", session=7)
    script.now += 4000
    err = script.refused("sup", c.ReofferClaim(name="sup", work="docs", idle_seconds=300), session=CLI)
    assert err.code == Code.CONFLICT and "live session" in err.message
    err = script.refused("sup", c.ReofferClaim(name="sup", work="nope", idle_seconds=1), session=CLI)
    assert err.code == Code.NOT_FOUND


# --------------------------------------------------------------------------- the git guard (guard.check)


def check(script: Script, name: str, *paths: str) -> list[tuple[str, bool, str | None, str | None]]:
    """`name` checks `paths`: (path, held, holder, work) per path, in order."""
    got = reply(script.do(name, c.CheckPaths(name=name, paths=paths), session=CLI))
    assert got["name"] == name
    return [(p["path"], p["held"], p["holder"], p["work"]) for p in got["paths"]]


def test_check_says_who_holds_each_path(script: Script) -> None:
    """Each file is held by the checker, by another agent (named, with the work), or by nobody; nothing is
    emitted."""
    script.join("alice", "bob")
    claim(script, "alice", "api", "src/api", "docs/*.md")
    claim(script, "bob", "ui", "src/ui")
    before = len(script.events)
    assert check(script, "alice", "src/api/x.py", "src/ui/app.ts", "README.md", "docs/a.md", "src") == [
        ("src/api/x.py", True, "alice", "api"),
        ("src/ui/app.ts", False, "bob", "ui"),
        ("README.md", False, None, None),
        ("docs/a.md", True, "alice", "api"),
        ("src", False, None, None),  # a file `src` is inside neither claim, though both scopes overlap it
    ]
    assert len(script.events) == before


def test_check_ignores_claims_past_their_expiry(script: Script) -> None:
    """A claim past its TTL covers nothing, even before it has lapsed."""
    script.join("alice")
    claim(script, "alice", "api", "src", ttl=10)
    script.now += 11
    assert check(script, "alice", "src/a.py") == [("src/a.py", False, None, None)]


def test_check_needs_the_names_token(script: Script) -> None:
    """Checking as another agent with one's own token is `forbidden`; without a token `unauthorized`."""
    script.join("alice", "bob")
    err = script.refused("bob", c.CheckPaths(name="alice", paths=("a",)))
    assert err.code == Code.FORBIDDEN
    err = script.refused(None, c.CheckPaths(name="alice", paths=("a",)))
    assert err.code == Code.UNAUTHORIZED
    err = script.refused(None, c.CheckPaths(name="alice", paths=("a",), room="nowhere"))
    assert err.code == Code.NOT_FOUND


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "a/../b", "./a", "a//b", "a\tb", "x" * 4097])
def test_check_refuses_a_bad_path(script: Script, bad: str) -> None:
    """A path that is not a plain relative file path is `bad_request` naming it; nothing is checked."""
    script.join("alice")
    err = script.refused("alice", c.CheckPaths(name="alice", paths=("ok.py", bad)))
    assert err.code == Code.BAD_REQUEST and err.detail["field"] == "paths[1]" and err.detail["path"] == bad


def test_check_is_bounded(script: Script) -> None:
    """More than MAX_CHECK_PATHS paths is `limit_exceeded`; so is a check that runs out of steps."""
    from hub.core.claims import MAX_CHECK_PATHS

    script.join("alice", "bob")
    err = script.refused("alice", c.CheckPaths(name="alice", paths=("a",) * (MAX_CHECK_PATHS + 1)))
    assert err.code == Code.LIMIT_EXCEEDED and err.detail["limit"] == MAX_CHECK_PATHS
    claim(script, "bob", "globs", *(f"**/{'*a' * 16}{k}" for k in range(200)))
    deep = "/".join(["a" * 200] * 20)
    err = script.refused("alice", c.CheckPaths(name="alice", paths=(deep,) * 50))
    assert err.code == Code.LIMIT_EXCEEDED and err.detail["limit"] == MAX_CHECK_STEPS
