"""The pure layers type-check under `mypy --strict` (pyproject.toml [tool.mypy] names them)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_core_and_protocol_pass_mypy_strict() -> None:
    """hub/core and hub/protocol have no type errors with every strict check on."""
    api = pytest.importorskip("mypy.api")
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental"])
    assert status == 0, out + err
