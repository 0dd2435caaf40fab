"""Quality gates: each returns a rejection (reason + detail) or None. Pure.

This is the minimal set; every gate shares the ``Gate`` signature so more can be added to
``DEFAULT_GATES`` without touching the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    text: str
    finish_reason: str | None
    length_min: int
    length_max: int


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


Gate = Callable[[Candidate], Rejection | None]


def word_count(text: str) -> int:
    return len(text.split())


def empty(candidate: Candidate) -> Rejection | None:
    if not candidate.text.strip():
        return Rejection("empty", "the model returned no text")
    return None


def truncated(candidate: Candidate) -> Rejection | None:
    if candidate.finish_reason == "length":
        return Rejection("truncated", "generation stopped at max_tokens (finish_reason=length)")
    return None


def length(candidate: Candidate) -> Rejection | None:
    words = word_count(candidate.text)
    if words < candidate.length_min:
        return Rejection("too_short", f"{words} words < minimum {candidate.length_min}")
    if words > candidate.length_max:
        return Rejection("too_long", f"{words} words > maximum {candidate.length_max}")
    return None


DEFAULT_GATES: tuple[Gate, ...] = (empty, truncated, length)


def first_rejection(
    candidate: Candidate, gates: Sequence[Gate] = DEFAULT_GATES
) -> Rejection | None:
    for gate in gates:
        rejection = gate(candidate)
        if rejection is not None:
            return rejection
    return None
