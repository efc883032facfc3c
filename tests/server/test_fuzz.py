"""Fuzz the wire: over 10,000 mutated, random and truncated frames through a raw WebSocket to a real hub. Every
frame gets exactly one reply (Ok, or Error with a stable code), never an internal error and never a hang,
and a healthy agent on another connection keeps getting its round trips answered (SPEC: Bad input).

Frames are pipelined: a batch of FRAMES is sent, then its replies are read, with a generous timeout (a hang
fails the test, a slow machine does not). Hypothesis draws the frames, derandomized, in a fresh interpreter:
hypothesis mixes in constants from every module loaded so far, so drawn in the test process the frames would
change with the tests that ran before this one; drawn apart, they are the same on every run and machine.

A frame the hub answers by closing the session on purpose (`join --force` or a token reset taking the fuzzing
agent over, a slow consumer) is allowed: the frames cut off behind it are counted apart and the fuzzer
reconnects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import subprocess
import sys
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from hub.core.agents import TAKEN_OVER_CLOSE as NAME_TAKEN_OVER
from hub.core.feed import TAKEN_OVER_CLOSE as WAITER_TAKEN_OVER
from hub.protocol.codec import decode_command, decode_json, encode
from hub.protocol.commands import Command
from hub.protocol.errors import Code, HubError
from hub.server.session import SLOW_CONSUMER_CLOSE
from tests.conftest import ThreadHub, hub_config, seconds
from tests.protocol.strategies import json_values, struct_of

FRAMES = 50  # per batch: sent in one go, then every reply read
COUNT = 10_500  # fuzzed frames in all (hypothesis examples)
MAX_FRAME = 65_536  # the fuzzed hub's frame limit: an oversized frame costs 64 KiB, not a megabyte
ROOM, CALM = "default", "calm"
AGENTS = ("fz-a", "fz-b", "fz-c")
ID = "@ID@"  # stands for a fresh request id in a frame's text, filled in when it is sent
CODES = {code.value for code in Code}
ROOT = Path(__file__).resolve().parents[2]
DELIBERATE_CLOSES = {NAME_TAKEN_OVER, WAITER_TAKEN_OVER, SLOW_CONSUMER_CLOSE}

COMMANDS: tuple[type[msgspec.Struct], ...] = typing.get_args(Command)
OPS = {cls.__struct_config__.tag: cls for cls in COMMANDS}


class Raw(str):
    """JSON text spliced verbatim into a frame (numbers and nestings json.dumps cannot write)."""


def dump(value: Any, ascii_only: bool = True) -> str:
    """JSON text of `value`, with Raw pieces spliced in as they are."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v, ascii_only)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def deep(levels: int, kind: str = "[") -> Raw:
    if kind == "[":
        return Raw("[" * levels + "]" * levels)
    return Raw('{"a":' * levels + "1" + "}" * levels)


NUMBERS = tuple(
    Raw(n)
    for n in (
        "0",
        "-1",
        "-0",
        "1.5",
        "-0.0",
        "1e2",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "1" + "0" * 400,
        "-" + "9" * 30,
        "1e308",
        "-1e308",
        "1e400",
        "-1e400",
        "1e-400",
        "4.9e-324",
        "123456789012345678901234567890.5",
    )
)
TEXTS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x01\x1f",
    "\x7f",
    "\n",
    "é",
    "ü" * 40,
    "\u202e",
    "\u2028",
    "\ufeff",
    "\ud800",  # a lone surrogate: escaped, or not UTF-8 at all
    "🦀",
    "x" * 257,
    "../../etc",
    "/abs",
    "C:/x",
    "*",
    "all",
    "default/*",
    "calm/healthy",
    "healthy",
    "fz-a",
    "t1",
    "state._shared.n > 1",
    "(" * 300,
    "has(state.newscope)",
)
SHAPES = (
    deep(10),
    deep(63),
    deep(64),
    deep(65),
    deep(200),
    deep(999),
    deep(2000),
    deep(5000),
    deep(70, "{"),
    deep(3000, "{"),
    Raw("[" * 3000),
    Raw("{}"),
    Raw("[]"),
    Raw("null"),
    Raw("true"),
)
nasty = st.one_of(
    st.sampled_from(NUMBERS),
    st.sampled_from(TEXTS),
    st.sampled_from(SHAPES),
    json_values,
    st.text(max_size=12),
    st.integers(),
    st.builds(lambda n: "x" * n, st.sampled_from((1_000, 30_000, 70_000))),
)


INTS = tuple(n for n in NUMBERS if "." not in n and "e" not in n)


def edgy(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same JSON type as `value`, at an edge: ints past 64 bits, names with control
    characters, lists of them, maps to huge ints."""
    if isinstance(value, bool) or value is None:
        return st.sampled_from((True, False, None))
    if isinstance(value, int):
        return st.sampled_from(INTS)
    if isinstance(value, float):
        return st.sampled_from(NUMBERS)
    if isinstance(value, str):
        return st.sampled_from(TEXTS)
    if isinstance(value, list):
        return st.lists(st.sampled_from(TEXTS), max_size=3) | st.sampled_from(SHAPES)
    return st.dictionaries(st.sampled_from(TEXTS), st.sampled_from(INTS), max_size=2)


EXPRESSIONS = (  # CEL whose values are awkward to send: maps with bool keys, NaN, bytes, durations, types...
    "true",
    "false",
    "null",
    "1.0/0.0",
    "0.0/0.0",
    "{true: 1, false: {true: 2}}",
    "{1: 2}",
    "b'\\xff'",
    "duration('1h')",
    "timestamp('2020-01-01T00:00:00Z')",
    "type(1)",
    "'\\u0000'",
    "18446744073709551615u",
    "-9223372036854775808",
    "9223372036854775807 + 1 > 0",
    "state",
    "[state, agents, claims, tasks, messages]",
    "has(state.newscope)",
    "!has(state._shared.n)",
    "state._view",
    "messages.count > 0",
    "agents['fz-a'].status == 'waiting'",
    "[1, 2, 3].map(x, x * x)",
    "'aaaaaaaaaaaaaaaaaaaaaaaaaaaa!'.matches('(a+)+$')",
    "(" * 30 + "1" + ")" * 30,
    "x" * 5000,
)


def token_of(name: str) -> str:
    """Stands for `name`'s current token in a frame's text, filled in when it is sent."""
    return f"@@{name}@@"


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    """A valid command of any op (as wire JSON), mostly carrying a fuzzing agent's room, name and token."""
    cls = OPS[draw(st.sampled_from(sorted(OPS)))]
    wire: dict[str, Any] = decode_json(encode(draw(struct_of(cls))))
    if draw(st.integers(0, 9)) < 8:  # as the agent the session is attached as (it may act as no other)
        name = AGENTS[0]
        wire["room"] = ROOM
        wire["token"] = token_of(name)
        wire.pop("admin_token", None)
        for field in ("name", "waiter", "for"):
            if field in cls.__struct_fields__ or field in wire:
                wire[field] = name
    for field in ("expr", "condition", "if"):  # mostly CEL that compiles: its values reach the replies
        if field in wire and draw(st.integers(0, 3)) > 0:
            wire[field] = draw(st.sampled_from(EXPRESSIONS))
    wire["id"] = Raw(ID)
    return wire


MUTATIONS = ("valid",) * 3 + ("field",) * 6 + ("drop", "extra", "op", "shape", "cut", "flip", "bytes", "text")


@st.composite
def frames(draw: st.DrawFn) -> str | bytes:
    """One frame: a valid command, one mutated (a field's value, a field missing or extra, the op, the
    shape, truncated, a character flipped), or random bytes or text."""
    how = draw(st.sampled_from(MUTATIONS))
    if how == "bytes":
        return draw(st.binary(max_size=64))
    if how == "text":
        return draw(st.text(max_size=64))
    wire: Any = draw(commands())
    keys = [k for k in wire if k not in ("op", "id")]
    if how == "field" and keys:
        key = draw(st.sampled_from(keys))
        wire[key] = draw(st.one_of(edgy(wire[key]), nasty))
        if draw(st.integers(0, 5)) == 0:
            wire["id"] = draw(st.sampled_from((*NUMBERS, Raw('"7"'), Raw("null"), Raw("[1]"))))
    elif how == "drop" and keys:
        del wire[draw(st.sampled_from([*keys, "op", "id"]))]
    elif how == "extra":
        wire[draw(st.sampled_from(("colour", "ID", "op2", "")))] = draw(nasty)
    elif how == "op":
        wire["op"] = draw(st.sampled_from(("nope", "", "SEND", 5, None, [], "task.explode", *OPS)))
    elif how == "shape":
        wire = draw(st.sampled_from(([wire], "op", 7, None, {"frame": wire})))
    text = dump(wire, ascii_only=draw(st.booleans()))
    if how == "cut":
        text = text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    elif how == "flip" and text:
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(('"', "\\", "{", "]", "\x00", ",", "é"))) + text[at + 1 :]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, unescaped: not UTF-8, so a binary frame
        return text.encode("utf-8", "surrogatepass")
    return text


def fuzzed_frames(count: int) -> list[str | bytes]:
    """`count` frames drawn by hypothesis, derandomized: the same frames on every run and machine.

    Drawn before any connection is open: a live connection's keep-alive pings use the `random` module from
    the hub's thread, which hypothesis would take for a strategy using it.
    """
    out: list[str | bytes] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(frames())
    def collect(frame: str | bytes) -> None:
        out.append(frame)

    collect()
    return out


# Frames from the bug reports, sent first, as they are.
KNOWN: tuple[str, ...] = (
    '{"op":"heartbeat","name":"fz-a","token":"é","id":@ID@}',
    '{"op":"heartbeat","name":"fz-a","token":"\\ud800","id":@ID@}',
    '{"op":"heartbeat","name":"fz-a","token":"\\u0000","id":@ID@}',
    '{"op":"nope","x":' + deep(2000) + "}",
    '{"op":"nope","id":1,"x":' + deep(2000) + "}",
    '{"op":"status","colour":' + deep(2000) + "}",
    '{"op":"send","name":"fz-a","token":"@@fz-a@@","to":["fz-b"],"body":' + deep(2000) + "}",
    '{"op":"task.declare","name":"fz-a","token":"@@fz-a@@","task":"t","title":"T","order":' + "9" * 30 + "}",
    '{"op":"message.list","after":-5,"id":@ID@}',
    '{"op":"message.list","after":-99999999999999999999,"id":@ID@}',
    '{"op":"attach","name":"fz-b","token":"@@fz-b@@","after":-5,"id":@ID@}',
    '{"op":"wait","waiter":"w","for":"fz-c","token":"@@fz-c@@","after":-5,"id":@ID@}',
    '{"op":"claim","name":"fz-a","token":"@@fz-a@@","work":"a\\u0000b","paths":["src"],"id":@ID@}',
    '{"op":"task.declare","name":"fz-a","token":"@@fz-a@@","task":"t\\u0001","title":"T","id":@ID@}',
    '{"op":"state.set","name":"fz-a","token":"@@fz-a@@","key":"k","value":1e400}',
    '{"op":"join","name":"fz-a","id":18446744073709551616}',
    '{"op":"nope"',
    '{"op":"join","op":"send","name":"a"}',
    '{"op":"status","id":' + "é" * 40_000 + "}",  # 40,000 characters, 80,000 bytes: over the frame limit
    # views reading themselves through the whole state doubled on every change until memory ran out:
    '{"op":"state.view","room":"default","name":"fz-a","token":"@@fz-a@@","key":"all","expr":"[state, state]"}',
    '{"op":"state.view","room":"default","name":"fz-a","token":"@@fz-a@@","key":"v","expr":"state._view"}',
    '{"op":"eval","room":"default","expr":"[' + "state, " * 500 + 'state]"}',
)


class Fuzzer:
    """One fuzzing connection (its agents' tokens kept current), a healthy agent on another, and the tallies."""

    def __init__(self, th: ThreadHub, stack: contextlib.ExitStack) -> None:
        self.th = th
        self.stack = stack  # connections are context managers (websockets >= 17.1)
        self.tokens: dict[str, str] = {}
        self.next_id = 1_000
        self.sent = self.answered = self.cut_off = self.beats = 0
        self.closes: Counter[int | None] = Counter()
        self.codes: Counter[str] = Counter()
        self.ws = self._connect()
        self.healthy = stack.enter_context(connect(th.url, max_size=None))
        joined = self._ask(self.healthy, {"op": "join", "room": CALM, "name": "healthy"})
        self.healthy_token = joined["result"]["token"]

    def _connect(self) -> ClientConnection:
        ws = self.stack.enter_context(connect(self.th.url, max_size=None))
        for name in AGENTS:  # (again, after a fuzzed frame took a name over: under a new token)
            self.tokens[name] = self._ask(ws, {"op": "join", "name": name, "force": True})["result"]["token"]
        self._ask(ws, {"op": "attach", "name": AGENTS[0], "token": self.tokens[AGENTS[0]]})
        return ws

    def _ask(self, ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        ws.send(json.dumps({**frame, "id": self.next_id}))
        while True:
            reply = json.loads(ws.recv(timeout=seconds(60_000)))
            if reply.get("id") == self.next_id and reply["type"] in ("Ok", "Error"):
                assert reply["type"] == "Ok", reply
                return typing.cast(dict[str, Any], reply)

    def fill(self, frame: str | bytes) -> tuple[str | bytes, Any]:
        """The frame with its placeholders filled in, and the id its reply must carry (None: undecodable)."""
        self.next_id += 1
        if isinstance(frame, str):
            frame = frame.replace(ID, str(self.next_id))
            for name, token in self.tokens.items():
                frame = frame.replace(token_of(name), token)
        else:
            frame = frame.replace(ID.encode(), str(self.next_id).encode())
        if len(frame.encode() if isinstance(frame, str) else frame) > MAX_FRAME:
            return frame, None
        try:
            return frame, decode_command(frame).id
        except HubError:
            return frame, None

    def batch(self, frames: list[str | bytes]) -> None:
        """Send every frame, then read until each has its one reply (or the hub closed the session on purpose)."""
        filled = [self.fill(frame) for frame in frames]
        self.sent += len(filled)
        replies: Counter[Any] = Counter()
        try:
            for payload, _ in filled:
                self.ws.send(payload)
            while sum(replies.values()) < len(filled):
                self.take(self.ws.recv(timeout=seconds(60_000)), replies)
        except TimeoutError:
            missing = Counter(uid for _, uid in filled) - replies
            pytest.fail(f"hang: no reply for ids {dict(missing)} of {len(filled)} frames")
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            assert code in DELIBERATE_CLOSES, f"the hub closed the fuzzing session with {closed.rcvd}"
            self.closes[code] += 1
            self.answered += sum(replies.values())
            self.cut_off += len(filled) - sum(replies.values())
            self.ws = self._connect()
            return
        self.answered += len(filled)
        expected = Counter(uid for _, uid in filled)
        assert replies == expected, (
            f"replies by id {dict(replies - expected)}, expected {dict(expected - replies)}"
        )

    def take(self, data: str | bytes, replies: Counter[Any]) -> None:
        """Count a reply by its id (a stable code if an Error); pushed frames are not replies."""
        reply = json.loads(data)
        kind = reply.get("type")
        if kind == "Error" and reply["code"] != Code.TAKEN_OVER:  # taken_over: a waiter's notice
            assert reply["code"] in CODES, reply
            self.codes[reply["code"]] += 1
        elif kind == "Ok":
            self.codes["ok"] += 1
            self.learn(reply.get("result"))
        else:
            return  # pushed: deliveries, triggers, wakes, notices, the tail
        replies[reply["id"]] += 1

    def learn(self, result: Any) -> None:
        """A fuzzed join that rotated a fuzzing agent's token: use the new one from now on."""
        if isinstance(result, dict) and result.get("room") == ROOM and result.get("name") in self.tokens:
            token = result.get("token")
            if isinstance(token, str):
                self.tokens[result["name"]] = token

    def still_healthy(self) -> None:
        """The healthy agent's round trip is answered, and answered Ok."""
        self.beats += 1
        frame = {"op": "state.set", "room": CALM, "name": "healthy", "token": self.healthy_token}
        reply = self._ask(self.healthy, {**frame, "key": "beat", "value": self.beats})
        assert reply["result"]["value"] == self.beats


@pytest.fixture(scope="module")
def drawn() -> list[str | bytes]:
    """The frames, drawn in a fresh interpreter (see the module's docstring)."""
    script = (
        "import pickle, sys\n"
        "from tests.server.test_fuzz import COUNT, fuzzed_frames\n"
        "sys.stdout.buffer.write(pickle.dumps(fuzzed_frames(COUNT)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=280, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    frames: list[str | bytes] = pickle.loads(done.stdout)
    return frames


@pytest.fixture
def fuzzed(drawn: list[str | bytes], tmp_path: Path) -> Iterator[ThreadHub]:
    """A real hub on a real SQLite file: no rate limit (the fuzzer is one busy agent), 64 KiB frames, a small
    feed window (reads behind it go to the log)."""
    config = hub_config(tmp_path / "fuzz.db", rate_per_agent=None, max_frame_bytes=MAX_FRAME, feed_window=100)
    th = ThreadHub(config)
    try:
        yield th
    finally:
        th.stop()


def test_every_fuzzed_frame_gets_one_stable_reply(
    drawn: list[str | bytes], fuzzed: ThreadHub, caplog: pytest.LogCaptureFixture
) -> None:
    """10,000+ fuzzed frames: one reply each with a stable code, no internal error, no hang; a healthy agent on
    another connection is answered after every batch, and the hub stays up."""
    caplog.set_level(logging.WARNING)
    with contextlib.ExitStack() as stack:
        fuzzer = Fuzzer(fuzzed, stack)
        fuzzer.batch(list(KNOWN))
        fuzzer.still_healthy()
        for i in range(0, len(drawn), FRAMES):
            fuzzer.batch(drawn[i : i + FRAMES])
            fuzzer.still_healthy()
    assert fuzzed.hub is not None and fuzzed.hub.failed is None
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not problems, problems
    assert fuzzer.answered + fuzzer.cut_off == fuzzer.sent >= 10_000, (fuzzer.sent, fuzzer.answered)
    assert fuzzer.cut_off < fuzzer.sent // 20, (fuzzer.cut_off, fuzzer.closes)
    print(
        f"fuzz: {fuzzer.sent} frames, {fuzzer.cut_off} cut off by {dict(fuzzer.closes)}; {dict(fuzzer.codes)}"
    )
