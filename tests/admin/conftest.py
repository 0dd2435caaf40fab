from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app

BASE = "https://testserver"  # the session cookie is Secure


@pytest.fixture
def browser() -> Iterator[TestClient]:
    """An HTTP client that keeps cookies as a browser does, and does not follow redirects."""
    with TestClient(create_app(), base_url=BASE, follow_redirects=False) as client:
        yield client
