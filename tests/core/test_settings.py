"""Settings that decide where state lives: service mode names its object store explicitly."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import ConfigurationError
from app.core.settings import STORAGE_URL_REQUIRED, Settings


@pytest.mark.parametrize(
    ("database_url", "broker_url"),
    [
        ("postgresql+psycopg://db.internal/priorforge", None),
        (None, "redis://queue.internal:6379/0"),
    ],
)
def test_service_mode_without_a_storage_url_names_the_fix(
    database_url: str | None, broker_url: str | None, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url, broker_url=broker_url, storage_url=None, data_dir=tmp_path
    )
    assert settings.service_mode
    with pytest.raises(ConfigurationError) as missing:
        _ = settings.effective_storage_url
    assert missing.value.detail == STORAGE_URL_REQUIRED
    assert "set PRIORFORGE_STORAGE_URL to the object store every process shares" in (
        missing.value.detail
    )
    assert "file:///abs/path" in missing.value.detail
    assert "s3://bucket/prefix" in missing.value.detail


def test_embedded_mode_keeps_its_store_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(database_url=None, broker_url=None, storage_url=None, data_dir=tmp_path)
    assert not settings.service_mode
    assert settings.effective_storage_url == (tmp_path / "objects").as_uri()


def test_an_explicit_storage_url_is_used_in_service_mode(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://db.internal/priorforge",
        storage_url="file:///srv/priorforge/objects",
        data_dir=tmp_path,
    )
    assert settings.effective_storage_url == "file:///srv/priorforge/objects"
