"""HubError and Code: every stable error code, with its meaning (STYLE.md §4)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["AUTH_CODES", "Code", "HubError", "RETRYABLE"]


class Code(StrEnum):
    """The stable error codes: the contract. Never renamed, never reused."""

    BAD_FRAME = "bad_frame"  # bytes do not decode or do not fit the schema
    UNKNOWN_OP = "unknown_op"  # `op` names no command
    TOO_LARGE = "too_large"  # frame or body over its limit
    BAD_REQUEST = "bad_request"  # well-formed but invalid
    UNAUTHORIZED = "unauthorized"  # token missing or wrong
    FORBIDDEN = "forbidden"  # acting as another agent, another room
    NOT_FOUND = "not_found"  # no such room, agent, message, task, key, claim or branch
    BAD_EXPRESSION = "bad_expression"  # CEL does not compile
    CLAIM_OVERLAP = "claim_overlap"  # the scope overlaps another agent's live claim
    ALREADY_CLAIMED = "already_claimed"  # a message claimed by someone else
    ALREADY_EXISTS = "already_exists"  # init of an existing key, a task re-declared differently
    CONFLICT = "conflict"  # stale version or etag, a task already claimed
    PRECONDITION_FAILED = "precondition_failed"  # a CEL write gate evaluated false
    NOT_READY = "not_ready"  # a task claimed while its dependencies are open
    SEQ_BLOCKED = "seq_blocked"  # a seq child claimed before its predecessors are done
    RATE_LIMITED = "rate_limited"  # over the rate per agent
    LIMIT_EXCEEDED = "limit_exceeded"  # over a count limit
    TAKEN_OVER = "taken_over"  # a newer waiter with the same name replaced this one
    UNAVAILABLE = "unavailable"  # the hub is draining or its log is not writable
    NAME_TAKEN = "name_taken"  # re-joining a name without its current token (or the admin token)
    FENCED = "fenced"  # a write fenced on a claim the writer no longer holds at that epoch
    UNKNOWN_RECIPIENT = "unknown_recipient"  # a directed send to a name that never joined
    UNREACHABLE = "unreachable"  # SDK only: the hub cannot be reached
    DISCONNECTED = "disconnected"  # SDK only: the connection was lost
    TIMED_OUT = "timed_out"  # SDK only: a wait ran out of time


RETRYABLE = frozenset({Code.RATE_LIMITED, Code.UNAVAILABLE, Code.UNREACHABLE, Code.DISCONNECTED})
AUTH_CODES = frozenset({Code.UNAUTHORIZED, Code.FORBIDDEN, Code.NAME_TAKEN})


class HubError(Exception):
    """The one error type: a stable `code`, a `message` for people, a `detail` to retry with."""

    def __init__(self, code: Code | str, message: str, detail: dict[str, Any] | None = None) -> None:
        try:
            code = Code(code)
        except ValueError:
            pass  # a code from a newer hub: keep its text
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail: dict[str, Any] = detail or {}

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed."""
        return self.code in RETRYABLE

    def __reduce__(self) -> tuple[Any, ...]:
        return (HubError, (self.code, self.message, self.detail))
