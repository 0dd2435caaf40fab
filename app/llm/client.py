"""Chat completions against any OpenAI-compatible endpoint, with our own retry policy.

The SDK's built-in retries are off so that every attempt is counted, ``Retry-After`` is
honoured, and only transient failures (429, 5xx, timeouts, connection errors) are retried; a
400 or 401 fails the item at once with the server's message. This is the only retry layer.

With a shared limiter (service mode, Redis), every attempt first takes a slot: the provider's
requests and tokens per minute and the adaptive concurrency hold across all workers. A 429
blocks every worker until its ``Retry-After`` through the limiter instead of each sleeping on
its own; a wait longer than ``max_wait_seconds`` ends the call as ``deferred`` (the item goes
back to its job until then) rather than keeping a worker idle with the item in hand.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openai
from openai import AsyncOpenAI

from app.jobs.spec import Sampling
from app.llm.limits import Limits, SharedLimiter, Slot, WaitTooLong, limiter_key
from app.llm.provider import ProviderConfig


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    calls: int
    errors: int
    latency_ms: int


class CompletionFailed(Exception):
    def __init__(
        self,
        reason: str,
        detail: str,
        calls: int,
        errors: int,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.calls = calls
        self.errors = errors
        self.status = status  # the HTTP status of a rejection, when there was one
        self.retry_after = retry_after  # for "deferred": when to try the item again

    @property
    def deferred(self) -> bool:
        return self.reason == DEFERRED

    @property
    def misconfigured(self) -> bool:
        """Refused for who or what was asked (key, permission, model), not for this prompt."""
        return self.status in (401, 403, 404)


log = logging.getLogger(__name__)
DEFERRED = "deferred"


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    """What a call may use before its usage is known: about 4 characters a prompt token,
    plus every completion token it may write."""
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 8 + max_tokens


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _transient(exc: Exception) -> tuple[str, float | None] | None:
    """(reason, server-requested delay) for retryable errors, None for permanent ones."""
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", retry_after_seconds(exc.response.headers)
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None
    if isinstance(exc, openai.APIResponseValidationError):
        return "malformed_response", None
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error", None
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return f"http_{exc.status_code}", retry_after_seconds(exc.response.headers)
    return None


class ChatClient:
    """One per event loop; ``async with ChatClient(cfg) as client``."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._client = AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key,
            timeout=config.timeout_seconds,
            max_retries=0,
        )
        self._redis: Any = None
        self.limiter: SharedLimiter | None = None
        if config.limiter_url and (config.rpm or config.tpm):
            from redis import asyncio as aioredis

            self._redis = aioredis.from_url(config.limiter_url)
            limits = Limits(
                rpm=config.rpm,
                tpm=config.tpm,
                max_concurrency=config.shared_concurrency,
                # A call holds its slot at most as long as it may run: a killed worker's
                # slots free themselves then.
                slot_seconds=config.timeout_seconds + 30,
            )
            key = limiter_key(config.name, config.model, config.api_key)
            self.limiter = SharedLimiter(self._redis, key, limits)

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def complete_sampled(
        self, messages: list[dict[str, str]], *, model: str, sampling: Sampling, seed: int
    ) -> Completion | CompletionFailed:
        """``complete`` with a job's sampling settings; a failure is returned, not raised."""
        try:
            return await self.complete(
                messages,
                model=model,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=seed,
                frequency_penalty=sampling.frequency_penalty,
                presence_penalty=sampling.presence_penalty,
            )
        except CompletionFailed as failure:
            return failure

    def _backoff(self, attempt: int, requested: float | None) -> float:
        cap = self.config.backoff_max_seconds
        if requested is not None:
            return min(requested, cap)
        delay: float = min(cap, self.config.backoff_base_seconds * 2.0**attempt)
        return delay * random.uniform(0.5, 1.0)

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        model: str,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        errors = 0
        extra: dict[str, Any] = {}
        if response_format is not None:
            extra["response_format"] = response_format
        last = "unknown error"
        started = time.perf_counter()
        estimate = estimate_tokens(messages, max_tokens)
        for attempt in range(self.config.max_retries + 1):
            slot = await self._slot(estimate, attempt, errors)
            try:
                raw = await self._client.chat.completions.with_raw_response.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    seed=seed,
                    frequency_penalty=frequency_penalty,
                    presence_penalty=presence_penalty,
                    **extra,
                )
                response = _parse(raw)
            except BaseException as exc:
                # Whatever ended the call (an API error, a cancel, a bug) frees its slot now,
                # not when the slot's lease runs out.
                if slot is not None:
                    await self._release(slot, ok=False)
                if not isinstance(exc, openai.APIError):
                    raise
                errors += 1
                transient = _transient(exc)
                last = f"{type(exc).__name__}: {_message(exc)}"
                if transient is None:
                    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
                    raise CompletionFailed(
                        "llm_rejected", last, attempt + 1, errors, status
                    ) from exc
                if self.limiter is not None and isinstance(exc, openai.RateLimitError):
                    # Every worker waits this out in the limiter; the next slot comes after.
                    await self.limiter.rate_limited(transient[1])
                    continue
                await asyncio.sleep(self._backoff(attempt, transient[1]))
                continue
            if slot is not None:
                usage = response.usage
                await self._release(slot, ok=True, used=usage.total_tokens if usage else None)
                await self._observe(raw.headers)
            return _to_completion(response, model, attempt + 1, errors, started)
        raise CompletionFailed(
            "llm_unavailable",
            f"gave up after {self.config.max_retries + 1} attempts; last: {last}",
            self.config.max_retries + 1,
            errors,
        )

    async def _release(self, slot: Slot, *, ok: bool, used: int | None = None) -> None:
        """Give the slot back; a limiter that cannot be reached must not lose the call's
        result (its slot then lapses on its own)."""
        assert self.limiter is not None
        try:
            await self.limiter.release(slot, ok=ok, used_tokens=used)
        except Exception:
            log.warning("could not give a rate-limiter slot back", exc_info=True)

    async def _observe(self, headers: Any) -> None:
        assert self.limiter is not None
        try:
            await self.limiter.observe_headers(headers)
        except Exception:
            log.warning("could not pass the provider's rate-limit headers on", exc_info=True)

    async def _slot(self, estimate: int, attempt: int, errors: int) -> Slot | None:
        """The limiter's slot for one attempt (None without a limiter)."""
        if self.limiter is None:
            return None
        try:
            return await self.limiter.acquire(estimate, max_wait=self.config.max_wait_seconds)
        except WaitTooLong as wait:
            raise CompletionFailed(
                DEFERRED, str(wait), attempt, errors, retry_after=wait.seconds
            ) from None


def _parse(raw: Any) -> Any:
    """The reply as a chat completion; one that is not (broken JSON, a wrong shape) is an
    API error like any other, retried, never an exception that takes the chunk down."""
    try:
        return raw.parse()
    except ValueError as exc:  # json.JSONDecodeError, pydantic.ValidationError
        raise openai.APIResponseValidationError(
            raw.http_response, None, message=f"the reply is not a chat completion: {exc}"
        ) from exc


def _message(exc: openai.APIError) -> str:
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:500]
    return str(exc)[:500]


def completion_from_body(response: Any, model: str) -> Completion:
    """A chat completion that came back some other way (a batch's output file)."""
    return _to_completion(response, model, 1, 0, time.perf_counter())


def _to_completion(
    response: Any, model: str, calls: int, errors: int, started: float
) -> Completion:
    choice = response.choices[0] if response.choices else None
    usage = response.usage
    return Completion(
        text=(choice.message.content or "") if choice else "",
        finish_reason=choice.finish_reason if choice else None,
        model=response.model or model,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        calls=calls,
        errors=errors,
        latency_ms=int((time.perf_counter() - started) * 1000),
    )
