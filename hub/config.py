"""HubConfig: the one frozen configuration of a hub (bind, log, admin token, limits, timeouts)."""

from __future__ import annotations

import ipaddress

import msgspec

__all__ = ["DEFAULT_PORT", "HubConfig", "bind_problem", "is_loopback"]

DEFAULT_PORT = 8876


class HubConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Every field has a default; `synapse hub` maps `--max-frame-bytes` ↔ SYNAPSE_MAX_FRAME_BYTES ↔ here."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port
    db: str = ""  # SQLite path or SQLAlchemy URL; "" = $XDG_DATA_HOME/synapse/hub.db (resolved by the CLI)
    admin_token: str | None = None
    insecure: bool = False  # listen on a non-loopback address without an admin token
    tls_certfile: str | None = None  # PEM certificate (chain): serve wss:// and https://
    tls_keyfile: str | None = None  # its private key (PEM); omitted: the key is in tls_certfile
    sync: str = "normal"  # "normal": survives SIGKILL; "full": fsync every group commit (power loss)
    snapshot_every: int = 50_000  # events between snapshots; 0 = never
    log_level: str = "info"
    log_format: str = "text"  # or "json"
    now_resolution: float = 1.0  # seconds between re-evaluations of conditions that read CEL `now`
    standby: bool = False  # when another hub owns the log: follow it, and take over when it is free

    # Limits (None switches a limit off)
    max_frame_bytes: int | None = 1_048_576
    max_body_bytes: int | None = 262_144
    rate_per_agent: float | None = 2_000.0  # commands per second, sustained
    rate_burst: int = 4_000
    # frame bytes per second of those commands, sustained, and at once
    rate_bytes_per_agent: float | None = 16 << 20
    rate_bytes_burst: int = 64 << 20
    max_sessions_per_agent: int | None = 64
    outbox_frames: int = 10_000  # frames queued for one session before it counts as a slow consumer
    outbox_bytes: int = 8 << 20  # or bytes queued (beyond what the socket buffers) before it does
    max_connections: int | None = 10_000  # open connections in all (also kept below the descriptor limit)
    max_connections_per_address: int | None = 256  # open connections from one remote address
    max_list_limit: int = 10_000
    feed_window: int = 20_000  # messages per room kept in memory; older ones are read from the log (0: all)
    feed_window_bytes: int = 64 << 20  # and at most this many bytes of bodies per room (0: no byte cap)
    max_subscriptions_per_session: int | None = 1_000
    max_subscriptions_per_agent: int | None = 4_000  # over every session attached as one agent
    loop_limit: int = 0  # wakes back and forth between two agents per minute before a send is refused; 0: off
    send_keys_per_agent: int = 1_000  # send keys remembered per sender and room; the oldest are forgotten

    # Timeouts (seconds)
    drain_seconds: float = 5.0
    claim_grace: float = 30.0
    claim_ttl: float = 600.0
    ping_interval: float = (
        20.0  # seconds between keepalive pings of a connection; no pong by the next: closed
    )


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (127.0.0.0/8, ::1, localhost); "" and 0.0.0.0 do not."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_problem(config: HubConfig) -> str | None:
    """Why the hub must not listen as configured, or None (SPEC: without an admin token, loopback only)."""
    if config.admin_token is None and not config.insecure and not is_loopback(config.host):
        return (
            f"refusing to listen on {config.host or 'every address'!r} without an admin token: anyone who can "
            "reach it could join, read and write every room. Give --admin-token (SYNAPSE_ADMIN_TOKEN), or "
            "--insecure to do it anyway, or listen on 127.0.0.1."
        )
    if config.tls_keyfile is not None and config.tls_certfile is None:
        return "--tls-keyfile needs --tls-certfile"
    return None
