"""Files only their owner may read: the log, its WAL, shared-memory and lock files, backups, and the folders
made for them. Created 0600 (folders 0700) whatever the umask; files that already exist keep their mode."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

__all__ = ["FILE_MODE", "FOLDER_MODE", "create_file", "make_folders", "open_new"]

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_folders(folder: str | Path) -> None:
    """Create `folder` and any missing parents 0700; folders that exist are left as they are."""
    missing: list[Path] = []
    at = Path(folder).absolute()
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, FOLDER_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: its mode is its own
        os.chmod(path, FOLDER_MODE)  # the umask may have taken bits away


def create_file(path: str | Path) -> bool:
    """Create `path` empty with mode 0600 unless it exists; True when it was created here. An empty file is an
    empty SQLite database, and SQLite gives the database's mode to its -wal and -shm files."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def open_new(path: str | Path) -> IO[bytes]:
    """Open `path` for writing from empty, mode 0600 (also when an old file by that name was there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise
