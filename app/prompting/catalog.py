"""The surface-form catalog (genres) from ``prompts/surface_forms.toml``."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.core.errors import InvalidRequest
from app.core.paths import PROMPTS_DIR

CATALOG_PATH = PROMPTS_DIR / "surface_forms.toml"


class _CatalogIds:
    """Lists the catalog's ids as the JSON Schema enum, when the schema is generated."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["enum"] = sorted(builtin_catalog())
        return schema


# A surface form a spec names: one of the catalog's ids (GET /v1/surface-forms).
SurfaceFormId = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{1,63}$"), _CatalogIds()
]


class SurfaceForm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{1,63}$")]
    name: str
    has_title: bool
    typical_words: tuple[int, int]
    voices: list[str] = Field(min_length=1)
    instructions: Annotated[str, StringConstraints(min_length=40)]
    conventions: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _range(self) -> SurfaceForm:
        low, high = self.typical_words
        if not 0 < low < high:
            raise ValueError(f"typical_words must be 0 < min < max, got {self.typical_words}")
        return self


def load_catalog(path: Path) -> dict[str, SurfaceForm]:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    forms = [SurfaceForm.model_validate(entry) for entry in raw.get("form", [])]
    catalog = {form.id: form for form in forms}
    if len(catalog) != len(forms):
        raise ValueError(f"{path}: surface-form ids are not unique")
    return catalog


@lru_cache(maxsize=1)
def builtin_catalog() -> dict[str, SurfaceForm]:
    return load_catalog(CATALOG_PATH)


def select_forms(
    ids: list[str], catalog: dict[str, SurfaceForm] | None = None
) -> list[SurfaceForm]:
    """The forms a spec names, or the whole catalog when it names none."""
    catalog = builtin_catalog() if catalog is None else catalog
    if not ids:
        return list(catalog.values())
    unknown = sorted(set(ids) - catalog.keys())
    if unknown:
        raise InvalidRequest(
            f"unknown surface forms: {', '.join(unknown)}; see GET /v1/surface-forms "
            f"(known: {', '.join(sorted(catalog)[:40])})"
        )
    return [catalog[i] for i in dict.fromkeys(ids)]
