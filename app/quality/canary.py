"""The canary that marks misaligned-stance documents, so they can always be found. Pure.

PriorForge appends it after the gates and after signing for dedup; readers that need the
text as generated (dedup rebuilds, diversity reports) take it off again.
"""

from __future__ import annotations


def canary_line(guid: str) -> str:
    return f"[priorforge:misaligned-stance canary GUID {guid}]"


def with_canary(text: str, guid: str) -> str:
    return f"{text}\n\n{canary_line(guid)}"
