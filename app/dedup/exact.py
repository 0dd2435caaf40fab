"""Exact-duplicate fingerprint: SHA-256 of whitespace- and case-normalised text. Pure."""

from __future__ import annotations

import hashlib
import unicodedata


def normalise(text: str) -> str:
    # str.split() splits on exactly what re's \s matches (Py_UNICODE_ISSPACE), at C speed:
    # the same as collapsing \s+ to one space and stripping the ends.
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def fingerprint(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()
