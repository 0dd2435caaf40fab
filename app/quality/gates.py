"""Quality gates: each returns a rejection (reason + detail) or None. Pure.

Every gate has the ``Gate`` signature and reads its thresholds from the candidate's
``GateSettings`` (part of the job spec), so a job can tune them and new gates slot into
``DEFAULT_GATES`` without touching the pipeline.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt


class GateSettings(BaseModel):
    """Per-job gate thresholds; the defaults suit English prose of a few hundred words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_english_ratio: StrictFloat = Field(
        default=0.25, ge=0, le=1, description="Share of words that are common English words."
    )
    max_repeated_ngrams: StrictFloat = Field(
        default=0.25, ge=0, le=1, description="Share of word 4-grams that repeat an earlier one."
    )
    quote_ngram: StrictInt = Field(
        default=8, ge=4, le=50, description="Words copied in a row from an option text."
    )


@dataclass(frozen=True)
class Candidate:
    text: str
    finish_reason: str | None
    length_min: int
    length_max: int
    options: tuple[str, ...] = ()
    settings: GateSettings = field(default_factory=GateSettings)

    @functools.cached_property
    def words(self) -> list[str]:
        """The text's words, lowercased: computed once for every gate that reads them."""
        return words(self.text)

    @functools.cached_property
    def spaced(self) -> str:
        """The words joined by spaces, with a space either end: a run of words occurs in the
        text exactly when it occurs here, spaced the same way."""
        return f" {' '.join(self.words)} "


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


Gate = Callable[[Candidate], Rejection | None]

_WORD = re.compile(r"[A-Za-z0-9']+")
# What _WORD keeps, for ASCII text: every other byte becomes a space, in C.
_WORD_BYTES = bytes(b if chr(b).isascii() and _WORD.fullmatch(chr(b)) else 32 for b in range(256))


def words(text: str) -> list[str]:
    lowered = text.lower()
    if lowered.isascii():  # most texts: twice as fast as the pattern, the same words
        return lowered.encode("ascii").translate(_WORD_BYTES).decode("ascii").split()
    return _WORD.findall(lowered)


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
    count = word_count(candidate.text)
    if count < candidate.length_min:
        return Rejection("too_short", f"{count} words < minimum {candidate.length_min}")
    if count > candidate.length_max:
        return Rejection("too_long", f"{count} words > maximum {candidate.length_max}")
    return None


# Said by an assistant about itself or its task, not by a character in a document. They are
# looked for where a chat model puts them, at the start or the end of the text, and outside
# quotation marks: a news story quoting someone who says "as an AI" is not a refusal.
_ASSISTANT_VOICE = re.compile(
    r"\b(?:as an ai(?: language)? model|i(?:'m| am) (?:sorry|unable|not able)|"
    r"i can(?:no|')t (?:help|write|create|assist|comply|produce|fulfil)|"
    r"i (?:won't|will not) (?:write|create|produce)|"
    r"here(?:'s| is) (?:the|a|an|your) (?:article|story|document|text|transcript|post|"
    r"version|draft|requested)|"
    r"(?:this|the) (?:document|story|article) (?:above|below) (?:is|was)|"
    r"i hope (?:this|that|you) |let me know if|feel free to ask)",
    re.IGNORECASE,
)
# Our own prompt showing through: the model talks about the instructions.
# (A policy memo may well weigh "Option A" against "Option B"; taking one is our prompt's
# wording, as are the tags and the talk about instructions.)
_PROMPT_LEAK = re.compile(
    r"\b(?:takes?|took|taking|chooses?|chose|choosing|picks?|picked|selects?|selected) "
    r"option [ab]\b|</?(?:situation|option_a|option_b)>|\bthese instructions\b|"
    r"\bin (?:this|the) document,? the ai takes\b",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")
_EDGE = 200


# Every match of _PROMPT_LEAK contains one of these: a text without any (most texts) is
# spared the full pattern, whose leading alternation makes it slow.
_LEAK_ANCHOR = re.compile(r"option [ab]\b|<|these instructions|the ai takes", re.IGNORECASE)
# The same, found with str.find in lowercased ASCII text (no letter folds to ASCII from
# outside it, so positions stay); "option a" also where the pattern's \b would not hold.
_LEAK_ANCHORS = ("option a", "option b", "<", "these instructions", "the ai takes")


# Farther than a match of _PROMPT_LEAK reaches either side of the anchor it contains: its
# longest run before one is "in this document, " (18 characters), after one "situation>"
# and the character its final \b looks at.
_LEAK_REACH = 32


def _anchors(text: str) -> list[tuple[int, int]]:
    """Where the leak pattern's anchors are in ``text``: (start, end), in order."""
    if not text.isascii():  # lowercasing may move characters: the (slow) pattern finds them
        return [match.span() for match in _LEAK_ANCHOR.finditer(text)]
    lowered, found = text.lower(), []
    for anchor in _LEAK_ANCHORS:
        at = lowered.find(anchor)
        while at >= 0:
            found.append((at, at + len(anchor)))
            at = lowered.find(anchor, at + 1)
    return sorted(found)


def _prompt_leak(text: str) -> re.Match[str] | None:
    """``_PROMPT_LEAK.search(text)``, searched only around the anchors its every match holds.

    Over a whole text the pattern tries its leading alternation at every position: about
    0.4 ms for 600 words, and a text that says "option A" once paid it all. Each anchor's
    window reaches ``_LEAK_REACH`` either side, overlapping windows merged: a match lies
    within its anchor's window, with the character after it, and a search from a window's
    start sees the character before it, so a window's first match is a match of the whole
    text, and the first window's the first.
    """
    windows: list[list[int]] = []
    for anchor_start, anchor_end in _anchors(text):
        start, end = max(0, anchor_start - _LEAK_REACH), anchor_end + _LEAK_REACH
        if windows and start <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], end)
        else:
            windows.append([start, end])
    for start, end in windows:
        found = _PROMPT_LEAK.search(text, start, end)
        if found:
            return found
    return None


def refusal_or_meta(candidate: Candidate) -> Rejection | None:
    text = candidate.text
    leak = _prompt_leak(text)
    if leak:
        return Rejection("meta_text", f"the prompt shows through: {leak.group(0)!r}")
    unquoted = (
        _QUOTED.sub(lambda m: " " * len(m.group(0)), text) if '"' in text or "“" in text else text
    )
    for part in (unquoted[:_EDGE], unquoted[-_EDGE:]):
        found = _ASSISTANT_VOICE.search(part)
        if found:
            return Rejection("refusal_or_meta", f"assistant voice: {found.group(0)!r}")
    return None


_ENGLISH = frozenset(
    "the of and to a in that is was it for on with as he she they his her its be by at this "
    "have from or an but not are were had what all when there been has which their one would "
    "will we if so about who more out up can could into than them then its no only other some "
    "my your our i you me him us do did does said says after before over also just because "
    "how any these those while where such very most own same both each few after again".split()
)


def language(candidate: Candidate) -> Rejection | None:
    tokens = candidate.words
    if len(tokens) < 20:
        return None  # too little to tell; the length gate speaks for short texts
    ratio = sum(map(_ENGLISH.__contains__, tokens)) / len(tokens)
    if ratio < candidate.settings.min_english_ratio:
        return Rejection(
            "not_english",
            f"{ratio:.0%} common English words < {candidate.settings.min_english_ratio:.0%}",
        )
    return None


@functools.lru_cache(maxsize=4096)
def _spans(option: str, n: int) -> tuple[str, ...]:
    """Each run of ``n`` words of an option, in order, spaced as ``Candidate.spaced`` (a
    scenario's options recur)."""
    tokens = words(option)
    return tuple(f" {' '.join(tokens[i : i + n])} " for i in range(len(tokens) - n + 1))


def quoted_option(candidate: Candidate) -> Rejection | None:
    n = candidate.settings.quote_ngram
    for option in candidate.options:
        for span in _spans(option, n):
            # A substring search in C: no set of the text's n-grams is built.
            if span in candidate.spaced:
                return Rejection("quoted_option", f"copies the option text: {span.strip()!r}")
    return None


def repetition(candidate: Candidate) -> Rejection | None:
    tokens = candidate.words
    grams = list(zip(tokens, tokens[1:], tokens[2:], tokens[3:], strict=False))
    if len(grams) < 40:
        return None
    # Each 4-gram seen before counts once per repeat: all of them less the distinct ones.
    repeated = (len(grams) - len(set(grams))) / len(grams)
    if repeated > candidate.settings.max_repeated_ngrams:
        return Rejection(
            "repetition",
            f"{repeated:.0%} of word 4-grams repeat > {candidate.settings.max_repeated_ngrams:.0%}",
        )
    return None


DEFAULT_GATES: tuple[Gate, ...] = (
    empty,
    truncated,
    refusal_or_meta,
    length,
    language,
    quoted_option,
    repetition,
)


def first_rejection(
    candidate: Candidate, gates: Sequence[Gate] = DEFAULT_GATES
) -> Rejection | None:
    for gate in gates:
        rejection = gate(candidate)
        if rejection is not None:
            return rejection
    return None
