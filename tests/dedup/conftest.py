"""Fixtures of the near-duplicate index tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.core import migrate
from app.core.db import make_engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated embedded (SQLite) database of the test's own."""
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
