"""Field types for request schemas that accept exactly what their JSON Schema says. Pure.

Pydantic's lax mode would take ``true`` for a number, ``"3"`` for an integer and ``1`` for a
boolean; the published schema says none of these is valid, so neither may the server. An
integer field does take ``3.0``, which JSON Schema counts as the integer 3.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Strict, StrictBool, StrictFloat

__all__ = ["Integer", "StrictBool", "StrictFloat"]


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_integral), Strict()]
