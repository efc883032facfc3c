"""The Python SDK: Agent (async) and SyncAgent (blocking) over the hub's WebSocket protocol."""

from __future__ import annotations

from agent_sdk.aio import Agent
from agent_sdk.sync import SyncAgent
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Message

__all__ = ["Agent", "Code", "HubError", "Message", "SyncAgent"]
