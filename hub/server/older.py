"""Feed reads that reach behind the in-memory window: the older messages come from the log, then the core
answers the rest as usual (SPEC: the feed is readable from any cursor)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec

from hub.core import feed
from hub.core.effects import Deliver
from hub.core.machine import Context
from hub.protocol import commands as c
from hub.protocol.codec import decode_event
from hub.protocol.errors import HubError
from hub.protocol.frames import Delivery, Error, Message, Wake

if TYPE_CHECKING:
    from hub.core.rooms import Room
    from hub.server.hub import Hub
    from hub.server.session import Session

__all__ = ["OlderFeed"]

PAGE = 20_000


class OlderFeed:
    """Serves `message.list`, `attach` and `wait` whose cursor is older than a room's window."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def needs_log(self, cmd: Any) -> bool:
        t = type(cmd)
        if t is not c.ListMessages and t is not c.Attach and t is not c.Wait:
            return False
        after = cmd.after
        room = self.hub.machine.rooms.get(cmd.room)
        return after is not None and room is not None and after < room.base

    def start(self, session: Session, cmd: Any) -> None:
        task = asyncio.ensure_future(self._serve(session, cmd))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    async def _serve(self, session: Session, cmd: Any) -> None:
        hub = self.hub
        try:
            older, reached = await self._read(cmd)
            if type(cmd) is c.ListMessages:
                self._list(session, cmd, older, reached)
                return
            if type(cmd) is c.Wait:
                woken = next((m for m in older if _wakes(m, cmd)), None)
                if woken is not None:
                    room = hub.machine.rooms[cmd.room]
                    hub.reply(session, cmd.id, {"armed": room.seq})
                    hub.fanout.hold(
                        [Deliver((session.id,), Wake(id=cmd.id, reason="message", message=woken))]
                    )
                    return
            else:
                hub.fanout.hold([Deliver((session.id,), Delivery(message=m)) for m in older])
            rest = msgspec.structs.replace(cmd, after=reached)
            hub.submit(hub.machine.handle(rest, Context(hub.clock(), session.id, hub.secret)))
        except HubError as exc:
            frame = Error(id=cmd.id, code=str(exc.code), message=exc.message, detail=exc.detail)
            hub.fanout.hold([Deliver((session.id,), frame)])

    async def _read(self, cmd: Any) -> tuple[list[Message], int]:
        """Messages after `cmd.after` that only the log holds, up to the room's window as it is now."""
        hub = self.hub
        loop = asyncio.get_running_loop()
        target = hub.machine.position
        while hub.durable_position < target:  # what left memory is committed long before; make sure
            await asyncio.sleep(0.001)
        room = hub.machine.rooms[cmd.room]
        for_ = cmd.for_ if type(cmd) is not c.Attach else cmd.name
        kind = cmd.kind if type(cmd) is c.ListMessages else None
        unclaimed = type(cmd) is c.ListMessages and cmd.unclaimed
        limit = cmd.limit if type(cmd) is c.ListMessages else None
        found: list[Message] = []
        reached = cmd.after
        while reached < room.base and (limit is None or len(found) < limit):
            until = room.base
            rows = await loop.run_in_executor(None, _scan, hub, room, reached, until)
            for event in rows:
                if kind is not None and event.kind != kind:
                    continue
                if unclaimed and event.seq in room.claimed:
                    continue
                if for_ is not None and not feed.addressed(event, for_):
                    continue
                found.append(feed.to_message(room, event))
                if limit is not None and len(found) >= limit:
                    return found, found[-1].seq
            reached = until
        return found, reached

    def _list(self, session: Session, cmd: c.ListMessages, older: list[Message], reached: int) -> None:
        room = self.hub.machine.rooms[cmd.room]
        messages = list(older)
        if len(messages) < cmd.limit:
            for event in feed.matching(room, reached, cmd.for_, cmd.kind, cmd.unclaimed):
                messages.append(feed.to_message(room, event))
                if len(messages) >= cmd.limit:
                    break
        self.hub.reply(session, cmd.id, {"messages": messages, "head": room.seq})


def _wakes(message: Message, cmd: c.Wait) -> bool:
    return cmd.for_ is not None and feed.addressed(message, cmd.for_, cmd.directed_only)  # type: ignore[arg-type]


def _scan(hub: Hub, room: Room, after: int, until: int) -> list[Any]:
    """MessageSent events of `room` with after < seq <= until, read from the log from the nearest mark."""
    out = []
    position = room.mark_for(after)
    name = room.name
    while True:
        rows = hub.log.read(position, PAGE)
        for seq, row_room, kind, data, _at in rows:
            position = seq
            if row_room != name or kind != "MessageSent":
                continue
            event = decode_event(data)
            if event.seq <= after:
                continue
            if event.seq > until:
                return out
            out.append(event)
        if len(rows) < PAGE:
            return out
