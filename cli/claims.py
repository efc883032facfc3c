"""`synapse claim`, `release`, `handoff`, `claims`, `presence`: leases on work with a file scope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.main import Settings, check_text, client, client_options, settings
from cli.output import clean, emit

__all__ = ["fence_option", "parse_fences", "register", "render_claim"]

F = TypeVar("F", bound=Callable[..., Any])


def render_claim(v: dict[str, Any]) -> str:
    left = ""
    if v.get("expires"):
        left = f" (expires in {max(0, int(v['expires'] - time.time()))}s)"
    epoch = f"  epoch={v['epoch']}" if v.get("epoch") else ""
    paths = clean(" ".join(v["paths"]))
    return f"{clean(v['work'])}  {clean(v['holder'])}  [{v.get('held_by', '?')}]{left}{epoch}  {paths}"


def parse_fences(given: tuple[str, ...]) -> dict[str, int]:
    """`WORK=EPOCH` (a task: `task:ID=EPOCH`) → {WORK: EPOCH}; a malformed or repeated one is a usage error."""
    fences: dict[str, int] = {}
    for raw in given:
        work, sep, epoch = raw.rpartition("=")
        if not sep or not work or not epoch.isdigit() or int(epoch) < 1:
            raise click.BadParameter(
                f"{raw!r} is not WORK=EPOCH (EPOCH a whole number from 1)", param_hint="--fence"
            )
        if fences.get(work, int(epoch)) != int(epoch):
            raise click.BadParameter(f"{work!r} is fenced at two epochs", param_hint="--fence")
        fences[work] = int(epoch)
    return fences


def _fences(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, int]:
    return parse_fences(value)


def fence_option(f: F) -> F:
    """`--fence WORK=EPOCH` (repeatable): the write is refused with `fenced` unless --name still holds each
    claim (a task: `task:ID=EPOCH`) at that epoch, as `claim` / `task claim` printed it."""
    return click.option(
        "--fence",
        "fence",
        multiple=True,
        metavar="WORK=EPOCH",
        callback=_fences,
        help="Refused with `fenced` (exit 1) unless you still hold claim WORK (a task: task:ID) at EPOCH, "
        "as `claim` / `task claim` printed it. Repeatable.",
    )(f)


def register(group: click.Group) -> None:
    @group.command("claim")
    @click.argument("work")
    @click.option(
        "--paths",
        "-p",
        multiple=True,
        metavar="P",
        help="Files, directories or globs (repeatable; several may follow one --paths).",
    )
    @click.argument("more_paths", nargs=-1, metavar="[P]...")
    @click.option(
        "--ttl",
        type=click.FloatRange(min=0, min_open=True),
        metavar="S",
        help="Seconds the claim lives without a session [default: 600].",
    )
    @click.option("--checkpoint", metavar="TEXT", help="Progress notes the next claimer of WORK receives.")
    @click.option("--renew", is_flag=True, help="Extend the TTL of a claim you hold.")
    @client_options
    @click.pass_context
    def claim(
        ctx: click.Context,
        work: str,
        paths: tuple[str, ...],
        more_paths: tuple[str, ...],
        ttl: float | None,
        checkpoint: str | None,
        renew: bool,
    ) -> None:
        """Lease WORK on a file scope; refused with `claim_overlap` naming the holder if it overlaps another's.

        With a live `synapse presence` connector for --name the claim lives with that session (plus a grace
        period); without one it is held by TTL and renewed with `--renew`. A checkpoint left by the previous
        holder of WORK is printed. Prints the grant's epoch (`--json`: "epoch"): pass `--fence WORK=EPOCH` to
        writes that must not land once the claim is lost. Claiming WORK you hold says so ("already_held").
        """
        all_paths = (*paths, *more_paths)
        if not all_paths and not renew:
            raise click.UsageError("give the scope: --paths P [P ...]")
        v = client(ctx, need_name=True).replies.claim(
            work, all_paths, ttl=ttl, checkpoint=checkpoint, renew=renew
        )
        text = render_claim(v)
        if v.get("already_held") and not renew:
            text += "\nalready held by you (the same epoch)"
        if v.get("checkpoint") and not renew:
            text += f"\ncheckpoint: {clean(v['checkpoint'])}"
        emit(settings(ctx).json, v, text)

    @group.command("release")
    @click.argument("work")
    @click.option("--checkpoint", metavar="TEXT", help="Progress notes for the next claimer of WORK.")
    @fence_option
    @client_options
    @click.pass_context
    def release(ctx: click.Context, work: str, checkpoint: str | None, fence: dict[str, int]) -> None:
        """Release WORK, optionally leaving a checkpoint for whoever claims it next."""
        v = client(ctx, need_name=True).replies.release(work, checkpoint=checkpoint, fence=fence)
        emit(settings(ctx).json, v, f"released {clean(work)}")

    @group.command("handoff")
    @click.argument("work")
    @click.option(
        "--to", "to", required=True, metavar="AGENT", help="The agent (in this room) to hand it to."
    )
    @fence_option
    @client_options
    @click.pass_context
    def handoff(ctx: click.Context, work: str, to: str, fence: dict[str, int]) -> None:
        """Move your live claim WORK, with its checkpoint, to AGENT atomically (AGENT gets a new epoch)."""
        v = client(ctx, need_name=True).replies.handoff(work, to, fence=fence)
        emit(settings(ctx).json, v, f"handed {clean(work)} to {clean(to)}")

    @group.command("claims")
    @client_options
    @click.pass_context
    def claims(ctx: click.Context) -> None:
        """Live claims: work, holder, how it is held, expiry, paths (NDJSON with --json)."""
        listed = client(ctx).claims()
        as_json = settings(ctx).json
        for v in listed:
            emit(as_json, v, render_claim(v))
        if not listed and not as_json:
            click.echo("no live claims", err=True)

    @group.command("presence")
    @click.option(
        "--interval",
        type=click.FloatRange(min=1),
        default=30.0,
        show_default=True,
        metavar="S",
        help="Seconds between heartbeats.",
    )
    @client_options
    @click.pass_context
    def presence(ctx: click.Context, interval: float) -> None:
        """Hold a session for --name: keeps presence fresh, reconnects by itself, and makes the CLI's claims
        for that name live with this session (plus the grace period) instead of a TTL. Stop with Ctrl-C."""
        import asyncio

        s = settings(ctx)
        check_text(ctx)
        if not s.name:
            raise click.UsageError("give the agent: --name NAME (or set SYNAPSE_NAME)")
        try:
            asyncio.run(_hold(s, s.name, interval))
        except KeyboardInterrupt:
            pass


async def _hold(s: Settings, name: str, interval: float) -> None:
    import asyncio
    import signal

    from agent_sdk.aio import Agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    room, as_json = s.room, s.json
    async with Agent(name, token=s.token, stream=False, **s.agent_options()) as agent:
        emit(
            as_json,
            {"presence": "connected", "room": room, "name": name},
            f"holding a session for {room}/{name} on {agent.hub}",
        )

        async def notices() -> None:
            async for n in agent.notices():
                emit(as_json, {"notice": n.kind, **n.detail}, f"{n.kind}: {clean(n.detail.get('work', ''))}")

        watcher = asyncio.create_task(notices())
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
            if not stop.is_set():
                try:
                    await agent.heartbeat()
                except Exception as exc:  # the SDK reconnects; keep holding
                    click.echo(f"heartbeat failed: {exc}", err=True)
        watcher.cancel()
