"""`synapse wait`: block until a message for an agent arrives, then exit 0 and print what woke it."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import click

from cli.main import client, client_options, settings
from cli.messages import render
from cli.output import clean, emit
from cli.relay import handed_over, read_cursor, write_cursor
from hub.protocol.codec import encode, to_builtins
from hub.protocol.commands import MAX_GOVERNOR_SECONDS

__all__ = ["register"]

BROADCAST_JITTER = 8.0


def _process_started() -> float:
    """When this process started (wall clock): the interpreter's start-up comes before this module's import.

    Read from /proc/self/stat (start time in clock ticks since boot); the import time where that is missing.
    """
    now = time.time()
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime; fields[0] is field 3, the one after `(comm)`
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - min(max(age, 0.0), 60.0)


STARTED = _process_started()  # a message sent after this process started wakes it, even before it armed


def register(group: click.Group) -> None:
    @group.command("wait")
    @click.option("--for", "for_", metavar="NAME", help="Wake on a message addressed to NAME.")
    @click.option(
        "--directed-only",
        is_flag=True,
        help="Only messages naming NAME itself (or sent with --priority) wake it; not room/* or all.",
    )
    @click.option(
        "--wake-jitter",
        type=click.FloatRange(0),
        metavar="S",
        help="Delay the exit by a random 0..S seconds [default: 8 for broadcasts, 0 for directed].",
    )
    @click.option("--condition", metavar="EXPR", help="Wake when this CEL expression is true.")
    @click.option(
        "--timeout", type=click.FloatRange(0), metavar="S", help="Give up after S seconds (exit 3)."
    )
    @click.option(
        "--after",
        type=int,
        metavar="SEQ",
        help="Wake for any message after this seq [default: any sent after this process started].",
    )
    @click.option(
        "--cursor",
        "cursor_file",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Like --after, reading the seq from a `synapse relay` cursor file (relay moves it on).",
    )
    @click.option(
        "--advance",
        is_flag=True,
        help="With --cursor: after a wake, move the cursor file past the last message handed over, so the next "
        "`wait --cursor FILE --advance` starts after them (a wait loop without relay; with relay, let relay "
        "move it, or relay skips what wait printed).",
    )
    @click.option(
        "--settle",
        type=click.FloatRange(0, MAX_GOVERNOR_SECONDS),
        default=0.0,
        metavar="S",
        help="After the first message, wait up to S seconds (0..60) for the burst to end, then hand over "
        "everything that arrived: one wake for the burst [default: 0, no added latency].",
    )
    @client_options
    @click.pass_context
    def wait(
        ctx: click.Context,
        for_: str | None,
        directed_only: bool,
        wake_jitter: float | None,
        condition: str | None,
        timeout: float | None,
        after: int | None,
        cursor_file: Path | None,
        advance: bool,
        settle: float,
    ) -> None:
        """Block until a message addressed to NAME arrives (or EXPR is true); print what woke it, exit 0.

        A wake hands over every message waiting for NAME (oldest first, at most 100): one line each, so a
        burst costs one turn; --json prints `messages` (all of them) and `message` (the first).

        A --condition that is already true wakes it at once, so a turn-taking loop never misses its turn; while
        it waits, the agent named --name (if it is one) shows as `waiting` with `waiting_on` = EXPR.

        --name is the waiter's own name: one live waiter per name, so a new `wait` with the same --name takes
        over from a lingering one (even one whose process was killed) and the old one exits. Run it in the
        background and re-arm after every wake. If its connection drops it arms again on the next --hub
        address that answers (the same hub, back, with one). Exits 3 on --timeout, 4 if no hub answers again.
        """
        if for_ is None and condition is None:
            raise click.UsageError("give --for NAME (or --condition EXPR)")
        s = settings(ctx)
        if not s.name:
            raise click.UsageError("give the waiter a name: --name WAITER (or set SYNAPSE_NAME)")
        if advance and cursor_file is None:
            raise click.UsageError("--advance moves a --cursor FILE: give one")
        if cursor_file is not None:
            after = read_cursor(cursor_file)
        agent = client(ctx, name=for_ or s.name)  # waiting for NAME's messages is acting as NAME
        agent.arm(
            s.name,
            for_,
            directed_only=directed_only,
            after=after,
            since=None if after is not None else STARTED,
            condition=condition,
            settle=settle,
        )
        wake = agent.woken(timeout)
        from agent_sdk import verbs  # here: `synapse --help` does not import the SDK

        message = wake.message
        handed = verbs.handed(wake)
        broadcast = bool(handed) and all(for_ not in m.to for m in handed)
        jitter = wake_jitter if wake_jitter is not None else (BROADCAST_JITTER if broadcast else 0.0)
        if jitter:
            time.sleep(random.uniform(0, jitter))
        if message is not None:
            messages = to_builtins(handed)
            payload = {"woken_by": wake.reason, "message": messages[0], "messages": messages}
            emit(s.json, payload, "\n".join(render(m) for m in messages))
            if advance and cursor_file is not None:
                write_cursor(cursor_file, max(read_cursor(cursor_file), handed[-1].seq))
            handed_over(agent, for_, handed[-1].seq)
        else:
            payload = {"woken_by": wake.reason, "condition": wake.condition, "value": to_builtins(wake.value)}
            emit(s.json, payload, f"{clean(wake.condition)} → {clean(encode(payload['value']).decode())}")
        _exit_now()


def _exit_now() -> None:
    """Exit the moment the wake is printed: the harness re-invokes the agent on exit, and the hub has already
    disarmed this waiter, so the close handshake and interpreter teardown are skipped. Only in a real process
    (under click's CliRunner stdout has no file descriptor and this returns)."""
    import io
    import os
    import sys

    try:
        sys.stdout.flush()
        sys.stdout.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return
    sys.stderr.flush()
    os._exit(0)
