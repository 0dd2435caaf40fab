"""JSON Lines uploads: the lines, and values a database cannot store. Pure."""

from __future__ import annotations

from collections.abc import Iterator

from app.core.text import find_unstorable


def numbered_lines(body: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers.

    Split on newlines only: ``str.splitlines`` also splits on U+2028, U+0085 and others,
    which JSON allows unescaped inside strings.
    """
    for number, line in enumerate(body.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield number, line


def unstorable(value: object) -> str | None:
    """Why a parsed JSON value cannot be stored as text (NUL, unpaired surrogate), if so."""
    found = find_unstorable(value)
    return None if found is None else found[1]
