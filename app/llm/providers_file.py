"""The providers file: named LLM providers, their limits and their prices (TOML).

    prices_version = "2026-12-01"          # names the price table every call's cost uses

    [providers.openai]
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"         # the key comes from this variable, never the file
    default_model = "gpt-4o-mini"
    rpm = 500                              # shared by every worker (0: none)
    tpm = 200000
    concurrency = 16                       # calls in flight per worker
    batch = true                           # speaks the Batch API (/v1/files, /v1/batches)

    [providers.openai.models."gpt-4o-mini"]
    prompt_per_mtok = 0.15                 # USD per million tokens
    completion_per_mtok = 0.60
    batch_discount = 0.5                   # batch calls cost this share (the default)

A job names a provider and may name a model; a model the provider does not price is refused
(never priced at $0 without saying so). The file is checked when ``serve`` and ``worker``
start: a bad file, or a key variable that is not set, stops them with the fix.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from app.core.errors import ConfigurationError

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_per_mtok: float = Field(ge=0)
    completion_per_mtok: float = Field(ge=0)
    batch_discount: float = Field(default=0.5, gt=0, le=1, description="Batch API price share.")


class NamedProvider(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    default_model: str = Field(min_length=1, max_length=200)
    rpm: int = Field(default=0, ge=0)
    tpm: int = Field(default=0, ge=0)
    concurrency: int = Field(default=16, ge=1, le=1024)
    timeout_seconds: float = Field(default=120.0, gt=0)
    structured_output: str = Field(
        default="json_schema", pattern="^(json_schema|json_object|none)$"
    )
    models: dict[str, ModelPrice] = Field(min_length=1)
    batch: bool = Field(default=False, description="Speaks the OpenAI Batch API.")


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prices_version: str = Field(min_length=1, max_length=64)
    providers: dict[Name, NamedProvider] = Field(min_length=1)


def load_providers(path: Path, environ: Mapping[str, str]) -> ProvidersFile:
    """Parse and check the file; raise ConfigurationError naming every problem and its fix."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"PRIORFORGE_PROVIDERS_FILE {path}: {exc.strerror or exc}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"PRIORFORGE_PROVIDERS_FILE {path}: not TOML ({exc})") from None
    try:
        parsed = ProvidersFile.model_validate(raw)
    except ValidationError as exc:
        listed = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise ConfigurationError(f"PRIORFORGE_PROVIDERS_FILE {path}: {listed}") from None
    problems = []
    for name, provider in parsed.providers.items():
        if name == "default":
            problems.append(
                "providers.default: 'default' is the PRIORFORGE_LLM_* provider; name it otherwise"
            )
        if provider.default_model not in provider.models:
            problems.append(
                f"providers.{name}: default_model {provider.default_model!r} has no price; add "
                f'[providers.{name}.models."{provider.default_model}"]'
            )
        if provider.api_key_env and not environ.get(provider.api_key_env):
            problems.append(f"providers.{name}: set {provider.api_key_env} (its API key)")
    if problems:
        raise ConfigurationError(f"PRIORFORGE_PROVIDERS_FILE {path}: " + "; ".join(problems))
    return parsed
