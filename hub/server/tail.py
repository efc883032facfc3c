"""Tails: sessions following the durable event feed; backlog from the log, then every batch as it commits."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from hub.core.effects import FollowLog, ShowPresence
from hub.core.feed import visible
from hub.log.store import EventLog, Row
from hub.protocol.codec import decode_event, encode, to_builtins
from hub.protocol.frames import Notice
from hub.protocol.results import TailStarted
from hub.protocol.types import SessionId
from hub.server.session import Session

__all__ = ["Tails", "event_frame"]

logger = logging.getLogger(__name__)

BACKLOG_PAGE = 5_000
BATCH_EVENTS = 1_000  # events per EventBatch frame at most


def event_frame(row: Row) -> bytes:
    """An EventFrame built around the event's stored JSON, without decoding or re-encoding it."""
    seq, room, _type, data, _at = row
    return b'{"type":"EventFrame","position":%d,"room":%s,"event":%s}' % (seq, _json_str(room), data)


def _visible(follower: _Follower, row: Row) -> bool:
    """A directed message is shown only to its sender and recipients (the core's rule: feed.visible)."""
    reader = follower.reader
    who = reader[1] if reader is not None and reader[0] == row[1] else None
    return visible(decode_event(row[3]), who, False)


def _json_str(text: str) -> bytes:
    return encode(text)


class _Follower:
    __slots__ = ("admin", "batch", "last", "ready", "reader", "rooms", "session", "waiting")

    def __init__(self, session: Session, follow: FollowLog) -> None:
        self.session = session
        self.rooms = follow.rooms
        self.reader = follow.reader  # (room, agent): the directed messages it may see
        self.admin = follow.admin
        self.batch = (
            follow.batch
        )  # EventBatch frames: a dashboard costs one frame per commit, not one per event
        self.last = 0  # the newest position sent
        self.ready = False  # backlog sent: live rows go straight out
        self.waiting: deque[Row] = deque()  # live rows that arrived while the backlog was read


class Tails:
    """Every tailing session, fed from the log writer's durable batches."""

    def __init__(
        self,
        log: EventLog,
        sessions: dict[SessionId, Session],
        durable: Callable[[], int],
        reply: Callable[[Session, int, Any], None],
    ) -> None:
        self.log = log
        self.sessions = sessions
        self.durable_position = durable  # the newest durable log position
        self.reply = reply  # answer a command behind everything already waiting
        self.followers: dict[int, _Follower] = {}

    def __bool__(self) -> bool:
        return bool(self.followers)

    def start(self, follow: FollowLog) -> None:
        """Reply, then stream the backlog and the live feed (the core decided who may follow what)."""
        session = self.sessions.get(follow.session)
        if session is None:
            return
        follower = _Follower(session, follow)
        self.followers[session.id] = follower
        durable = self.durable_position()
        after = durable if follow.after is None else max(0, min(follow.after, durable))
        follower.last = after
        self.reply(session, follow.id, TailStarted(position=durable, after=after))
        if after >= durable:
            follower.ready = True
            return
        task = asyncio.ensure_future(self._backlog(follower, after, durable))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    async def _backlog(self, follower: _Follower, after: int, until: int) -> None:
        loop = asyncio.get_running_loop()
        log = self.log
        while after < until and not follower.session.closing:
            rows = await loop.run_in_executor(None, log.read, after, min(BACKLOG_PAGE, until - after))
            if not rows:
                break
            self._send(follower, rows)
            after = rows[-1][0]
        follower.ready = True
        waiting, follower.waiting = follower.waiting, deque()
        self._send(follower, list(waiting))

    def stop(self, session: Session) -> None:
        self.followers.pop(session.id, None)

    def durable(self, rows: list[Row]) -> None:
        """A batch committed: send its events to every follower (in order, each once)."""
        frames = [event_frame(row) for row in rows]  # built once, whatever the number of followers
        for follower in list(self.followers.values()):
            if follower.ready:
                self._send(follower, rows, frames)
            else:
                follower.waiting.extend(rows)

    def presence(self, shown: ShowPresence) -> list[Session]:
        """Presence changed without an event (an agent waits, or stops): an `agent.presence` Notice to every
        tail of its room; returns the sessions to flush."""
        data: bytes | None = None
        pushed: list[Session] = []
        for follower in list(self.followers.values()):
            if follower.rooms and shown.room not in follower.rooms:
                continue
            if data is None:
                detail = to_builtins(shown.presence)
                data = encode(Notice(kind="agent.presence", room=shown.room, detail=detail))
            if follower.session.push(data):
                pushed.append(follower.session)
        return pushed

    def _send(self, follower: _Follower, rows: list[Row], frames: list[bytes] | None = None) -> None:
        session = follower.session
        rooms = follower.rooms
        out: list[bytes] = []
        for i, row in enumerate(rows):
            if row[0] <= follower.last or (rooms and row[1] not in rooms and row[1] != ""):
                continue
            follower.last = row[0]
            if row[2] == "MessageSent" and not follower.admin and not _visible(follower, row):
                continue
            out.append(event_frame(row) if frames is None else frames[i])
        if not out:
            return
        pushed = False
        if follower.batch:
            for i in range(0, len(out), BATCH_EVENTS):
                batch = b'{"type":"EventBatch","events":[' + b",".join(out[i : i + BATCH_EVENTS]) + b"]}"
                pushed = session.push(batch) or pushed
        else:
            for data in out:
                pushed = session.push(data) or pushed
        if pushed:
            session.flush()
