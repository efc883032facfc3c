"""Synapse Hub: the coordination hub for fleets of AI agents."""

from __future__ import annotations

from typing import Any

from hub.version import __version__

__all__ = ["HubConfig", "__version__", "serve"]


def __getattr__(name: str) -> Any:
    """Export serve and HubConfig lazily so `import hub.protocol` stays light."""
    if name == "HubConfig":
        from hub.config import HubConfig

        return HubConfig
    if name == "serve":
        from hub.server.hub import serve

        return serve
    raise AttributeError(name)
