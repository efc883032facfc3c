"""Values at the edge: what the hub accepts round-trips through the log and the snapshot unchanged.

JSON has no infinities (msgspec would write `null`), the log's readers have 64-bit integers, and every
decoder in the chain (ours, the SDK's, the CLI's, a browser's) has a nesting limit. So a state value must
hold only signed 64-bit integers, finite floats and at most MAX_DEPTH levels of nesting, and a message body
(kept verbatim) at most MAX_DEPTH levels; anything else is refused with `bad_request` before it is decided.
"""

from __future__ import annotations

import re
from typing import Any

from hub.protocol.errors import Code, HubError

__all__ = ["INT_MAX", "INT_MIN", "MAX_DEPTH", "check_body", "check_number", "check_value"]

MAX_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_STRING = re.compile(
    rb'"(?:[^"\\]|\\.)*"', re.DOTALL
)  # alternatives start with disjoint bytes: no backtracking
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _refuse(field: str, reason: str, message: str) -> HubError:
    return HubError(Code.BAD_REQUEST, message, {"field": field, "reason": reason})


def check_number(value: Any, field: str = "value") -> None:
    """Refuse an int outside signed 64 bits and a float that is not finite (bools are fine)."""
    if type(value) is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _refuse(field, "range", f"{field}: integers are signed 64-bit (|n| < 2**63)")
    elif type(value) is float and (value != value or value in (float("inf"), float("-inf"))):
        raise _refuse(field, "range", f"{field}: numbers must be finite (no NaN or infinity)")


def check_value(value: Any, field: str = "value") -> None:
    """Refuse a value the log could not keep exactly: see the module docstring."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            if depth > MAX_DEPTH:
                raise _refuse(field, "depth", f"{field} is nested deeper than {MAX_DEPTH} levels")
            children = item.values() if kind is dict else item
            stack.extend((child, depth + 1) for child in children)
        elif kind is int or kind is float:
            check_number(item, field)


def check_body(raw: bytes, field: str = "body") -> None:
    """Refuse a JSON text nested deeper than MAX_DEPTH (bodies are kept verbatim, so only depth matters)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte == 0x5B or byte == 0x7B:  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(field, "depth", f"{field} is nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1
