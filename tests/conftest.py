"""Shared fixtures: where the real data lives, hand-written fixtures, a fresh workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _shared_data_dir() -> Path:
    configured = os.environ.get("SHOPREC_SHARED_DATA")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$SHOPREC_SHARED_DATA``); skipped only outside CI when absent."""
    path = _shared_data_dir()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {path} (set SHOPREC_SHARED_DATA)")
        pytest.skip(f"shared data not found at {path}; set SHOPREC_SHARED_DATA")
    return path


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"
