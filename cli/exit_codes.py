"""ExitCode: one table from outcomes and hub error codes to process exit codes (CLI.md)."""

from __future__ import annotations

from enum import IntEnum

from hub.protocol.errors import AUTH_CODES, Code

__all__ = ["HELP", "ExitCode", "exit_code_for"]


class ExitCode(IntEnum):
    OK = 0  # success; for `wait`: woken
    REFUSED = 1  # the hub refused the request
    USAGE = 2  # usage error
    TIMED_OUT = 3  # `wait` timed out
    UNREACHABLE = 4  # hub unreachable, or the connection was lost
    UNAUTHORIZED = 5  # unauthorized, forbidden or name_taken (a refused `fenced` is 1)


def exit_code_for(code: str) -> ExitCode:
    if code in AUTH_CODES:
        return ExitCode.UNAUTHORIZED
    if code in (Code.UNREACHABLE, Code.DISCONNECTED):
        return ExitCode.UNREACHABLE
    if code == Code.TIMED_OUT:
        return ExitCode.TIMED_OUT
    return ExitCode.REFUSED


HELP = (
    "Exit codes: 0 ok (wait: woken), 1 refused by the hub (code on stderr), 2 usage, "
    "3 wait timed out, 4 hub unreachable or connection lost, 5 not authorized (unauthorized, forbidden, "
    "name_taken)."
)
