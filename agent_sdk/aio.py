"""Agent: the async client; reconnects with backoff, resumes its message stream from its cursor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from agent_sdk import verbs
from agent_sdk.base import (
    DEFAULT_RETRIES,
    MESSAGE_TOO_BIG,
    BaseClient,
    OnRetry,
    StateCommands,
    TaskCommands,
    error_of,
    lost,
    result_of,
    retry_after_of,
    send_key,
    why_command,
)
from agent_sdk.claims import Claim
from hub.protocol import commands as c
from hub.protocol.codec import decode_frame
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Delivery, Error, Message, Notice, Ok, Trigger, Wake

__all__ = ["Agent"]

logger = logging.getLogger(__name__)

_WRITE_BYTES = 65_536  # frames queued in one loop turn are written together up to this many bytes


class Agent(BaseClient):
    """A long-running agent holding a session: `async with Agent("api-dev") as agent: ...`.

    On entry it joins (first time) or proves its saved token, and attaches: presence follows the session and
    every message addressed to it is pushed to `messages()`. If the connection drops it reconnects (to the
    next of its hub addresses first: `hub="ws://a,ws://b"`) with backoff and resumes the stream from the last
    seq it saw, so nothing is missed or repeated.

    Raises:
        HubError: `unreachable` if the first connection fails; `disconnected` for a request in flight when the
            connection dropped (it may or may not have been applied); otherwise the hub's own code.
    """

    def __init__(
        self,
        name: str,
        room: str = "default",
        hub: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        role: str | None = None,
        reconnect: bool = True,
        request_timeout: float = 30.0,
        save_token: bool = True,
        stream: bool = True,
        ca_file: str | None = None,
        admin_token: str | None = None,
        invite: str | None = None,
        retries: int = DEFAULT_RETRIES,
        on_retry: OnRetry | None = None,
    ) -> None:
        super().__init__(
            name,
            room=room,
            hub=hub,
            token=token,
            role=role,
            save_token=save_token,
            ca_file=ca_file,
            admin_token=admin_token,
            invite=invite,
            retries=retries,
            on_retry=on_retry,
        )
        self.stream = stream
        self.reconnect = reconnect
        self.request_timeout = request_timeout
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._sizes: dict[int, int] = {}  # bytes of each request in flight (a hub closes for one too large)
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._notices: asyncio.Queue[Notice | None] = asyncio.Queue()
        self._subs: dict[int, tuple[str, tuple[str, ...], asyncio.Queue[Trigger | None]]] = {}
        self._sub_ids: dict[int, int] = {}  # the hub's subscription id → ours (stable across reconnects)
        self._early: dict[int, list[Trigger]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._flushing: ClientConnection | None = None  # a connection with frames queued for this loop turn
        self._queued = 0  # bytes of the frames queued since the last write

    async def __aenter__(self) -> Agent:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connection -----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the first hub address that answers, join if needed, attach; raises `unreachable` when
        none can be reached."""
        await self._open_any()
        self._reader = asyncio.create_task(self._read_forever())

    async def _open_any(self) -> None:
        """One round: open a session on each address in turn, from the one in use, until one answers.

        Raises:
            HubError: `unreachable` (naming every address tried) when none could be reached; any other
                refusal at once (a hub that answered and refused is not passed over).
        """
        first, failed = self.hub, []
        for url in self.rounds():
            self.hub = url  # (ssl_context reads it)
            try:
                await self._open()
            except HubError as exc:
                if exc.code not in (Code.UNREACHABLE, Code.DISCONNECTED):
                    raise
                failed.append(f"{url}: {exc.message}")
                continue
            self.now_on(url, first)
            return
        self.hub = first
        raise HubError(Code.UNREACHABLE, "cannot reach the hub at " + "; ".join(failed))

    async def _open(self) -> None:
        try:
            self.ws = await connect(
                self.hub,
                ssl=self.ssl_context(),
                max_size=None,
                compression=None,
                open_timeout=5,
                close_timeout=1,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise HubError(Code.UNREACHABLE, str(exc)) from None
        listener = asyncio.create_task(self._listen(self.ws))
        try:
            await self._identify()
        except BaseException:
            listener.cancel()
            await self.ws.close()
            raise
        self._listener = listener
        self.connected.set()

    async def _identify(self) -> None:
        join, attach = self.cmd_join, lambda: self.cmd_attach(self.stream)
        if self.token is None and self.admin_token is None:  # the admin token attaches as the agent itself:
            self.joined(
                await self._retrying(lambda: self._request(join()))
            )  # a join would take the name over
        try:
            result = await self._retrying(lambda: self._request(attach()))
        except HubError as exc:
            if not (exc.code == Code.NOT_FOUND and exc.detail.get("what") in ("agent", "room")):
                raise
            self.joined(await self._retrying(lambda: self._request(join())))
            result = await self._retrying(lambda: self._request(attach()))
        if self.cursor is None:
            self.cursor = int(result["seq"])
        self._sub_ids.clear()
        for local in list(self._subs):
            await self._register(local)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.ws is not None:
            await self.ws.close()
        self._queue.put_nowait(None)
        self._notices.put_nowait(None)
        for _expr, _include, queue in self._subs.values():
            queue.put_nowait(None)

    async def _listen(self, ws: ClientConnection) -> None:
        """Route frames: replies to their futures, deliveries to the stream."""
        try:
            async for data in ws:
                try:
                    frame = decode_frame(data)
                except (RecursionError, msgspec.DecodeError, UnicodeError):  # unreadable (too deep for
                    try:  # this process): the request it answers gets why, as `decode` words it
                        self.decode(data)
                    except HubError as exc:
                        self._unmatched(exc)
                    continue
                kind = type(frame)
                if kind is Ok:  # the hot path first: a reply, resolved right here
                    future = self._pending.pop(frame.id, None)  # type: ignore[union-attr]
                    if future is not None and not future.done():
                        future.set_result(frame.result)  # type: ignore[union-attr]
                elif kind is Delivery:
                    if self.fresh(frame.message):  # type: ignore[union-attr]
                        self._queue.put_nowait(frame.message)  # type: ignore[union-attr]
                elif isinstance(frame, Ok | Error) and frame.id is not None:
                    future = self._pending.pop(frame.id, None)
                    if future is not None and not future.done():
                        if isinstance(frame, Ok):
                            future.set_result(result_of(frame))
                        else:
                            future.set_exception(error_of(frame))
                elif isinstance(frame, Delivery):
                    if self.fresh(frame.message):
                        self._queue.put_nowait(frame.message)
                elif isinstance(frame, Trigger):
                    local = self._sub_ids.get(frame.sub)
                    entry = self._subs.get(local) if local is not None else None
                    if entry is not None:
                        entry[2].put_nowait(frame)
                    else:  # its subscribe reply is still on its way to `_register`
                        self._early.setdefault(frame.sub, []).append(frame)
                elif isinstance(frame, Notice):
                    self._notices.put_nowait(frame)
                elif isinstance(frame, Wake):
                    future = self._pending.pop(-frame.id, None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif isinstance(frame, Error):  # no id: the hub could not read one of our frames
                    self._unmatched(error_of(frame))
        except ConnectionClosed:
            pass
        finally:
            self.connected.clear()
            gone = HubError(Code.DISCONNECTED, "the connection to the hub was lost")
            if ws.close_code == MESSAGE_TOO_BIG and self._sizes:  # closed for the largest request in flight
                largest = max(self._sizes, key=self._sizes.__getitem__)
                too_large = lost(ws.close_code, ws.close_reason or "")
                self._fail_pending(lambda id_: too_large if id_ == largest else gone)
            else:
                self._fail_pending(lambda _id: gone)
            self._pending.clear()
            self._sizes.clear()

    def _unmatched(self, exc: HubError) -> None:
        """An error no request id names (the hub could not read a frame of ours: too large, or sent while it
        drains; or we could not read its reply): it goes to the request it must be for, when that is clear:
        the largest in flight for `too_large`, else the only one in flight."""
        requests = [id_ for id_ in self._pending if id_ > 0]
        if exc.code == Code.TOO_LARGE and self._sizes:
            target = max(self._sizes, key=self._sizes.__getitem__)
        elif len(requests) == 1:
            target = requests[0]
        else:
            logger.warning("agent.unmatched_error code=%s pending=%d", exc.code, len(requests))
            return
        future = self._pending.pop(target, None)
        self._sizes.pop(target, None)
        if future is not None and not future.done():
            future.set_exception(exc)

    def _fail_pending(self, error: Callable[[int], HubError]) -> None:
        for id_, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(error(id_))
                self._pending.pop(id_, None)
                self._sizes.pop(id_, None)

    async def _read_forever(self) -> None:
        """Keep a session: when the listener ends, reconnect with backoff and re-attach."""
        delay = 0.05
        while not self._closing:
            await self._listener
            if self._closing or not self.reconnect:
                self._queue.put_nowait(None)
                return
            self.next_hub()  # the next address first; this one comes last in the round
            while not self._closing:
                try:
                    await self._open_any()
                    self.reconnects += 1
                    delay = 0.05
                    break
                except HubError as exc:
                    if exc.code not in (
                        Code.UNREACHABLE,
                        Code.DISCONNECTED,
                        Code.UNAVAILABLE,
                        Code.RATE_LIMITED,
                    ):
                        logger.error("agent.reconnect_refused code=%s", exc.code)
                        self._queue.put_nowait(None)
                        return
                    wait = delay * (0.5 + random.random())
                    await asyncio.sleep(max(wait, retry_after_of(exc.detail.get("retry_after"))))
                    delay = min(delay * 2, 2.0)

    async def _request(self, cmd: c.BaseCommand, timeout: float | None = None) -> Any:
        assert self.ws is not None
        data = self.frame(cmd)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cmd.id] = future
        self._sizes[cmd.id] = len(data)
        try:
            if not self._post(self.ws, data):
                await self.ws.send(data, text=True)
        except ConnectionClosed as exc:
            self._pending.pop(cmd.id, None)
            self._sizes.pop(cmd.id, None)
            if future.done():  # the listener failed it first: read it here, or asyncio logs it as lost
                future.exception()
            if exc.rcvd is not None and exc.rcvd.code == MESSAGE_TOO_BIG:
                raise lost(exc.rcvd.code, exc.rcvd.reason) from None
            raise HubError(Code.DISCONNECTED, "the connection to the hub was lost") from None
        timer = future.get_loop().call_later(timeout or self.request_timeout, _expire, future)  # no wait_for
        try:
            return await future
        except TimeoutError:
            self._pending.pop(cmd.id, None)
            raise HubError(Code.TIMED_OUT, "no reply from the hub in time") from None
        finally:
            timer.cancel()
            self._sizes.pop(cmd.id, None)

    def _post(self, ws: ClientConnection, data: bytes) -> bool:
        """Frame `data` now and write it with the other frames of this loop turn (one write for a burst of
        requests, where `ws.send` makes one per frame); False when `ws.send` must take it: the connection is
        not open, its writes are paused (`send` waits for the drain) or a fragmented send is under way."""
        if ws.protocol.state is not State.OPEN or ws.paused or getattr(ws, "send_in_progress", None):
            return False
        ws.protocol.send_text(data)
        self._queued += len(data)
        if self._queued >= _WRITE_BYTES:  # a big burst goes out in slices, not as one copy of it all
            self._flush(ws)
        elif self._flushing is not ws:
            self._flushing = ws
            ws.loop.call_soon(self._flush, ws)
        return True

    def _flush(self, ws: ClientConnection) -> None:
        """Write the frames `_post` queued (a frame the reader flushed meanwhile went out with its, in order)."""
        self._queued = 0
        if self._flushing is ws:
            self._flushing = None
        chunks = ws.protocol.data_to_send()
        if not chunks:
            return
        try:
            if all(chunks):
                ws.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            else:  # the protocol asks for an end of stream: websockets' own writer knows how
                for chunk in chunks:
                    if chunk:
                        ws.transport.write(chunk)
                    elif ws.transport.can_write_eof():
                        ws.transport.write_eof()
                    else:
                        ws.transport.close()
        except Exception:  # the transport is gone: the listener fails what is in flight
            ws.transport.abort()

    async def request(self, build: Callable[[], c.BaseCommand]) -> Any:
        """Send a command once connected (waiting for a reconnect if one is under way).

        A refusal with `rate_limited` or `unavailable` (nothing was applied) is sent again after a backoff
        that honors the hub's `retry_after`, up to `retries` times; then the refusal is raised.
        """

        async def once() -> Any:
            if not self.connected.is_set():  # (a wait_for per request would cost a task: only when needed)
                try:
                    await asyncio.wait_for(self.connected.wait(), self.request_timeout)
                except TimeoutError:
                    raise HubError(Code.UNREACHABLE, f"not connected to the hub at {self.hub}") from None
            return await self._request(build())

        if self.connected.is_set():  # the common case: one attempt, no retry loop around it
            try:
                return await self._request(build())
            except HubError as exc:
                delay = self.retry_delay(exc, 1)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
            return await self._retrying(once, first=2)
        return await self._retrying(once)

    async def _retrying(self, send: Callable[[], Awaitable[Any]], first: int = 1) -> Any:
        """Await `send()`, again after a backoff while the hub refuses it with a retryable code (`first`
        counts this attempt: 2 after one refusal was waited out)."""
        attempt = first - 1
        while True:
            try:
                return await send()
            except HubError as exc:
                attempt += 1
                delay = self.retry_delay(exc, attempt)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    # -- verbs --------------------------------------------------------------------------------------

    async def join(self, role: str | None = None, *, rotate: bool = False, force: bool = False) -> str:
        """Join (or re-join with this agent's token; `rotate` issues a new one); returns the token, saved.

        Raises:
            HubError: `name_taken` when the name is another's (re-joining needs its token); `force` takes it
                over on a hub without an admin token.
        """
        return self.joined(await self.request(lambda: self.cmd_join(role, rotate, force)))

    async def send(
        self,
        target: str | list[str],
        body: Any,
        *,
        kind: str = "message",
        reply_to: int | None = None,
        priority: bool = False,
        fence: Mapping[str, int] | None = None,
        stagger: float = 0.0,
        key: str | None = None,
        allow_unknown: bool = False,
    ) -> int:
        """Send a message to `name`, `a,b`, `room/*`, `room/name` or `all`; returns its seq once durable.
        `stagger` spreads a `*`/`all` send's wakes over that many seconds (0..60).

        Every send has an idempotency key (`key`, else a fresh one): when the connection drops before the
        reply, the send is retried with the same key after the reconnect, so it is delivered once.

        Raises:
            HubError: `fenced` when `fence` (`{"WORK": epoch}`) names a claim this agent no longer holds at
                that epoch: nothing is sent; `unknown_recipient` for a name that never joined (unless
                `allow_unknown`).
        """
        key = send_key(key)
        attempt = 0
        lost: HubError | None = None  # the first `disconnected`: raised when no retry gets through
        while True:
            try:
                reply = await self.request(
                    lambda: self.cmd_send(
                        target, body, kind, reply_to, priority, fence, stagger, key, allow_unknown
                    )
                )
                return verbs.seq(reply)
            except HubError as exc:
                attempt += 1
                if lost is not None and exc.code == Code.UNREACHABLE:
                    raise lost from None  # it may have been applied: still `disconnected`
                if exc.code != Code.DISCONNECTED or not self.reconnect or attempt > max(self.retries, 1):
                    raise
                lost = lost or exc

    async def ack(self, seq: int) -> dict[str, Any]:
        """Mark everything addressed to this agent up to `seq` read (never backwards); returns the position
        (`upto`) and how many are still `unread`. Raises HubError `not_found` (no message `seq`)."""
        return await self.request(lambda: self.mutation(c.AckMessages, seq=seq))  # type: ignore[no-any-return]

    async def messages(self, timeout: float | None = None) -> AsyncIterator[Message]:
        """Every message addressed to this agent from now on, in seq order, across reconnects; stops after
        `timeout` idle seconds (None: when the agent closes)."""
        queue = self._queue
        while True:  # what is already queued is taken without a coroutine each
            message = queue.get_nowait() if queue.qsize() else await _next(queue, timeout)
            if message is None:
                return
            yield message

    async def list_messages(
        self,
        *,
        for_: str | None = None,
        after: int = 0,
        kind: str | None = None,
        unclaimed: bool = False,
        limit: int = 100,
        unread: bool = False,
    ) -> list[dict[str, Any]]:
        """Read the feed after a cursor: broadcasts, and the directed messages this agent sent or received
        (`unread`: only what is addressed to this agent after its read position)."""
        result = await self.request(
            lambda: self.read(
                c.ListMessages,
                for_=for_,
                after=after,
                kind=kind,
                unclaimed=unclaimed,
                limit=limit,
                unread=unread,
            )
        )
        return result["messages"]  # type: ignore[no-any-return]

    async def claim_message(self, seq: int) -> str:
        """Claim a message for this agent. Raises HubError `already_claimed` (detail: holder)."""
        return verbs.holder(await self.request(lambda: self.mutation(c.ClaimMessage, seq=seq)))

    async def heartbeat(self, status: str | None = None) -> dict[str, Any]:
        """Say this agent is alive, optionally with a new status (active, busy, idle, done...)."""
        return await self.request(  # type: ignore[no-any-return]
            lambda: self.mutation(c.Heartbeat, status=status)
        )

    # -- claims -----------------------------------------------------------------------------------

    async def claim(
        self,
        work: str,
        paths: list[str] | tuple[str, ...] = (),
        *,
        ttl: float | None = None,
        checkpoint: str | None = None,
        renew: bool = False,
    ) -> Claim:
        """Lease `work` on `paths`, held while this session lives (plus the hub's grace period). The Claim's
        `epoch` fences writes made under it: `fence=claim.fence`.

        Raises:
            HubError: `claim_overlap` (detail: holder, work, paths), `conflict` if another agent holds `work`,
                `bad_request` for a bad path, `limit_exceeded` if checking it takes too many steps.
        """
        view = await self.request(
            lambda: self.mutation(
                c.Claim, work=work, paths=tuple(paths), ttl=ttl, checkpoint=checkpoint, renew=renew
            )
        )
        return Claim(self, view)

    async def release(
        self, work: str, *, checkpoint: str | None = None, fence: Mapping[str, int] | None = None
    ) -> None:
        """Release a claim, leaving `checkpoint` for whoever claims `work` next.

        Raises:
            HubError: `forbidden` (another agent's claim), `not_found`, `fenced`.
        """
        await self.request(lambda: self.cmd_release(work, checkpoint, fence))

    async def handoff(self, work: str, to: str, *, fence: Mapping[str, int] | None = None) -> None:
        """Move a live claim, with its checkpoint, to another agent of the room (it gets a new epoch).

        Raises:
            HubError: `forbidden` (another agent's claim), `not_found`, `fenced`.
        """
        await self.request(lambda: self.cmd_handoff(work, to, fence))

    async def reoffer_claim(self, work: str, idle_seconds: float) -> dict[str, Any]:
        """Free another agent's claim whose holder has no session and was idle that long (the supervisor's
        verb). Raises HubError `conflict` (the holder is live or was active recently), `not_found`."""
        return await self.request(  # type: ignore[no-any-return]
            lambda: self.mutation(c.ReofferClaim, work=work, idle_seconds=idle_seconds)
        )

    async def reoffer_task(self, task: str, idle_seconds: float) -> dict[str, Any]:
        """Put another agent's in-progress task back to ready when its holder has no session and was idle that
        long (the supervisor's verb). Raises HubError `conflict` (not in progress, or the holder is live)."""
        return await self.request(  # type: ignore[no-any-return]
            lambda: self.mutation(c.ReofferTask, task=task, idle_seconds=idle_seconds)
        )

    async def intent(self, paths: list[str] | tuple[str, ...], note: str | None = None) -> dict[str, Any]:
        """Declare advisory intent on paths (no lease); empty paths clear it."""
        return await self.request(  # type: ignore[no-any-return]
            lambda: self.mutation(c.DeclareIntent, paths=tuple(paths), note=note)
        )

    async def claims(self) -> list[dict[str, Any]]:
        """The room's live claims."""
        return (await self.request(lambda: self.read(c.ListClaims)))["claims"]  # type: ignore[no-any-return]

    # -- the git guard ------------------------------------------------------------------------------------

    async def check_paths(self, paths: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
        """Which of `paths` (files relative to the repository root, taken literally) this agent's live claims
        cover, and who holds each of the others (the git guard's check): one dict per path, in order, with
        `path`, `held`, and `holder` / `work` of the covering claim (both None: unclaimed).

        Raises:
            HubError: `unauthorized` / `forbidden` without this agent's token, `not_found` for an unknown
                agent or room, `bad_request` for a path that is not a plain relative one, `limit_exceeded`
                for more than 10,000 paths or a check that takes too many steps (send fewer at a time).
        """
        reply = await self.request(lambda: self.mutation(c.CheckPaths, paths=tuple(paths)))
        return reply["paths"]  # type: ignore[no-any-return]

    async def board(self) -> dict[str, Any]:
        """The plan, live claims and declared intents."""
        return await self.request(lambda: self.read(c.Board))  # type: ignore[no-any-return]

    async def notices(self, timeout: float | None = None) -> AsyncIterator[Notice]:
        """News about this agent's own things (`claim.lapsed`, `claim.handed`...); stops after `timeout` idle
        seconds (None: when the agent closes)."""
        while True:
            notice = await _next(self._notices, timeout)
            if notice is None:
                return
            yield notice

    def state_at(self, branch: str | None = None) -> AsyncState:
        """Shared state, on the main line or a branch."""
        return AsyncState(self, branch)

    @property
    def state(self) -> AsyncState:
        """Shared state: get/set/init/cas/increment/batch/delete/view/list."""
        return AsyncState(self)

    async def why(self, kind: str, what: str) -> dict[str, Any]:
        """Why something is stuck: `kind` is `task` (ID), `claim` (WORK), `wait` (WAITER) or `condition` (a CEL
        expression); the hub's explanation (see `synapse why --help`). Reads only.

        Raises:
            HubError: `not_found` (no such task, live claim or armed waiter), `bad_expression`, `bad_request`.
        """
        return await self.request(lambda: why_command(self, kind, what))  # type: ignore[no-any-return]

    async def eval(self, expr: str, branch: str | None = None) -> Any:
        """Evaluate CEL against the room. Raises HubError `bad_expression`; an evaluation error → bad_request."""
        return verbs.evaluated(await self.request(lambda: StateCommands(self, branch).eval(expr)), expr)

    async def subscribe(
        self, expr: str, *, include: tuple[str, ...] = (), waiting: bool = False
    ) -> AsyncIterator[Trigger]:
        """A Trigger each time `expr` becomes true (at once if it already is); re-registered after a reconnect.

        With `waiting=True` (as `wait_for` does) the agent's presence shows `waiting` on `expr` while the
        subscription lives; a background subscription leaves presence alone.

        Raises:
            HubError: `bad_expression` at once for an expression that does not compile.
        """
        local = self._next_local = getattr(self, "_next_local", 0) + 1
        queue: asyncio.Queue[Trigger | None] = asyncio.Queue()
        self._subs[local] = (expr, include, queue)
        if waiting:
            self._waiting_subs = getattr(self, "_waiting_subs", set()) | {local}
        try:
            if not self.connected.is_set():  # reconnecting: the re-attach registers it (unless it was
                try:  # already past its subscriptions when this one was added: then it is done below)
                    await asyncio.wait_for(self.connected.wait(), self.request_timeout)
                except TimeoutError:
                    raise HubError(Code.UNREACHABLE, f"not connected to the hub at {self.hub}") from None
            if local not in self._sub_ids.values():
                await self._register(local)
            while True:
                trigger = await queue.get()
                if trigger is None:
                    return
                yield trigger
        finally:
            self._subs.pop(local, None)
            getattr(self, "_waiting_subs", set()).discard(local)
            hub_id = next((h for h, loc in self._sub_ids.items() if loc == local), None)
            if hub_id is not None:
                del self._sub_ids[hub_id]
                if self.connected.is_set():
                    with contextlib.suppress(HubError):
                        await self._request(self.read(c.Unsubscribe, sub=hub_id))

    async def _register(self, local: int) -> None:
        expr, include, _queue = self._subs[local]
        name = self.name if local in getattr(self, "_waiting_subs", ()) else None
        result = await self._retrying(
            lambda: self._request(
                c.Subscribe(
                    id=self.next_id(),
                    room=self.room,
                    token=self.token,
                    admin_token=self.admin_token,
                    expr=expr,
                    name=name,
                    include=include,
                )
            )
        )
        hub_id = int(result["sub"])
        self._sub_ids[hub_id] = local
        for trigger in self._early.pop(hub_id, ()):
            self._subs[local][2].put_nowait(trigger)

    async def wait(
        self,
        *,
        after: int | None = None,
        settle: float = 0.0,
        directed_only: bool = False,
        timeout: float | None = None,
    ) -> list[Message]:
        """Block until messages addressed to this agent arrive after seq `after` (None: from now); returns every
        one the wake hands over, oldest first, at most 100 (a burst costs one turn, not one per message).
        `settle` (0..60 s) waits that long after the first message for the burst to end. The waiter is named
        after the agent: a newer wait with its name takes over.

        When the connection drops, the waiter is armed again once the agent has reconnected (to this hub or
        the next), after the seq of its first arm, so what came meanwhile wakes it.

        Raises:
            HubError: `timed_out`, `taken_over`, `bad_request` (a settle out of range), `disconnected` when
                the agent does not reconnect (`reconnect=False`).
        """
        name = self.need_name()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        woken: asyncio.Future[Any] = loop.create_future()
        ids: list[int] = []

        def build() -> c.BaseCommand:
            cmd = self.read(
                c.Wait, waiter=name, for_=name, directed_only=directed_only, after=after, settle=settle
            )
            ids.append(cmd.id)
            self._pending[-cmd.id] = woken  # the listener resolves it with the Wake frame
            return cmd  # type: ignore[no-any-return]

        try:
            while True:
                try:
                    armed = await self.request(build)
                    after = int(armed["armed"]) if after is None else after  # a re-arm: what came after it
                    left = None if deadline is None else max(0.0, deadline - loop.time())
                    wake = await asyncio.wait_for(asyncio.shield(woken), left)
                    break
                except HubError as exc:
                    if exc.code != Code.DISCONNECTED or not self.reconnect:
                        raise
                    if woken.done():  # failed with the connection: read, or asyncio logs it as lost
                        woken.exception()
                    woken = loop.create_future()  # armed again (`request` waits for the session)
        except TimeoutError:
            raise HubError(Code.TIMED_OUT, f"nothing woke the waiter in {timeout}s") from None
        finally:
            for id_ in ids:
                self._pending.pop(-id_, None)
        return verbs.handed(wake)

    async def wait_for(self, expr: str, timeout: float | None = None) -> Any:
        """Block until `expr` is true (returns at once if it already is); returns its value.

        Raises:
            HubError: `timed_out`, `bad_expression`.
        """

        async def first() -> Any:
            # aclosing: the subscription is dropped (and presence is back) as soon as this returns
            async with contextlib.aclosing(self.subscribe(expr, waiting=True)) as triggers:
                async for trigger in triggers:
                    return trigger.value
            raise HubError(Code.DISCONNECTED, "the agent was closed")

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            raise HubError(Code.TIMED_OUT, f"{expr!r} did not become true in {timeout}s") from None

    @property
    def tasks(self) -> AsyncTasks:
        """The shared plan: `declare`, `claim`, `update`, `list`, `show`."""
        return AsyncTasks(self)

    async def agents(self) -> list[dict[str, Any]]:
        """Presence of every agent in the room."""
        return (await self.request(lambda: self.read(c.Agents)))["agents"]  # type: ignore[no-any-return]

    async def status(self) -> dict[str, Any]:
        """The hub's and the room's counters."""
        return await self.request(lambda: self.read(c.Status))  # type: ignore[no-any-return]


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _next(queue: asyncio.Queue[Any], timeout: float | None) -> Any:
    """The next item of a stream's queue; None (the end) after `timeout` idle seconds."""
    if timeout is None:
        return await queue.get()
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return None


class AsyncTasks:
    """`agent.tasks`: the plan's verbs. A claim's reply carries its fencing `epoch`; `update` takes
    `fence={"task:ID": epoch}`.

    Raises:
        HubError: `conflict` (taken, or a stale etag: detail `current`), `not_ready` (detail
            `open_dependencies`), `seq_blocked` (detail `blocked_by`), `already_exists`, `bad_request` (a cycle),
            `forbidden` (another agent's claimed task), `fenced`.
    """

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.build = TaskCommands(agent)

    async def declare(self, task: str, title: str, **kw: Any) -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.declare(task, title, **kw))  # type: ignore[no-any-return]

    async def claim(self, task: str) -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.claim(task))  # type: ignore[no-any-return]

    async def update(self, task: str, **kw: Any) -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.update(task, **kw))  # type: ignore[no-any-return]

    async def list(
        self, status: str | None = None, ready: bool = False, parent: str | None = None
    ) -> list[dict[str, Any]]:
        result = await self.agent.request(lambda: self.build.list(status, ready, parent))
        return result["tasks"]  # type: ignore[no-any-return]

    async def show(self, task: str) -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.show(task))  # type: ignore[no-any-return]


class AsyncState:
    """`agent.state`. Every write takes `fence={"WORK": epoch}`.

    Raises HubError `conflict` (detail `current`), `precondition_failed`, `already_exists`, `forbidden`
    (another agent's scope), `bad_expression`, `fenced` (a fence on a claim no longer held at that epoch)."""

    def __init__(self, agent: Agent, branch: str | None = None) -> None:
        self.agent = agent
        self.build = StateCommands(agent, branch)

    async def get(self, key: str, *, scope: str = "_shared") -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.get(key, scope=scope))  # type: ignore[no-any-return]

    async def list(self, scope: str | None = None) -> list[dict[str, Any]]:
        return (await self.agent.request(lambda: self.build.list(scope)))["entries"]  # type: ignore[no-any-return]

    async def history(self, key: str, *, scope: str = "_shared", limit: int = 20) -> dict[str, Any]:
        """KEY's versions newest first, read from the hub's log: {"versions": [...], "complete": bool}."""
        return await self.agent.request(lambda: self.build.history(key, scope=scope, limit=limit))  # type: ignore[no-any-return]

    async def set(self, key: str, value: Any, **kw: Any) -> int:
        """Write; returns the new version."""
        return int((await self.agent.request(lambda: self.build.set(key, value, **kw)))["version"])

    async def init(self, key: str, value: Any, *, scope: str = "_shared", **kw: Any) -> int:
        return int(
            (await self.agent.request(lambda: self.build.init(key, value, scope=scope, **kw)))["version"]
        )

    async def cas(self, key: str, version: int, value: Any, *, scope: str = "_shared", **kw: Any) -> int:
        return await self.set(key, value, scope=scope, if_version=version, **kw)

    async def increment(self, key: str, by: float = 1, *, scope: str = "_shared", **kw: Any) -> Any:
        """Add atomically; returns the new value."""
        return (await self.agent.request(lambda: self.build.set(key, by, scope=scope, increment=True, **kw)))[
            "value"
        ]

    async def batch(self, writes: list[Any], *, if_: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return (await self.agent.request(lambda: self.build.batch(writes, if_=if_, **kw)))["writes"]  # type: ignore[no-any-return]

    async def delete(
        self, key: str, *, scope: str = "_shared", if_version: int | None = None, **kw: Any
    ) -> None:
        await self.agent.request(lambda: self.build.delete(key, scope=scope, if_version=if_version, **kw))

    async def view(self, key: str, expr: str) -> Any:
        """Store a computed view; returns its current value."""
        return (await self.agent.request(lambda: self.build.view(key, expr)))["value"]

    async def branch_create(self, branch: str, source: str | None = None) -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.branch_create(branch, source))  # type: ignore[no-any-return]

    async def branch_merge(self, branch: str) -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.branch_merge(branch))  # type: ignore[no-any-return]

    async def branch_diff(self, branch: str) -> dict[str, Any]:
        return await self.agent.request(lambda: self.build.branch_diff(branch))  # type: ignore[no-any-return]

    async def branches(self) -> list[dict[str, Any]]:
        """The room's branches (as SyncState.branches)."""
        return (await self.agent.request(self.build.branch_list))["branches"]  # type: ignore[no-any-return]
