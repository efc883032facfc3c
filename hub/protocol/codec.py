"""Decoders and encoders built once: the only module that calls msgspec.json."""

from __future__ import annotations

import re
import typing
from typing import Any

import msgspec

from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Frame
from hub.protocol.values import MAX_DEPTH, nested_deeper

__all__ = [
    "FRAME_DEPTH",
    "decode_command",
    "decode_event",
    "decode_frame",
    "decode_json",
    "encode",
    "to_builtins",
]

_frame_decoder = msgspec.json.Decoder(Frame)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_SYNTAX = msgspec.json.Decoder(msgspec.Raw)  # checks a frame is JSON, converting nothing
_AT = re.compile(r" - at `(\$[^`]*)`$")
_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]*)`")
_OUT_OF_RANGE = re.compile(r"^(?:Expected `[^`]*` (?:[<>]=?|of length|matching|that is)|.*out of range)")
FRAME_DEPTH = 2 * MAX_DEPTH  # a command's own levels and a value MAX_DEPTH deep fit with room to spare
_TOO_DEEP = f"nested deeper than {FRAME_DEPTH} levels"
_FIELD_OF = re.compile(r"^\$\.([^.\[]+)")  # the command's field a path starts at


class _Lazy:
    """The command and event decoders, built on first use: clients never pay for them at start-up."""

    command: msgspec.json.Decoder[Any] | None = None
    event: msgspec.json.Decoder[Any] | None = None
    ops: frozenset[str] | None = None

    @classmethod
    def commands(cls) -> msgspec.json.Decoder[Any]:
        from hub.protocol.commands import Command

        cls.command = msgspec.json.Decoder(Command)
        return cls.command

    @classmethod
    def tags(cls) -> frozenset[str]:
        from hub.protocol.commands import Command

        cls.ops = frozenset(str(t.__struct_config__.tag) for t in typing.get_args(Command))
        return cls.ops

    @classmethod
    def events(cls) -> msgspec.json.Decoder[Any]:
        from hub.protocol.events import Event

        cls.event = msgspec.json.Decoder(Event)
        return cls.event


def encode(obj: Any) -> bytes:
    """Encode a command, event, frame or plain value as JSON bytes."""
    return _encoder.encode(obj)


def decode_command(data: bytes | str) -> Any:
    """Decode one client frame, naming the bad field; raises HubError with a stable code, never anything else.

    `bad_frame`: not JSON, nested deeper than FRAME_DEPTH, or not the shape of a command (a field missing,
    unknown or of the wrong type); `unknown_op`: `op` names no command; `bad_request`: a field of the right
    type whose value is out of its range (an integer past 64 bits, a number past a double). The same frame
    gets the same code whatever the interpreter's recursion limit: a frame too deep is bad_frame even where
    the decoder could have read it, and every other answer is given only for frames it can read.
    """
    try:
        cmd = (_Lazy.command or _Lazy.commands()).decode(data)
    except msgspec.ValidationError as exc:
        reason = str(exc)
        if "Invalid value" in reason and "`$.op`" in reason:
            op, problem = _op_of(data)
            if problem is not None:  # the rest of the frame is not JSON the hub reads
                raise _not_json(problem) from None
            if isinstance(op, str) and op not in (_Lazy.ops or _Lazy.tags()):
                raise HubError(Code.UNKNOWN_OP, f"unknown op {op!r}", {"op": op}) from None
        path = _path(reason)
        if _OUT_OF_RANGE.search(reason):
            problem = _unreadable(data)
            if problem is not None:
                raise _not_json(problem) from None
            field = _FIELD_OF.match(path)
            detail = {"field": field.group(1) if field else path, "reason": "range", "path": path}
            raise HubError(Code.BAD_REQUEST, reason, detail) from None
        raise HubError(Code.BAD_FRAME, reason, {"reason": reason, "path": path}) from None
    except msgspec.DecodeError as exc:
        raise _not_json(str(exc)) from None
    except RecursionError:
        raise _not_json(_TOO_DEEP) from None
    except UnicodeError:
        raise _not_json("not valid UTF-8 text") from None
    if nested_deeper(data, FRAME_DEPTH):
        raise _not_json(_TOO_DEEP)
    return cmd


def _not_json(reason: str) -> HubError:
    return HubError(Code.BAD_FRAME, f"not JSON: {reason}", {"reason": reason})


def _unreadable(data: bytes | str) -> str | None:
    """Why the frame is not JSON the hub reads (malformed, or nested deeper than FRAME_DEPTH), or None.

    Its syntax is checked without converting numbers, so a number out of range does not count here.
    """
    try:
        _SYNTAX.decode(data)
    except msgspec.DecodeError as exc:
        return str(exc)
    except RecursionError:
        return _TOO_DEEP
    except UnicodeError:
        return "not valid UTF-8 text"
    return _TOO_DEEP if nested_deeper(data, FRAME_DEPTH) else None


def _path(reason: str) -> str:
    """The JSON path msgspec names in `reason` (`$.to[0]`), down to the field a missing/unknown one names."""
    at = _AT.search(reason)
    path = at.group(1) if at else "$"
    field = _FIELD.match(reason)
    return f"{path}.{field.group(1)}" if field else path


class _Op(msgspec.Struct):
    op: Any = None


_OP_IN_FRAME = msgspec.json.Decoder(_Op)


def _op_of(data: bytes | str) -> tuple[Any, str | None]:
    """The frame's `op` (the last one, if given twice), or why the frame is not JSON the hub reads."""
    problem = _unreadable(data)
    if problem is not None:
        return None, problem
    try:
        return _OP_IN_FRAME.decode(data).op, None
    except msgspec.DecodeError as exc:  # `op` itself a number out of range
        return None, str(exc)


def decode_event(data: bytes | str) -> Any:
    """Decode one event from the log."""
    return (_Lazy.event or _Lazy.events()).decode(data)


def decode_frame(data: bytes | str) -> Frame:
    """Decode one hub frame (clients)."""
    return _frame_decoder.decode(data)


def decode_json(data: bytes | str) -> Any:
    """Decode any JSON value."""
    return _any_decoder.decode(data)


def to_builtins(obj: Any) -> Any:
    """A Struct as plain dicts and lists (Raw bodies decoded)."""
    return _any_decoder.decode(_encoder.encode(obj))
