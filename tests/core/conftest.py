"""The Script fixture: a Machine, a settable clock and a counting secret source; no event loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hub.config import HubConfig
from hub.core import snapshot
from hub.core.effects import Outcome
from hub.core.machine import Context, Machine
from hub.protocol import commands as c
from hub.protocol.errors import HubError
from hub.protocol.events import Event


class Script:
    """Drive the core with commands; every test's events are folded again into a fresh Machine at teardown."""

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config or HubConfig(rate_per_agent=None)
        self.machine = Machine(self.config)
        self.now = 1_000.0
        self.events: list[Event] = []
        self.tokens: dict[tuple[str, str], str] = {}
        self._secrets = 0
        self._ids = 0
        self.size = 0  # the frame size each command is said to have (the byte rate limit counts it)

    def secret(self) -> str:
        self._secrets += 1
        return f"tok-{self._secrets}"

    def ctx(self, session: int | None = 1) -> Context:
        return Context(self.now, session, self.secret, self.size)  # type: ignore[arg-type]

    def run(self, cmd: Any, session: int | None = 1) -> Outcome:
        out = self.machine.handle(cmd, self.ctx(session))
        self.machine.commit(out)
        self.events.extend(out.events)
        return out

    def join(self, *names: str, room: str = "default") -> None:
        for name in names:
            out = self.run(c.Join(id=0, room=room, name=name), session=None)
            del out
            self.tokens[(room, name)] = f"tok-{self._secrets}"

    def token(self, name: str, room: str = "default") -> str:
        return self.tokens[(room, name)]

    def do(self, name: str, cmd: Any, session: int | None = 1) -> Outcome:
        """Run `cmd` as `name` (its token filled in)."""
        import msgspec

        cmd = msgspec.structs.replace(cmd, token=self.token(name, cmd.room))
        return self.run(cmd, session)

    def refused(self, name: str | None, cmd: Any, session: int | None = 1) -> HubError:
        """Assert the command is refused and emitted nothing."""
        import msgspec

        if name is not None:
            cmd = msgspec.structs.replace(cmd, token=self.token(name, cmd.room))
        before = snapshot.dump(self.machine)
        with pytest.raises(HubError) as info:
            self.machine.handle(cmd, self.ctx(session))
        assert snapshot.dump(self.machine) == before
        return info.value

    def check_replay(self) -> None:
        fresh = Machine(self.config)
        for event in self.events:
            fresh.apply(event)
        assert snapshot.dump(fresh) == snapshot.dump(self.machine)


@pytest.fixture
def script() -> Iterator[Script]:
    s = Script()
    yield s
    s.check_replay()
