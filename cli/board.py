"""`synapse board` and `synapse board intent`: the plan, live claims and declared intents in one view."""

from __future__ import annotations

from typing import Any

import click

from cli.claims import render_claim
from cli.main import client, client_options, settings
from cli.output import clean, emit

__all__ = ["register", "render_board"]


def render_board(b: dict[str, Any]) -> str:
    lines: list[str] = []
    tasks = b.get("tasks")
    if tasks is not None:
        lines.append("PLAN (ready first)")
        lines.extend(f"  {line}" for line in tasks) if tasks else lines.append("  (no tasks)")
    lines.append("CLAIMS")
    lines.extend(f"  {render_claim(c)}" for c in b["claims"]) if b["claims"] else lines.append("  (none)")
    lines.append("INTENTS")
    if not b["intents"]:
        lines.append("  (none)")
    for i in b["intents"]:
        note = f"  — {clean(i['note'])}" if i.get("note") else ""
        lines.append(f"  {clean(i['agent'])}  {clean(' '.join(i['paths']))}{note}")
        for o in i["overlaps"]:
            who = (
                f"claim {clean(o['work'])} by {clean(o['holder'])}"
                if "work" in o
                else f"intent of {clean(o['intent'])}"
            )
            lines.append(f"    ! overlaps {who} on {clean(' '.join(o['paths']))}")
    return "\n".join(lines)


def register(group: click.Group) -> None:
    @group.group("board", invoke_without_command=True)
    @client_options
    @click.pass_context
    def board(ctx: click.Context) -> None:
        """Show the plan, live claims and declared intents (overlaps flagged)."""
        if ctx.invoked_subcommand is None:
            b = client(ctx).board()
            emit(settings(ctx).json, b, render_board(b))

    @board.command("intent")
    @click.option(
        "--paths", "-p", multiple=True, metavar="P", help="Paths you are about to touch (repeatable)."
    )
    @click.argument("more_paths", nargs=-1, metavar="[P]...")
    @click.option("--note", metavar="TEXT", help="What you intend to do.")
    @click.option("--clear", is_flag=True, help="Withdraw your declared intent.")
    @client_options
    @click.pass_context
    def intent(
        ctx: click.Context, paths: tuple[str, ...], more_paths: tuple[str, ...], note: str | None, clear: bool
    ) -> None:
        """Declare advisory intent to touch paths (no lease): others see it on the board, overlaps flagged."""
        all_paths = () if clear else (*paths, *more_paths)
        if not all_paths and not clear:
            raise click.UsageError("give --paths P [P ...] (or --clear)")
        b = client(ctx, need_name=True).intent(all_paths, note)
        emit(settings(ctx).json, b, render_board(b))
