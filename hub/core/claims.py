"""Claims: leases on work with a file scope; session or TTL holding, grace, checkpoints, handoff (SPEC: Claims)."""

from __future__ import annotations

import heapq
from typing import Any

import msgspec

from hub.core import agents, fences, rooms
from hub.core.effects import ArmTimer, Context, Outcome, Tick
from hub.core.scopes import BadScope, Budget, ScopeIndex, TooCostly, concrete, normalize, overlapping
from hub.core.world import Room, World
from hub.protocol import commands as c
from hub.protocol import events as e
from hub.protocol import results as r
from hub.protocol.errors import Code, HubError
from hub.protocol.events import ClaimGranted
from hub.protocol.types import AgentName, RoomName, SessionId
from hub.protocol.values import check_name

__all__ = [
    "MAX_CHECK_PATHS",
    "MAX_PATHS",
    "Claims",
    "Deadlines",
    "Held",
    "Intent",
    "apply_granted",
    "apply_handed",
    "apply_intent",
    "apply_lapsed",
    "apply_orphaned",
    "apply_released",
    "apply_renewed",
    "board",
    "check_checkpoint",
    "check_paths",
    "decide_check",
    "decide_claim",
    "decide_handoff",
    "decide_intent",
    "decide_list",
    "decide_release",
    "decide_reoffer",
    "decide_tick",
    "lapse_due",
    "orphan",
    "overlap_error",
    "rebind",
    "refresh_root",
    "restart",
    "root",
]

MAX_PATHS = 256
MAX_CHECK_PATHS = 10_000  # paths per `guard.check`; `synapse guard check` sends more in several
MAX_CHECKPOINT = 65_536
MAX_WORK = 200


class Held:
    """One live claim. `bound` claims live with a session (`session`) and lapse `expires` after it drops."""

    __slots__ = (
        "bound",
        "checkpoint",
        "epoch",
        "expires",
        "granted_at",
        "holder",
        "paths",
        "renewed_at",
        "session",
        "work",
    )

    def __init__(self, event: ClaimGranted, epoch: int) -> None:
        self.epoch = epoch
        self.work = event.work
        self.holder = event.holder
        self.paths = event.paths
        self.expires = event.expires
        self.session = event.session
        self.bound = event.session is not None
        self.checkpoint = event.checkpoint
        self.granted_at = event.at
        self.renewed_at: float | None = None  # the last renewal, re-binding or handoff

    def expired(self, now: float) -> bool:
        """Past its TTL or grace: it blocks nothing and lapses at the next look (a Tick or any claim verb)."""
        return self.expires is not None and self.expires <= now

    def view(self) -> r.ClaimView:
        """The claim as clients see it."""
        return r.ClaimView(
            work=self.work,
            holder=self.holder,
            paths=list(self.paths),
            held_by="session" if self.session is not None else ("grace" if self.bound else "ttl"),
            expires=self.expires,
            granted_at=self.granted_at,
            checkpoint=self.checkpoint,
            epoch=self.epoch,
        )


class Intent:
    """Advisory intent an agent declared (no lease)."""

    __slots__ = ("agent", "at", "note", "paths")

    def __init__(self, event: e.IntentDeclared) -> None:
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

    def conflicts(self, paths: tuple[str, ...], holder: AgentName, now: float) -> list[tuple[Held, str, str]]:
        """Live claims of other agents that overlap `paths` (those past their expiry left out)."""
        out = []
        try:
            found = self.index.conflicts(paths, budget=Budget())
        except TooCostly as exc:
            raise HubError(
                Code.LIMIT_EXCEEDED,
                f"checking this scope against the live claims takes more than {exc.limit} steps",
                {"limit": exc.limit, "what": "scope check steps"},
            ) from None
        for work, theirs, mine in found:
            held = self.live[work]
            if held.holder != holder and not held.expired(now):
                out.append((held, theirs, mine))
        return out

    def current(self, work: str, now: float) -> Held | None:
        """The live claim on `work`, unless it is already past its expiry."""
        held = self.live.get(work)
        return None if held is None or held.expired(now) else held

    def of_session(self, session: SessionId) -> list[Held]:
        return [self.live[w] for w in sorted(self.by_session.get(session, ()))]

    def bind(self, held: Held, session: SessionId | None) -> None:
        if held.session is not None:
            works = self.by_session.get(held.session)
            if works is not None:
                works.discard(held.work)
                if not works:
                    del self.by_session[held.session]
        held.session = session
        if session is not None:
            self.by_session.setdefault(session, set()).add(held.work)


class Deadlines:
    """Hub-wide: claim expiries as a heap of (expires, room, work); stale entries are skipped and pruned."""

    __slots__ = ("heap",)

    def __init__(self) -> None:
        self.heap: list[tuple[float, RoomName, str]] = []


# -- checks ------------------------------------------------------------------------------------------------


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


def _plain(view: r.ClaimView) -> dict[str, Any]:
    return msgspec.to_builtins(view)  # type: ignore[no-any-return]


# -- deciding ----------------------------------------------------------------------------------------------


def _holding(
    w: World, agent: agents.Agent, session: SessionId | None, ttl: float | None, now: float
) -> tuple[SessionId | None, float | None]:
    """Session-bound when the agent has a live session (this one, or its presence connector), else TTL."""
    info = w.sessions.get(session) if session is not None else None
    if info is not None and info.agent == agent.name and session in agent.sessions:
        return session, None
    if agent.sessions:
        return min(agent.sessions), None
    ttl = w.config.claim_ttl if ttl is None else ttl
    if not 0 < ttl <= 30 * 86_400:
        raise HubError(
            Code.BAD_REQUEST, "ttl must be between 0 and 30 days", {"field": "ttl", "reason": "range"}
        )
    return None, now + ttl


def decide_claim(w: World, cmd: c.Claim, ctx: Context) -> Outcome:
    """Grant or renew (SPEC: Claims): expired claims count as gone, so they lapse first in the same outcome."""
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    check_checkpoint(cmd.checkpoint)
    check_name(cmd.work, "work", MAX_WORK)
    claims = room.part(Claims)
    held = claims.current(cmd.work, ctx.now)
    if held is not None and held.holder != agent.name:
        raise HubError(
            Code.CONFLICT,
            f"{cmd.work!r} is held by {held.holder}",
            {"holder": held.holder, "work": cmd.work, "current": _plain(held.view())},
        )
    session, expires = _holding(w, agent, ctx.session, cmd.ttl, ctx.now)
    if cmd.renew:
        if held is None:
            raise HubError(Code.NOT_FOUND, f"no live claim {cmd.work!r} to renew", {"what": "claim"})
        if cmd.paths and check_paths(cmd.paths) != held.paths:
            raise HubError(
                Code.BAD_REQUEST, "renew keeps the scope; claim again to change it", {"field": "paths"}
            )
        lapse_due(w, ctx.now, out)
        out.emit(e.ClaimRenewed(room=room.name, at=ctx.now, work=cmd.work, expires=expires, session=session))
        view = held.view()
        view.expires = expires
        view.held_by = "session" if session is not None else "ttl"
        view.already_held = True
    else:
        paths = check_paths(cmd.paths)
        clashes = claims.conflicts(paths, agent.name, ctx.now)
        if clashes:
            raise overlap_error(cmd.work, clashes)
        lapse_due(w, ctx.now, out)
        old = claims.live.get(cmd.work)  # its own earlier claim, or an expired one lapsing above
        inherited = old.checkpoint if old is not None else claims.checkpoints.get(cmd.work)
        epoch = held.epoch if held is not None else fences.next_epoch(room, cmd.work)  # its own: the same
        granted = e.ClaimGranted(
            room=room.name,
            at=ctx.now,
            work=cmd.work,
            holder=agent.name,
            paths=paths,
            expires=expires,
            session=session,
            checkpoint=cmd.checkpoint if cmd.checkpoint is not None else inherited,
            epoch=epoch,
        )
        out.emit(granted)
        view = Held(granted, epoch).view()
        view.already_held = held is not None
    if expires is not None:
        out.effects.append(ArmTimer(expires))
    out.reply(ctx, cmd.id, view)
    return out


def _mine(room: Room, agent: agents.Agent, work: str, now: float, admin: bool) -> Held:
    """The live claim on `work` if `agent` holds it (or the admin token acts); `forbidden` otherwise."""
    held = room.part(Claims).current(work, now)
    if held is None:
        raise HubError(Code.NOT_FOUND, f"no live claim {work!r}", {"what": "claim", "work": work})
    if held.holder != agent.name and not admin:
        raise HubError(
            Code.FORBIDDEN, f"{work!r} is held by {held.holder}, not {agent.name}", {"holder": held.holder}
        )
    return held


def decide_release(w: World, cmd: c.Release, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    check_checkpoint(cmd.checkpoint)
    fences.check(room, agent.name, cmd.fence, ctx.now)
    held = _mine(room, agent, cmd.work, ctx.now, w.is_admin(cmd.admin_token))
    lapse_due(w, ctx.now, out)
    out.emit(e.ClaimReleased(room=room.name, at=ctx.now, work=cmd.work, checkpoint=cmd.checkpoint))
    view = held.view()
    view.checkpoint = cmd.checkpoint if cmd.checkpoint is not None else held.checkpoint
    out.reply(ctx, cmd.id, view)
    return out


def decide_reoffer(w: World, cmd: c.ReofferClaim, ctx: Context) -> Outcome:
    """Free a claim whose holder went quiet (SPEC: supervisor): no live session, idle long enough."""
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    held = room.part(Claims).current(cmd.work, ctx.now)
    if held is None:
        raise HubError(Code.NOT_FOUND, f"no live claim {cmd.work!r}", {"what": "claim", "work": cmd.work})
    holder = room.part(agents.Roster).agents[held.holder]
    idle = ctx.now - holder.last_heartbeat
    if holder.sessions or idle < cmd.idle_seconds:
        why = "has a live session" if holder.sessions else f"was active {idle:.0f}s ago"
        raise HubError(
            Code.CONFLICT,
            f"{cmd.work!r} stays with {held.holder}: it {why}",
            {"holder": held.holder, "idle_seconds": idle, "current": _plain(held.view())},
        )
    lapse_due(w, ctx.now, out)
    view = held.view()
    out.emit(e.ClaimReleased(room=room.name, at=ctx.now, work=cmd.work, by=agent.name))
    notice = msgspec.structs.replace(view, by=agent.name)
    _notify(out, agents.notify(room, held.holder, "claim.reoffered", notice))
    out.reply(ctx, cmd.id, view)
    return out


def decide_handoff(w: World, cmd: c.Handoff, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    fences.check(room, agent.name, cmd.fence, ctx.now)
    held = _mine(room, agent, cmd.work, ctx.now, w.is_admin(cmd.admin_token))
    target = room.part(agents.Roster).agents.get(cmd.to)
    if target is None:
        raise HubError(
            Code.NOT_FOUND,
            f"{cmd.to!r} is not a member of room {room.name!r}",
            {"what": "agent", "name": cmd.to},
        )
    session, expires = _holding(w, target, None, None, ctx.now)
    lapse_due(w, ctx.now, out)
    epoch = fences.next_epoch(room, cmd.work)  # a new holder: the old one's fence is stale from now on
    out.emit(
        e.ClaimHandedOff(
            room=room.name,
            at=ctx.now,
            work=cmd.work,
            to=target.name,
            expires=expires,
            session=session,
            epoch=epoch,
        )
    )
    if expires is not None:
        out.effects.append(ArmTimer(expires))
    view = held.view()
    view.holder, view.expires, view.epoch = target.name, expires, epoch
    view.held_by = "session" if session is not None else "ttl"
    notice = msgspec.structs.replace(view, from_=agent.name)
    _notify(out, agents.notify(room, target.name, "claim.handed", notice))
    out.reply(ctx, cmd.id, view)
    return out


def decide_list(w: World, cmd: c.ListClaims, ctx: Context) -> Outcome:
    room = agents.reader(w, cmd).room
    listed = [] if room is None else [h.view() for h in sorted(room.part(Claims).live.values(), key=_by_work)]
    out = Outcome()
    out.reply(ctx, cmd.id, r.ClaimList(claims=listed))
    return out


# -- the git guard -------------------------------------------------------------------------------------------


def decide_check(w: World, cmd: c.CheckPaths, ctx: Context) -> Outcome:
    """Which of the files `name`'s live claims cover, and who holds each other one (the git guard).

    A read that needs `name`'s token (or the admin token): the guard checks a commit as its real committer.
    A claim past its expiry covers nothing, as for overlaps. The whole check runs on one Budget: past it
    `limit_exceeded` (the CLI then sends fewer paths at a time).
    """
    room = rooms.existing(w, cmd.room)
    agent = agents.acting_as(w, room, cmd.name, cmd.token, cmd.admin_token)
    if len(cmd.paths) > MAX_CHECK_PATHS:
        raise HubError(
            Code.LIMIT_EXCEEDED,
            f"at most {MAX_CHECK_PATHS} paths per check",
            {"limit": MAX_CHECK_PATHS, "what": "paths"},
        )
    parsed: list[tuple[str, ...]] = []
    for i, path in enumerate(cmd.paths):
        try:
            parsed.append(concrete(path))
        except BadScope as exc:
            raise HubError(
                Code.BAD_REQUEST, str(exc), {"field": f"paths[{i}]", "path": exc.path, "reason": exc.reason}
            ) from None
    claims = room.part(Claims)
    budget = Budget()
    checked: list[r.PathHeld] = []
    try:
        for path, segs in zip(cmd.paths, parsed, strict=True):
            mine: str | None = None
            other: tuple[str, str] | None = None
            for work, _entry in claims.index.covering(segs, budget):
                held = claims.live[work]
                if held.expired(ctx.now):
                    continue
                if held.holder == agent.name:
                    mine = work if mine is None else min(mine, work)
                elif other is None or (held.holder, work) < other:
                    other = (held.holder, work)
            if mine is not None:
                checked.append(r.PathHeld(path=path, held=True, holder=agent.name, work=mine))
            else:
                checked.append(
                    r.PathHeld(
                        path=path,
                        held=False,
                        holder=other[0] if other is not None else None,
                        work=other[1] if other is not None else None,
                    )
                )
    except TooCostly as exc:
        raise HubError(
            Code.LIMIT_EXCEEDED,
            f"checking these paths against the live claims takes more than {exc.limit} steps; "
            "send fewer at a time",
            {"limit": exc.limit, "what": "path check steps"},
        ) from None
    out = Outcome()
    out.reply(ctx, cmd.id, r.PathsChecked(name=agent.name, paths=checked))
    return out


def decide_intent(w: World, cmd: c.DeclareIntent, ctx: Context) -> Outcome:
    out = Outcome()
    room, agent = agents.actor(w, cmd, ctx, out)
    paths = check_paths(cmd.paths) if cmd.paths else ()
    if cmd.note is not None and len(cmd.note) > 4096:
        raise HubError(Code.TOO_LARGE, "a note holds at most 4096 characters", {"limit": 4096})
    declared = e.IntentDeclared(room=room.name, at=ctx.now, agent=agent.name, paths=paths, note=cmd.note)
    out.emit(declared)
    claims = room.part(Claims)
    intents = {**claims.intents}
    if paths:
        intents[agent.name] = Intent(declared)
    else:
        intents.pop(agent.name, None)
    out.reply(ctx, cmd.id, r.IntentList(claims=_live(claims), intents=_intents(claims, intents)))
    return out


def decide_tick(w: World, cmd: Tick, ctx: Context) -> Outcome:
    out = Outcome()
    nxt = lapse_due(w, ctx.now, out)
    if nxt is not None:
        out.effects.append(ArmTimer(nxt))
    return out


def _due(w: World, now: float) -> tuple[list[tuple[float, RoomName, str]], float | None]:
    """Heap entries at or before `now` (oldest first) and the earliest one after it, without popping."""
    heap = w.part(Deadlines).heap
    due: list[tuple[float, RoomName, str]] = []
    later: float | None = None
    stack = [0] if heap else []
    while stack:  # the heap's top part at or before `now`: only children of due nodes can be due
        i = stack.pop()
        if i >= len(heap):
            continue
        entry = heap[i]
        if entry[0] <= now:
            due.append(entry)
            stack.extend((2 * i + 1, 2 * i + 2))
        elif later is None or entry[0] < later:
            later = entry[0]
    due.sort()
    return due, later


def lapse_due(w: World, now: float, out: Outcome) -> float | None:
    """Lapse every claim whose TTL or grace has run out (SPEC: Claims); its checkpoint stays for the next.

    Returns the next deadline after `now`, if any.
    """
    due, later = _due(w, now)
    seen: set[tuple[RoomName, str]] = set()
    for expires, room_name, work in due:
        room = w.rooms.get(room_name)
        held = None if room is None else room.part(Claims).live.get(work)
        if room is None or held is None or held.expires != expires or (room_name, work) in seen:
            continue  # stale: released, renewed or re-bound since
        seen.add((room_name, work))
        out.emit(e.ClaimLapsed(room=room_name, at=now, work=work))
        _notify(out, agents.notify(room, held.holder, "claim.lapsed", held.view()))
    return later


def _notify(out: Outcome, effect: Any) -> None:
    if effect is not None:
        out.effects.append(effect)


def rebind(room: Room, name: AgentName, session: SessionId, now: float, out: Outcome) -> None:
    """An agent back within grace: its session-bound claims are its own again, on this session."""
    for held in room.part(Claims).live.values():
        if held.holder == name and held.bound and held.session is None and not held.expired(now):
            out.emit(e.ClaimRenewed(room=room.name, at=now, work=held.work, session=session))


def orphan(w: World, room: Room, name: AgentName, session: SessionId, now: float, out: Outcome) -> None:
    """A session of `name` ended: its claims move to another live session of the holder, or get the grace."""
    member = room.part(agents.Roster).agents.get(name)
    others = sorted(s for s in member.sessions if s != session) if member is not None else []
    grace = now + w.config.claim_grace
    for held in room.part(Claims).of_session(session):
        if others:  # the holder is still connected (a reconnect raced the old socket's end)
            out.emit(e.ClaimRenewed(room=room.name, at=now, work=held.work, session=others[0]))
        else:
            out.emit(e.ClaimOrphaned(room=room.name, at=now, work=held.work, expires=grace))
            out.effects.append(ArmTimer(grace))


def restart(w: World, now: float, out: Outcome) -> float | None:
    """Every session of the previous run is gone: its claims get the grace period to be re-taken.

    Returns the earliest deadline to arm a timer for.
    """
    grace = now + w.config.claim_grace
    earliest: float | None = None
    for room in w.rooms.values():
        for held in room.part(Claims).live.values():
            if held.session is not None:
                out.emit(e.ClaimOrphaned(room=room.name, at=now, work=held.work, expires=grace))
                earliest = grace if earliest is None else min(earliest, grace)
    heap = w.part(Deadlines).heap
    if heap:
        earliest = heap[0][0] if earliest is None else min(earliest, heap[0][0])
    return earliest


# -- reading -----------------------------------------------------------------------------------------------


def _by_work(h: Held) -> str:
    return h.work


def _live(claims: Claims) -> list[r.ClaimView]:
    return [h.view() for h in sorted(claims.live.values(), key=_by_work)]


def _intents(claims: Claims, intents: dict[AgentName, Intent]) -> list[r.IntentView]:
    """Each intent with its clashes; the claims' side comes from the index. One Budget for the whole read:
    a pair it cannot decide any more is shown as a clash on all the other side's paths (advisory, so
    rather too many than too few)."""
    budget = Budget()
    out = []
    for intent in sorted(intents.values(), key=lambda i: i.agent):
        try:
            hits: set[tuple[str, str, str]] | None = set(claims.index.conflicts(intent.paths, budget=budget))
        except TooCostly:
            hits = None
        clashes = [
            r.Clash(holder=h.holder, work=h.work, paths=paths)
            for h in claims.live.values()
            if h.holder != intent.agent and (paths := _clashing(h.paths, intent.paths, hits, h.work, budget))
        ]
        clashes += [
            r.Clash(intent=other.agent, paths=paths)
            for other in intents.values()
            if other.agent != intent.agent
            and (paths := _clashing(other.paths, intent.paths, None, "", budget))
        ]
        out.append(
            r.IntentView(
                agent=intent.agent, paths=list(intent.paths), note=intent.note, at=intent.at, overlaps=clashes
            )
        )
    return out


def _clashing(
    theirs: tuple[str, ...],
    mine: tuple[str, ...],
    hits: set[tuple[str, str, str]] | None,
    work: str,
    budget: Budget,
) -> list[str]:
    """Their paths overlapping mine, once per overlapping pair; `hits` from the index when known."""
    if hits is not None and work:
        return [t for t in theirs for m in mine if (work, t, m) in hits]
    if budget.left >= 0:
        try:
            return [t for t, _ in overlapping(theirs, mine, budget)]
        except TooCostly:
            pass
    return list(theirs)


def board(room: Room) -> tuple[list[r.ClaimView], list[r.IntentView]]:
    """Live claims and intents, with every overlap between an intent and another agent's claim or intent."""
    claims = room.part(Claims)
    return _live(claims), _intents(claims, claims.intents)


def root(w: World, room: Room) -> dict[str, Any]:
    """The `claims` root of the CEL context."""
    return {work: {"holder": h.holder, "paths": list(h.paths)} for work, h in room.part(Claims).live.items()}


def refresh_root(w: World, room: Room, node: dict[str, Any], path: tuple[str, ...]) -> tuple[str, ...] | None:
    if len(path) == 2:
        held = room.part(Claims).live.get(path[1])
        if held is None:
            node.pop(path[1], None)
        else:
            node[path[1]] = {"holder": held.holder, "paths": list(held.paths)}
    return None


# -- folding -------------------------------------------------------------------------------------------------


def _deadline(w: World, room: RoomName, held: Held) -> None:
    if held.expires is not None:
        heapq.heappush(w.part(Deadlines).heap, (held.expires, room, held.work))


def _prune(w: World) -> None:
    """Drop stale entries from the top of the deadline heap (released, renewed, re-bound since)."""
    heap = w.part(Deadlines).heap
    while heap:
        expires, room_name, work = heap[0]
        room = w.rooms.get(room_name)
        held = None if room is None else room.part(Claims).live.get(work)
        if held is not None and held.expires == expires:
            return
        heapq.heappop(heap)


def apply_granted(w: World, ev: ClaimGranted) -> None:
    room = w.room(ev.room)
    claims = room.part(Claims)
    old = claims.live.get(ev.work)
    if old is not None:
        claims.bind(old, None)
    same = old is not None and old.holder == ev.holder and not ev.epoch  # an older log's re-claim
    epoch = fences.take(room, ev.work, ev.holder, old.epoch if same and old else ev.epoch, ev.expires)
    held = Held(ev, epoch)
    claims.live[ev.work] = held
    claims.bind(held, ev.session)
    claims.index.add(ev.work, ev.paths)
    claims.checkpoints.pop(ev.work, None)
    _deadline(w, ev.room, held)
    _prune(w)


def apply_renewed(w: World, ev: e.ClaimRenewed) -> None:
    """Re-bound to a live session (session-held), or renewed by TTL (held by TTL from now on)."""
    claims = w.rooms[ev.room].part(Claims)
    room = w.rooms[ev.room]
    claims = room.part(Claims)
    held = claims.live[ev.work]
    held.expires = ev.expires
    held.bound = ev.session is not None
    held.renewed_at = ev.at
    claims.bind(held, ev.session)
    fences.take(room, held.work, held.holder, held.epoch, held.expires)
    _deadline(w, ev.room, held)
    _prune(w)


def apply_orphaned(w: World, ev: e.ClaimOrphaned) -> None:
    room = w.rooms[ev.room]
    claims = room.part(Claims)
    held = claims.live[ev.work]
    claims.bind(held, None)
    held.expires = ev.expires
    fences.take(room, held.work, held.holder, held.epoch, held.expires)
    _deadline(w, ev.room, held)
    _prune(w)


def _ended(w: World, room: RoomName, work: str, checkpoint: str | None) -> None:
    claims = w.rooms[room].part(Claims)
    fences.release(w.rooms[room], work)
    held = claims.live.pop(work)
    claims.bind(held, None)
    claims.index.remove(work)
    kept = checkpoint if checkpoint is not None else held.checkpoint
    if kept is not None:
        claims.checkpoints[work] = kept
    else:
        claims.checkpoints.pop(work, None)
    _prune(w)


def apply_released(w: World, ev: e.ClaimReleased) -> None:
    _ended(w, ev.room, ev.work, ev.checkpoint)


def apply_lapsed(w: World, ev: e.ClaimLapsed) -> None:
    _ended(w, ev.room, ev.work, None)


def apply_handed(w: World, ev: e.ClaimHandedOff) -> None:
    room = w.rooms[ev.room]
    claims = room.part(Claims)
    held = claims.live[ev.work]
    held.holder = ev.to
    held.expires = ev.expires
    held.renewed_at = ev.at
    held.bound = ev.session is not None
    held.epoch = fences.take(room, ev.work, ev.to, ev.epoch, ev.expires)
    claims.bind(held, ev.session)
    _deadline(w, ev.room, held)
    _prune(w)


def apply_intent(w: World, ev: e.IntentDeclared) -> None:
    claims = w.rooms[ev.room].part(Claims)
    if ev.paths:
        claims.intents[ev.agent] = Intent(ev)
    else:
        claims.intents.pop(ev.agent, None)
