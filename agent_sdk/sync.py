"""SyncAgent: the blocking client over a minimal stdlib WebSocket (the CLI's client: no event loop, fast start)."""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agent_sdk import credentials, verbs
from agent_sdk.base import (
    BaseClient,
    StateCommands,
    TaskCommands,
    backoff,
    error_of,
    lost,
    result_of,
    send_key,
    why_command,
)
from agent_sdk.claims import SyncClaim
from agent_sdk.wire import Closed, Socket
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Delivery, Error, Frame, Message, Notice, Ok, Trigger, Wake

__all__ = ["SyncAgent", "SyncReplies", "SyncState", "SyncTasks", "StateReplies"]


class SyncAgent(BaseClient):
    """The same verbs as Agent (agent_sdk.verbs), with the same arguments and return values, blocking. Use as
    a context manager. `replies` offers the same verbs returning the hub's whole replies (the CLI prints them).

    Raises:
        HubError: `unreachable` when the hub cannot be reached, `disconnected` when the connection drops,
            or the hub's own code when it refuses a request.
    """

    def __init__(self, name: str | None = None, *, connect_timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.connect_timeout = connect_timeout
        self.ws: Socket | None = None
        self.inbox: deque[Message] = deque()
        self.notice_box: deque[Notice] = deque()
        self._triggers: dict[int, deque[Trigger]] = {}  # live subscriptions (the hub's ids) → unread triggers
        self._subscribing = False  # a subscribe is in flight: its first trigger may come before its reply
        self._arming: Callable[[], c.BaseCommand] | None = None  # builds the armed waiter's Wait again
        self.implicit_join = True

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> SyncAgent:
        """Connect to the first address that answers, trying each once from the one in use (`hub`).

        Raises:
            HubError: `unreachable` when none does (refused, timed out, or the upgrade answered otherwise,
                as a standby's 503).
        """
        first, failed = self.hub, []
        for url in self.rounds():
            self.hub = url  # (ssl_context reads it)
            try:
                self.ws = Socket.open(url, self.connect_timeout, self.ssl_context)
            except (OSError, ValueError) as exc:
                failed.append(f"{url}: {exc}")
                continue
            self.now_on(url, first)
            return self
        self.hub = first
        raise HubError(Code.UNREACHABLE, "cannot reach the hub at " + "; ".join(failed))

    def failover(self) -> None:
        """After a dropped connection: connect again, to the next address first, a round of every address at
        a time; after a round where none answered, wait a backoff and try another, up to `retries` more.
        What the connection held (an attach, subscriptions, a waiter) is not restored here.

        Raises:
            HubError: `unreachable` when no round got through.
        """
        self.close()
        self.next_hub()
        attempt = 0
        while True:
            try:
                self.connect()
                return
            except HubError as exc:
                attempt += 1
                if attempt > self.retries:
                    raise
                delay = backoff(attempt, None, random.random())
                if self.on_retry is not None:
                    self.on_retry(exc, delay, attempt, self.retries)
            time.sleep(delay)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def __enter__(self) -> SyncAgent:
        return self.connect() if self.ws is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, timeout: float | None) -> Any:
        assert self.ws is not None
        try:
            return self.decode(self.ws.recv(timeout))
        except Closed as exc:
            raise lost(exc.code, exc.reason) from None

    def post(self, cmd: c.BaseCommand) -> None:
        """Send a command without waiting for its reply (read it, and what follows, with `next_frame`)."""
        if self.ws is None:
            self.connect()
        assert self.ws is not None
        data = self.frame(cmd)
        try:
            self.ws.send(data)
        except Closed as exc:
            closed = exc if exc.code is not None else (self._close_frame() or exc)
            raise lost(closed.code, closed.reason) from None

    def _close_frame(self) -> Closed | None:
        """After a send failed: why the hub closed, if its close frame arrived (a frame too large for it is
        refused that way, while it is still being sent). What came before it is kept as usual."""
        assert self.ws is not None
        try:
            while True:
                frame = self.decode(self.ws.recv(1.0))
                self._keep(frame)
        except Closed as closed:
            return closed if closed.code is not None else None
        except (TimeoutError, HubError):
            return None

    def next_frame(self, timeout: float | None = None) -> Frame:
        """The next frame from the hub, of any kind (a tail's EventFrames, replies, pushes).

        Raises:
            HubError: `disconnected` when the connection drops; TimeoutError after `timeout` seconds.
        """
        return self._recv(timeout)  # type: ignore[no-any-return]

    def request(self, cmd: c.BaseCommand, timeout: float | None = 30.0) -> Any:
        """Send one command and block for its reply; pushes that arrive meanwhile are kept.

        A refusal with `rate_limited` or `unavailable` (nothing was applied) is sent again after a backoff
        that honors the hub's `retry_after`, up to `retries` times; then the refusal is raised.
        """
        attempt = 0
        while True:
            try:
                return self._request_once(cmd, timeout)
            except HubError as exc:
                attempt += 1
                delay = self.retry_delay(exc, attempt)
                if delay is None:
                    raise
            time.sleep(delay)

    def _request_once(self, cmd: c.BaseCommand, timeout: float | None) -> Any:
        self.post(cmd)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                frame = self._recv(left)
            except TimeoutError:
                raise HubError(Code.TIMED_OUT, f"no reply from the hub in {timeout}s") from None
            if isinstance(frame, Ok | Error) and frame.id == cmd.id:
                return result_of(frame)
            if isinstance(frame, Error) and frame.id is None:
                raise error_of(frame)
            self._keep(frame)

    def _keep(self, frame: Frame) -> None:
        """Keep a push that arrived while waiting for something else: a message, a trigger, a notice."""
        if isinstance(frame, Delivery):
            if self.fresh(frame.message):
                self.inbox.append(frame.message)
        elif isinstance(frame, Trigger):
            if frame.sub in self._triggers:
                self._triggers[frame.sub].append(frame)
            elif self._subscribing:
                self._triggers[frame.sub] = deque([frame])
        elif isinstance(frame, Notice):
            self.notice_box.append(frame)

    def act(self, build: Callable[[], c.BaseCommand]) -> Any:
        """Run a mutation as this agent, joining first when it never has (the token is then saved). With the
        admin token and no agent token it acts as the agent directly: a join would take the name over."""
        self.need_name()
        if self.token is None and self.implicit_join and self.admin_token is None:
            self.first_join()
        try:
            return self.request(build())
        except HubError as exc:
            what, named = exc.detail.get("what"), exc.detail.get("name", self.name)
            unknown = exc.code == Code.NOT_FOUND and (
                what == "room" or (what == "agent" and named == self.name)
            )
            if not (unknown and self.implicit_join):
                raise
        self.join()
        return self.request(build())

    # -- verbs (agent_sdk.verbs: the same as Agent's) -----------------------------------------------------

    @property
    def replies(self) -> SyncReplies:
        """The same verbs returning the hub's whole replies (a send's `unread`, a claim's view...)."""
        return SyncReplies(self)

    def first_join(self) -> None:
        """Join on first use; processes sharing the name (and token file) take turns, so only one joins."""
        if not self.save_token or self.name is None:
            self.join()
            return
        with credentials.first_join(self.hubs[0], self.room, self.name) as saved:
            if saved is not None:
                self.token = saved
            else:
                self.join()

    def join(self, role: str | None = None, *, rotate: bool = False, force: bool = False) -> str:
        """Join (or re-join with this agent's token; `rotate` issues a new one); returns the token, saved.

        Raises:
            HubError: `name_taken` when the name is another's (re-joining needs its token); `force` takes it
                over on a hub without an admin token.
        """
        return self.joined(self.request(self.cmd_join(role, rotate, force)))

    def attach(self, stream: bool = True) -> dict[str, Any]:
        """Bind this connection to the agent: presence follows it; messages for the agent are pushed."""
        result = self.act(lambda: self.cmd_attach(stream))
        if self.cursor is None:
            self.cursor = int(result["seq"])
        return result  # type: ignore[no-any-return]

    def send(
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
        reply, it reconnects and sends again with the same key, so the message is delivered once.

        Raises:
            HubError: `fenced` when `fence` (`{"WORK": epoch}`) names a claim this agent no longer holds at
                that epoch: nothing is sent; `unknown_recipient` for a name that never joined (unless
                `allow_unknown`).
        """
        return verbs.seq(
            self.replies.send(
                target,
                body,
                kind=kind,
                reply_to=reply_to,
                priority=priority,
                fence=fence,
                stagger=stagger,
                key=key,
                allow_unknown=allow_unknown,
            )
        )

    def ack(self, seq: int) -> dict[str, Any]:
        """Mark everything addressed to this agent up to `seq` read (never backwards); returns the position
        (`upto`) and how many are still `unread`. Raises HubError `not_found` (no message `seq`)."""
        return self.replies.ack(seq)

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Messages addressed to this agent, live (call `attach` first); stops after `timeout` idle seconds."""
        while True:
            while self.inbox:
                yield self.inbox.popleft()
            try:
                frame = self._recv(timeout)
            except TimeoutError:
                return
            self._keep(frame)

    def list_messages(
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
        reply = self.replies.list_messages(
            for_=for_, after=after, kind=kind, unclaimed=unclaimed, limit=limit, unread=unread
        )
        return reply["messages"]  # type: ignore[no-any-return]

    def claim_message(self, seq: int) -> str:
        """Claim a message for this agent. Raises HubError `already_claimed` (detail: holder)."""
        return verbs.holder(self.replies.claim_message(seq))

    def heartbeat(self, status: str | None = None) -> dict[str, Any]:
        """Say this agent is alive, optionally with a new status (active, busy, idle, done...)."""
        return self.replies.heartbeat(status)

    # -- claims -----------------------------------------------------------------------------------

    def claim(
        self,
        work: str,
        paths: list[str] | tuple[str, ...] = (),
        *,
        ttl: float | None = None,
        checkpoint: str | None = None,
        renew: bool = False,
    ) -> SyncClaim:
        """Lease `work` on `paths`; the SyncClaim's `epoch` fences writes made under it: `fence=claim.fence`.

        Raises HubError `claim_overlap`, `conflict`, `bad_request`, `limit_exceeded`."""
        return SyncClaim(self, self.replies.claim(work, paths, ttl=ttl, checkpoint=checkpoint, renew=renew))

    def release(
        self, work: str, *, checkpoint: str | None = None, fence: Mapping[str, int] | None = None
    ) -> None:
        """Release a claim. Raises HubError `forbidden` (another's), `not_found`, `fenced`."""
        self.replies.release(work, checkpoint=checkpoint, fence=fence)

    def handoff(self, work: str, to: str, *, fence: Mapping[str, int] | None = None) -> None:
        """Hand a claim over; the new holder gets a new epoch. Raises HubError `forbidden`, `fenced`."""
        self.replies.handoff(work, to, fence=fence)

    def reoffer_claim(self, work: str, idle_seconds: float) -> dict[str, Any]:
        """Free another agent's claim whose holder has no session and was idle that long (the supervisor's
        verb). Raises HubError `conflict` (the holder is live or was active recently), `not_found`."""
        return self.replies.reoffer_claim(work, idle_seconds)

    def reoffer_task(self, task: str, idle_seconds: float) -> dict[str, Any]:
        """Put another agent's in-progress task back to ready when its holder has no session and was idle that
        long (the supervisor's verb). Raises HubError `conflict` (not in progress, or the holder is live)."""
        return self.replies.reoffer_task(task, idle_seconds)

    def claims(self) -> list[dict[str, Any]]:
        """The room's live claims."""
        return self.replies.claims()

    # -- the git guard ------------------------------------------------------------------------------------

    def check_paths(self, paths: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
        """Which of `paths` (files relative to the repository root, taken literally) this agent's live claims
        cover, and who holds each of the others (the git guard's check): one dict per path, in order, with
        `path`, `held`, and `holder` / `work` of the covering claim (both None: unclaimed).

        Raises:
            HubError: `unauthorized` / `forbidden` without this agent's token, `not_found` for an unknown
                agent or room, `bad_request` for a path that is not a plain relative one, `limit_exceeded`
                for more than 10,000 paths or a check that takes too many steps (send fewer at a time).
        """
        return self.replies.check_paths(paths)["paths"]  # type: ignore[no-any-return]

    def intent(self, paths: list[str] | tuple[str, ...], note: str | None = None) -> dict[str, Any]:
        """Declare advisory intent on paths (no lease); empty paths clear it."""
        return self.replies.intent(paths, note)

    def board(self) -> dict[str, Any]:
        """The plan, live claims and declared intents."""
        return self.replies.board()

    def notices(self, timeout: float | None = None) -> Iterator[Notice]:
        """News about this agent's own things (`claim.lapsed`, `claim.handed`...); stops after `timeout` idle
        seconds."""
        while True:
            while self.notice_box:
                yield self.notice_box.popleft()
            try:
                frame = self._recv(timeout)
            except TimeoutError:
                return
            self._keep(frame)

    def state_at(self, branch: str | None = None) -> SyncState:
        """Shared state, on the main line or a branch."""
        return SyncState(self, branch)

    @property
    def state(self) -> SyncState:
        """Shared state: get/set/init/cas/increment/batch/delete/view/list."""
        return SyncState(self)

    def why(self, kind: str, what: str) -> dict[str, Any]:
        """Why something is stuck: `kind` is `task` (ID), `claim` (WORK), `wait` (WAITER) or `condition` (a CEL
        expression); the hub's explanation (see `synapse why --help`). Reads only.

        Raises:
            HubError: `not_found` (no such task, live claim or armed waiter), `bad_expression`, `bad_request`.
        """
        return self.replies.why(kind, what)

    def eval(self, expr: str, branch: str | None = None) -> Any:
        """Evaluate CEL against the room. Raises HubError `bad_expression`; an evaluation error → bad_request."""
        return verbs.evaluated(self.request(StateCommands(self, branch).eval(expr)), expr)

    def subscribe(
        self, expr: str, *, include: tuple[str, ...] = (), waiting: bool = False
    ) -> Iterator[Trigger]:
        """A Trigger each time `expr` becomes true (at once if it already is), until the iterator is closed.

        With `waiting=True` (as `wait_for` does) the agent's presence shows `waiting` on `expr` while the
        subscription lives; a background subscription leaves presence alone.

        Raises:
            HubError: `bad_expression` at once for an expression that does not compile.
        """
        sub = self._subscribe(expr, include, waiting, once=False)
        try:
            while True:
                yield self._trigger(sub, None)
        finally:
            self._unsubscribe(sub)

    def wait(
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

        Raises:
            HubError: `timed_out`, `taken_over`, `bad_request` (a settle out of range).
        """
        name = self.need_name()
        self.arm(name, name, directed_only=directed_only, after=after, settle=settle)
        return verbs.handed(self.woken(timeout))

    def wait_for(self, expr: str, timeout: float | None = None) -> Any:
        """Block until `expr` is true (returns at once if it already is); returns its value.

        Raises:
            HubError: `timed_out`, `bad_expression`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        sub = self._subscribe(expr, (), True, once=True)
        try:
            return self._trigger(sub, deadline).value
        except TimeoutError:
            self._unsubscribe(sub)
            raise HubError(Code.TIMED_OUT, f"{expr!r} did not become true in {timeout}s") from None
        finally:
            self._triggers.pop(sub, None)

    def _subscribe(self, expr: str, include: tuple[str, ...], waiting: bool, once: bool) -> int:
        def build() -> c.Subscribe:
            name = self.name if waiting else None
            return self.read(c.Subscribe, expr=expr, name=name, include=tuple(include), once=once)  # type: ignore[no-any-return]

        self._subscribing = True
        try:
            reply = self.act(build) if waiting else self.request(build())
        finally:
            self._subscribing = False
        sub = int(reply["sub"])
        self._triggers.setdefault(sub, deque())
        return sub

    def _trigger(self, sub: int, deadline: float | None) -> Trigger:
        """The next trigger of subscription `sub`; TimeoutError once `deadline` (monotonic) has passed."""
        queue = self._triggers[sub]
        while not queue:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError
            try:
                frame = self._recv(left)
            except TimeoutError:
                continue
            self._keep(frame)
        return queue.popleft()

    def _unsubscribe(self, sub: int) -> None:
        if self._triggers.pop(sub, None) is not None and self.ws is not None and self.ws.closed is None:
            with contextlib.suppress(HubError):
                self.request(self.read(c.Unsubscribe, sub=sub))

    @property
    def tasks(self) -> SyncTasks:
        """The shared plan: `declare`, `claim`, `update`, `list`, `show`."""
        return SyncTasks(self)

    def agents(self) -> list[dict[str, Any]]:
        """Presence of every agent in the room."""
        return self.replies.agents()

    def status(self) -> dict[str, Any]:
        """The hub's and the room's counters."""
        return self.replies.status()

    # -- one waiter per connection (the CLI's `wait`) ---------------------------------------------

    def arm(
        self,
        waiter: str,
        for_: str | None,
        *,
        directed_only: bool = False,
        after: int | None = None,
        since: float | None = None,
        condition: str | None = None,
        settle: float = 0.0,
    ) -> int:
        """Arm a waiter on this connection, acting as this agent (joining first if it never has); returns the
        seq it is armed after. Then call `woken`. Only an agent's own token waits for its messages (`for_`).
        """

        def build(after: int | None = after) -> c.BaseCommand:
            cmd = self.read(
                c.Wait,
                token=self.token,
                waiter=waiter,
                for_=for_,
                condition=condition,
                directed_only=directed_only,
                after=after,
                since=since,
                settle=settle,
            )
            self._wait_id = cmd.id
            return cmd  # type: ignore[no-any-return]

        armed = int(self.act(build)["armed"])
        fresh = after is None and since is None  # "from now": a re-arm wakes for what came after this arm
        self._arming = (lambda: build(armed)) if fresh else build
        return armed

    def woken(self, timeout: float | None) -> Wake:
        """Block until the armed waiter wakes; when its connection drops, arm it again (as it was) on the next
        hub that answers (`failover`), so what came meanwhile wakes it.

        Raises:
            HubError: `timed_out`, `taken_over`, `disconnected` (no hub answered again).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise HubError(Code.TIMED_OUT, f"nothing woke the waiter in {timeout}s")
            try:
                frame = self._recv(left)
            except TimeoutError:
                continue
            except HubError as exc:
                build = self._arming
                if exc.code != Code.DISCONNECTED or build is None:
                    raise
                self.failing_over(functools.partial(self.act, build), exc)  # armed again, as it was
                continue
            if isinstance(frame, Wake) and frame.id == self._wait_id:
                return frame
            if isinstance(frame, Error):
                raise error_of(frame)
            self._keep(frame)

    def failing_over(self, call: Callable[[], Any], lost: HubError | None = None) -> Any:
        """`call()`, a request safe to repeat (a read, a wait, a send with its key), made again on the next hub
        that answers (`failover`) when its connection drops (`lost`: it dropped already), up to `retries`
        times (at least once). Raises the first `disconnected` when no hub answers: it may have been applied.
        """
        for _ in range(max(self.retries, 1) + 1):
            if lost is not None:
                try:
                    self.failover()
                except HubError:
                    break
            try:
                return call()
            except HubError as exc:
                if exc.code != Code.DISCONNECTED:
                    raise
                lost = lost or exc
        assert lost is not None
        raise lost


class SyncReplies:
    """SyncAgent's verbs returning the hub's whole replies (what the CLI prints, `--json`); anything else is
    the agent's own (`replies.arm`, `replies.name`...)."""

    def __init__(self, agent: SyncAgent) -> None:
        self.agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)

    def send(
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
    ) -> dict[str, Any]:
        """The reply carries the message's `seq` (and `unknown` targets, `unread` counts, `repeated` for a
        key used before). A send lost with its connection is sent again, with the same key, on a new one."""
        a = self.agent
        key = send_key(key)
        return a.failing_over(  # type: ignore[no-any-return]
            lambda: a.act(
                lambda: a.cmd_send(target, body, kind, reply_to, priority, fence, stagger, key, allow_unknown)
            )
        )

    def ack(self, seq: int) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.mutation(c.AckMessages, seq=seq))  # type: ignore[no-any-return]

    def list_messages(
        self,
        *,
        for_: str | None = None,
        after: int = 0,
        kind: str | None = None,
        unclaimed: bool = False,
        limit: int = 100,
        unread: bool = False,
    ) -> dict[str, Any]:
        a = self.agent
        cmd = a.read(
            c.ListMessages, for_=for_, after=after, kind=kind, unclaimed=unclaimed, limit=limit, unread=unread
        )
        return a.failing_over(lambda: a.request(cmd))  # type: ignore[no-any-return]

    def claim_message(self, seq: int) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.mutation(c.ClaimMessage, seq=seq))  # type: ignore[no-any-return]

    def heartbeat(self, status: str | None = None) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.mutation(c.Heartbeat, status=status))  # type: ignore[no-any-return]

    def claim(
        self,
        work: str,
        paths: list[str] | tuple[str, ...] = (),
        *,
        ttl: float | None = None,
        checkpoint: str | None = None,
        renew: bool = False,
    ) -> dict[str, Any]:
        """The claim's view: its fencing `epoch` (and `already_held` on a re-claim)."""
        a = self.agent
        return a.act(  # type: ignore[no-any-return]
            lambda: a.mutation(
                c.Claim, work=work, paths=tuple(paths), ttl=ttl, checkpoint=checkpoint, renew=renew
            )
        )

    def release(
        self, work: str, *, checkpoint: str | None = None, fence: Mapping[str, int] | None = None
    ) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.cmd_release(work, checkpoint, fence))  # type: ignore[no-any-return]

    def handoff(self, work: str, to: str, *, fence: Mapping[str, int] | None = None) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.cmd_handoff(work, to, fence))  # type: ignore[no-any-return]

    def reoffer_claim(self, work: str, idle_seconds: float) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.mutation(c.ReofferClaim, work=work, idle_seconds=idle_seconds))  # type: ignore[no-any-return]

    def reoffer_task(self, task: str, idle_seconds: float) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.mutation(c.ReofferTask, task=task, idle_seconds=idle_seconds))  # type: ignore[no-any-return]

    def claims(self) -> list[dict[str, Any]]:
        return self.agent.request(self.agent.read(c.ListClaims))["claims"]  # type: ignore[no-any-return]

    def check_paths(self, paths: list[str] | tuple[str, ...]) -> dict[str, Any]:
        """The whole `guard.check` reply: the checked `name` and one entry per path."""
        return self.agent.request(self.agent.mutation(c.CheckPaths, paths=tuple(paths)))  # type: ignore[no-any-return]

    def intent(self, paths: list[str] | tuple[str, ...], note: str | None = None) -> dict[str, Any]:
        a = self.agent
        return a.act(lambda: a.mutation(c.DeclareIntent, paths=tuple(paths), note=note))  # type: ignore[no-any-return]

    def board(self) -> dict[str, Any]:
        return self.agent.request(self.agent.read(c.Board))  # type: ignore[no-any-return]

    def why(self, kind: str, what: str) -> dict[str, Any]:
        return self.agent.request(why_command(self.agent, kind, what))  # type: ignore[no-any-return]

    def state_at(self, branch: str | None = None) -> StateReplies:
        return StateReplies(self.agent, branch)

    @property
    def state(self) -> StateReplies:
        return StateReplies(self.agent)

    @property
    def tasks(self) -> SyncTasks:
        return SyncTasks(self.agent)

    def eval(self, expr: str, branch: str | None = None) -> Any:
        return self.agent.eval(expr, branch)

    def agents(self) -> list[dict[str, Any]]:
        return self.agent.request(self.agent.read(c.Agents))["agents"]  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self.agent.request(self.agent.read(c.Status))  # type: ignore[no-any-return]


class SyncTasks:
    """`agent.tasks`, blocking; a claim's reply carries its fencing `epoch` (`update(..., fence={"task:ID":
    epoch})`). Raises HubError `conflict`, `not_ready`, `seq_blocked`, `already_exists`, `forbidden` (another's
    claimed task), `fenced`."""

    def __init__(self, agent: SyncAgent) -> None:
        self.agent = agent
        self.build = TaskCommands(agent)

    def declare(self, task: str, title: str, **kw: Any) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.declare(task, title, **kw))  # type: ignore[no-any-return]

    def claim(self, task: str) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.claim(task))  # type: ignore[no-any-return]

    def update(self, task: str, **kw: Any) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.update(task, **kw))  # type: ignore[no-any-return]

    def list(
        self, status: str | None = None, ready: bool = False, parent: str | None = None
    ) -> list[dict[str, Any]]:
        return self.agent.request(self.build.list(status, ready, parent))["tasks"]  # type: ignore[no-any-return]

    def show(self, task: str) -> dict[str, Any]:
        return self.agent.request(self.build.show(task))  # type: ignore[no-any-return]


class SyncState:
    """`agent.state`, blocking. Every write takes `fence={"WORK": epoch}`.

    Raises HubError `conflict` (detail `current`), `precondition_failed`, `already_exists`, `forbidden`
    (another agent's scope), `bad_expression`, `fenced` (a fence on a claim no longer held at that epoch)."""

    def __init__(self, agent: SyncAgent, branch: str | None = None) -> None:
        self.agent = agent
        self.build = StateReplies(agent, branch)

    def get(self, key: str, *, scope: str = "_shared") -> dict[str, Any]:
        return self.build.get(key, scope=scope)

    def list(self, scope: str | None = None) -> list[dict[str, Any]]:
        return self.build.list(scope)

    def history(self, key: str, *, scope: str = "_shared", limit: int = 20) -> dict[str, Any]:
        """KEY's versions newest first, read from the hub's log: {"versions": [...], "complete": bool}."""
        return self.build.history(key, scope=scope, limit=limit)

    def set(self, key: str, value: Any, **kw: Any) -> int:
        """Write; returns the new version."""
        return verbs.version(self.build.set(key, value, **kw))

    def init(self, key: str, value: Any, *, scope: str = "_shared", **kw: Any) -> int:
        return verbs.version(self.build.init(key, value, scope=scope, **kw))

    def cas(self, key: str, version: int, value: Any, *, scope: str = "_shared", **kw: Any) -> int:
        return self.set(key, value, scope=scope, if_version=version, **kw)

    def increment(self, key: str, by: float = 1, *, scope: str = "_shared", **kw: Any) -> Any:
        """Add atomically; returns the new value."""
        return verbs.value(self.build.increment(key, by, scope=scope, **kw))

    def batch(self, writes: list[Any], *, if_: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return self.build.batch(writes, if_=if_, **kw)

    def delete(self, key: str, *, scope: str = "_shared", if_version: int | None = None, **kw: Any) -> None:
        self.build.delete(key, scope=scope, if_version=if_version, **kw)

    def view(self, key: str, expr: str) -> Any:
        """Store a computed view; returns its current value."""
        return verbs.value(self.build.view(key, expr))

    def branch_create(self, branch: str, source: str | None = None) -> dict[str, Any]:
        return self.build.branch_create(branch, source)

    def branch_merge(self, branch: str) -> dict[str, Any]:
        return self.build.branch_merge(branch)

    def branch_diff(self, branch: str) -> dict[str, Any]:
        return self.build.branch_diff(branch)

    def branches(self) -> list[dict[str, Any]]:
        """The room's branches."""
        return self.build.branches()


class StateReplies:
    """`agent.replies.state`: the hub's whole replies (a write's `version`, `value`...). Every write takes `fence={"WORK": epoch}`.

    Raises HubError `conflict` (detail `current`), `precondition_failed`, `already_exists`, `forbidden`
    (another agent's scope), `bad_expression`, `fenced` (a fence on a claim no longer held at that epoch)."""

    def __init__(self, agent: SyncAgent, branch: str | None = None) -> None:
        self.agent = agent
        self.build = StateCommands(agent, branch)

    def get(self, key: str, *, scope: str = "_shared") -> dict[str, Any]:
        return self.agent.request(self.build.get(key, scope=scope))  # type: ignore[no-any-return]

    def list(self, scope: str | None = None) -> list[dict[str, Any]]:
        return self.agent.request(self.build.list(scope))["entries"]  # type: ignore[no-any-return]

    def history(self, key: str, *, scope: str = "_shared", limit: int = 20) -> dict[str, Any]:
        return self.agent.request(self.build.history(key, scope=scope, limit=limit))  # type: ignore[no-any-return]

    def set(self, key: str, value: Any, **kw: Any) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.set(key, value, **kw))  # type: ignore[no-any-return]

    def init(self, key: str, value: Any, *, scope: str = "_shared", **kw: Any) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.init(key, value, scope=scope, **kw))  # type: ignore[no-any-return]

    def cas(self, key: str, version: int, value: Any, *, scope: str = "_shared", **kw: Any) -> dict[str, Any]:
        return self.set(key, value, scope=scope, if_version=version, **kw)

    def increment(self, key: str, by: float = 1, *, scope: str = "_shared", **kw: Any) -> dict[str, Any]:
        return self.set(key, by, scope=scope, increment=True, **kw)

    def batch(self, writes: list[Any], *, if_: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return self.agent.act(lambda: self.build.batch(writes, if_=if_, **kw))["writes"]  # type: ignore[no-any-return]

    def delete(
        self, key: str, *, scope: str = "_shared", if_version: int | None = None, **kw: Any
    ) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.delete(key, scope=scope, if_version=if_version, **kw))  # type: ignore[no-any-return]

    def view(self, key: str, expr: str) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.view(key, expr))  # type: ignore[no-any-return]

    def branch_create(self, branch: str, source: str | None = None) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.branch_create(branch, source))  # type: ignore[no-any-return]

    def branches(self) -> list[dict[str, Any]]:
        return self.agent.request(self.build.branch_list())["branches"]  # type: ignore[no-any-return]

    def branch_diff(self, branch: str) -> dict[str, Any]:
        return self.agent.request(self.build.branch_diff(branch))  # type: ignore[no-any-return]

    def branch_merge(self, branch: str) -> dict[str, Any]:
        return self.agent.act(lambda: self.build.branch_merge(branch))  # type: ignore[no-any-return]
