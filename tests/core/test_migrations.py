"""Migrations build the schema the models describe, on Postgres and SQLite, and reverse."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.core import migrate
from app.models import Base


@pytest.fixture
def postgres_url(scratch_database_url: str) -> str:
    return scratch_database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'embedded.db'}"


@pytest.mark.parametrize("backend", ["postgres_url", "sqlite_url"])
def test_upgrade_matches_models_and_downgrade_reverses(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(backend)
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    migrate.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(url)
    assert {"job", "work_item", "document", "dataset_version"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()
