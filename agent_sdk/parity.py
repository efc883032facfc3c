"""drift(): where Agent and SyncAgent depart from the verb table (agent_sdk.verbs) or from each other."""

from __future__ import annotations

import inspect
from typing import Any

from agent_sdk.aio import Agent, AsyncState, AsyncTasks
from agent_sdk.base import BaseClient
from agent_sdk.sync import SyncAgent, SyncState, SyncTasks
from agent_sdk.verbs import HANDLES, TRANSPORT, VERBS

__all__ = ["drift"]


def _params(fn: Any) -> list[str]:
    return [str(p) for name, p in inspect.signature(fn).parameters.items() if name != "self"]


def _returns(fn: Any) -> str:
    if isinstance(fn, property):
        fn = fn.fget
    annotation = inspect.signature(fn).return_annotation
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _blocks(fn: Any) -> bool:
    return not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))


def drift() -> list[str]:
    """Every way Agent and SyncAgent (and their `state` and `tasks` namespaces) depart from the verb table or
    from each other: a verb missing from one, a public method the table does not name, different parameters
    (names, kinds, defaults, annotations) or a return annotation other than the table's. Empty: in step."""
    shared = {n for n in dir(BaseClient) if not n.startswith("_")}
    pairs = {"": (Agent, SyncAgent), "state.": (AsyncState, SyncState), "tasks.": (AsyncTasks, SyncTasks)}
    problems: list[str] = []
    for prefix, (aio, blocking) in pairs.items():
        named = {k[len(prefix) :] for k in VERBS if k.startswith(prefix) and "." not in k[len(prefix) :]}
        for cls in (aio, blocking):
            skip = shared | TRANSPORT.get(cls.__name__, frozenset()) if not prefix else {"agent", "build"}
            public = {n for n in dir(cls) if not n.startswith("_")} - skip
            problems += [f"{cls.__name__}.{n} is not in the verb table" for n in sorted(public - named)]
            problems += [f"{cls.__name__} lacks {prefix}{n}" for n in sorted(named - set(dir(cls)))]
        for name in sorted(named & set(dir(aio)) & set(dir(blocking))):
            verb = VERBS[prefix + name]
            a, s = inspect.getattr_static(aio, name), inspect.getattr_static(blocking, name)
            if isinstance(a, property) != isinstance(s, property):
                problems.append(f"{prefix}{name}: a property in one client only")
            elif not isinstance(a, property) and _params(a) != _params(s):
                problems.append(
                    f"{prefix}{name}: parameters differ: ({', '.join(_params(a))}) in "
                    f"{aio.__name__}, ({', '.join(_params(s))}) in {blocking.__name__}"
                )
            handle = isinstance(a, property) or verb.sync_returns in HANDLES  # made at once, in both
            if not handle and (_blocks(a) or not _blocks(s)):
                problems.append(
                    f"{prefix}{name}: {aio.__name__}'s must be awaited, {blocking.__name__}'s block"
                )
            for cls, fn, want in ((aio, a, verb.returns), (blocking, s, verb.sync_returns or verb.returns)):
                got = _returns(fn)
                if got != want:
                    problems.append(f"{cls.__name__}.{name} returns {got}, the table says {want}")
    return problems
