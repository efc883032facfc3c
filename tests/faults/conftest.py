"""Faults under a real hub: a tiny filesystem for the log (a tmpfs mounted here as root; else skip, saying why)
and raw wire clients closed after each test."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.rig import FS_BYTES, Cluster, Wire, pg_bindir


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this module's own (initdb, start; stopped and removed after)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb): the lost-database cases need a server of their own"
        )
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        for name in ("synapseci", "postgres", "nobody"):
            if subprocess.run(["id", "-u", name], capture_output=True).returncode == 0:
                user = name
                break
        if user is None or shutil.which("runuser") is None:
            pytest.skip("as root, PostgreSQL needs an unprivileged user and runuser")
    where = Path(tempfile.mkdtemp(prefix="synapse-faults-pg."))  # outside pytest's 0700 folders
    if user is not None:
        shutil.chown(where, user)
    pg = Cluster(bindir, where, user)
    try:
        pg.init()
        pg.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot start a PostgreSQL cluster here: {exc}")
    try:
        yield pg
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            pg.kill()
        shutil.rmtree(where, ignore_errors=True)
