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

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "check_body",
    "check_name",
    "check_number",
    "check_value",
    "nested_deeper",
]

MAX_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_STRING = re.compile(
    rb'"(?:[^"\\]|\\.)*"', re.DOTALL
)  # alternatives start with disjoint bytes: no backtracking
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STRING_TEXT = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS_TEXT = re.compile(r"[^\[\]{}]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 (NUL included), DEL and C1


def _refuse(field: str, reason: str, message: str) -> HubError:
    return HubError(Code.BAD_REQUEST, message, {"field": field, "reason": reason})


def check_name(name: str, field: str, limit: int) -> None:
    """Refuse a name (a claim's work, a task id) that is empty, longer than `limit` characters, or holds a
    control character: names are shown in terminals, logs and file keys, and PostgreSQL text has no NUL."""
    if not name or len(name) > limit:
        raise _refuse(field, "length", f"{field} needs 1..{limit} characters")
    if _CONTROL.search(name):
        raise _refuse(field, "control", f"{field} holds a control character")


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
    if nested_deeper(raw, MAX_DEPTH):
        raise _refuse(field, "depth", f"{field} is nested deeper than {MAX_DEPTH} levels")


def nested_deeper(raw: bytes | str, limit: int) -> bool:
    """Whether a JSON text nests arrays and objects deeper than `limit` (brackets in strings do not count).

    `raw` must be JSON that decoded: with every string closed, the string pattern runs in linear time.
    """
    if isinstance(raw, str):
        if raw.count("[") + raw.count("{") <= limit:
            return False
        brackets = _NOT_BRACKETS_TEXT.sub("", _STRING_TEXT.sub("", raw)).encode("ascii")
    else:
        if raw.count(b"[") + raw.count(b"{") <= limit:
            return False
        brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte == 0x5B or byte == 0x7B:  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
