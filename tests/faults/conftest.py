"""Faults under a real hub: a tiny filesystem for the log (a tmpfs mounted here as root; else skip, saying why)
and raw wire clients closed after each test."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.rig import FS_BYTES, Wire


def _mount_problem() -> str | None:
    if os.geteuid() != 0:
        return "mounting a size-limited tmpfs for the log needs root (CI runs as root)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount on this machine"
    return None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A FS_BYTES tmpfs of its own under tmp_path (the log goes there); unmounted after the test."""
    problem = _mount_problem()
    if problem is not None:
        pytest.skip(problem)
    where = tmp_path / "fs"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {done.stderr.strip()}")
    try:
        yield where
    finally:
        for path in where.iterdir():
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def wires() -> Iterator[Callable[[str], Wire]]:
    """Make Wire clients; all closed after the test."""
    made: list[Wire] = []

    def make(url: str) -> Wire:
        wire = Wire(url)
        made.append(wire)
        return wire

    yield make
    for wire in made:
        wire.close()
