"""One page of a room's messages read from the log, for reads behind the in-memory window (the core decides
what to do with it: STYLE.md §1)."""

from __future__ import annotations

from hub.core.effects import HistoryRead, LogRead, ReadHistory, ReadLog
from hub.log.store import EventLog
from hub.protocol.codec import decode_event
from hub.protocol.events import MessageSent

__all__ = ["PAGE", "STATE_EVENTS", "read_history", "read_page"]

PAGE = 5_000  # messages per page at most (and log rows per read)


def read_page(log: EventLog, request: ReadLog) -> LogRead:
    """MessageSent events of the room with after < seq <= until, from log position `start` on, one page.

    The page ends at `until`, at PAGE messages, or at the log's end; its `position` is the last row consumed.
    """
    found: list[MessageSent] = []
    position = request.start
    while True:
        rows = log.read(position, PAGE)
        for pos, room, kind, data, _at in rows:
            if room == request.room and kind == "MessageSent":
                event = decode_event(data)
                if event.seq > request.until:  # not consumed: the next read starts before it
                    return LogRead(request, tuple(found), request.until, position)
                if event.seq > request.after:
                    found.append(event)
                    if len(found) >= PAGE:
                        return LogRead(request, tuple(found), event.seq, pos)
            position = pos
        if len(rows) < PAGE:
            return LogRead(request, tuple(found), request.until, position)


STATE_EVENTS = ("StateWritten", "StateDeleted", "ViewDefined")


def read_history(log: EventLog, request: ReadHistory) -> HistoryRead:
    """One page (PAGE rows at most) of the room's state events below position `before`, newest first, for
    `state history`; the core keeps the key's and asks for the next page if it needs one."""
    rows = log.read_back(request.before, PAGE, request.room, STATE_EVENTS)
    found = tuple((pos, decode_event(data)) for pos, _room, _kind, data, _at in rows)
    return HistoryRead(request, found, rows[-1][0] if len(rows) == PAGE else 0)
