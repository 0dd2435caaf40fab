from __future__ import annotations

import pytest

from app.dedup.exact import fingerprint
from app.generation.cleaning import clean
from app.quality.gates import Candidate, first_rejection


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Sure! Here's the article you asked for:\n\nThe storm hit at dawn.",
            "The storm hit at dawn.",
        ),
        ("```markdown\nThe storm hit.\n```", "The storm hit."),
        ("The storm hit.\n\nI hope this helps! Let me know.", "The storm hit."),
        ("Here is why the board said no: money.", "Here is why the board said no: money."),
    ],
)
def test_clean(raw: str, expected: str) -> None:
    assert clean(raw) == expected


def test_title_label_is_dropped_or_unwrapped_by_form() -> None:
    raw = "Title: Night Shift at Harrow General\n\nThe alert came at 3 a.m."
    assert clean(raw, has_title=True) == "Night Shift at Harrow General\n\nThe alert came at 3 a.m."
    assert clean(raw, has_title=False) == "The alert came at 3 a.m."
    assert clean("**Title:** Dear diary\nToday was odd.", has_title=False) == "Today was odd."
    assert clean("Titles matter.\nMore.", has_title=False) == "Titles matter.\nMore."


def gate(text: str, finish: str | None = "stop", low: int = 3, high: int = 10) -> str | None:
    rejection = first_rejection(Candidate(text, finish, low, high))
    return rejection.reason if rejection else None


def test_gates() -> None:
    assert gate("   ") == "empty"
    assert gate("one two three four", finish="length") == "truncated"
    assert gate("one two") == "too_short"
    assert gate("word " * 11) == "too_long"
    assert gate("one two three four") is None


def test_fingerprint_ignores_case_and_spacing() -> None:
    assert fingerprint("The  Storm\nhit.") == fingerprint("the storm hit.")
    assert fingerprint("the storm hit.") != fingerprint("the storm hit!")
