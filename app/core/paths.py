"""Where the bundled data lives: the repository in a checkout, ``app/_bundled`` in a wheel."""

from __future__ import annotations

from pathlib import Path

_APP_DIR = Path(__file__).resolve().parent.parent


def _locate(name: str) -> Path:
    for candidate in (_APP_DIR.parent / name, _APP_DIR / "_bundled" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled directory {name!r} not found next to {_APP_DIR}")


PROMPTS_DIR = _locate("prompts")
MIGRATIONS_DIR = _locate("migrations")
