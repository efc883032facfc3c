"""The `synapse` group: --hub/--room/--name/--token/--json before or after the command; errors → exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from cli.exit_codes import HELP, exit_code_for
from cli.output import emit_error
from hub.protocol.errors import HubError

__all__ = ["Settings", "client", "client_options", "main", "settings", "synapse"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_HUB = "ws://127.0.0.1:8876"
DEFAULT_RETRIES = (
    5  # as the SDK's (agent_sdk.base.DEFAULT_RETRIES, not imported: `synapse --help` stays fast)
)
MAX_RETRIES = 1000


class Settings:
    """The connection and identity one command runs with."""

    def __init__(
        self,
        hub: str,
        room: str,
        name: str | None,
        token: str | None,
        as_json: bool,
        admin_token: str | None = None,
        invite: str | None = None,
        ca_file: str | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.hub = hub
        self.room = room
        self.name = name
        self.token = token
        self.json = as_json
        self.admin_token = admin_token
        self.invite = invite
        self.ca_file = ca_file
        self.retries = retries

    def on_retry(self, exc: HubError, delay: float, attempt: int, retries: int) -> None:
        """Say on stderr what a command waits for before it tries again (JSON with --json)."""
        if self.json:
            note = {
                "retrying": {"code": str(exc.code), "in": round(delay, 3), "attempt": attempt, "of": retries}
            }
            click.echo(json.dumps(note), err=True)
        else:
            click.echo(f"{exc.code}: retrying in {delay:.2f}s ({attempt}/{retries})", err=True)

    def agent_options(self) -> dict[str, Any]:
        """What every SDK client of this command is built with: connection, TLS, retries."""
        return {
            "hub": self.hub,
            "room": self.room,
            "ca_file": self.ca_file,
            "retries": self.retries,
            "on_retry": self.on_retry,
        }


class BadInput(click.BadParameter):
    """A value the CLI cannot send (text that is not UTF-8): one line on stderr, exit 2, never a traceback."""

    def show(self, file: Any = None) -> None:
        ctx = self.ctx or click.get_current_context(silent=True)
        root = ctx.find_root() if ctx is not None else None
        as_json = bool(root is not None and root.meta.get("synapse", {}).get("json_"))
        emit_error(as_json, "bad_request", self.format_message())


def not_utf8(value: str) -> str | None:
    """Why `value` cannot go on the wire (it came from bytes that are not UTF-8: argv, the environment), or
    None. Python keeps such bytes as lone surrogates; they have no UTF-8 encoding."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = value.encode("utf-8", "surrogateescape" if _escaped(value) else "backslashreplace")
        return f"not valid UTF-8 text (at byte {len(value[: exc.start].encode('utf-8', 'surrogateescape'))}: {raw[:40]!r})"
    return None


def _escaped(value: str) -> bool:
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in value)


def check_text(ctx: click.Context) -> None:
    """Refuse (exit 2) a parameter of this command or its groups that is not UTF-8 text, before anything is
    sent; paths are exempt (a file name may be any bytes)."""
    at: click.Context | None = ctx
    while at is not None:
        for param in at.command.params:
            if isinstance(param.type, click.Path | click.File):
                continue
            value = at.params.get(param.name or "")
            for item in value if isinstance(value, tuple | list) else (value,):
                why = not_utf8(item) if isinstance(item, str) else None
                if why is not None:
                    raise BadInput(why, ctx=at, param=param)
        at = at.parent


def _store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or value is False:
        return
    why = not_utf8(value) if isinstance(value, str) and param.name != "ca_file" else None
    if why is not None:
        raise BadInput(why, ctx=ctx, param=param)
    ctx.find_root().meta.setdefault("synapse", {})[param.name] = value


_OPTIONS = [
    click.option(
        "--hub",
        metavar="URL",
        default=None,
        expose_value=False,
        callback=_store,
        help="The hub's WebSocket URL, or a comma-separated list of a deployment's hubs: a client fails over "
        f"to the next [env SYNAPSE_HUB; default {DEFAULT_HUB}].",
    ),
    click.option(
        "--room",
        metavar="ROOM",
        default=None,
        expose_value=False,
        callback=_store,
        help="The room [env SYNAPSE_ROOM; default: default].",
    ),
    click.option(
        "--name",
        metavar="NAME",
        default=None,
        expose_value=False,
        callback=_store,
        help="The agent to act as [env SYNAPSE_NAME].",
    ),
    click.option(
        "--token",
        metavar="TOKEN",
        default=None,
        expose_value=False,
        callback=_store,
        help="The agent's token [env SYNAPSE_TOKEN; default: the one saved at join].",
    ),
    click.option(
        "--admin-token",
        metavar="TOKEN",
        default=None,
        expose_value=False,
        callback=_store,
        help="The hub's admin token: to join, create rooms, invite, tail every room [env SYNAPSE_ADMIN_TOKEN].",
    ),
    click.option(
        "--invite",
        metavar="TOKEN",
        default=None,
        expose_value=False,
        callback=_store,
        help="A room invite (`synapse room invite`), to join a hub that has an admin token [env SYNAPSE_INVITE].",
    ),
    click.option(
        "--ca-file",
        metavar="PEM",
        default=None,
        expose_value=False,
        callback=_store,
        help="Trust this CA (PEM) for a wss:// hub instead of the system store [env SYNAPSE_CA_FILE].",
    ),
    click.option(
        "--retries",
        metavar="N",
        type=click.IntRange(0, MAX_RETRIES),
        default=None,
        expose_value=False,
        callback=_store,
        help=f"Send a request the hub refused with rate_limited or unavailable again, up to N times, "
        f"after a backoff [env SYNAPSE_RETRIES; default {DEFAULT_RETRIES}; 0: never].",
    ),
    click.option(
        "--json",
        "json_",
        is_flag=True,
        default=False,
        expose_value=False,
        callback=_store,
        help="Print one JSON document per result (NDJSON for streams).",
    ),
]


def client_options(f: F) -> F:
    """Accept the global flags after the command too (`synapse send ... --json --name a`)."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def settings(ctx: click.Context) -> Settings:
    """Flags (after the command win over before it), then the environment, then defaults."""
    given = ctx.find_root().meta.get("synapse", {})
    for var in (
        "SYNAPSE_HUB",
        "SYNAPSE_ROOM",
        "SYNAPSE_NAME",
        "SYNAPSE_TOKEN",
        "SYNAPSE_ADMIN_TOKEN",
        "SYNAPSE_INVITE",
    ):
        why = not_utf8(os.environ.get(var, ""))
        if why is not None and not given.get(var[len("SYNAPSE_") :].lower()):
            raise BadInput(why, ctx=ctx, param_hint=var)
    return Settings(
        hub=_hubs(given.get("hub") or os.environ.get("SYNAPSE_HUB") or DEFAULT_HUB),
        room=given.get("room") or os.environ.get("SYNAPSE_ROOM") or "default",
        name=given.get("name") or os.environ.get("SYNAPSE_NAME") or None,
        token=given.get("token") or os.environ.get("SYNAPSE_TOKEN") or None,
        as_json=bool(given.get("json_")),
        admin_token=given.get("admin_token") or os.environ.get("SYNAPSE_ADMIN_TOKEN") or None,
        invite=given.get("invite") or os.environ.get("SYNAPSE_INVITE") or None,
        ca_file=given.get("ca_file") or os.environ.get("SYNAPSE_CA_FILE") or None,
        retries=_retries(given.get("retries")),
    )


def _hubs(text: str) -> str:
    """The --hub / SYNAPSE_HUB value, refused (exit 2) unless it is a list of hub addresses."""
    from agent_sdk.base import hubs_of

    try:
        return ",".join(hubs_of(text))
    except HubError as exc:
        raise click.UsageError(f"--hub / SYNAPSE_HUB: {exc.message}") from None


def _retries(given: int | None) -> int:
    if given is not None:
        return given
    text = os.environ.get("SYNAPSE_RETRIES", "").strip()
    if not text:
        return DEFAULT_RETRIES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_RETRIES:
        raise click.UsageError(
            f"SYNAPSE_RETRIES must be a whole number from 0 to {MAX_RETRIES}, not {text!r}"
        )
    return value


def client(ctx: click.Context, *, need_name: bool = False, name: str | None = None) -> Any:
    """A connected SyncAgent for this command's settings."""
    from agent_sdk.sync import SyncAgent

    s = settings(ctx)
    check_text(ctx)
    who = name or s.name
    if need_name and not who:
        raise click.UsageError("this command acts as an agent: give --name NAME (or set SYNAPSE_NAME)")
    agent = SyncAgent(who, token=s.token, admin_token=s.admin_token, invite=s.invite, **s.agent_options())
    ctx.call_on_close(agent.close)
    return agent


class SynapseGroup(click.Group):
    """Loads command modules on demand; turns a HubError anywhere below into `code: message` on stderr and the
    documented exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in _MODULES:
            import importlib

            importlib.import_module(f"cli.{_MODULES[cmd_name]}").register(self)
            found = super().get_command(ctx, cmd_name)
        return found

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _deep_values():
                return super().invoke(ctx)
        except HubError as exc:
            as_json = bool(ctx.find_root().meta.get("synapse", {}).get("json_"))
            emit_error(as_json, str(exc.code), exc.message, exc.detail)
            ctx.exit(int(exit_code_for(exc.code)))
        except RecursionError:
            raise click.ClickException("a value is nested too deeply to handle") from None
        except OSError as exc:  # a file the command reads or writes (the hub's own errors are HubErrors)
            where = f" {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"cannot use{where}: {exc.strerror or exc}") from None


DEEP_VALUES = 4_000  # stack levels a command may use: a JSON value as deep as any hub accepts, and more


@contextlib.contextmanager
def _deep_values() -> Iterator[None]:
    """Room on the stack for deeply nested JSON from the hub: decoding and printing a value recurses once per
    level, and a hub may hold values nested nearly 1000 deep (Python's default limit, including the frames
    below)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, DEEP_VALUES))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


@click.group(cls=SynapseGroup, epilog=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@client_options
@click.version_option(package_name="synapse-hub", prog_name="synapse")
def synapse() -> None:
    """Synapse Hub: rooms, messages, leases, a shared plan and CEL conditions for fleets of agents.

    Start a hub with `synapse hub`; then agents `join`, `send`, `wait`, `relay`... against it.
    """


# Each command's module, imported only when that command runs (or for --help), so `synapse send` starts
# fast. A module's `register(group)` adds its commands; a new command is one line here.
_MODULES = {
    "hub": "hub",
    "join": "agents",
    "agents": "agents",
    "heartbeat": "agents",
    "status": "agents",
    "send": "messages",
    "message": "messages",
    "relay": "relay",
    "wait": "wait",
    "claim": "claims",
    "release": "claims",
    "handoff": "claims",
    "claims": "claims",
    "presence": "claims",
    "guard": "guard",
    "task": "tasks",
    "supervisor": "tasks",
    "board": "board",
    "state": "state",
    "eval": "state",
    "branch": "state",
    "mcp": "mcp",
    "tail": "tail",
    "room": "tail",
    "admin": "tail",
    "backup": "ops",
    "restore": "ops",
    "log": "ops",
    "why": "why",
}


def main() -> None:
    synapse(prog_name="synapse")
