"""The claims and plan examples run to completion against a hub they start themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("script", ["coding_agents_demo.py", "orkestra_pipeline.py"])
def test_claims_example_runs(script: str) -> None:
    """The example exits 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
