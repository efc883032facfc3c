"""The foundation's examples run to completion against a real hub they start themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("script", ["wake_loop.py", "sdk_worker.py"])
def test_example_runs(script: str) -> None:
    """The example exits 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
