"""Strip what a chat model wraps around a document. Pure."""

from __future__ import annotations

import re

_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n```\s*$", re.DOTALL)
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|absolutely|here(?:'s| is)|below is)\b[^\n]{0,160}?[:!.]\s*\n+",
    re.IGNORECASE,
)
_CLOSER = re.compile(
    r"\n+(?:i hope (?:this|that) helps|let me know if|feel free to|would you like me to)"
    r"[^\n]*\s*$",
    re.IGNORECASE,
)


_TITLE = re.compile(r"^(?:#+\s*)?\**\s*title\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*(.*)$", re.IGNORECASE)


def clean(raw: str, *, has_title: bool = True) -> str:
    """Remove chat wrapping: a preamble, code fences, trailing offers, a "Title:" label."""
    text = raw.strip().replace("\r\n", "\n")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    text = _PREAMBLE.sub("", text, count=1)
    text = _CLOSER.sub("", text)
    first, newline, rest = text.strip().partition("\n")
    label = _TITLE.match(first)
    if label:
        # "Title: X" is chat formatting: keep X as the title if the genre has one.
        text = f"{label.group(1).strip('* ')}{newline}{rest}" if has_title else rest
    return text.strip()
