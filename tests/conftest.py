"""Shared fixtures: the real frames in ../shared/data/real and small synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = Path(os.environ.get("XTALSCREEN_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """``../shared/data/real``; tests using it skip (with this reason) where it is absent."""
    if not REAL_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real frames at {REAL_DIR}")
        pytest.skip(f"real frames not found at {REAL_DIR} (they live in ../shared/data/real)")
    return REAL_DIR
