"""Parse a single-range ``Range: bytes=…`` header (RFC 9110 §14). Pure."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class UnsatisfiableRange(ValueError):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return inclusive (start, end), or None to serve the whole object.

    Multi-range and malformed headers are ignored (the whole object is served), as RFC 9110
    allows; a syntactically valid range that lies beyond the object is unsatisfiable.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise UnsatisfiableRange(header)
        return max(0, size - length), size - 1
    start = int(first)
    if start >= size:
        raise UnsatisfiableRange(header)
    end = int(last) if last else size - 1
    if start > end:
        return None
    return start, min(end, size - 1)
