"""`synapse join`, `agents`, `heartbeat`, `status`: identity and presence."""

from __future__ import annotations

from typing import Any

import click

from cli.main import client, client_options, settings
from cli.output import clean, emit, fmt_time

__all__ = ["register"]


def register(group: click.Group) -> None:
    @group.command("join")
    @click.argument("agent_name", metavar="NAME", required=False)
    @click.option("--role", help="What this agent does (shown in presence).")
    @click.option("--rotate", is_flag=True, help="Issue a new token for NAME (needs its current one).")
    @click.option(
        "--force",
        is_flag=True,
        help="Take NAME over without its token (only on a hub without an admin token; recorded, and the old "
        "holder's sessions are told and closed).",
    )
    @client_options
    @click.pass_context
    def join(ctx: click.Context, agent_name: str | None, role: str | None, rotate: bool, force: bool) -> None:
        """Join the room as NAME (default: --name) and print its token.

        A name belongs to whoever holds its token: re-joining an existing name needs it (--token, or the one
        saved from an earlier join), else `name_taken` (exit 5). The token is saved in
        $XDG_CONFIG_HOME/synapse/tokens.json (mode 0600) for later commands.
        """
        agent = client(ctx, need_name=agent_name is None, name=agent_name)
        token = agent.join(role, rotate=rotate, force=force)
        s = settings(ctx)
        emit(s.json, {"room": agent.room, "name": agent.name, "token": token}, token)

    def waiting_on(a: dict[str, Any]) -> str:
        if a.get("waiting_on"):
            return str(a["waiting_on"])
        return f"messages (waiter {a['waiter']})" if a.get("waiter") else "-"

    @group.command("agents")
    @client_options
    @click.pass_context
    def agents(ctx: click.Context) -> None:
        """Presence of every agent in the room: status, waiting_on, last heartbeat, role."""
        listed = client(ctx).agents()
        lines = [f"{'NAME':20} {'STATUS':8} {'LAST HEARTBEAT':19} {'ROLE':12} WAITING ON"]
        for a in listed:
            lines.append(
                f"{clean(a['name']):20} {a['status']:8} {fmt_time(a['last_heartbeat']):19} "
                f"{clean(a.get('role') or '-'):12} {clean(waiting_on(a))}"
            )
        emit(settings(ctx).json, listed, "\n".join(lines) if listed else "no agents in this room")

    @group.command("heartbeat")
    @click.option("--status", type=click.Choice(["active", "busy", "idle", "done"]), help="A new status.")
    @client_options
    @click.pass_context
    def heartbeat(ctx: click.Context, status: str | None) -> None:
        """Tell the room this agent is alive (every send or claim already counts as one)."""
        result = client(ctx, need_name=True).heartbeat(status)
        emit(settings(ctx).json, result, f"{result['name']} {result['status']}")

    @group.command("status")
    @client_options
    @click.pass_context
    def status(ctx: click.Context) -> None:
        """Hub version, uptime, rooms, agents online and log size."""
        result: dict[str, Any] = client(ctx).status()
        text = "\n".join(f"{k:14} {v}" for k, v in result.items())
        emit(settings(ctx).json, result, text)
