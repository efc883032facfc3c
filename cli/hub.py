"""`synapse hub`: HubConfig from flags and SYNAPSE_* variables; imports the server inside the command only."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import msgspec

from hub.config import HubConfig, bind_problem

__all__ = ["default_db", "register"]

_HELP = {
    "host": "Address to listen on (loopback by default).",
    "port": "Port to listen on; 0 picks a free one.",
    "db": "The log: an SQLite file path or an SQLAlchemy URL (postgresql+psycopg://...). "
    "Default: $XDG_DATA_HOME/synapse/hub.db.",
    "admin_token": "Require this token to create rooms and join (or a room invite), and to tail every room.",
    "insecure": "Allow a non-loopback --host without an admin token (anyone who reaches it is trusted).",
    "tls_certfile": "PEM certificate: serve wss:// and the dashboard over https://.",
    "tls_keyfile": "PEM private key for --tls-certfile (if not inside it).",
    "sync": "normal: survives SIGKILL (SQLite WAL synchronous=NORMAL); full: fsync every group commit.",
    "snapshot_every": "Events between snapshots (0: never), so restart time stays flat.",
    "log_level": "debug, info, warning or error.",
    "rate_per_agent": "Commands an agent acts with (sends, writes, claims...) per second, sustained; reads are free.",
    "rate_burst": "Commands one agent may send at once before --rate-per-agent applies.",
    "rate_bytes_per_agent": "Frame bytes of those commands per agent per second, sustained: one agent cannot "
    "flood the hub with large bodies.",
    "rate_bytes_burst": "Frame bytes one agent may send at once before --rate-bytes-per-agent applies.",
    "feed_window": "Messages per room kept in memory (older ones are read from the log); 0: all.",
    "feed_window_bytes": "Bytes of message bodies per room kept in memory; 0: no byte cap.",
    "outbox_frames": "Frames queued for one connection before it is closed as a slow consumer (1008).",
    "outbox_bytes": "Bytes queued for one connection before it is closed as a slow consumer (1008).",
    "max_connections": "Open connections in all; more are refused with HTTP 503 before the upgrade.",
    "max_connections_per_address": "Open connections from one remote address; more get HTTP 503.",
    "max_subscriptions_per_session": "Subscriptions and condition waiters one connection may hold.",
    "max_subscriptions_per_agent": "Subscriptions and condition waiters one agent may hold over its connections.",
    "max_sessions_per_agent": "Connections one agent may attach at once.",
    "send_keys_per_agent": "Send keys (`send --key`) remembered per sender and room; past it the oldest is "
    "forgotten and a repeat of it would send again.",
    "log_format": "text or json (one JSON object per line).",
    "loop_limit": "Wake governor: refuse (rate_limited) a send that would wake an agent which, with the sender, has "
    "woken the other back and forth more than N times in the last minute (a wake loop); a one-way stream is never "
    "a loop. 0: off.",
    "standby": "When another hub owns the log, stand by: follow the log, keep the state warm, answer /healthz "
    "(/readyz 503, upgrades 503) and take over within a second or two of the owner's death. Without it a second "
    "hub on the log is refused. Meant for a PostgreSQL log shared by hubs on two hosts.",
    "ping_interval": "Seconds between two keepalive pings of a connection; one without its pong by the next ping "
    "is closed (1011), so a vanished client's claims and presence move on.",
    "now_resolution": "Seconds between re-evaluations of conditions that read CEL `now` (one timer, only while "
    "some condition reads it).",
}


def default_db() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "synapse" / "hub.db")


def _options(f: Any) -> Any:
    """One flag per HubConfig field: --max-frame-bytes ↔ SYNAPSE_MAX_FRAME_BYTES ↔ max_frame_bytes."""
    for field in reversed(msgspec.structs.fields(HubConfig)):
        flag = "--" + field.name.replace("_", "-")
        env = "SYNAPSE_" + field.name.upper()
        kind: Any = field.type
        base = {int: int, float: float, str: str}
        if kind in base:
            ptype: Any = base[kind]
        elif str(kind).startswith("int") or "int |" in str(kind):
            ptype = int
        elif "float" in str(kind):
            ptype = float
        else:
            ptype = str
        default = field.default
        help_text = _HELP.get(field.name, "")
        if default not in (None, "", msgspec.NODEFAULT):
            help_text = f"{help_text} [default: {default}]".strip()
        if field.type is not str and default is None:
            help_text += " [default: off]"
        help_text += f" [env {env}]"
        if kind is bool or str(kind) == "bool":
            f = click.option(flag, field.name, is_flag=True, envvar=env, default=None, help=help_text)(f)
            continue
        f = click.option(flag, field.name, type=ptype, envvar=env, default=None, help=help_text)(f)
    return f


def register(group: click.Group) -> None:
    @group.command("hub")
    @_options
    def hub_command(**given: Any) -> None:
        """Run the hub: a WebSocket server backed by the durable event log.

        Prints `listening ws://HOST:PORT` once it accepts connections. SIGTERM (or Ctrl-C) drains and exits 0.
        """
        values = {k: v for k, v in given.items() if v is not None}
        values.setdefault("db", default_db())
        if values.get("sync", "normal") not in ("normal", "full"):
            raise click.BadParameter("must be normal or full", param_hint="--sync")
        resolution = values.get("now_resolution", 1.0)
        if not 0.001 <= resolution <= 86_400:  # NaN fails too
            raise click.BadParameter("must be between 0.001 and 86400 seconds", param_hint="--now-resolution")
        if not 0.05 <= values.get("ping_interval", 20.0) <= 3_600:  # NaN fails too
            raise click.BadParameter("must be between 0.05 and 3600 seconds", param_hint="--ping-interval")
        if values.get("loop_limit", 0) < 0:
            raise click.BadParameter("must be 0 (off) or more", param_hint="--loop-limit")
        config = HubConfig(**values)
        problem = bind_problem(config)
        if problem is not None:
            raise click.UsageError(problem)
        sys.exit(run(config))


def run(config: HubConfig) -> int:
    import asyncio
    import logging

    from hub.log.store import LogError
    from hub.server.hub import Hub, serve

    _logging(config)
    try:
        import uvloop  # type: ignore[import-not-found]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run

    def ready(hub: Hub) -> None:
        click.echo(f"listening {hub.url}", err=False)
        sys.stdout.flush()
        logging.getLogger("hub").info("hub.listening url=%s db=%s", hub.url, config.db)

    def standing_by(hub: Hub) -> None:
        click.echo(f"standby {hub.url} (another hub owns the log; taking over when it is free)", err=False)
        sys.stdout.flush()
        logging.getLogger("hub").info("hub.standing_by url=%s db=%s", hub.url, config.db)

    try:
        return int(runner(serve(config, ready, standing_by)))
    except LogError as exc:
        click.echo(f"unavailable: {exc.message}", err=True)
        return 1
    except OSError as exc:
        click.echo(
            f"unavailable: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", err=True
        )
        return 1


def _logging(config: HubConfig) -> None:
    import json
    import logging
    import time

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return json.dumps(
                {
                    "at": round(time.time(), 3),
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "event": record.getMessage(),
                }
            )

    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())
    logging.getLogger("websockets").setLevel(logging.WARNING)
