"""JSON Lines uploads: the lines, and values a database cannot store. Pure."""

from __future__ import annotations

from collections.abc import Iterator


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
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an unpaired surrogate (not valid Unicode)"
        return None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        for part in value:
            problem = unstorable(part)
            if problem is not None:
                return problem
    return None
