"""HubConfig: the one frozen configuration of a hub (bind, log, admin token, limits, timeouts)."""

from __future__ import annotations

import msgspec

__all__ = ["DEFAULT_PORT", "HubConfig"]

DEFAULT_PORT = 8876


class HubConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Every field has a default; `synapse hub` maps `--max-frame-bytes` ↔ SYNAPSE_MAX_FRAME_BYTES ↔ here."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port
    db: str = ""  # SQLite path or SQLAlchemy URL; "" = $XDG_DATA_HOME/synapse/hub.db (resolved by the CLI)
    admin_token: str | None = None
    sync: str = "normal"  # "normal": survives SIGKILL; "full": fsync every group commit (power loss)
    snapshot_every: int = 50_000  # events between snapshots; 0 = never
    log_level: str = "info"
    log_format: str = "text"  # or "json"

    # Limits (None switches a limit off)
    max_frame_bytes: int | None = 1_048_576
    max_body_bytes: int | None = 262_144
    rate_per_agent: float | None = 2_000.0  # commands per second, sustained
    rate_burst: int = 4_000
    max_sessions_per_agent: int | None = 64
    outbox_frames: int = 10_000  # frames queued for one session before it counts as a slow consumer
    max_list_limit: int = 10_000
    max_subscriptions_per_session: int | None = 1_000

    # Timeouts (seconds)
    drain_seconds: float = 5.0
    claim_grace: float = 30.0
    claim_ttl: float = 600.0
