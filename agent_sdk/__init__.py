"""The Python SDK: Agent (async) and SyncAgent (blocking) over the hub's WebSocket protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_sdk.claims import Claim, SyncClaim
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Message, Notice, Trigger

if TYPE_CHECKING:
    from agent_sdk.aio import Agent
    from agent_sdk.sync import SyncAgent

__all__ = ["Agent", "Claim", "Code", "HubError", "Message", "Notice", "SyncAgent", "SyncClaim", "Trigger"]


def __getattr__(name: str) -> Any:
    """Import each client on first use, so the CLI's blocking client never loads asyncio."""
    if name == "Agent":
        from agent_sdk.aio import Agent

        return Agent
    if name == "SyncAgent":
        from agent_sdk.sync import SyncAgent

        return SyncAgent
    raise AttributeError(name)
