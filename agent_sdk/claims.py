"""Claim and SyncClaim: the handle of a granted lease; a context manager that releases (with a checkpoint) on exit."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Claim", "SyncClaim"]


class Holder(Protocol):
    """What a Claim needs of its agent (agent_sdk.Agent is one)."""

    async def claim(self, work: str, *, renew: bool = ...) -> Claim: ...

    async def release(self, work: str, *, checkpoint: str | None = ...) -> Any: ...


class SyncHolder(Protocol):
    """What a SyncClaim needs of its agent (agent_sdk.SyncAgent is one)."""

    def claim(self, work: str, *, renew: bool = ...) -> SyncClaim: ...

    def release(self, work: str, *, checkpoint: str | None = ...) -> Any: ...


class ClaimView:
    """A granted claim as the hub described it: `work`, `paths`, `holder`, `expires`, the `checkpoint` the
    previous holder left, and its fencing `epoch` (writes made under it pass `fence=claim.fence`: refused with
    `fenced` once it is lost). `view` is the hub's whole reply."""

    def __init__(self, view: dict[str, Any]) -> None:
        self.view = view
        self.work: str = view["work"]
        self.paths: list[str] = list(view["paths"])
        self.holder: str = view["holder"]
        self.expires: float | None = view.get("expires")
        self.checkpoint: str | None = view.get("checkpoint")
        self.held_by: str = view.get("held_by", "ttl")
        self.epoch: int = int(view.get("epoch", 0))
        self.already_held: bool = bool(view.get("already_held", False))
        self.released = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.work!r}, holder={self.holder!r}, paths={self.paths!r}, "
            f"held_by={self.held_by!r}, epoch={self.epoch})"
        )

    @property
    def fence(self) -> dict[str, int]:
        """`{work: epoch}`: pass as `fence=` to a write that must not land once this claim is lost."""
        return {self.work: self.epoch}


class Claim(ClaimView):
    """A live claim of an Agent; `async with` releases it on exit."""

    def __init__(self, agent: Holder | None, view: dict[str, Any]) -> None:
        super().__init__(view)
        self.agent = agent

    async def renew(self) -> Claim:
        """Extend a TTL claim (or re-bind it to this session)."""
        assert self.agent is not None
        return await self.agent.claim(self.work, renew=True)

    async def release(self, checkpoint: str | None = None) -> None:
        """Release, leaving `checkpoint` for the next claimer of the same work."""
        assert self.agent is not None
        if not self.released:
            await self.agent.release(self.work, checkpoint=checkpoint)
            self.released = True

    async def __aenter__(self) -> Claim:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class SyncClaim(ClaimView):
    """A live claim of a SyncAgent; `with` releases it on exit."""

    def __init__(self, agent: SyncHolder | None, view: dict[str, Any]) -> None:
        super().__init__(view)
        self.agent = agent

    def renew(self) -> SyncClaim:
        """Extend a TTL claim (or re-bind it to this session)."""
        assert self.agent is not None
        return self.agent.claim(self.work, renew=True)

    def release(self, checkpoint: str | None = None) -> None:
        """Release, leaving `checkpoint` for the next claimer of the same work."""
        assert self.agent is not None
        if not self.released:
            self.agent.release(self.work, checkpoint=checkpoint)
            self.released = True

    def __enter__(self) -> SyncClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
