"""Hub: restore from the log, serve WebSocket sessions, drain on SIGTERM, stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request, Response

from hub.config import HubConfig, bind_problem
from hub.core import snapshot
from hub.core.effects import Deliver, Outcome, Reply
from hub.core.machine import Context, Machine, SessionGone, Start, Tick
from hub.log.store import EventLog, Row
from hub.log.writer import LogWriter
from hub.protocol.codec import decode_command, decode_event, encode
from hub.protocol.commands import Tail
from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Error, Trigger, Wake
from hub.protocol.types import SessionId
from hub.server import http
from hub.server.fanout import Fanout
from hub.server.metrics import Metrics
from hub.server.older import OlderFeed
from hub.server.session import Session
from hub.server.tail import Tails
from hub.server.timers import Timers

__all__ = ["Hub", "serve"]

logger = logging.getLogger(__name__)

GOING_AWAY = 1001


def _token() -> str:
    return "st_" + secrets.token_urlsafe(24)


class Hub:
    """The thin asyncio shell around the pure Machine."""

    def __init__(
        self,
        config: HubConfig,
        *,
        clock: Callable[[], float] = time.time,
        secret: Callable[[], str] = _token,
    ) -> None:
        problem = bind_problem(config)
        if problem is not None:
            raise ValueError(problem)
        self.tls = _tls_context(config)  # before the log is opened: a bad certificate touches nothing
        self.config = config
        self.clock = clock
        self.secret = secret
        self.log = EventLog(config.db, config.sync)
        self.machine = Machine(config)
        self.sessions: dict[SessionId, Session] = {}
        self.fanout = Fanout(self)
        self.timers = Timers(clock, self._tick)
        self.writer: LogWriter | None = None
        self.server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = False
        self.draining = False
        self.failed: BaseException | None = None
        self.stopped = asyncio.Event()
        self.started_at = clock()
        self.replayed = 0
        self.replay_seconds = 0.0
        self._next_session = 0
        self._rows: list[Row] = []
        self._inline = self.log.is_sqlite and config.sync != "full"  # SQLite WAL commits cost ~50 µs
        self._inflight: deque[tuple[int, list[Row]]] = deque()
        self.durable_position = 0
        self.tails = Tails(self)
        self.older = OlderFeed(self)
        self.metrics = Metrics(self)
        self._handover_scheduled = False
        self._last_snapshot = 0

    # -- life cycle ---------------------------------------------------------------------------

    def restore(self) -> None:
        """Fold the newest snapshot and every event after it back into the machine."""
        started = time.perf_counter()
        found = self.log.load_snapshot([snapshot.SNAPSHOT_VERSION])
        if found is not None:
            self.machine = snapshot.load(found[2], self.config)
            self._last_snapshot = found[0]
        apply = self.machine.apply
        count = 0
        for _seq, _room, _type, data, _at in self.log.scan(self.machine.position):
            apply(decode_event(data))
            count += 1
        self.replayed = count
        self.durable_position = self.machine.position
        self.replay_seconds = time.perf_counter() - started
        logger.info(
            "hub.restored position=%d snapshot=%s replayed=%d seconds=%.3f",
            self.machine.position,
            found[0] if found else None,
            count,
            self.replay_seconds,
        )

    async def start(self) -> None:
        """Restore, start the log writer, then accept connections."""
        self.loop = asyncio.get_running_loop()
        await self.loop.run_in_executor(None, self.restore)
        self.writer = LogWriter(self.log, self._durable_from_thread, self._failed_from_thread)
        self.writer.start()
        self.submit(self.machine.handle(Start(), Context(self.clock())))
        max_frame = self.config.max_frame_bytes
        self.server = await ws_serve(
            self._connection,
            self.config.host,
            self.config.port,
            process_request=self._http,
            max_size=None if max_frame is None else max_frame * 4,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
            server_header=None,
            ssl=self.tls,
        )
        self.ready = True

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls is not None else 'ws'}://{self.config.host}:{self.port}"

    async def stop(self) -> None:
        """Drain: refuse new work, flush the log, close every session, stop the writer."""
        if self.draining:
            await self.stopped.wait()
            return
        self.draining = True
        self.ready = False
        if self.server is not None:
            self.server.close(close_connections=False)
        self.timers.cancel()
        deadline = self.clock() + self.config.drain_seconds
        while self.fanout.pending and self.clock() < deadline and self.failed is None:
            await asyncio.sleep(0.01)
        for session in list(self.sessions.values()):
            session.close(GOING_AWAY, "hub shutting down")
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), self.config.drain_seconds)
            except TimeoutError:
                logger.warning("hub.drain_timeout sessions=%d", len(self.sessions))
        if self.writer is not None:
            self._hand_over()
            await asyncio.get_running_loop().run_in_executor(None, self.writer.stop)
        self.log.close()
        self.stopped.set()
        logger.info("hub.stopped")

    # -- commands -----------------------------------------------------------------------------

    def submit(self, outcome: Outcome) -> None:
        """Queue the outcome's events for the log writer; its effects wait until they are durable.

        Rows gathered during one loop iteration go to the writer thread in one hand-over, so a burst of
        commands wakes it once and lands in one group commit.
        """
        events = outcome.events
        if events:
            first = self.machine.position - len(events) + 1
            rows = self._rows
            for i, ev in enumerate(events):
                rows.append((first + i, ev.room, type(ev).__name__, encode(ev), ev.at))
            self.fanout.next_ticket()
            if self.machine.next_sub:
                self._count_triggers(outcome)
            if not self._handover_scheduled:
                self._handover_scheduled = True
                assert self.loop is not None
                self.loop.call_soon(self._hand_over)
            every = self.config.snapshot_every
            if every and self.machine.position - self._last_snapshot >= every:
                self._hand_over()
                self._snapshot()
        self.fanout.hold(outcome.effects)

    def _count_triggers(self, outcome: Outcome) -> None:
        """Conditions that became true in this outcome (a number for /metrics)."""
        for effect in outcome.effects:
            if type(effect) is Deliver:
                frame = effect.frame
                if type(frame) is Trigger or (type(frame) is Wake and frame.reason == "condition"):
                    self.metrics.triggers.inc()

    def _hand_over(self) -> None:
        self._handover_scheduled = False
        if self._rows:
            assert self.writer is not None
            rows, self._rows = self._rows, []
            ticket = self.fanout.submitted
            self._inflight.append((ticket, rows))
            if self._inline:  # an idle writer and a cheap commit: do it here, skipping two thread hops
                try:
                    seconds = self.writer.commit_now(rows)
                except Exception as exc:
                    self._failed(exc)
                    return
                if seconds is not None:
                    self.metrics.durable(len(rows), seconds)
                    self._durable(ticket)
                    return
            self.writer.submit(ticket, rows)

    def _snapshot(self) -> None:
        assert self.writer is not None
        self._last_snapshot = self.machine.position
        self.writer.snapshot(self.machine.position, snapshot.SNAPSHOT_VERSION, snapshot.dump(self.machine))

    def dispatch(self, session: Session, data: bytes | str) -> None:
        """Decode one frame and run it through the core; refusals go back in order like replies."""
        cmd_id: int | None = None
        try:
            limit = self.config.max_frame_bytes
            if limit is not None and len(data) > limit:
                raise HubError(Code.TOO_LARGE, f"frame is {len(data)} bytes, over {limit}", {"limit": limit})
            if self.draining or self.failed is not None:
                raise HubError(Code.UNAVAILABLE, "the hub is shutting down; retry shortly")
            cmd = decode_command(data)
            cmd_id = cmd.id
            if type(cmd) is Tail:
                self.tails.start(session, cmd)
                return
            if self.older.needs_log(cmd):
                self.older.start(session, cmd)
                return
            outcome = self.machine.handle(cmd, Context(self.clock(), session.id, self.secret))
        except HubError as exc:
            self.metrics.errors.labels(str(exc.code)).inc()
            frame = Error(id=cmd_id, code=str(exc.code), message=exc.message, detail=exc.detail)
            self.fanout.hold([Deliver((session.id,), frame)])
            return
        self.submit(outcome)

    def _tick(self, now: float) -> None:
        """A deadline the core asked for has come (claims lapse by the hub's clock)."""
        if self.failed is None and not self.draining:
            self.submit(self.machine.handle(Tick(), Context(now)))

    # -- connections --------------------------------------------------------------------------

    async def _connection(self, ws: ServerConnection) -> None:
        self._next_session += 1
        session = Session(self, SessionId(self._next_session), ws)
        self.sessions[session.id] = session
        await session.run()

    def gone(self, session: Session) -> None:
        """The connection ended: tell the core (its claims, waiters and presence follow)."""
        if self.sessions.pop(session.id, None) is None:
            return
        self.tails.stop(session)
        if self.failed is None and not self.stopped.is_set():
            self.submit(self.machine.handle(SessionGone(session.id), Context(self.clock(), session.id)))

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        return http.respond(self, connection, request)

    # -- from the log writer thread ---------------------------------------------------------------

    def _durable_from_thread(self, ticket: int, rows: int, seconds: float) -> None:
        assert self.loop is not None
        self.metrics.durable(rows, seconds)
        self.loop.call_soon_threadsafe(self._durable, ticket)

    def _durable(self, ticket: int) -> None:
        """Every batch up to `ticket` is committed: advance, feed the tails, release the effects."""
        inflight = self._inflight
        while inflight and inflight[0][0] <= ticket:
            _ticket, rows = inflight.popleft()
            self.durable_position = rows[-1][0]
            if self.tails:
                self.tails.durable(rows)
        self.fanout.on_durable(ticket)

    def reply(self, session: Session, cmd_id: int, result: Any) -> None:
        """Answer a command the shell handles itself, behind everything already waiting."""
        self.fanout.hold([Reply(session.id, cmd_id, result)])

    def _failed_from_thread(self, exc: BaseException) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._failed, exc)

    def _failed(self, exc: BaseException) -> None:
        """A failed commit stops the hub: nothing unacknowledged is claimed, replay restores the rest."""
        logger.error("hub.log_failed error=%s", exc)
        self.failed = exc
        for session in list(self.sessions.values()):
            session.close(1011, "the hub's log is not writable")
        self.log.close()
        self.stopped.set()


def _tls_context(config: HubConfig) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate is configured (wss:// and https:// on one port)."""
    if config.tls_certfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(config.tls_certfile, config.tls_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"cannot load the TLS certificate {config.tls_certfile}: {exc}") from None
    return context


async def serve(config: HubConfig, ready: Callable[[Hub], Any] | None = None) -> int:
    """Run a hub until SIGTERM/SIGINT; returns the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before anything is announced: a SIGTERM always drains
        loop.add_signal_handler(sig, stop.set)
    hub = Hub(config)
    await hub.start()
    # The restored state is long-lived: keep the cyclic collector off it, and collect young objects less
    # often (the hot path allocates few cycles). Process-wide, so done here, not per Hub.
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)
    if ready is not None:
        ready(hub)
    waiter = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(hub.stopped.wait())
    await asyncio.wait({waiter, failed}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    failed.cancel()
    if hub.failed is not None:
        return 1
    await hub.stop()
    return 0
