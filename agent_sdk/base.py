"""BaseClient, no I/O: identity, request ids ↔ replies, the message cursor; shared by Agent and SyncAgent."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from agent_sdk import credentials
from hub.protocol import commands as c
from hub.protocol.codec import decode_frame, encode
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Error, Frame, Message, Ok

if TYPE_CHECKING:
    import ssl

__all__ = [
    "DEFAULT_HUB",
    "DEFAULT_RETRIES",
    "RETRY_CODES",
    "BaseClient",
    "OnRetry",
    "backoff",
    "error_of",
    "fence_of",
    "hubs_of",
    "lost",
    "retry_after_of",
    "send_key",
    "targets",
]

DEFAULT_HUB = "ws://127.0.0.1:8876"

# Retrying refusals. A refusal means the hub applied nothing, so sending the same command again is safe; a
# request lost with its connection (`disconnected`) may have been applied and is never retried here.
DEFAULT_RETRIES = 5
RETRY_CODES = frozenset({Code.RATE_LIMITED, Code.UNAVAILABLE})
BACKOFF_FIRST = 0.1  # seconds before the first retry when the hub names no time; doubles with each retry
BACKOFF_MAX = 10.0  # the longest step the doubling reaches
RETRY_AFTER_MAX = 60.0  # a hub's retry_after is honored up to this

OnRetry = Callable[[HubError, float, int, int], None]  # (refusal, seconds to wait, attempt, retries)


def backoff(attempt: int, retry_after: Any, jitter: float) -> float:
    """Seconds to wait before retry number `attempt` (from 1): at least the hub's `retry_after` (when it is a
    sane number) and at least the doubling step, plus up to half of that again by `jitter` (0 ≤ jitter < 1),
    so clients refused together do not come back together."""
    step = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempt - 1))
    return max(retry_after_of(retry_after), step) * (1.0 + 0.5 * jitter)


def retry_after_of(value: Any) -> float:
    """A refusal's `retry_after` as seconds in [0, RETRY_AFTER_MAX]; 0 when it is missing or not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return min(RETRY_AFTER_MAX, max(0.0, float(value)))
    return 0.0


def targets(target: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`a,b` or a list → a tuple of addresses."""
    if isinstance(target, str):
        if "," not in target:  # the common case, one address: no split, no generator
            one = target.strip()
            return (one,) if one else ()
        target = target.split(",")
    return tuple(t.strip() for t in target if t.strip())


def hubs_of(hub: str | Sequence[str] | None) -> tuple[str, ...]:
    """The hub addresses `hub` names, in the order to try them: `ws://a,ws://b` (blanks around each ignored) or
    a list of them; None (or "") takes SYNAPSE_HUB, else the default. All hubs of one deployment share one log.

    Raises:
        HubError: `bad_request` (detail `field: hub`) for an empty list or an address that is not a ws:// or
            wss:// URL with a host.
    """
    if hub is None or hub == "":
        hub = os.environ.get("SYNAPSE_HUB") or DEFAULT_HUB
    given = hub.split(",") if isinstance(hub, str) else list(hub)
    hubs = tuple(str(h).strip() for h in given if str(h).strip())
    if not hubs:
        raise HubError(Code.BAD_REQUEST, f"no hub address in {hub!r}", {"field": "hub", "reason": "empty"})
    for url in hubs:
        if not _is_utf8(url):
            raise HubError(
                Code.BAD_REQUEST, "hub is not valid UTF-8 text", {"field": "hub", "reason": "not_utf8"}
            )
        try:
            parts = urlsplit(url)
            bad = parts.scheme not in ("ws", "wss") or not parts.hostname or parts.port == 0
        except ValueError:  # a port that is not a number, or out of range; a broken [IPv6] host
            bad = True
        if bad:
            raise HubError(
                Code.BAD_REQUEST,
                f"{url!r} is not a hub address (ws://HOST:PORT or wss://HOST:PORT)",
                {"field": "hub", "reason": "url"},
            )
    return hubs


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MESSAGE_TOO_BIG = 1009  # WebSocket close code: a frame over the server's size limit


def lost(code: int | None, reason: str) -> HubError:
    """The error for a request whose connection ended: `too_large` when the hub closed it for the request's
    size (a frame far over its limit is not read at all), else `disconnected` (it may have been applied)."""
    if code == MESSAGE_TOO_BIG:
        return HubError(
            Code.TOO_LARGE,
            f"the request is too large for the hub, which closed the connection ({code} {reason})".strip(),
            {"reason": "frame"},
        )
    why = f"{code} {reason}".strip() if code is not None else reason or "no close frame"
    return HubError(Code.DISCONNECTED, f"the hub closed the connection ({why})")


def fence_of(fence: Mapping[str, int] | None) -> dict[str, int]:
    """A write's fence: `{"WORK": epoch}` (a task: `{"task:ID": epoch}`); the hub refuses the write with
    `fenced` unless the writer still holds each at that epoch (CLI.md "Fencing")."""
    if not fence:
        return {}
    return {str(work): int(epoch) for work, epoch in fence.items()}


def send_key(key: str | None) -> str:
    """A send's idempotency key: the caller's, or a fresh one; a retry after a lost connection reuses it, so
    the hub delivers the message once (CLI.md "Delivery")."""
    return key if key is not None else "sdk-" + os.urandom(12).hex()


def error_of(frame: Error) -> HubError:
    return HubError(frame.code, frame.message, frame.detail)


class BaseClient:
    """What a client knows between frames; the transports only move bytes."""

    def __init__(
        self,
        name: str | None = None,
        *,
        room: str = "default",
        hub: str | Sequence[str] | None = None,
        token: str | None = None,
        role: str | None = None,
        save_token: bool = True,
        ca_file: str | None = None,
        admin_token: str | None = None,
        invite: str | None = None,
        retries: int = DEFAULT_RETRIES,
        on_retry: OnRetry | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries}")
        for field, value in (("name", name), ("room", room), ("token", token)):
            if isinstance(value, str) and not _is_utf8(value):
                raise HubError(
                    Code.BAD_REQUEST,
                    f"{field} is not valid UTF-8 text",
                    {"field": field, "reason": "not_utf8"},
                )
        self.name = name
        self.room = room
        self.hubs = hubs_of(hub)  # every address of the deployment, in the order to try them
        self.hub = self.hubs[0]  # the one in use (or to try next): it changes on a failover
        self._was: str | None = None  # the address of the last connection made
        self.token = token or (self.saved_token() if name else None)
        self.role = role
        self.save_token = save_token
        self.ca_file = ca_file or os.environ.get("SYNAPSE_CA_FILE") or None
        self.admin_token = admin_token  # joins (and operator commands) on a hub that has one
        self.invite = invite  # or a room invite, to join
        self.cursor: int | None = None  # the newest message seq seen on the stream
        self.retries = retries  # how often a request refused with rate_limited or unavailable is sent again
        self.on_retry = on_retry  # told before each wait (the CLI prints it)
        self._ids = 0

    def saved_token(self) -> str | None:
        """The token saved for this agent under any of the hub addresses (a deployment shares its tokens)."""
        assert self.name is not None
        return next((t for h in self.hubs if (t := credentials.load(h, self.room, self.name))), None)

    def rounds(self) -> list[str]:
        """One round of addresses to try, from the one in use, wrapping around."""
        at = self.hubs.index(self.hub) if self.hub in self.hubs else 0
        return [*self.hubs[at:], *self.hubs[:at]]

    def next_hub(self) -> None:
        """Move on to the next address (its connection dropped or could not be made)."""
        self.hub = self.rounds()[1 % len(self.hubs)]

    def now_on(self, url: str, first: str) -> None:
        """A connection to `url` is made (`first`: the address this round tried first): it is the address in
        use; logs `agent.failover` when that moved (from the last connection's, or from `first`)."""
        self.hub = url
        was, self._was = self._was or first, url
        if was != url:
            import logging  # only on a failover: the CLI's clients start without it

            logging.getLogger("agent_sdk").warning("agent.failover from=%s to=%s", was, url)

    def retry_delay(self, exc: HubError, attempt: int) -> float | None:
        """Seconds to wait before sending a refused request again (`attempt` counts retries from 1), or None
        when it must not be: the refusal is not `rate_limited`/`unavailable`, or the retries are spent."""
        if exc.code not in RETRY_CODES or attempt > self.retries:
            return None
        delay = backoff(attempt, exc.detail.get("retry_after"), random.random())
        if self.on_retry is not None:
            self.on_retry(exc, delay, attempt, self.retries)
        return delay

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def frame(self, cmd: c.BaseCommand) -> bytes:
        """The command's bytes. Raises HubError `bad_request` for a value JSON cannot carry (text that is not
        UTF-8, nesting too deep for this process), before anything is sent. A Send's body is encoded once,
        inside the command; only when that fails is it encoded alone, to name the field at fault."""
        try:
            return encode(cmd)
        except (UnicodeEncodeError, RecursionError, TypeError, ValueError, OverflowError):
            if isinstance(cmd, c.Send) and not isinstance(cmd.body, msgspec.Raw):
                _encoded(cmd.body, "body")
            return _encoded(cmd)

    @staticmethod
    def decode(data: bytes | str) -> Frame:
        """A frame from the hub. Raises HubError `bad_frame` when it cannot be read (nested deeper than this
        process can follow, or not a frame at all)."""
        try:
            return decode_frame(data)
        except RecursionError:
            raise HubError(
                Code.BAD_FRAME,
                "the hub sent a frame nested too deeply to read here",
                {"reason": "nested too deeply"},
            ) from None
        except (msgspec.DecodeError, UnicodeError) as exc:
            raise HubError(Code.BAD_FRAME, f"the hub sent a frame that is not one: {exc}") from None

    def joined(self, result: dict[str, Any]) -> str:
        """Keep (and save) the token a join returned."""
        token = str(result["token"])
        self.token = token
        if self.save_token and self.name:
            credentials.save(self.hubs[0], self.room, self.name, token)
        return token

    def need_name(self) -> str:
        if not self.name:
            raise HubError(
                Code.BAD_REQUEST, "this needs an agent name (--name or SYNAPSE_NAME)", {"field": "name"}
            )
        return self.name

    def fresh(self, message: Message) -> bool:
        """Whether a streamed message is new (a resumed stream never repeats one)."""
        if self.cursor is not None and message.seq <= self.cursor:
            return False
        self.cursor = message.seq
        return True

    # command builders: one place, so the two transports cannot drift

    def mutation(self, cls: type[Any], **fields: Any) -> Any:
        """A command acting as this agent: request id, room, token (and an admin token, if given) and name."""
        base = {"token": self.token, "admin_token": self.admin_token, "name": self.need_name()}
        return cls(id=self.next_id(), room=self.room, **{**base, **fields})

    def read(self, cls: type[Any], **fields: Any) -> Any:
        """A read of this room as this agent: request id, room and the tokens it has filled in (a hub with an
        admin token needs one to read; directed messages are shown only to their sender and recipients)."""
        base = {"token": self.token, "admin_token": self.admin_token}
        return cls(id=self.next_id(), room=self.room, **{**base, **fields})

    def ssl_context(self) -> ssl.SSLContext | None:
        """For wss://: the system's trust store, or only `ca_file` when one is given (a private CA)."""
        if not self.hub.startswith("wss://"):
            return None
        import ssl  # only for wss://: ssl is slow to import

        return ssl.create_default_context(cafile=self.ca_file)

    def cmd_join(self, role: str | None = None, rotate: bool = False, force: bool = False) -> c.Join:
        return c.Join(
            id=self.next_id(),
            room=self.room,
            name=self.need_name(),
            role=role or self.role,
            rotate=rotate,
            force=force,
            token=self.token,  # a name is its token's: re-joining (or rotating) needs it
            admin_token=self.admin_token,
            invite=self.invite,
        )

    def cmd_attach(self, stream: bool = True) -> c.Attach:
        return c.Attach(
            id=self.next_id(),
            room=self.room,
            token=self.token,
            admin_token=self.admin_token,
            name=self.need_name(),
            after=self.cursor,
            stream=stream,
        )

    def cmd_send(
        self,
        target: str | list[str],
        body: Any,
        kind: str,
        reply_to: int | None,
        priority: bool,
        fence: Mapping[str, int] | None = None,
        stagger: float = 0.0,
        key: str | None = None,
        allow_unknown: bool = False,
    ) -> c.Send:
        return c.Send(
            id=self.next_id(),
            room=self.room,
            token=self.token,
            admin_token=self.admin_token,
            name=self.need_name(),
            to=targets(target),
            body=body,  # encoded with the command by `frame` (Send.body is raw JSON on the wire)
            kind=kind,
            reply_to=reply_to,
            priority=priority,
            fence=fence_of(fence),
            stagger=stagger,
            key=key,
            allow_unknown=allow_unknown,
        )

    def cmd_release(
        self, work: str, checkpoint: str | None = None, fence: Mapping[str, int] | None = None
    ) -> c.Release:
        return self.mutation(c.Release, work=work, checkpoint=checkpoint, fence=fence_of(fence))  # type: ignore[no-any-return]

    def cmd_handoff(self, work: str, to: str, fence: Mapping[str, int] | None = None) -> c.Handoff:
        return self.mutation(c.Handoff, work=work, to=to, fence=fence_of(fence))  # type: ignore[no-any-return]


def _encoded(value: Any, what: str = "request") -> bytes:
    try:
        return encode(value)
    except UnicodeEncodeError as exc:
        raise HubError(
            Code.BAD_REQUEST,
            f"the {what} holds text that is not valid UTF-8 ({exc.object[exc.start : exc.end]!r})",
            {"reason": "not_utf8", "field": what},
        ) from None
    except RecursionError:
        raise HubError(
            Code.BAD_REQUEST, f"the {what} is nested too deeply", {"reason": "depth", "field": what}
        ) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise HubError(
            Code.BAD_REQUEST, f"the {what} cannot be sent as JSON: {exc}", {"field": what}
        ) from None


class TaskCommands:
    """Builders for the plan's commands, shared by both transports' `tasks` namespaces."""

    def __init__(self, client: BaseClient) -> None:
        self.client = client

    def declare(
        self,
        task: str,
        title: str,
        depends_on: list[str] | tuple[str, ...] = (),
        parent: str | None = None,
        mode: str = "par",
        order: int | None = None,
        epic: bool = False,
    ) -> c.DeclareTask:
        return self.client.mutation(
            c.DeclareTask,
            task=task,
            title=title,
            depends_on=tuple(depends_on),
            parent=parent,
            mode=mode,
            order=order,
            epic=epic,
        )

    def claim(self, task: str) -> c.ClaimTask:
        return self.client.mutation(c.ClaimTask, task=task)

    def update(
        self,
        task: str,
        *,
        status: str | None = None,
        etag: int | None = None,
        title: str | None = None,
        note: str | None = None,
        fence: Mapping[str, int] | None = None,
    ) -> c.UpdateTask:
        return self.client.mutation(
            c.UpdateTask,
            task=task,
            status=status,
            etag=etag,
            title=title,
            note=note,
            fence=fence_of(fence),
        )

    def list(self, status: str | None = None, ready: bool = False, parent: str | None = None) -> c.ListTasks:
        return self.client.read(c.ListTasks, status=status, ready=ready, parent=parent)  # type: ignore[arg-type]

    def show(self, task: str) -> c.ShowTask:
        return self.client.read(c.ShowTask, task=task)


class StateCommands:
    """Builders for shared state's commands, shared by both transports' `state` namespaces."""

    def __init__(self, client: BaseClient, branch: str | None = None) -> None:
        self.client = client
        self.branch = branch

    def set(
        self,
        key: str,
        value: Any,
        *,
        scope: str = "_shared",
        if_: str | None = None,
        if_version: int | None = None,
        increment: bool = False,
        fence: Mapping[str, int] | None = None,
    ) -> c.SetState:
        return self.client.mutation(
            c.SetState,
            key=key,
            value=value,
            scope=scope,
            if_=if_,
            if_version=if_version,
            increment=increment,
            branch=self.branch,
            fence=fence_of(fence),
        )

    def init(
        self, key: str, value: Any, *, scope: str = "_shared", fence: Mapping[str, int] | None = None
    ) -> c.InitState:
        return self.client.mutation(
            c.InitState, key=key, value=value, scope=scope, branch=self.branch, fence=fence_of(fence)
        )

    def delete(
        self,
        key: str,
        *,
        scope: str = "_shared",
        if_version: int | None = None,
        fence: Mapping[str, int] | None = None,
    ) -> c.DeleteState:
        return self.client.mutation(
            c.DeleteState,
            key=key,
            scope=scope,
            if_version=if_version,
            branch=self.branch,
            fence=fence_of(fence),
        )

    def batch(
        self,
        writes: list[dict[str, Any]] | list[c.Write],
        *,
        if_: str | None = None,
        fence: Mapping[str, int] | None = None,
    ) -> c.BatchState:
        built = tuple(w if isinstance(w, c.Write) else c.Write(**w) for w in writes)
        return self.client.mutation(
            c.BatchState, writes=built, if_=if_, branch=self.branch, fence=fence_of(fence)
        )

    def view(self, key: str, expr: str) -> c.DefineView:
        return self.client.mutation(c.DefineView, key=key, expr=expr)

    def get(self, key: str, *, scope: str = "_shared") -> c.GetState:
        return self.client.read(c.GetState, key=key, scope=scope, branch=self.branch)

    def list(self, scope: str | None = None) -> c.ListState:
        return self.client.read(c.ListState, scope=scope, branch=self.branch)

    def history(self, key: str, *, scope: str = "_shared", limit: int = 20) -> c.StateHistory:
        """The main line's versions of a key (a branch's writes are not in it)."""
        return self.client.read(c.StateHistory, key=key, scope=scope, limit=limit)

    def eval(self, expr: str) -> c.Eval:
        return self.client.read(c.Eval, expr=expr, branch=self.branch)

    def branch_create(self, branch: str, source: str | None = None) -> c.CreateBranch:
        return self.client.mutation(c.CreateBranch, branch=branch, from_=source)

    def branch_list(self) -> c.ListBranches:
        return self.client.read(c.ListBranches)

    def branch_diff(self, branch: str) -> c.DiffBranch:
        return self.client.read(c.DiffBranch, branch=branch)

    def branch_merge(self, branch: str) -> c.MergeBranch:
        return self.client.mutation(c.MergeBranch, branch=branch)


def result_of(frame: Ok | Error) -> Any:
    if isinstance(frame, Error):
        raise error_of(frame)
    return frame.result


__all__ += ["StateCommands", "TaskCommands", "result_of"]


# -- explanations (`why`) ------------------------------------------------------------------------------------

WHY: dict[str, tuple[type[Any], str]] = {
    "task": (c.WhyTask, "task"),
    "claim": (c.WhyClaim, "work"),
    "wait": (c.WhyWait, "waiter"),
    "condition": (c.WhyCondition, "expr"),
}


def why_command(client: BaseClient, kind: str, what: str) -> Any:
    """The `why.KIND` read for `what` (a task id, a claim's work, a waiter's name, a CEL expression)."""
    found = WHY.get(kind)
    if found is None:
        raise HubError(
            Code.BAD_REQUEST,
            f"why explains a task, claim, wait or condition, not {kind!r}",
            {"field": "kind", "reason": "choice"},
        )
    cls, field = found
    return client.read(cls, **{field: what})


__all__ += ["WHY", "why_command"]
