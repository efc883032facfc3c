"""Release effects in submission order once their batch is durable; encode each frame once, write it to many."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from hub.core.effects import (
    ArmTimer,
    CloseSession,
    Deliver,
    Effect,
    FollowLog,
    ReadHistory,
    ReadLog,
    Reply,
    ShowPresence,
)
from hub.protocol.codec import encode
from hub.protocol.frames import Error, Ok
from hub.protocol.types import SessionId
from hub.server.session import Session

__all__ = ["Fanout"]


class Fanout:
    """Effects wait behind the last batch submitted before them: durable before visible (STYLE.md §1)."""

    def __init__(
        self,
        sessions: dict[SessionId, Session],
        arm: Callable[[float], None],
        read: Callable[[ReadLog | ReadHistory], None],
        follow: Callable[[FollowLog], None],
        presence: Callable[[ShowPresence], list[Session]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.arm = arm  # a deadline for the timers
        self.read = read  # a page of older messages (or of a key's history) to read from the log
        self.follow = follow  # a tail to start
        self.presence = presence  # a presence change for the tails
        self.submitted = 0  # the newest ticket handed to the log writer
        self.durable = 0  # the newest ticket the log writer has committed
        self.pending: deque[tuple[int, list[Effect]]] = deque()
        self.delivered = 0
        self.dirty: set[Session] = set()

    @property
    def depth(self) -> int:
        """Effects waiting for their batch to commit."""
        return sum(len(effects) for _, effects in self.pending)

    def next_ticket(self) -> int:
        self.submitted += 1
        return self.submitted

    def hold(self, effects: list[Effect]) -> None:
        """Release `effects` once everything submitted so far is durable (at once if it already is)."""
        if not effects:
            return
        if self.durable >= self.submitted and not self.pending:
            self.release(effects)
            self.flush()
        else:
            self.pending.append((self.submitted, effects))

    def on_durable(self, ticket: int) -> None:
        """The log writer committed every batch up to `ticket` (called on the loop)."""
        self.durable = ticket
        pending = self.pending
        while pending and pending[0][0] <= ticket:
            self.release(pending.popleft()[1])
        self.flush()

    def reject(self, code: str, message: str) -> int:
        """The log refused the batches these effects wait for (hub.server.degraded): answer each command among
        them with `code` instead (a wake, a read or a refusal could show what never became durable), drop the
        rest; from now on effects go out at once. Returns the effects rejected."""
        pending, self.pending = self.pending, deque()
        self.durable = self.submitted
        out: list[Effect] = []
        count = 0
        for _ticket, effects in pending:
            count += len(effects)
            for effect in effects:
                answer = _answered(effect)
                if answer is not None:
                    session, cmd_id = answer
                    out.append(Deliver((session,), Error(id=cmd_id, code=code, message=message)))
                elif type(effect) is ArmTimer:
                    out.append(effect)
        self.release(out)
        self.flush()
        return count

    def flush(self) -> None:
        dirty = self.dirty
        while dirty:
            dirty.pop().flush()

    def release(self, effects: list[Effect]) -> None:
        """Carry out effects in order; every session touched is flushed once at the end."""
        sessions = self.sessions
        dirty = self.dirty
        for effect in effects:
            if type(effect) is Reply:
                session = sessions.get(effect.session)
                if session is not None and session.push(encode(Ok(id=effect.id, result=effect.result))):
                    dirty.add(session)
            elif type(effect) is Deliver:
                data = encode(effect.frame)
                for sid in effect.sessions:
                    session = sessions.get(sid)
                    if session is not None and session.push(data):
                        dirty.add(session)
                self.delivered += len(effect.sessions)
            elif type(effect) is CloseSession:
                session = sessions.get(effect.session)
                if session is not None:
                    session.close(effect.code, effect.reason)
            elif type(effect) is ArmTimer:
                self.arm(effect.at)
            elif type(effect) is ReadLog or type(effect) is ReadHistory:
                if effect.session in sessions:
                    self.read(effect)
            elif type(effect) is FollowLog and effect.session in sessions:
                self.follow(effect)
            elif type(effect) is ShowPresence and self.presence is not None:
                dirty.update(self.presence(effect))


def _answered(effect: Effect) -> tuple[SessionId, int] | None:
    """The (session, command id) an effect answers, if it answers one."""
    if type(effect) is Reply:
        return effect.session, effect.id
    if type(effect) is Deliver:
        cmd_id = getattr(effect.frame, "id", None)
        if cmd_id is not None and len(effect.sessions) == 1:
            return effect.sessions[0], cmd_id
    elif type(effect) is ReadLog:
        return effect.session, effect.command.id
    elif type(effect) is FollowLog:
        return effect.session, effect.id
    return None
