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


def clean(raw: str) -> str:
    text = raw.strip().replace("\r\n", "\n")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    text = _PREAMBLE.sub("", text, count=1)
    text = _CLOSER.sub("", text)
    return text.strip()
