"""Decoders and encoders built once: the only module that calls msgspec.json."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from hub.protocol.errors import Code, HubError
from hub.protocol.frames import Frame

__all__ = [
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
_OP_IN_FRAME = msgspec.json.Decoder(dict[str, Any])
_AT = re.compile(r" - at `(\$[^`]*)`$")
_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]*)`")


class _Lazy:
    """The command and event decoders, built on first use: clients never pay for them at start-up."""

    command: msgspec.json.Decoder[Any] | None = None
    event: msgspec.json.Decoder[Any] | None = None

    @classmethod
    def commands(cls) -> msgspec.json.Decoder[Any]:
        from hub.protocol.commands import Command

        cls.command = msgspec.json.Decoder(Command)
        return cls.command

    @classmethod
    def events(cls) -> msgspec.json.Decoder[Any]:
        from hub.protocol.events import Event

        cls.event = msgspec.json.Decoder(Event)
        return cls.event


def encode(obj: Any) -> bytes:
    """Encode a command, event, frame or plain value as JSON bytes."""
    return _encoder.encode(obj)


def decode_command(data: bytes | str) -> Any:
    """Decode one client frame, naming the bad field; raises HubError(bad_frame | unknown_op)."""
    try:
        return (_Lazy.command or _Lazy.commands()).decode(data)
    except msgspec.ValidationError as exc:
        reason = str(exc)
        if "Invalid value" in reason and "`$.op`" in reason:
            op = _op_of(data)
            raise HubError(Code.UNKNOWN_OP, f"unknown op {op!r}", {"op": op}) from None
        raise HubError(Code.BAD_FRAME, reason, {"reason": reason, "path": _path(reason)}) from None
    except msgspec.DecodeError as exc:
        raise HubError(Code.BAD_FRAME, f"not JSON: {exc}", {"reason": str(exc)}) from None
    except RecursionError:
        reason = "nested too deeply"
        raise HubError(Code.BAD_FRAME, f"not JSON: {reason}", {"reason": reason}) from None
    except UnicodeError:
        reason = "not valid UTF-8 text"
        raise HubError(Code.BAD_FRAME, f"not JSON: {reason}", {"reason": reason}) from None


def _path(reason: str) -> str:
    """The JSON path msgspec names in `reason` (`$.to[0]`), down to the field a missing/unknown one names."""
    at = _AT.search(reason)
    path = at.group(1) if at else "$"
    field = _FIELD.match(reason)
    return f"{path}.{field.group(1)}" if field else path


def _op_of(data: bytes | str) -> Any:
    try:
        return _OP_IN_FRAME.decode(data).get("op")
    except msgspec.DecodeError:
        return None


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
