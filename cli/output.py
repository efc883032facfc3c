"""Rendering: readable text, or exactly one JSON document per result (NDJSON for streams)."""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import datetime
from typing import Any

import click

from hub.protocol.codec import encode, to_builtins
from hub.protocol.errors import Code, HubError

__all__ = ["clean", "emit", "emit_error", "fmt_time", "parse_value"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]")


def clean(text: Any) -> str:
    """Remote text with control characters escaped, so a message cannot drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def emit(as_json: bool, value: Any, text: str | None = None) -> None:
    """Print one result: JSON on one line, or the text form."""
    if as_json:
        sys.stdout.buffer.write(encode(value) + b"\n")
        sys.stdout.flush()
    elif text is not None:
        click.echo(text)


def emit_error(as_json: bool, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
    """An error on stderr: `code: message`, or {"error": {...}} with --json."""
    if as_json:
        payload = {"error": {"code": str(code), "message": message, **to_builtins(detail or {})}}
        click.echo(encode(payload).decode(), err=True)
    else:
        click.echo(f"{code}: {clean(message)}", err=True)


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it is valid JSON (`3`, `true`, `{"a":1}`), else the string.

    `NaN` and `Infinity` are not JSON, so they are text; a number past a double (`1e400`) is `bad_request`, as
    the hub refuses it: left to the encoder it would be sent as null.
    """
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except ValueError:
        return text


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(number: str) -> float:
    value = float(number)
    if math.isinf(value):
        raise HubError(
            Code.BAD_REQUEST,
            f"value: {clean(number[:40])} is past the largest number a double holds (numbers must be finite)",
            {"field": "value", "reason": "range"},
        )
    return value
