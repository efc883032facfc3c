"""Identifiers that must not mix: rooms, agents, addresses, sessions, sequence numbers."""

from __future__ import annotations

from typing import NewType

__all__ = ["Address", "AgentName", "Cursor", "Position", "RoomName", "Seq", "SessionId", "Version"]

RoomName = NewType("RoomName", str)
AgentName = NewType("AgentName", str)
Address = NewType("Address", str)  # a target: name, a room group `room/*`, `room/name`, or `all`
SessionId = NewType("SessionId", int)
Seq = NewType("Seq", int)  # a message's number in its room's feed, from 1
Cursor = NewType("Cursor", int)  # the last seq a reader has seen
Position = NewType("Position", int)  # an event's place in the whole log, from 1
Version = NewType("Version", int)
