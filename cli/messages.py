"""`synapse send`, `message list`, `message claim`: the feed."""

from __future__ import annotations

import sys
from typing import Any

import click

from cli.claims import fence_option
from cli.main import BadInput, client, client_options, settings
from cli.output import clean, emit, fmt_time, parse_value

__all__ = ["register", "render"]


def render(m: dict[str, Any]) -> str:
    """One message as a readable line."""
    body = m["body"]
    text = body if isinstance(body, str) else _json(body)
    flags = " !" if m.get("priority") else ""
    claimed = f" [claimed by {m['claimed_by']}]" if m.get("claimed_by") else ""
    reply = f" (re {m['reply_to']})" if m.get("reply_to") else ""
    return (
        f"#{m['seq']} {fmt_time(m['at'])} {clean(m['from'])} → {clean(','.join(m['to']))} "
        f"[{clean(m['kind'])}]{flags}{reply}{claimed}: {clean(text)}"
    )


def _json(value: Any) -> str:
    from hub.protocol.codec import encode

    return encode(value).decode()


def _stdin_text() -> str:
    """The body on stdin, which must be UTF-8 text (refused in one line, exit 2, otherwise)."""
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"stdin is not valid UTF-8 text (at byte {exc.start}: {data[exc.start : exc.start + 8]!r})",
            param_hint="BODY",
        ) from None


def register(group: click.Group) -> None:
    @group.command("send")
    @click.option(
        "--target",
        "-t",
        metavar="T",
        help="name, a,b, room/*, room/name or all (repeatable); with --reply-to and no --target, the reply goes "
        "to the answered message's sender only.",
        multiple=True,
    )
    @click.option("--kind", default="message", show_default=True, help="What sort of message.")
    @click.option("--reply-to", type=int, metavar="SEQ", help="The message this answers.")
    @click.option("--priority", is_flag=True, help="Wake even --directed-only waiters (use sparingly).")
    @click.option(
        "--stagger",
        type=click.FloatRange(0, 60),
        default=0.0,
        metavar="S",
        help="Spread a `*`/`all` send's wakes over S seconds (0..60), one waiter after another in name order, "
        "instead of waking every waiting agent at once [default: 0].",
    )
    @click.option(
        "--key",
        metavar="K",
        help="Idempotency key (per sender): sending again with K prints the first send's seq and sends "
        "nothing (retry a send safely).",
    )
    @click.option(
        "--allow-unknown",
        is_flag=True,
        help="Send to a name that has not joined yet (otherwise refused with unknown_recipient).",
    )
    @click.argument("body", nargs=-1, required=True)
    @fence_option
    @client_options
    @click.pass_context
    def send(
        ctx: click.Context,
        target: tuple[str, ...],
        kind: str,
        reply_to: int | None,
        priority: bool,
        stagger: float,
        key: str | None,
        allow_unknown: bool,
        body: tuple[str, ...],
        fence: dict[str, int],
    ) -> None:
        """Send BODY (JSON if it parses, else text; `-` reads stdin) and print its seq once it is durable.

        For a directed send the seq is followed by each recipient's unread count (`bob=3`); --json adds
        `"unread": {"bob": 3}`. A directed send to a name that never joined exits 1 (unknown_recipient).
        """
        raw = _stdin_text() if body == ("-",) else " ".join(body)
        targets = [t for each in target for t in each.split(",") if t.strip()]
        if not targets and reply_to is None:
            raise click.UsageError("give --target T (or --reply-to SEQ to answer its sender)")
        result = client(ctx, need_name=True).replies.send(
            targets,
            parse_value(raw),
            kind=kind,
            reply_to=reply_to,
            priority=priority,
            fence=fence,
            stagger=stagger,
            key=key,
            allow_unknown=allow_unknown,
        )
        for unknown in result.get("unknown", ()):
            click.echo(
                f"warning: {unknown} has not joined yet; it will find the message in its feed", err=True
            )
        unread = " ".join(f"{clean(n)}={c}" for n, c in result.get("unread", {}).items())
        emit(settings(ctx).json, result, f"{result['seq']} {unread}".strip())

    @group.group("message")
    def message() -> None:
        """Read and claim messages in the room's feed."""

    @message.command("list")
    @click.option("--for", "for_", metavar="NAME", help="Only messages addressed to NAME.")
    @click.option("--after", type=int, default=0, metavar="SEQ", help="Only messages after this seq.")
    @click.option("--kind", help="Only this kind.")
    @click.option("--unclaimed", is_flag=True, help="Only messages nobody has claimed.")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
    @click.option(
        "--unread",
        is_flag=True,
        help="Only messages addressed to --name after its read position (message ack).",
    )
    @client_options
    @click.pass_context
    def message_list(
        ctx: click.Context,
        for_: str | None,
        after: int,
        kind: str | None,
        unclaimed: bool,
        limit: int,
        unread: bool,
    ) -> None:
        """List messages in the feed, oldest first (NDJSON with --json).

        Directed messages are listed only to their sender and recipients: give --name (with --for NAME and
        no --name, the list is read as NAME).
        """
        if unread and not (settings(ctx).name or for_):
            raise click.UsageError("--unread lists for an agent: give --name NAME")
        result = client(ctx, name=settings(ctx).name or for_).replies.list_messages(
            for_=for_, after=after, kind=kind, unclaimed=unclaimed, limit=limit, unread=unread
        )
        as_json = settings(ctx).json
        for m in result["messages"]:
            emit(as_json, m, render(m))
        if not result["messages"] and not as_json:
            click.echo("no messages", err=True)

    @message.command("ack")
    @click.argument("seq", type=int)
    @client_options
    @click.pass_context
    def message_ack(ctx: click.Context, seq: int) -> None:
        """Mark everything addressed to --name up to SEQ read (the read position never moves back); prints the
        position and how many messages are still unread. `wait` and `relay` do it after handing one over."""
        result = client(ctx, need_name=True).replies.ack(seq)
        emit(settings(ctx).json, result, f"read up to {result['upto']}, {result['unread']} unread")

    @message.command("claim")
    @click.argument("seq", type=int)
    @client_options
    @click.pass_context
    def message_claim(ctx: click.Context, seq: int) -> None:
        """Claim message SEQ atomically; a second claimer gets `already_claimed` naming the holder."""
        result = client(ctx, need_name=True).replies.claim_message(seq)
        emit(settings(ctx).json, result, f"claimed {seq}")
