"""Where things are: the repository root and the test vectors, for tests at any depth."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository's root folder (where pyproject.toml is)."""

VECTORS = REPO_ROOT / "tests" / "vectors"
"""The reference vectors folder (tests/vectors/)."""
