"""The run store on both engines: ``store_target`` is a SQLite file or a fresh
PostgreSQL database (the bundled server of ``pg_url``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test's store lives: ``tmp_path/runs.db``, or a fresh database's URL."""
    if request.param == "sqlite":
        return tmp_path / "runs.db"
    url: str = request.getfixturevalue("pg_url")
    return url
