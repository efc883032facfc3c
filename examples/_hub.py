"""Shared by the examples: use --hub URL, or start a throwaway hub on 127.0.0.1 with a temporary log."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["hub_args", "hub_url", "synapse"]

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def hub_url(description: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Parse --hub; yield (url, env for `synapse` processes), starting a hub when none is given."""
    with hub_args(description) as (url, env, _args):
        yield url, env


@contextlib.contextmanager
def hub_args(
    description: str, options: Callable[[argparse.ArgumentParser], None] | None = None
) -> Iterator[tuple[str, dict[str, str], argparse.Namespace]]:
    """As hub_url, with the example's own flags (`options` adds them) parsed too: yield (url, env, args)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--hub", help="a running hub's URL (default: start one on 127.0.0.1 with a temp log)")
    if options is not None:
        options(parser)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="synapse-example-")
    os.environ["XDG_CONFIG_HOME"] = tmp  # this script's own clients and its `synapse` processes share tokens
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if args.hub:
        env["SYNAPSE_HUB"] = args.hub
        yield args.hub, env, args
        return
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub",
            "hub",
            "--port",
            "0",
            "--db",
            os.path.join(tmp, "log.db"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        match = re.match(r"listening (\S+)", proc.stdout.readline())
        if not match:
            raise SystemExit("the hub did not start")
        env["SYNAPSE_HUB"] = match.group(1)
        yield match.group(1), env, args
    finally:
        proc.terminate()
        proc.wait(10)


def synapse(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one `synapse` command as a process, as a turn-based assistant would."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], env=env, text=True, capture_output=True, check=check, timeout=60
    )
