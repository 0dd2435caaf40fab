"""Where the tests find PostgreSQL and Redis; importable without starting anything (unlike
tests/conftest.py, which starts the LLM test server), e.g. by bench/mutate.py."""

from __future__ import annotations

import os

PG_ADMIN_URL = os.environ.get(
    "PRIORFORGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PRIORFORGE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def database_url(name: str) -> str:
    """The URL of another database on the tests' PostgreSQL server."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
