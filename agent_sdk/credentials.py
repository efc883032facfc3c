"""Saved tokens per (hub, room, name) in $XDG_CONFIG_HOME/synapse/tokens.json, mode 0600, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["forget", "load", "save", "tokens_path"]


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


def save(hub: str, room: str, name: str, token: str) -> None:
    """Remember a token (replacing an older one) without ever exposing the file to other users."""
    path = tokens_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = _read(path)
    data[_key(hub, room, name)] = token
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


def forget(hub: str, room: str, name: str) -> None:
    path = tokens_path()
    data = _read(path)
    if data.pop(_key(hub, room, name), None) is not None:
        save_all = data
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens.")
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(save_all, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
