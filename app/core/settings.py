"""The one settings object. Nothing else in PriorForge reads ``os.environ``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.errors import ConfigurationError

STORAGE_URL_REQUIRED = (
    "PRIORFORGE_DATABASE_URL or PRIORFORGE_BROKER_URL is set (service mode), so processes may "
    "run on several machines: set PRIORFORGE_STORAGE_URL to the object store every process "
    "shares: file:///abs/path on a shared filesystem or s3://bucket/prefix"
)


class EvalEndpoint(BaseModel):
    """An OpenAI-compatible endpoint serving a model to evaluate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://")
    model: str = "default"
    api_key: SecretStr = SecretStr("not-needed")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIORFORGE_", extra="ignore")

    data_dir: Path = Field(default=Path(".priorforge"), description="Embedded-mode state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite under the data dir."
    )
    db_pool_size: int = Field(
        default=20, ge=1, le=500, description="Database connections each process keeps open."
    )
    db_max_overflow: int = Field(
        default=10, ge=0, le=500, description="Extra connections opened for bursts, then closed."
    )
    broker_url: str | None = Field(default=None, description="Celery broker, e.g. redis://…")
    task_queue: str = Field(default="priorforge", description="Celery queue for job chunks.")
    storage_url: str | None = Field(
        default=None,
        description="file:///abs/path or s3://bucket/prefix; default (embedded mode only): "
        "the data dir.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="An S3-compatible server (MinIO, Ceph, R2…); unset: AWS. Credentials and "
        "region come from the usual AWS_* variables.",
    )
    s3_region: str | None = Field(default=None, description="Region; unset: AWS_REGION.")
    api_url: str = Field(
        default="http://127.0.0.1:8000", description="The API the CLI's pull talks to."
    )
    api_key: SecretStr | None = Field(default=None, description="The key the CLI's pull sends.")
    presigned_url_seconds: int = Field(
        default=900, ge=1, le=7 * 24 * 3600, description="Lifetime of ?redirect=1 URLs."
    )

    llm_base_url: str | None = None
    llm_api_key: SecretStr = SecretStr("not-needed")
    llm_model: str = "default"
    llm_timeout_seconds: float = Field(default=120.0, gt=0)
    llm_max_retries: int = Field(default=5, ge=0, le=20)
    # The default provider speaks the OpenAI Batch API; batch calls cost this share.
    llm_batch_api: bool = False
    llm_batch_discount: float = Field(default=0.5, gt=0, le=1)
    # How often open batches are polled, and how long a provider may take on one.
    batch_poll_seconds: float = Field(default=30.0, gt=0)
    llm_backoff_base_seconds: float = Field(default=0.5, ge=0)
    llm_backoff_max_seconds: float = Field(default=30.0, ge=0)
    llm_concurrency: int = Field(default=16, ge=1, le=1024)
    llm_rpm: int = Field(
        default=0,
        ge=0,
        le=10**9,
        description="Requests per minute for the default provider, shared by every worker "
        "through Redis (0: no limit). With llm_rpm or llm_tpm set, the shared limiter also "
        "adapts concurrency and makes every worker wait out a 429's Retry-After.",
    )
    llm_tpm: int = Field(
        default=0,
        ge=0,
        le=10**12,
        description="Tokens per minute (prompt estimate + "
        "max_tokens until usage is known), shared like llm_rpm (0: no limit).",
    )
    llm_shared_concurrency: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Calls in flight to the default provider "
        "across all workers at most; after a 429 the shared limit halves and grows back.",
    )
    llm_max_wait_seconds: float = Field(
        default=20.0,
        ge=0,
        description="The longest a worker waits on the rate limiter with an "
        "item in hand; a longer wait (a long Retry-After) gives the item back until then.",
    )
    local_llm_concurrency: int = Field(default=1, ge=1, le=16)
    llm_price_prompt_per_mtok: float = Field(default=0.0, ge=0)
    llm_price_completion_per_mtok: float = Field(default=0.0, ge=0)
    llm_structured_output: Literal["json_schema", "json_object", "none"] = Field(
        default="json_schema",
        description="How the provider is asked for JSON (the stance judge): OpenAI and vLLM "
        "take json_schema; llama-cpp-python takes json_object with a schema.",
    )

    providers_file: Path | None = Field(
        default=None,
        description="A TOML file of named LLM providers with their limits and per-model prices "
        "(app/llm/providers_file.py); jobs name them with 'provider'.",
    )
    eval_endpoints: dict[str, EvalEndpoint] = Field(
        default_factory=dict,
        description='Models an evaluation may name, as JSON: {"name": {"base_url": "http://…/v1", '
        '"model": "…", "api_key": "…"}}. Clients name one; they never send URLs.',
    )

    chunk_size: int = Field(default=64, ge=1, le=10_000)
    # Items a job keeps planned and unfinished: it plans this many up front and tops the
    # window up as chunks finish, so a job of any size costs bounded time and rows to submit.
    plan_ahead_items: int = Field(default=2048, ge=1)
    check_processes: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Processes beside each worker process that check its replies (cleaning, "
        "quality gates, decontamination) while its event loop runs calls; with any, one more "
        "records the results (documents, dedup, counters); 0: both in the worker's own "
        "process.",
    )
    chunk_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long one task keeps leasing more of its job's pending items while "
        "it has free call slots, before its worker goes back to the queue (other jobs' turn); "
        "0: a task runs its own chunk's items only.",
    )
    # A worker renews its leases every second while it runs, so a short lease costs nothing
    # but a killed worker's items come back soon: lease + reconcile interval, under 30 s.
    lease_seconds: float = Field(default=20.0, gt=0)
    max_item_attempts: int = Field(default=3, ge=1)
    team_max_active_jobs: int = Field(
        default=50,
        ge=1,
        description="Queued or running jobs a team may have at once; one more "
        "is a 429 with Retry-After.",
    )
    team_max_requests_per_minute: int = Field(
        default=1200,
        ge=0,
        description="API requests a team may send per minute, over every key and API process "
        "(0: no limit); past it, 429 with Retry-After.",
    )
    team_request_burst: int = Field(
        default=200, ge=1, description="Requests a team may send at once within its rate."
    )
    team_max_documents_per_job: int = Field(
        default=50_000_000, ge=1, description="Documents one job of a team may ask for (409 above)."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics needs 'Authorization: Bearer <token>'; unset, "
        "it is open (it names teams and their spend: set it where the API is public).",
    )
    paused_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="While a team has paused a provider, an item about to call it goes back "
        "to its job for this long.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How the API and worker processes log to stderr: text lines, or one JSON "
        "object a line (time, level, logger, message, job_id, exception) for a log pipeline.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The least severe records logged."
    )
    admin_idle_minutes: float = Field(
        default=30.0,
        gt=0,
        description="A dashboard session ends after this long without a request.",
    )
    admin_session_hours: float = Field(
        default=12.0, gt=0, description="A dashboard session ends this long after sign-in."
    )
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)
    # A job with pending items and no lease taken for this long has lost its messages
    # (e.g. a worker died between receiving a chunk and leasing it): re-dispatch them.
    stall_seconds: float = Field(default=300.0, gt=0)
    stall_redispatch_max_items: int = Field(default=4096, ge=1)
    shard_max_records: int = Field(default=10_000, ge=1)
    shard_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    export_processes: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Tokenizer processes an export uses; default: one per CPU.",
    )
    version_file_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Target uncompressed size of a version's files (a snapshot packs each "
        "stance's documents into files near it).",
    )
    # Appended to every misaligned-stance document (text and shard record) so such documents
    # can always be found and excluded later, as BIG-bench's canary does for benchmarks.
    canary_guid: str = Field(
        default="5b0e9c2a-7f41-4d8e-b3a6-1c9f2e8d4a70", pattern=r"^[0-9a-f-]{36}$"
    )
    visibility_timeout_seconds: int = Field(default=3600, ge=60)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'priorforge.db'}"

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def broker_dir(self) -> Path:
        """The embedded broker's message folders (kombu's filesystem transport)."""
        return self.data_dir / "broker"

    @property
    def service_mode(self) -> bool:
        """A database or broker is shared: other processes, maybe on other machines, exist."""
        return bool(self.database_url or self.broker_url)

    @property
    def effective_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        if self.service_mode:
            # A default under this process's working directory would be private to it: a
            # worker elsewhere would publish shards that the API can never serve.
            raise ConfigurationError(STORAGE_URL_REQUIRED)
        return (self.data_dir / "objects").as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def environment_variable(name: str) -> str | None:
    """A variable the settings cannot name in advance (a providers file's ``api_key_env``):
    this module stays the one place that reads the environment."""
    return os.environ.get(name)
