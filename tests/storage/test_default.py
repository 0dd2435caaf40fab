"""The process's store (get_store): refused, with the fix, when unset or not the bound one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import ConfigurationError
from app.core.settings import get_settings
from app.storage.default import get_store
from tests.conftest import Team


@pytest.fixture
def fresh_process() -> Iterator[None]:
    """Forget this process's cached settings and store, before and after the test."""
    get_settings.cache_clear()
    get_store.cache_clear()
    yield
    get_settings.cache_clear()
    get_store.cache_clear()


@pytest.mark.usefixtures("fresh_process")
def test_service_mode_without_a_storage_url_is_refused_everywhere(
    monkeypatch: pytest.MonkeyPatch, client: Any, team: Team
) -> None:
    monkeypatch.delenv("PRIORFORGE_STORAGE_URL")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="set PRIORFORGE_STORAGE_URL to the object store"):
        get_store()

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "set PRIORFORGE_STORAGE_URL" in ready.json()["checks"]["storage"]
    snapshot = client.post("/v1/datasets/anything/versions", headers=team.headers())
    assert snapshot.status_code == 503
    assert snapshot.headers["content-type"].startswith("application/problem+json")
    assert "set PRIORFORGE_STORAGE_URL" in snapshot.json()["detail"]


@pytest.mark.usefixtures("fresh_process")
def test_a_process_on_another_store_than_the_database_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, client: Any, team: Team
) -> None:
    bound = get_store()  # the suite's store: this binds the test database, if nothing did yet
    other = (tmp_path / "objects").as_uri()
    monkeypatch.setenv("PRIORFORGE_STORAGE_URL", other)
    get_settings.cache_clear()
    get_store.cache_clear()
    with pytest.raises(ConfigurationError) as refused:
        get_store()
    assert other in refused.value.detail
    assert bound.url in refused.value.detail
    response = client.get("/v1/datasets/anything/versions/1/manifest", headers=team.headers())
    assert response.status_code in (404, 503)  # no such dataset is found before the store
    ready = client.get("/readyz").json()
    assert other in ready["checks"]["storage"]
