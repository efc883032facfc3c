"""Hub: restore from the log, serve WebSocket sessions, drain on SIGTERM, stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
import ssl
import time
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

from hub.config import HubConfig, bind_problem
from hub.core import governor, snapshot, status
from hub.core import sessions as core_sessions
from hub.core.effects import (
    Context,
    Deliver,
    HistoryRead,
    LogRead,
    Outcome,
    ReadHistory,
    ReadLog,
    Reply,
    SessionGone,
    Start,
    Tick,
)
from hub.core.machine import Machine
from hub.log.store import EventLog, LogError, LogTaken, Row
from hub.log.writer import LogWriter
from hub.protocol.codec import decode_command, encode
from hub.protocol.errors import Code, HubError
from hub.protocol.events import Event
from hub.protocol.frames import Error, Trigger, Wake
from hub.protocol.types import SessionId
from hub.server import http, standby
from hub.server.admission import Admission, raise_descriptor_limit
from hub.server.api import Api, Sniffer
from hub.server.degraded import Degraded
from hub.server.fanout import Fanout
from hub.server.keepalive import Keepalive
from hub.server.metrics import Metrics, Readings
from hub.server.older import read_history, read_page
from hub.server.session import SLOW_CONSUMER_CLOSE, Session
from hub.server.tail import Tails
from hub.server.timers import Timers

__all__ = ["Hub", "serve"]

logger = logging.getLogger(__name__)

GOING_AWAY = 1001
MAX_RATE_PAUSE = 1.0  # seconds a rate-limited session goes unread at most
# Connections the kernel completes before the hub accepts them (capped by net.core.somaxconn). asyncio's default,
# 100, overflows when a fleet connects at once: the kernel drops the handshakes past it and those clients retry a
# second, then three seconds later (scale.py, 128 connecting at once: ≈ 300 listen overflows per 10,000 agents).
LISTEN_BACKLOG = 4096
_NO_HEADERS = Headers()  # shared by every served connection's handshake request: never written to
STANDBY_REFUSAL = "this hub is a standby: another hub owns the log; try the next address"


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
        self.standing_by = False  # --standby: another hub owns the log; follow it until it is free
        try:
            self.log = EventLog(config.db, config.sync)
        except LogTaken:
            if not config.standby:
                raise
            self.log = EventLog(config.db, config.sync, owner=False)
            self.standing_by = True
        self.took_over = asyncio.Event()  # a standby owns the log now and serves
        self._unfollow = asyncio.Event()
        self._following: asyncio.Future[None] | None = None
        self.machine = Machine(config)
        self.sessions: dict[SessionId, Session] = {}
        self.admission = Admission(
            config.max_connections, config.max_connections_per_address, raise_descriptor_limit()
        )
        self.timers = Timers(clock, self._tick)
        self.fanout = Fanout(self.sessions, self.timers.arm, self._read_log, self._follow, self._presence)
        self.writer: LogWriter | None = None
        self.server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = False
        self.draining = False
        self.failed: BaseException | None = None
        self.degraded = Degraded()  # the log refuses writes: refuse them too, serve reads, probe it
        self._gone_later: set[SessionId] = set()  # sessions that ended while degraded: told to the core later
        self._probe: asyncio.TimerHandle | None = None
        self._probing: asyncio.Task[None] | None = None
        self._start_position = 0
        self._start_owed = False  # this run's HubStarted was refused: run Start again once the log takes it
        self.stopped = asyncio.Event()
        self.started_at = clock()
        self.replayed = 0
        self.replay_seconds = 0.0
        self._next_session = 0
        self._rows: list[Row] = []
        self._inline = self.log.is_sqlite and config.sync != "full"  # SQLite WAL commits cost ~50 µs
        self._inflight: deque[tuple[int, list[Row]]] = deque()
        self.durable_position = 0
        self.tails = Tails(self.log, self.sessions, lambda: self.durable_position, self.reply)
        self.metrics = Metrics(self.readings)
        self._handover_scheduled = False
        self._last_snapshot = 0
        self.api = Api(self)  # HTTP/1.1 on the same port: POST /v1/OP, /v1/wait, /v1/events
        self.keepalive = Keepalive(self.sessions.values, config.ping_interval)

    # -- life cycle ---------------------------------------------------------------------------

    def restore(self) -> None:
        """Fold the newest snapshot and every event after it back into the machine."""
        started = time.perf_counter()
        self.machine, found, count = self._fold_log()
        if found is not None:
            self._last_snapshot = found
        self.replayed = count
        self.durable_position = self.machine.position
        self.replay_seconds = time.perf_counter() - started
        logger.info(
            "hub.restored position=%d snapshot=%s replayed=%d seconds=%.3f",
            self.machine.position,
            found,
            count,
            self.replay_seconds,
        )

    def _fold_log(self) -> tuple[Machine, int | None, int]:
        """A machine folded from the newest snapshot and every event after it: (machine, its snapshot's
        position, events replayed). Start-up and a rebuild after a failed commit take this one path."""
        found = self.log.load_snapshot([snapshot.SNAPSHOT_VERSION])
        machine = Machine(self.config) if found is None else snapshot.load(found[2], self.config)
        count = machine.fold(self.log.scan(machine.position))
        return machine, None if found is None else found[0], count

    async def start(self) -> None:
        """Restore, start the log writer, then accept connections. A standby listens at once (/healthz,
        /readyz; upgrades get 503) and follows the log; it takes over in the background (`took_over`)."""
        self.loop = asyncio.get_running_loop()
        await self.loop.run_in_executor(None, self.restore)
        if self.standing_by:
            logger.info("hub.standby position=%d", self.machine.position)
            await self._listen()
            self._following = asyncio.ensure_future(self._stand_by())
            return
        self._begin()
        await self._listen()
        self.ready = True

    def _begin(self) -> None:
        """Own the log's writes: start the writer and record this run's start."""
        self.writer = LogWriter(self.log, self._durable_from_thread, self._failed_from_thread)
        self.writer.start()
        self.run(Start(), Context(self.clock()))
        self._start_position = self.machine.position  # a failed commit before it is durable owes a Start

    async def _stand_by(self) -> None:
        """Follow the owner's log until its lock is free, then serve from the warm state."""
        if not await standby.follow(self.log, self.machine, self._unfollow):
            return
        self.durable_position = self.machine.position
        self._last_snapshot = self.machine.position
        self.standing_by = False
        self._begin()
        self.ready = True
        self.took_over.set()
        logger.info("hub.took_over position=%d", self.machine.position)

    async def _listen(self) -> None:
        max_frame = self.config.max_frame_bytes
        self.server = await ws_serve(
            self._connection,
            self.config.host,
            self.config.port,
            process_request=self._http,
            max_size=None if max_frame is None else max_frame * 4,
            compression=None,
            ping_interval=None,  # one hub-wide Keepalive, not a task per connection
            ping_timeout=None,
            server_header=None,
            ssl=self.tls,
            create_connection=self.api.factory,
            backlog=LISTEN_BACKLOG,
        )
        self.keepalive.start()

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
        if self._following is not None:
            self._unfollow.set()
            await self._following  # a look at the log under way ends first
        self.timers.cancel()
        self.keepalive.stop()
        if self._probe is not None:
            self._probe.cancel()
        deadline = self.clock() + self.config.drain_seconds
        while self.fanout.pending and self.clock() < deadline and self.failed is None:
            await asyncio.sleep(0.01)
        for session in list(self.sessions.values()):
            session.close(GOING_AWAY, "hub shutting down")
        self.api.close()
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), self.config.drain_seconds)
            except TimeoutError:
                logger.warning("hub.drain_timeout sessions=%d", len(self.sessions))
        if self._probing is not None and not self._probing.done():
            await asyncio.wait({self._probing})  # one small commit in a worker thread: never left behind
        if self.writer is not None:
            self._hand_over()
            await asyncio.get_running_loop().run_in_executor(None, self.writer.stop)
        self.log.close()
        self.stopped.set()
        logger.info("hub.stopped")

    # -- commands -----------------------------------------------------------------------------

    def run(self, cmd: Any, ctx: Context) -> None:
        """Decide a command, encode its events (one the log cannot take refuses it: nothing applied),
        commit them to the machine, and submit them to the log; raises HubError for a refusal."""
        outcome = self.machine.handle(cmd, ctx)
        if outcome.events and self.degraded:  # the log refuses writes: so do we, before anything is applied
            raise self.degraded.refusal()
        rows = self._rows_of(outcome.events)
        self.machine.commit(outcome)
        self.submit(rows, outcome)

    def _rows_of(self, events: list[Event]) -> list[Row]:
        first = self.machine.position + 1
        try:
            return [(first + i, ev.room, type(ev).__name__, encode(ev), ev.at) for i, ev in enumerate(events)]
        except (msgspec.EncodeError, OverflowError, TypeError, ValueError, RecursionError) as exc:
            raise HubError(
                Code.BAD_REQUEST, f"the log cannot keep that value: {exc}", {"reason": "unencodable"}
            ) from None

    def submit(self, rows: list[Row], outcome: Outcome) -> None:
        """Queue the rows for the log writer; the outcome's effects wait until they are durable.

        Rows gathered during one loop iteration go to the writer thread in one hand-over, so a burst of
        commands wakes it once and lands in one group commit.
        """
        if rows:
            self._rows.extend(rows)
            self.fanout.next_ticket()
            self._count_triggers(outcome)
            if not self._handover_scheduled:
                self._handover_scheduled = True
                assert self.loop is not None
                self.loop.call_soon(self._hand_over)
            every = self.config.snapshot_every
            if every and self.machine.position - self._last_snapshot >= every:
                self._hand_over()
                self._snapshot()
        elif len(outcome.effects) > 1 or (outcome.effects and type(outcome.effects[0]) is Deliver):
            self._count_triggers(outcome)  # no events, yet a wake may be here (a Tick's, a wait's at once)
        self.fanout.hold(outcome.effects)

    def _count_triggers(self, outcome: Outcome) -> None:
        """Conditions that became true in this outcome, and message wakes with what each handed over (numbers
        for /metrics)."""
        for effect in outcome.effects:
            if type(effect) is Deliver:
                frame = effect.frame
                if type(frame) is Wake:
                    if frame.reason == "condition":
                        self.metrics.triggers.inc()
                    else:
                        self.metrics.wakes.inc()
                        self.metrics.wake_messages.observe(len(frame.messages) or 1)
                elif type(frame) is Trigger:
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
                except Exception as exc:  # the writer is marked failed; the loop rejects what waits on it
                    assert self.loop is not None
                    self.loop.call_soon(self._failed, exc)
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
            if limit is not None and len(data) > limit >> 2 and _size(data) > limit:  # a character: ≤ 4 bytes
                raise HubError(
                    Code.TOO_LARGE, f"frame is {_size(data)} bytes, over {limit}", {"limit": limit}
                )
            if self.draining or self.failed is not None:
                raise HubError(Code.UNAVAILABLE, "the hub is shutting down; retry shortly")
            cmd = decode_command(data)
            cmd_id = cmd.id
            if self.degraded.stale:  # the answer names the command: refused, not malformed
                raise self.degraded.refusal()
            self.run(cmd, Context(self.clock(), session.id, self.secret, len(data)))
        except HubError as exc:
            self._refused(session.id, cmd_id, exc)
            if exc.code == Code.RATE_LIMITED:  # what it pipelined meanwhile waits in its socket, not here
                session.pause = min(float(exc.detail.get("retry_after", 0.0)), MAX_RATE_PAUSE)
            if cmd_id is None and not session.tolerate_bad_frame(self.clock()):
                session.close(SLOW_CONSUMER_CLOSE, "too many malformed frames; fix the client and reconnect")

    def _refused(self, sid: SessionId, cmd_id: int | None, exc: HubError) -> None:
        self.metrics.errors.inc(str(exc.code))
        if exc.code == Code.RATE_LIMITED and "loop" in exc.detail:
            self.metrics.loops_broken.inc()
        frame = Error(id=cmd_id, code=str(exc.code), message=exc.message, detail=exc.detail)
        self.fanout.hold([Deliver((sid,), frame)])

    def _internal(self, cmd: Any, ctx: Context) -> None:
        """A command of the shell's own (Tick, SessionGone, LogRead): a refusal is logged, or sent back."""
        if self.failed is not None or self.stopped.is_set():
            return
        if self.degraded.stale:  # memory may hold what the log lost: nothing is decided until it is rebuilt
            if type(cmd) is LogRead:
                self._refused(cmd.request.session, cmd.request.command.id, self.degraded.refusal())
            else:
                self._defer(cmd)
            return
        try:
            self.run(cmd, ctx)
        except HubError as exc:
            if self.degraded and exc.code == Code.UNAVAILABLE and type(cmd) not in (LogRead, HistoryRead):
                self._defer(cmd)
                return
            request = cmd.request if type(cmd) is LogRead or type(cmd) is HistoryRead else None
            if request is not None:
                self._refused(request.session, request.command.id, exc)
            else:
                logger.warning("hub.internal_refused command=%s code=%s", type(cmd).__name__, exc.code)

    def _defer(self, cmd: Any) -> None:
        """An internal command that needs the log while it refuses writes: a session's end is told to the
        core once it takes them (a bounded set: sessions the core knows); a Tick runs again then anyway."""
        if type(cmd) is SessionGone:
            self._gone_later.add(cmd.session)

    def _tick(self, now: float) -> None:
        """A deadline the core asked for has come (claims lapse by the hub's clock)."""
        if not self.draining:
            self._internal(Tick(), Context(now))

    def _read_log(self, request: ReadLog | ReadHistory) -> None:
        """Read one page of older messages (or of a key's history) off the loop, then hand it to the core."""
        session = self.sessions.get(request.session)
        if session is None:
            return
        task = asyncio.ensure_future(self._read_page(request))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    async def _read_page(self, request: ReadLog | ReadHistory) -> None:
        assert self.loop is not None
        page: LogRead | HistoryRead
        if type(request) is ReadHistory:
            page = await self.loop.run_in_executor(None, read_history, self.log, request)
        else:
            page = await self.loop.run_in_executor(None, read_page, self.log, request)
        if request.session in self.sessions:
            self._internal(page, Context(self.clock(), request.session, self.secret))

    def _follow(self, follow: Any) -> None:
        self.tails.start(follow)

    def _presence(self, shown: Any) -> list[Session]:
        return self.tails.presence(shown) if self.tails else []

    # -- connections --------------------------------------------------------------------------

    def new_session_id(self) -> SessionId:
        self._next_session += 1
        return SessionId(self._next_session)

    async def _connection(self, ws: ServerConnection) -> None:
        config = self.config
        if (
            ws.request is not None
        ):  # its headers (~2 KB, held by websockets' parser for the connection's life)
            ws.request.headers = _NO_HEADERS  # are not read again once the handshake is done
        ws.response = None
        session = Session(
            self.new_session_id(),
            ws,
            self.dispatch,
            self.gone,
            config.outbox_frames,
            config.outbox_bytes,
        )
        address = _address(ws)
        self.admission.opened(address)
        self.sessions[session.id] = session
        typing.cast(Sniffer, ws).serve(session)  # the server's create_connection: Api.factory
        try:
            await session.run()
        finally:
            self.admission.closed(address)

    def gone(self, session: Session) -> None:
        """The connection ended: tell the core (its claims, waiters and presence follow)."""
        if self.sessions.pop(session.id, None) is None:
            return
        self.tails.stop(session)
        self._internal(SessionGone(session.id), Context(self.clock(), session.id))

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' `process_request`: an upgrade is refused (503), answered (101, a plain one) or left to
        websockets' own checks (None); a plain GET is answered."""
        if http.is_upgrade(request):
            reason = self.refusal(_address(connection))
            if reason is not None:
                return http.unavailable(reason)
            response = http.switching(request)
            if response is not None:
                origin = request.headers.get("Origin")  # recorded as websockets' accept records it
                connection.protocol.origin = None if origin is None else Origin(origin)
            return response
        return http.respond(self.health, self.metrics.render, request)

    def refusal(self, address: str) -> str | None:
        """Why a new connection from `address` is refused (a standby, or over a cap), or None."""
        if self.standing_by:
            return STANDBY_REFUSAL
        return self.admission.refusal(address)

    def plain(self, request: Request) -> Response:
        """A plain GET (/healthz, the dashboard...) asked on an HTTP API connection."""
        response = http.respond(self.health, self.metrics.render, request)
        assert response is not None
        return response

    def health(self) -> http.Health:
        log_ok = self.failed is None and self.writer is not None and not self.degraded
        return http.Health(
            alive=self.failed is None,
            ready=self.ready and log_ok and not self.draining,
            replay_done=self.ready or self.draining,  # restore finished and the server was started
            log_writable=log_ok,
            draining=self.draining,
            standby=self.standing_by,
            replayed=self.replayed,
            position=self.machine.position,
            degraded=self.degraded.reason,
        )

    def readings(self) -> Readings:
        return Readings(
            up=self.failed is None,
            ready=self.ready and self.failed is None and not self.draining and not self.degraded,
            uptime=self.clock() - self.started_at,
            replay_seconds=self.replay_seconds,
            replayed=self.replayed,
            position=self.durable_position,
            connections=len(self.sessions),
            tails=len(self.tails.followers),
            fanout_depth=self.fanout.depth,
            delivered=self.fanout.delivered,
            counts=status.counts(self.machine.world),
            degraded=bool(self.degraded),
            deferred_wakes=self.machine.world.part(governor.Deferred).count,
        )

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
        """A commit failed. The log's own refusal (a full disk, a read-only file, a lost database) degrades the
        hub (hub.server.degraded); anything else, or another hub owning the log now, stops it: nothing
        unacknowledged is claimed, replay restores the rest."""
        if self.degraded or self.stopped.is_set():
            return
        if not isinstance(exc, LogError) or isinstance(exc, LogTaken) or self.draining:
            self._stop_failed(exc)
            return
        cause = self.degraded.enter(exc.message)
        self.metrics.log_failures.inc(cause)
        logger.error("log.degraded cause=%r error=%r", cause, exc.message)
        self._start_owed = self.durable_position < self._start_position
        self._rows = []
        self._inflight.clear()
        rejected = self.fanout.reject(str(Code.UNAVAILABLE), f"{self.degraded.reason}; not done, retry")
        rebuilt = self._rebuild()
        logger.warning("log.rejected effects=%d rebuilt=%s", rejected, rebuilt)
        self._probe_later()

    def _stop_failed(self, exc: BaseException) -> None:
        """Stop serving: every session is closed (1011) and the process exits 1."""
        logger.error("hub.log_failed error=%s", exc)
        self.failed = exc
        self.ready = False
        if self._probe is not None:
            self._probe.cancel()
        for session in list(self.sessions.values()):
            session.close(1011, "the hub's log is not writable")
        self.log.close()
        self.stopped.set()

    def _rebuild(self) -> bool:
        """Make memory equal the log again: fold it afresh and carry the live sessions' ephemeral state over.
        False when the log cannot be read now (the hub then refuses everything until it can)."""
        started = time.perf_counter()
        try:
            machine, _found, count = self._fold_log()
        except LogError as exc:
            self.degraded.stale = True
            logger.warning("log.rebuild_failed error=%r", exc.message)
            return False
        core_sessions.carry(self.machine.world, machine.world)
        self.machine = machine
        self.degraded.stale = False
        self.durable_position = machine.position
        self._last_snapshot = min(self._last_snapshot, machine.position)
        # sessions that ended while their SessionClosed waited in the refused batch
        self._gone_later.update(sid for sid in machine.world.sessions if sid not in self.sessions)
        logger.info(
            "hub.rebuilt position=%d replayed=%d seconds=%.3f",
            machine.position,
            count,
            time.perf_counter() - started,
        )
        return True

    def _probe_later(self) -> None:
        if self.draining or self.stopped.is_set():
            return
        assert self.loop is not None
        self._probe = self.loop.call_later(self.degraded.next_delay(), self._start_probe)

    def _start_probe(self) -> None:
        self._probe = None
        self._probing = asyncio.ensure_future(self._probe_log())

    async def _probe_log(self) -> None:
        """Try one small commit; on success (and a rebuild, if one is owed) take writes again."""
        assert self.loop is not None
        try:
            await self.loop.run_in_executor(None, self.log.probe, self.clock())
        except LogTaken as exc:  # another hub took the log while ours was gone: stop acknowledging anything
            if not self.stopped.is_set():
                self._stop_failed(exc)
            return
        except LogError as exc:
            logger.info("log.probe_failed error=%r", exc.message)
            self._probe_later()
            return
        if self.draining or self.stopped.is_set() or not self.degraded:
            return
        if self.degraded.stale and not self._rebuild():
            self._probe_later()
            return
        self._recover()

    def _recover(self) -> None:
        """The log took a write: resume the writer, tell the core what it missed, accept writes."""
        assert self.writer is not None
        seconds = self.degraded.leave()
        self.writer.resume()
        logger.info("log.recovered seconds=%.3f", seconds)
        if self._start_owed:  # the hub's own start never reached the log: record it now, first
            self._start_owed = False
            self._internal(Start(), Context(self.clock()))
            self._start_position = self.machine.position
        gone, self._gone_later = sorted(self._gone_later), set()
        for sid in gone:
            if sid not in self.sessions:
                self._internal(SessionGone(sid), Context(self.clock(), sid))
        self._tick(self.clock())


def _size(data: bytes | str) -> int:
    """A frame's size in bytes (a text frame arrives decoded)."""
    return len(data) if type(data) is bytes else len(data.encode("utf-8", "surrogatepass"))


def _address(ws: ServerConnection) -> str:
    peer = ws.remote_address
    return str(peer[0]) if peer else "?"


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


async def serve(
    config: HubConfig,
    ready: Callable[[Hub], Any] | None = None,
    standing_by: Callable[[Hub], Any] | None = None,
) -> int:
    """Run a hub until SIGTERM/SIGINT; returns the process exit code. A standby calls `standing_by` once it
    listens, and `ready` once it has taken over."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before anything is announced: a SIGTERM always drains
        loop.add_signal_handler(sig, stop.set)
    hub = Hub(config)
    await hub.start()
    if hub.standing_by:
        if standing_by is not None:
            standing_by(hub)
        if not await _first(stop.wait(), hub.took_over.wait()):
            await hub.stop()
            return 0
    # The restored state is long-lived: keep the cyclic collector off it, and collect young objects less
    # often (the hot path allocates few cycles). Process-wide, so done here, not per Hub.
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)
    if ready is not None:
        ready(hub)
    await _first(stop.wait(), hub.stopped.wait())
    if hub.failed is not None:
        return 1
    await hub.stop()
    return 0


async def _first(a: Any, b: Any) -> bool:
    """Wait for the first of two coroutines; False when it was the first one."""
    first = asyncio.ensure_future(a)
    second = asyncio.ensure_future(b)
    await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    won = not first.done()
    first.cancel()
    second.cancel()
    return won
