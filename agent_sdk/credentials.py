"""Saved tokens per (hub, room, name) in $XDG_CONFIG_HOME/synapse/tokens.json, mode 0600, written atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["first_join", "forget", "load", "save", "tokens_path"]


def tokens_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "synapse" / "tokens.json"


def _key(hub: str, room: str, name: str) -> str:
    return f"{hub.rstrip('/')}|{room}|{name}"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(hub: str, room: str, name: str) -> str | None:
    """The token saved for this agent on this hub, if any."""
    return _read(tokens_path()).get(_key(hub, room, name))


@contextlib.contextmanager
def _locked(path: Path, name: str = ".tokens.lock") -> Iterator[None]:
    """Serialize read-modify-write of the token file across processes (several agents joining at once)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def first_join(hub: str, room: str, name: str) -> Iterator[str | None]:
    """Hold the token file's lock around a first join and yield the token saved meanwhile, if any.

    Several processes using one name for the first time join one after another: the first joins and saves,
    the others find its token here instead of racing it (which the hub would refuse with `name_taken`).
    """
    path = tokens_path()
    with _locked(path, name=f".join.{zlib.crc32(_key(hub, room, name).encode()) % 256}.lock"):
        yield _read(path).get(_key(hub, room, name))


def _write(path: Path, data: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(hub: str, room: str, name: str, token: str) -> None:
    """Remember a token (replacing an older one) without ever exposing the file to other users."""
    path = tokens_path()
    with _locked(path):
        data = _read(path)
        data[_key(hub, room, name)] = token
        _write(path, data)


def forget(hub: str, room: str, name: str) -> None:
    """Drop a saved token."""
    path = tokens_path()
    with _locked(path):
        data = _read(path)
        if data.pop(_key(hub, room, name), None) is not None:
            _write(path, data)
