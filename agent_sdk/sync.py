"""SyncAgent: the blocking client over a minimal stdlib WebSocket (the CLI's client: no event loop, fast start)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agent_sdk import credentials
from agent_sdk.base import BaseClient, StateCommands, TaskCommands, error_of, lost, result_of
from agent_sdk.wire import Closed, Socket
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Delivery, Error, Frame, Message, Ok, Wake

__all__ = ["SyncAgent"]


class SyncAgent(BaseClient):
    """The same verbs as Agent, blocking. Use as a context manager.

    Raises:
        HubError: `unreachable` when the hub cannot be reached, `disconnected` when the connection drops,
            or the hub's own code when it refuses a request.
    """

    def __init__(self, name: str | None = None, *, connect_timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.connect_timeout = connect_timeout
        self.ws: Socket | None = None
        self.inbox: deque[Message] = deque()
        self.implicit_join = True

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> SyncAgent:
        try:
            self.ws = Socket.open(self.hub, self.connect_timeout, self.ssl_context)
        except (OSError, ValueError) as exc:
            raise HubError(Code.UNREACHABLE, f"cannot reach the hub at {self.hub}: {exc}") from None
        return self

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
                if isinstance(frame, Delivery) and self.fresh(frame.message):
                    self.inbox.append(frame.message)
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
            if isinstance(frame, Delivery) and self.fresh(frame.message):
                self.inbox.append(frame.message)

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

    # -- verbs --------------------------------------------------------------------------------

    def first_join(self) -> None:
        """Join on first use; processes sharing the name (and token file) take turns, so only one joins."""
        if not self.save_token or self.name is None:
            self.join()
            return
        with credentials.first_join(self.hub, self.room, self.name) as saved:
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
    ) -> dict[str, Any]:
        """Send a message; the reply carries its `seq` (and `unknown` targets, if any).

        Raises:
            HubError: `fenced` when `fence` names a claim this agent no longer holds at that epoch.
        """
        return self.act(lambda: self.cmd_send(target, body, kind, reply_to, priority, fence))  # type: ignore[no-any-return]

    def list_messages(
        self,
        *,
        for_: str | None = None,
        after: int = 0,
        kind: str | None = None,
        unclaimed: bool = False,
        limit: int = 100,
    ) -> dict[str, Any]:
        cmd = self.read(c.ListMessages, for_=for_, after=after, kind=kind, unclaimed=unclaimed, limit=limit)
        return self.request(cmd)  # type: ignore[no-any-return]

    def claim_message(self, seq: int) -> dict[str, Any]:
        """Claim a message; `already_claimed` (naming the holder) if someone was first."""
        return self.act(  # type: ignore[no-any-return]
            lambda: self.mutation(c.ClaimMessage, seq=seq)
        )

    def heartbeat(self, status: str | None = None) -> dict[str, Any]:
        return self.act(  # type: ignore[no-any-return]
            lambda: self.mutation(c.Heartbeat, status=status)
        )

    # -- claims -----------------------------------------------------------------------------------

    def claim(
        self,
        work: str,
        paths: list[str] | tuple[str, ...] = (),
        *,
        ttl: float | None = None,
        checkpoint: str | None = None,
        renew: bool = False,
    ) -> dict[str, Any]:
        """Lease `work` on `paths`; the reply carries its fencing `epoch` (and `already_held` on a re-claim).

        Raises HubError `claim_overlap`, `conflict`, `bad_request`, `limit_exceeded`."""
        return self.act(  # type: ignore[no-any-return]
            lambda: self.mutation(
                c.Claim, work=work, paths=tuple(paths), ttl=ttl, checkpoint=checkpoint, renew=renew
            )
        )

    def release(
        self, work: str, *, checkpoint: str | None = None, fence: Mapping[str, int] | None = None
    ) -> dict[str, Any]:
        """Release a claim. Raises HubError `forbidden` (another's), `not_found`, `fenced`."""
        return self.act(lambda: self.cmd_release(work, checkpoint, fence))  # type: ignore[no-any-return]

    def handoff(self, work: str, to: str, *, fence: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Hand a claim over; the new holder gets a new epoch. Raises HubError `forbidden`, `fenced`."""
        return self.act(lambda: self.cmd_handoff(work, to, fence))  # type: ignore[no-any-return]

    def reoffer_claim(self, work: str, idle_seconds: float) -> dict[str, Any]:
        """Free another agent's claim whose holder has no session and was idle that long (the supervisor's
        verb). Raises HubError `conflict` (the holder is live or was active recently), `not_found`."""
        return self.act(lambda: self.mutation(c.ReofferClaim, work=work, idle_seconds=idle_seconds))  # type: ignore[no-any-return]

    def reoffer_task(self, task: str, idle_seconds: float) -> dict[str, Any]:
        """Put another agent's in-progress task back to ready when its holder has no session and was idle that
        long (the supervisor's verb). Raises HubError `conflict` (not in progress, or the holder is live)."""
        return self.act(lambda: self.mutation(c.ReofferTask, task=task, idle_seconds=idle_seconds))  # type: ignore[no-any-return]

    def claims(self) -> list[dict[str, Any]]:
        return self.request(self.read(c.ListClaims))["claims"]  # type: ignore[no-any-return]

    def intent(self, paths: list[str] | tuple[str, ...], note: str | None = None) -> dict[str, Any]:
        """Declare advisory intent on paths (no lease); empty paths clear it."""
        return self.act(  # type: ignore[no-any-return]
            lambda: self.mutation(c.DeclareIntent, paths=tuple(paths), note=note)
        )

    def board(self) -> dict[str, Any]:
        return self.request(self.read(c.Board))  # type: ignore[no-any-return]

    def state_at(self, branch: str | None = None) -> SyncState:
        """Shared state, on the main line or a branch: get/set/init/cas/increment/batch/delete/view/list."""
        return SyncState(self, branch)

    @property
    def state(self) -> SyncState:
        return SyncState(self)

    def eval(self, expr: str, branch: str | None = None) -> Any:
        """Evaluate CEL against the room. Raises HubError `bad_expression`; an evaluation error → bad_request."""
        result = self.request(StateCommands(self, branch).eval(expr))
        if "error" in result:
            raise HubError(Code.BAD_REQUEST, f"evaluation failed: {result['error']}", {"expression": expr})
        return result["value"]

    @property
    def tasks(self) -> SyncTasks:
        """The shared plan: `declare`, `claim`, `update`, `list`, `show`."""
        return SyncTasks(self)

    def agents(self) -> list[dict[str, Any]]:
        return self.request(self.read(c.Agents))["agents"]  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self.request(self.read(c.Status))  # type: ignore[no-any-return]

    def arm(
        self,
        waiter: str,
        for_: str | None,
        *,
        directed_only: bool = False,
        after: int | None = None,
        since: float | None = None,
        condition: str | None = None,
    ) -> int:
        """Arm a waiter on this connection, acting as this agent (joining first if it never has); returns the
        seq it is armed after. Then call `woken`. Only an agent's own token waits for its messages (`for_`).
        """

        def build() -> c.BaseCommand:
            cmd = self.read(
                c.Wait,
                token=self.token,
                waiter=waiter,
                for_=for_,
                condition=condition,
                directed_only=directed_only,
                after=after,
                since=since,
            )
            self._wait_id = cmd.id
            return cmd  # type: ignore[no-any-return]

        return int(self.act(build)["armed"])

    def woken(self, timeout: float | None) -> Wake:
        """Block until the armed waiter wakes. Raises HubError `timed_out`, `taken_over`, `disconnected`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise HubError(Code.TIMED_OUT, f"nothing woke the waiter in {timeout}s")
            try:
                frame = self._recv(left)
            except TimeoutError:
                continue
            if isinstance(frame, Wake) and frame.id == self._wait_id:
                return frame
            if isinstance(frame, Error):
                raise error_of(frame)

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Messages addressed to this agent, live (call `attach` first); stops after `timeout` idle seconds."""
        while True:
            while self.inbox:
                yield self.inbox.popleft()
            try:
                frame = self._recv(timeout)
            except TimeoutError:
                return
            if isinstance(frame, Delivery) and self.fresh(frame.message):
                yield frame.message


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
        self.build = StateCommands(agent, branch)

    def get(self, key: str, *, scope: str = "_shared") -> dict[str, Any]:
        return self.agent.request(self.build.get(key, scope=scope))  # type: ignore[no-any-return]

    def list(self, scope: str | None = None) -> list[dict[str, Any]]:
        return self.agent.request(self.build.list(scope))["entries"]  # type: ignore[no-any-return]

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
