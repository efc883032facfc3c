"""The hub's version (one place: the package, the wire, the CLI and /metrics read it)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
