"""Claims: leases on work with a file scope; session or TTL holding, grace, checkpoints, handoff (SPEC: Claims)."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from hub.core import agents as agents_
from hub.core import rooms as rooms_
from hub.core.effects import ArmTimer, Context, Deliver, Outcome
from hub.core.scopes import BadScope, ScopeIndex, normalize, overlapping
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol.errors import Code, HubError
from hub.protocol.events import (
    ClaimGranted,
    ClaimHandedOff,
    ClaimLapsed,
    ClaimOrphaned,
    ClaimReleased,
    ClaimRenewed,
    IntentDeclared,
)
from hub.protocol.frames import Notice
from hub.protocol.types import AgentName, RoomName, SessionId

__all__ = [
    "ClaimRules",
    "MAX_PATHS",
    "Claims",
    "Held",
    "Intent",
    "check_paths",
    "overlap_error",
]

MAX_PATHS = 256
MAX_CHECKPOINT = 65_536


class Held:
    """One live claim. `bound` claims live with a session (`session`) and lapse `expires` after it drops."""

    __slots__ = ("bound", "checkpoint", "expires", "granted_at", "holder", "paths", "session", "work")

    def __init__(self, event: ClaimGranted) -> None:
        self.work = event.work
        self.holder = event.holder
        self.paths = event.paths
        self.expires = event.expires
        self.session = event.session
        self.bound = event.session is not None
        self.checkpoint = event.checkpoint
        self.granted_at = event.at

    def expired(self, now: float) -> bool:
        """Past its TTL or grace: it blocks nothing and lapses at the next look (a Tick or any claim verb)."""
        return self.expires is not None and self.expires <= now

    def view(self) -> dict[str, Any]:
        """The claim as clients see it."""
        return {
            "work": self.work,
            "holder": self.holder,
            "paths": list(self.paths),
            "held_by": "session" if self.session is not None else ("grace" if self.bound else "ttl"),
            "expires": self.expires,
            "granted_at": self.granted_at,
            "checkpoint": self.checkpoint,
        }


class Intent:
    """Advisory intent an agent declared (no lease)."""

    __slots__ = ("agent", "at", "note", "paths")

    def __init__(self, event: IntentDeclared) -> None:
        self.agent = event.agent
        self.paths = event.paths
        self.note = event.note
        self.at = event.at


class Claims:
    """A room's live claims, the index that keeps overlap checks fast, checkpoints left behind, intents."""

    __slots__ = ("by_session", "checkpoints", "index", "intents", "live")

    def __init__(self) -> None:
        self.live: dict[str, Held] = {}
        self.index: ScopeIndex[str] = ScopeIndex()
        self.checkpoints: dict[str, str] = {}  # work → the checkpoint its next claimer receives
        self.by_session: dict[SessionId, set[str]] = {}
        self.intents: dict[AgentName, Intent] = {}

    def conflicts(
        self, paths: tuple[str, ...], holder: AgentName, now: float | None = None
    ) -> list[tuple[Held, str, str]]:
        """Live claims of other agents that overlap `paths`, with the overlapping entries.

        With `now`, claims already past their expiry (lapsing, not yet lapsed) are left out.
        """
        out = []
        for work, theirs, mine in self.index.conflicts(paths):
            held = self.live[work]
            if held.holder != holder and (now is None or not held.expired(now)):
                out.append((held, theirs, mine))
        return out

    def current(self, work: str, now: float) -> Held | None:
        """The live claim on `work`, unless it is already past its expiry."""
        held = self.live.get(work)
        return None if held is None or held.expired(now) else held

    def of_session(self, session: SessionId) -> list[Held]:
        return [self.live[w] for w in sorted(self.by_session.get(session, ()))]

    # -- folding events ---------------------------------------------------------------------------

    def _bind(self, held: Held, session: SessionId | None) -> None:
        if held.session is not None:
            works = self.by_session.get(held.session)
            if works is not None:
                works.discard(held.work)
                if not works:
                    del self.by_session[held.session]
        held.session = session
        if session is not None:
            self.by_session.setdefault(session, set()).add(held.work)

    def granted(self, event: ClaimGranted) -> Held:
        old = self.live.get(event.work)
        if old is not None:
            self._bind(old, None)
        held = Held(event)
        self.live[event.work] = held
        self._bind(held, event.session)
        self.index.add(event.work, event.paths)
        self.checkpoints.pop(event.work, None)
        return held

    def renewed(self, event: ClaimRenewed) -> Held:
        """Re-bound to a live session (session-held), or renewed by TTL (held by TTL from now on)."""
        held = self.live[event.work]
        held.expires = event.expires
        held.bound = event.session is not None
        self._bind(held, event.session)
        return held

    def orphaned(self, event: ClaimOrphaned) -> Held:
        held = self.live[event.work]
        self._bind(held, None)
        held.expires = event.expires
        return held

    def ended(self, work: str, checkpoint: str | None) -> None:
        held = self.live.pop(work)
        self._bind(held, None)
        self.index.remove(work)
        kept = checkpoint if checkpoint is not None else held.checkpoint
        if kept is not None:
            self.checkpoints[work] = kept
        else:
            self.checkpoints.pop(work, None)

    def released(self, event: ClaimReleased) -> None:
        self.ended(event.work, event.checkpoint)

    def lapsed(self, event: ClaimLapsed) -> None:
        self.ended(event.work, None)

    def handed(self, event: ClaimHandedOff) -> Held:
        held = self.live[event.work]
        held.holder = event.to
        held.expires = event.expires
        held.bound = event.session is not None
        self._bind(held, event.session)
        return held

    def intent(self, event: IntentDeclared) -> None:
        if event.paths:
            self.intents[event.agent] = Intent(event)
        else:
            self.intents.pop(event.agent, None)

    # -- reading ------------------------------------------------------------------------------------

    def board(self) -> dict[str, Any]:
        """Live claims and intents, with every overlap between an intent and another agent's claim or intent."""
        claims = [h.view() for h in sorted(self.live.values(), key=lambda h: h.work)]
        intents = []
        for intent in sorted(self.intents.values(), key=lambda i: i.agent):
            clashes = [
                {"holder": h.holder, "work": h.work, "paths": [p for p, _ in pairs]}
                for h in self.live.values()
                if h.holder != intent.agent and (pairs := overlapping(h.paths, intent.paths))
            ]
            clashes += [
                {"intent": other.agent, "paths": [p for p, _ in pairs]}
                for other in self.intents.values()
                if other.agent != intent.agent and (pairs := overlapping(other.paths, intent.paths))
            ]
            intents.append(
                {
                    "agent": intent.agent,
                    "paths": list(intent.paths),
                    "note": intent.note,
                    "at": intent.at,
                    "overlaps": clashes,
                }
            )
        return {"claims": claims, "intents": intents}


def check_paths(paths: tuple[str, ...], field: str = "paths") -> tuple[str, ...]:
    """Normalized, de-duplicated scope entries; `bad_request` naming the bad one."""
    if not paths:
        raise HubError(
            Code.BAD_REQUEST, "a claim needs at least one path", {"field": field, "reason": "empty"}
        )
    if len(paths) > MAX_PATHS:
        raise HubError(Code.LIMIT_EXCEEDED, f"at most {MAX_PATHS} paths per claim", {"limit": MAX_PATHS})
    out: list[str] = []
    for path in paths:
        try:
            norm = normalize(path)
        except BadScope as exc:
            raise HubError(
                Code.BAD_REQUEST, str(exc), {"field": field, "path": exc.path, "reason": exc.reason}
            ) from None
        if norm not in out:
            out.append(norm)
    return tuple(out)


def check_checkpoint(checkpoint: str | None) -> None:
    if checkpoint is not None and len(checkpoint) > MAX_CHECKPOINT:
        raise HubError(
            Code.TOO_LARGE,
            f"a checkpoint holds at most {MAX_CHECKPOINT} characters",
            {"limit": MAX_CHECKPOINT},
        )


def overlap_error(work: str, clashes: list[tuple[Held, str, str]]) -> HubError:
    """`claim_overlap` naming the holder, its work and the overlapping paths."""
    first = clashes[0][0]
    listed = [
        {"holder": h.holder, "work": h.work, "path": theirs, "yours": mine} for h, theirs, mine in clashes
    ]
    theirs = sorted({t for h, t, _ in clashes if h is first})
    return HubError(
        Code.CLAIM_OVERLAP,
        f"{work!r} overlaps {first.holder}'s claim {first.work!r} on {', '.join(theirs)}",
        {"holder": first.holder, "work": first.work, "paths": theirs, "conflicts": listed},
    )


__all__ += ["check_checkpoint"]


if TYPE_CHECKING:
    from hub.core.machine import Tick


class ClaimRules:
    """Claiming, renewing, releasing and handing off; lapses (SPEC: Claims). Mixed into Machine: `self` is the machine."""

    def _holding(
        self, agent: agents_.Agent, ctx: Context, ttl: float | None
    ) -> tuple[SessionId | None, float | None]:
        """Session-bound when the agent has a live session (its own, or its presence connector), else TTL."""
        info = self.sessions.get(ctx.session) if ctx.session is not None else None
        if info is not None and info.agent == agent.name and ctx.session in agent.sessions:
            return ctx.session, None
        if agent.sessions:
            return min(agent.sessions), None
        ttl = self.config.claim_ttl if ttl is None else ttl
        if not 0 < ttl <= 30 * 86_400:
            raise HubError(
                Code.BAD_REQUEST, "ttl must be between 0 and 30 days", {"field": "ttl", "reason": "range"}
            )
        return None, ctx.now + ttl

    def _claim(self, cmd: c.Claim, ctx: Context, out: Outcome) -> None:
        # Decide with expired claims counted as gone, then lapse them, then act: a refusal emits nothing.
        room, agent = self._actor(cmd, ctx)
        check_checkpoint(cmd.checkpoint)
        live = room.claims.live
        held = room.claims.current(cmd.work, ctx.now)
        if not cmd.work or len(cmd.work) > 200:
            raise HubError(Code.BAD_REQUEST, "work needs a name of 1..200 characters", {"field": "work"})
        if held is not None and held.holder != agent.name:
            raise HubError(
                Code.CONFLICT,
                f"{cmd.work!r} is held by {held.holder}",
                {"holder": held.holder, "work": cmd.work, "current": held.view()},
            )
        session, expires = self._holding(agent, ctx, cmd.ttl)
        if cmd.renew:
            if held is None:
                raise HubError(Code.NOT_FOUND, f"no live claim {cmd.work!r} to renew", {"what": "claim"})
            if cmd.paths and check_paths(cmd.paths) != held.paths:
                raise HubError(
                    Code.BAD_REQUEST, "renew keeps the scope; claim again to change it", {"field": "paths"}
                )
            self._lapse_due(ctx.now, out)
            self._emit(
                out,
                e.ClaimRenewed(room=room.name, at=ctx.now, work=cmd.work, expires=expires, session=session),
            )
        else:
            paths = check_paths(cmd.paths)
            clashes = room.claims.conflicts(paths, agent.name, ctx.now)
            if clashes:
                raise overlap_error(cmd.work, clashes)
            self._lapse_due(ctx.now, out)
            held = live.get(cmd.work)
            inherited = held.checkpoint if held is not None else room.claims.checkpoints.get(cmd.work)
            checkpoint = cmd.checkpoint if cmd.checkpoint is not None else inherited
            self._emit(
                out,
                e.ClaimGranted(
                    room=room.name,
                    at=ctx.now,
                    work=cmd.work,
                    holder=agent.name,
                    paths=paths,
                    expires=expires,
                    session=session,
                    checkpoint=checkpoint,
                ),
            )
        if expires is not None:
            out.effects.append(ArmTimer(expires))
        self._reply(out, ctx, cmd, live[cmd.work].view())

    def _mine(self, room: rooms_.Room, agent: agents_.Agent, work: str, now: float) -> Held:
        held = room.claims.current(work, now)
        if held is None:
            raise HubError(Code.NOT_FOUND, f"no live claim {work!r}", {"what": "claim", "work": work})
        if held.holder != agent.name:
            raise HubError(
                Code.FORBIDDEN,
                f"{work!r} is held by {held.holder}, not {agent.name}",
                {"holder": held.holder},
            )
        return held

    def _release(self, cmd: c.Release, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        check_checkpoint(cmd.checkpoint)
        held = self._mine(room, agent, cmd.work, ctx.now)
        self._lapse_due(ctx.now, out)
        view = held.view()
        self._emit(out, e.ClaimReleased(room=room.name, at=ctx.now, work=cmd.work, checkpoint=cmd.checkpoint))
        view["checkpoint"] = room.claims.checkpoints.get(cmd.work)
        self._reply(out, ctx, cmd, view)

    def _reoffer_claim(self, cmd: c.ReofferClaim, ctx: Context, out: Outcome) -> None:
        """Free a claim whose holder went quiet (SPEC: supervisor): no live session, idle long enough."""
        room, agent = self._actor(cmd, ctx)
        held = room.claims.live.get(cmd.work)
        if held is None or held.expired(ctx.now):
            raise HubError(Code.NOT_FOUND, f"no live claim {cmd.work!r}", {"what": "claim", "work": cmd.work})
        holder = room.agents[held.holder]
        idle = ctx.now - holder.last_heartbeat
        if holder.sessions or idle < cmd.idle_seconds:
            why = "has a live session" if holder.sessions else f"was active {idle:.0f}s ago"
            raise HubError(
                Code.CONFLICT,
                f"{cmd.work!r} stays with {held.holder}: it {why}",
                {"holder": held.holder, "idle_seconds": idle, "current": held.view()},
            )
        self._lapse_due(ctx.now, out)
        view = held.view()
        self._emit(out, e.ClaimReleased(room=room.name, at=ctx.now, work=cmd.work, by=agent.name))
        self._notify(room, held.holder, "claim.reoffered", {**view, "by": agent.name}, out)
        self._reply(out, ctx, cmd, view)

    def _handoff(self, cmd: c.Handoff, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        held = self._mine(room, agent, cmd.work, ctx.now)
        target = room.agents.get(cmd.to)
        if target is None:
            raise HubError(
                Code.NOT_FOUND,
                f"{cmd.to!r} is not a member of room {room.name!r}",
                {"what": "agent", "name": cmd.to},
            )
        session, expires = self._holding(target, Context(ctx.now), None)
        self._lapse_due(ctx.now, out)
        self._emit(
            out,
            e.ClaimHandedOff(
                room=room.name, at=ctx.now, work=cmd.work, to=target.name, expires=expires, session=session
            ),
        )
        if expires is not None:
            out.effects.append(ArmTimer(expires))
        self._notify(room, target.name, "claim.handed", {**held.view(), "from": agent.name}, out)
        self._reply(out, ctx, cmd, held.view())

    def _list_claims(self, cmd: c.ListClaims, ctx: Context, out: Outcome) -> None:
        room = self.rooms.get(cmd.room)
        listed = (
            []
            if room is None
            else [h.view() for h in sorted(room.claims.live.values(), key=lambda h: h.work)]
        )
        self._reply(out, ctx, cmd, {"claims": listed})

    def _declare_intent(self, cmd: c.DeclareIntent, ctx: Context, out: Outcome) -> None:
        room, agent = self._actor(cmd, ctx)
        paths = check_paths(cmd.paths) if cmd.paths else ()
        if cmd.note is not None and len(cmd.note) > 4096:
            raise HubError(Code.TOO_LARGE, "a note holds at most 4096 characters", {"limit": 4096})
        self._emit(
            out, e.IntentDeclared(room=room.name, at=ctx.now, agent=agent.name, paths=paths, note=cmd.note)
        )
        self._reply(out, ctx, cmd, room.claims.board())

    def _tick(self, cmd: Tick, ctx: Context, out: Outcome) -> None:
        self._lapse_due(ctx.now, out)
        if self.deadlines:
            out.effects.append(ArmTimer(self.deadlines[0][0]))

    def _lapse_due(self, now: float, out: Outcome) -> None:
        """Lapse every claim whose TTL or grace has run out (SPEC: Claims); its checkpoint stays for the next."""
        heap = self.deadlines
        while heap and heap[0][0] <= now:
            expires, room_name, work = heapq.heappop(heap)
            room = self.rooms.get(room_name)
            held = None if room is None else room.claims.live.get(work)
            if held is None or held.expires != expires or room is None:
                continue  # stale: released, renewed or re-bound since
            view = held.view()
            self._emit(out, e.ClaimLapsed(room=room_name, at=now, work=work))
            self._notify(room, held.holder, "claim.lapsed", view, out)

    def _notify(
        self, room: rooms_.Room, agent: AgentName, kind: str, detail: dict[str, Any], out: Outcome
    ) -> None:
        """A Notice to every attached session of `agent` (streaming or not: a presence connector too)."""
        member = room.agents.get(agent)
        sessions = sorted(member.sessions) if member is not None else ()
        if sessions:
            out.effects.append(Deliver(tuple(sessions), Notice(kind=kind, room=room.name, detail=detail)))

    def _claimant(self, event: Any, agent: AgentName | None) -> Claims:
        return self.room(event.room).claims

    def _deadline(self, room: RoomName, held: Held) -> None:
        if held.expires is not None:
            heapq.heappush(self.deadlines, (held.expires, room, held.work))
