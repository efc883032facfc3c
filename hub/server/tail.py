"""Tails: sessions following the durable event feed; backlog from the log, then every batch as it commits."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from typing import TYPE_CHECKING

from hub.log.store import Row
from hub.protocol.commands import Tail
from hub.protocol.errors import Code, HubError

if TYPE_CHECKING:
    from hub.server.hub import Hub
    from hub.server.session import Session

__all__ = ["Tails", "event_frame"]

logger = logging.getLogger(__name__)

BACKLOG_PAGE = 5_000
BATCH_EVENTS = 1_000  # events per EventBatch frame at most


def event_frame(row: Row) -> bytes:
    """An EventFrame built around the event's stored JSON, without decoding or re-encoding it."""
    seq, room, _type, data, _at = row
    return b'{"type":"EventFrame","position":%d,"room":%s,"event":%s}' % (seq, _json_str(room), data)


def _json_str(text: str) -> bytes:
    from hub.protocol.codec import encode

    return encode(text)


class _Follower:
    __slots__ = ("batch", "last", "ready", "rooms", "session", "waiting")

    def __init__(self, session: Session, rooms: frozenset[str], batch: bool = False) -> None:
        self.session = session
        self.rooms = rooms
        self.batch = batch  # EventBatch frames: a dashboard costs one frame per commit, not one per event
        self.last = 0  # the newest position sent
        self.ready = False  # backlog sent: live rows go straight out
        self.waiting: deque[Row] = deque()  # live rows that arrived while the backlog was read


class Tails:
    """Every tailing session, fed from the log writer's durable batches."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.followers: dict[int, _Follower] = {}

    def __bool__(self) -> bool:
        return bool(self.followers)

    def start(self, session: Session, cmd: Tail) -> None:
        """Check who may follow what, reply, then stream the backlog and the live feed."""
        admin = self.hub.config.admin_token
        no_proof = cmd.admin_token is None or not hmac.compare_digest(
            cmd.admin_token.encode(), (admin or "").encode()
        )  # bytes: compare_digest refuses non-ASCII str
        if admin is not None and not cmd.rooms and no_proof:
            raise HubError(Code.UNAUTHORIZED, "following every room needs the admin token")
        follower = _Follower(session, frozenset(cmd.rooms), cmd.batch)
        self.followers[session.id] = follower
        durable = self.hub.durable_position
        after = durable if cmd.after is None else max(0, min(cmd.after, durable))
        follower.last = after
        self.hub.reply(session, cmd.id, {"position": durable, "after": after})
        if after >= durable:
            follower.ready = True
            return
        task = asyncio.ensure_future(self._backlog(follower, after, durable))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    async def _backlog(self, follower: _Follower, after: int, until: int) -> None:
        loop = asyncio.get_running_loop()
        log = self.hub.log
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

    def _send(self, follower: _Follower, rows: list[Row], frames: list[bytes] | None = None) -> None:
        session = follower.session
        rooms = follower.rooms
        out: list[bytes] = []
        for i, row in enumerate(rows):
            if row[0] <= follower.last or (rooms and row[1] not in rooms and row[1] != ""):
                continue
            follower.last = row[0]
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
