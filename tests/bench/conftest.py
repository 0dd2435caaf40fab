"""Fixtures for the benchmarks' tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from tests.services import PG_ADMIN_URL


@pytest.fixture
def database_name() -> Iterator[str]:
    """A database name nobody uses yet, for the code under test to create; dropped after."""
    name = f"priorforge_benchtest_{secrets.token_hex(4)}"
    yield name
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
