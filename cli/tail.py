"""`synapse tail` (follow the durable event feed across hub restarts) and `synapse room create|invite|list`."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import click

from cli.main import Settings, check_text, client_options, settings
from cli.output import clean, emit
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError

__all__ = ["Follow", "kind_matches", "line", "register"]

RECONNECT_MAX = 2.0  # seconds between two attempts to reach a hub that went away
_COLOURS = {
    "message": "cyan",
    "claim": "yellow",
    "task": "green",
    "state": "magenta",
    "view": "magenta",
    "branch": "magenta",
    "agent": "blue",
    "presence": "blue",
    "session": "blue",
    "hub": "red",
    "room": "red",
    "invite": "red",
}
_WHO = ("agent", "from", "holder", "by", "to", "waiter")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def kind_matches(event_type: str, kinds: Iterable[str]) -> bool:
    """`--kind`: an event type (`MessageSent`, `message.sent`) or a family prefix (`claim`, `task`)."""
    have = _norm(event_type)
    return any(have.startswith(_norm(k)) for k in kinds)


def _involves(event: dict[str, Any], names: Iterable[str]) -> bool:
    """`--agent`: the event names the agent as actor, sender, holder or a target."""
    found: set[str] = set()
    for key in _WHO:
        value = event.get(key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str):
                found.add(v)
                found.add(v.rsplit("/", 1)[-1])  # `room/name` from another room
    return any(n in found for n in names)


def _actor(event: dict[str, Any]) -> str:
    for key in ("agent", "from", "holder", "by"):
        value = event.get(key)
        if isinstance(value, str) and value:
            return value
    return "-"


def _short(value: Any, limit: int = 80) -> str:
    from hub.protocol.codec import encode

    text = value if isinstance(value, str) else encode(value).decode()
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(event: dict[str, Any]) -> str:
    kind = event.get("type", "")
    if kind == "MessageSent":
        to = ",".join(event.get("to") or [])
        tag = "" if event.get("kind", "message") == "message" else f" [{event['kind']}]"
        prio = " !" if event.get("priority") else ""
        return f"#{event.get('seq')} → {to}{tag}{prio}: {_short(event.get('body'))}"
    if kind == "MessageClaimed":
        return f"#{event.get('seq')} claimed by {event.get('holder')}"
    if kind.startswith("Claim"):
        paths = " ".join(event.get("paths") or [])
        to = f" → {event['to']}" if event.get("to") else ""
        return f"{event.get('work')}{to} {paths}".rstrip()
    if kind == "TaskDeclared":
        return f"{event.get('task')} {_short(event.get('title'), 60)}"
    if kind == "TaskUpdated":
        return f"{event.get('task')} {event.get('status') or ''}".rstrip()
    if kind == "StateWritten":
        return f"{event.get('scope')}.{event.get('key')} = {_short(event.get('value'), 60)} (v{event.get('version')})"
    if kind == "StateDeleted":
        return f"{event.get('scope')}.{event.get('key')}"
    if kind == "ViewDefined":
        return f"_view.{event.get('key')} := {_short(event.get('expr'), 60)}"
    if kind == "PresenceChanged":
        return str(event.get("status"))
    if kind == PRESENCE_SHOWN:
        if event.get("waiting_on"):
            return f"waiting on {_short(event['waiting_on'], 60)}"
        if event.get("waiter"):
            return f"waiting: messages (waiter {event['waiter']})"
        return str(event.get("status"))
    if kind == "IntentDeclared":
        return " ".join(event.get("paths") or []) or "(cleared)"
    for key in ("branch", "work", "task", "key"):
        if event.get(key):
            return str(event[key])
    return ""


PRESENCE_SHOWN = "PresenceShown"  # the kind shown for an `agent.presence` Notice (presence with no event)


def presence_event(detail: dict[str, Any]) -> dict[str, Any]:
    """An `agent.presence` Notice's presence record as an event-like dict, for `--kind`, `--agent` and `line`."""
    return {
        "type": PRESENCE_SHOWN,
        "agent": detail.get("name"),
        "status": detail.get("status"),
        "waiting_on": detail.get("waiting_on"),
        "waiter": detail.get("waiter"),
    }


def line(frame: dict[str, Any]) -> str:
    """One readable line: time, position, room, agent, kind, summary (styled; click strips it off a TTY).

    An `agent.presence` Notice (an agent starts or stops waiting: no event, no position) shows as `PresenceShown`.
    """
    if frame.get("type") == "Notice":
        frame = {
            "position": "-",
            "room": frame.get("room"),
            "event": presence_event(frame.get("detail") or {}),
        }
    event = frame.get("event") or {}
    kind = str(event.get("type", "?"))
    at = event.get("at")
    stamp = datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3] if at else "--:--:--.---"
    colour = next((v for k, v in _COLOURS.items() if kind.lower().startswith(k)), None)
    return " ".join(
        [
            click.style(stamp, dim=True),
            click.style(f"{frame.get('position'):>6}", dim=True),
            clean(frame.get("room") or "-"),
            click.style(clean(_actor(event)), bold=True),
            click.style(kind, fg=colour),
            clean(_summary(event)),
        ]
    )


class Follow:
    """A tail that outlives the hub: on a lost connection it reconnects and resumes after the last position it
    handed out, so a restart leaves no gap and repeats nothing."""

    def __init__(
        self,
        s: Settings,
        rooms: tuple[str, ...],
        after: int | None,
        keep: Callable[[dict[str, Any]], bool],
        out: Callable[[dict[str, Any]], None],
        limit: int | None = None,
    ) -> None:
        self.s = s
        self.rooms = rooms
        self.last = after  # None: from now
        self.keep = keep
        self.out = out
        self.limit = limit
        self.shown = 0
        self.reached = False  # the hub answered once: from then on, losing it means reconnecting

    def run(self) -> None:
        """Follow until `limit` events were shown (forever without one).

        Raises:
            HubError: `unreachable` if the hub cannot be reached at first; `unauthorized` without the admin token
                for every room; any refusal of the tail itself.
        """
        delay = 0.05
        announced = False
        while True:
            answered = False
            try:
                if self._session():
                    return
            except _Lost as lost:
                answered = lost.answered
                exc = lost.error
                if (
                    exc.code not in (Code.UNREACHABLE, Code.DISCONNECTED, Code.UNAVAILABLE)
                    or not self.reached
                ):
                    raise exc from None
                if not announced:
                    click.echo(f"tail: {exc.message}; reconnecting…", err=True)
                    announced = True
            if answered:  # it was following: the next attempt starts with a short pause again
                delay, announced = 0.05, False
            time.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _session(self) -> bool:
        """One connection: start the tail after `last`, then hand out frames; True once `limit` is reached."""
        from agent_sdk.base import error_of
        from agent_sdk.sync import SyncAgent
        from hub.protocol.codec import to_builtins
        from hub.protocol.frames import Error, EventFrame, Notice, Ok

        client = SyncAgent(  # with --name, its token: the tail then shows that agent's directed messages
            self.s.name, token=self.s.token, save_token=False, **self.s.agent_options()
        )
        answered = False
        try:
            client.connect()
            cmd = c.Tail(
                id=client.next_id(),
                room=self.s.room,
                token=client.token,
                after=self.last,
                rooms=self.rooms,
                admin_token=self.s.admin_token,
            )
            client.post(cmd)
            while True:
                frame = client.next_frame()
                if type(frame) is EventFrame:
                    if self.last is not None and frame.position <= self.last:
                        continue
                    self.last = frame.position
                    data = to_builtins(frame)
                    if self.keep(data.get("event") or {}):
                        self.out(data)
                        self.shown += 1
                        if self.limit is not None and self.shown >= self.limit:
                            return True
                elif type(frame) is Notice and frame.kind == "agent.presence":
                    if self.keep(presence_event(frame.detail)):
                        self.out(to_builtins(frame))
                        self.shown += 1
                        if self.limit is not None and self.shown >= self.limit:
                            return True
                elif type(frame) is Ok and frame.id == cmd.id:
                    answered = self.reached = True
                    after = int(frame.result["after"])
                    if self.last is None or after > self.last:
                        self.last = after
                elif type(frame) is Error and frame.id in (cmd.id, None):
                    raise error_of(frame)
        except HubError as exc:
            raise _Lost(exc, answered) from None
        finally:
            client.close()


class _Lost(Exception):
    """A session of the tail ended with `error`; `answered`: the hub had accepted the tail first."""

    def __init__(self, error: HubError, answered: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.answered = answered


def register(group: click.Group) -> None:
    @group.command("tail")
    @click.option(
        "--all-rooms", is_flag=True, help="Every room (needs the admin token when the hub has one)."
    )
    @click.option("--agent", "agents", multiple=True, metavar="NAME", help="Only events naming this agent.")
    @click.option(
        "--kind",
        "kinds",
        multiple=True,
        metavar="K",
        help="Only this event type (MessageSent, claim.granted) or family (message, claim, task, state); repeatable.",
    )
    @click.option(
        "--since",
        type=int,
        default=None,
        metavar="POSITION",
        help="Start after this log position (default: now).",
    )
    @click.option("--count", type=int, default=None, metavar="N", help="Exit after printing N events.")
    @client_options
    @click.pass_context
    def tail_command(
        ctx: click.Context,
        all_rooms: bool,
        agents: tuple[str, ...],
        kinds: tuple[str, ...],
        since: int | None,
        count: int | None,
    ) -> None:
        """Follow the live event feed (every kind of event) of the room, or of every room.

        One line per event: time, log position, room, agent, kind, summary (NDJSON EventFrames with --json:
        position, room, event). An agent that starts or stops waiting shows as PresenceShown (with --json: a
        Notice of kind agent.presence, its presence in `detail`). Survives hub restarts: it reconnects and resumes after the last event it
        printed. `--agent` and `--kind` filter on this side; `--since` takes a position printed earlier.
        """
        s = settings(ctx)
        check_text(ctx)
        if all_rooms and ctx.find_root().meta.get("synapse", {}).get("room"):
            raise click.UsageError("give --room or --all-rooms, not both")
        if since is not None and since < 0:
            raise click.BadParameter("must be 0 or more", param_hint="--since")

        def keep(event: dict[str, Any]) -> bool:
            if kinds and not kind_matches(str(event.get("type", "")), kinds):
                return False
            return not agents or _involves(event, agents)

        def out(frame: dict[str, Any]) -> None:
            if s.json:
                emit(True, frame)
            else:
                click.echo(line(frame))
                sys.stdout.flush()

        try:
            Follow(s, () if all_rooms else (s.room,), since, keep, out, count).run()
        except KeyboardInterrupt:
            ctx.exit(0)

    @group.group("room")
    def room_group() -> None:
        """Rooms on a hub with an admin token: create them and invite agents (a join token per room)."""

    def _operator(ctx: click.Context) -> Any:
        from agent_sdk.sync import SyncAgent

        s = settings(ctx)
        check_text(ctx)
        agent = SyncAgent(None, admin_token=s.admin_token, **s.agent_options())
        ctx.call_on_close(agent.close)
        return s, agent

    @room_group.command("create")
    @click.argument("room_name", metavar="NAME")
    @client_options
    @click.pass_context
    def room_create(ctx: click.Context, room_name: str) -> None:
        """Create room NAME (needs --admin-token when the hub has one). Refused with `already_exists`."""
        s, agent = _operator(ctx)
        result = agent.request(c.CreateRoom(id=agent.next_id(), room=room_name, admin_token=s.admin_token))
        emit(s.json, result, f"created room {clean(result['room'])}")

    @room_group.command("invite")
    @click.argument("room_name", metavar="NAME")
    @click.option("--ttl", type=float, default=None, metavar="S", help="The invite lapses after S seconds.")
    @client_options
    @click.pass_context
    def room_invite(ctx: click.Context, room_name: str, ttl: float | None) -> None:
        """Print a join token for room NAME (created if need be); agents join with `--invite TOKEN`.

        The hub keeps only its hash; it admits any agent name to NAME until it lapses.
        """
        s, agent = _operator(ctx)
        result = agent.request(
            c.InviteRoom(id=agent.next_id(), room=room_name, admin_token=s.admin_token, ttl=ttl)
        )
        emit(s.json, result, result["invite"])

    @group.group("admin")
    def admin_group() -> None:
        """Operator verbs that need the hub's admin token (--admin-token or SYNAPSE_ADMIN_TOKEN)."""

    @admin_group.command("reset-token")
    @click.argument("agent_name", metavar="NAME")
    @client_options
    @click.pass_context
    def reset_token(ctx: click.Context, agent_name: str) -> None:
        """Give agent NAME (in --room) a new token and print it; its sessions are told and closed.

        The way to take a name back on a hub with an admin token (`join --force` is refused there).
        """
        s, agent = _operator(ctx)
        result = agent.request(
            c.ResetToken(id=agent.next_id(), room=s.room, name=agent_name, admin_token=s.admin_token)
        )
        emit(s.json, result, result["token"])

    @room_group.command("list")
    @client_options
    @click.pass_context
    def room_list(ctx: click.Context) -> None:
        """Every room with its agents (online), messages, live claims and tasks."""
        s, agent = _operator(ctx)
        rooms = agent.request(c.ListRooms(id=agent.next_id(), admin_token=s.admin_token))["rooms"]
        text = "\n".join(
            f"{clean(r['name'])}  agents={r['agents']} online={r['online']} messages={r['messages']} "
            f"claims={r['claims']} tasks={r['tasks']}"
            for r in rooms
        )
        emit(s.json, rooms, text or "no rooms")
