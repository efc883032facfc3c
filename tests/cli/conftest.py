"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cli.test_wait import Waiters
from tests.conftest import seconds, synapse_cmd


@pytest.fixture
def procs(hub: Any, client_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `synapse` processes against the test hub; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    env = {**client_env, "SYNAPSE_HUB": hub.url}

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            synapse_cmd(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=seconds(10_000))


@pytest.fixture
def waiters(hub: Any, client_env: dict[str, str]) -> Iterator[Waiters]:
    """`synapse wait` processes against the test hub (closed at the end)."""
    w = Waiters(hub.url, client_env)
    try:
        yield w
    finally:
        w.close()
