"""The log's files are its owner's only: the SQLite file, its -wal, -shm and lock files 0600 and the folders
made for them 0700, whatever the umask (here the common 0o022, which would leave them world-readable); backups
too. Through a real hub, in process and as `synapse hub` with its default path."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk import SyncAgent
from tests.conftest import ThreadHub, hub_config, seconds, synapse_cmd

LOG_FILES = ("hub.db", "hub.db-wal", "hub.db-shm", "hub.db.lock")


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The umask most systems start with: files 0644 and folders 0755 unless the code says otherwise."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(url: str) -> None:
    with SyncAgent("alice", hub=url) as alice:
        alice.send("*", "secret plans")
        alice.state.set("k", {"v": 1})


def test_in_process_hub_makes_private_files_and_folders(tmp_path: Path) -> None:
    """A hub on a log in folders that do not exist yet: each folder it makes is 0700, each file 0600."""
    data = tmp_path / "data" / "synapse"
    th = ThreadHub(hub_config(data / "hub.db"))
    try:
        _write(th.url)
        present = {name: mode(data / name) for name in LOG_FILES}  # while the hub runs: WAL and shm exist
    finally:
        th.stop()
    assert present == dict.fromkeys(LOG_FILES, 0o600)
    assert mode(data) == 0o700 and mode(tmp_path / "data") == 0o700


def test_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    """Only folders the hub makes are made private: an existing one (perhaps shared on purpose) is left."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    th = ThreadHub(hub_config(shared / "hub.db"))
    try:
        _write(th.url)
        assert mode(shared / "hub.db") == 0o600 and mode(shared / "hub.db-wal") == 0o600
    finally:
        th.stop()
    assert mode(shared) == 0o755


def test_synapse_hub_default_path_and_backups(tmp_path: Path, client_env: dict[str, str]) -> None:
    """`synapse hub` without --db: $XDG_DATA_HOME/synapse/hub.db, its folders 0700, its files 0600; then
    `synapse backup` to an SQLite file and to NDJSON writes 0600 files."""
    data_home = Path(client_env["XDG_DATA_HOME"])
    assert not data_home.exists()
    proc = subprocess.Popen(
        synapse_cmd("hub", "--port", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("listening ws://"), line
        _write(line.split()[1])
        folder = data_home / "synapse"
        present = {name: mode(folder / name) for name in LOG_FILES}
        for out in ("copy.db", "copy.ndjson"):
            done = subprocess.run(
                synapse_cmd("backup", str(tmp_path / out)),
                env=client_env,
                capture_output=True,
                timeout=seconds(60_000),
            )
            assert done.returncode == 0, done.stderr
            assert mode(tmp_path / out) == 0o600, out
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=seconds(15_000))
    assert proc.returncode == 0, err[-2000:]
    assert present == dict.fromkeys(LOG_FILES, 0o600)
    assert mode(data_home / "synapse") == 0o700 and mode(data_home) == 0o700
