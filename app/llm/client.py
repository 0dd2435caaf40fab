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
import dataclasses
import email.utils
import importlib
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openai
import orjson
from openai import AsyncOpenAI

from app.jobs.spec import Sampling
from app.llm.limits import Limits, SharedLimiter, Slot, WaitTooLong, limiter_key
from app.llm.provider import ProviderConfig
from app.llm.stats import STATS

# The HTTP library the openai client is built on (httpx2 in current releases, httpx before).
# ``client.post(path, cast_to=<its Response>, content=<JSON bytes>)`` is the client's
# documented way to send a request as given: it skips the per-call transformation of typed
# parameters (a tenth of a worker's CPU at zero latency, bench/pipeline.py), and the body is
# encoded once per call, by orjson, instead of by the client's ``json`` encoder per attempt.
_HTTP_RESPONSE = importlib.import_module(
    openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0]
).Response


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
            # The client's aiohttp transport: the same requests and errors as its default
            # one, at about half the CPU a call (bench/pipeline.py), which at zero latency is
            # a worker's whole limit.
            http_client=openai.DefaultAioHttpClient(),
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
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
        }
        if seed is not None:
            body["seed"] = seed
        if response_format is not None:
            body["response_format"] = response_format
        content = orjson.dumps(body)
        last = "unknown error"
        started = time.perf_counter()
        estimate = estimate_tokens(messages, max_tokens)
        for attempt in range(self.config.max_retries + 1):
            slot = await self._slot(estimate, attempt, errors)
            try:
                with STATS.attempt(self.config.name) as counted:
                    try:
                        raw = await self._client.post(
                            "/chat/completions", cast_to=_HTTP_RESPONSE, content=content
                        )
                    except openai.RateLimitError:
                        counted["outcome"] = "rate_limited"
                        raise
                    reply = _reply(raw)
                    counted["outcome"] = "ok"
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
                used = reply.prompt_tokens + reply.completion_tokens
                await self._release(slot, ok=True, used=used or None)
                await self._observe(raw.headers)
            return dataclasses.replace(
                reply,
                model=reply.model or model,
                calls=attempt + 1,
                errors=errors,
                latency_ms=int((time.perf_counter() - started) * 1000),
            )
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


def _reply(raw: Any) -> Completion:
    """The reply as a completion; one that is not a chat completion (broken JSON, a wrong
    shape) is an API error like any other, retried, never an exception that takes the
    chunk down."""
    try:
        return completion_from_body(raw.json(), "")
    except ValueError as exc:  # json.JSONDecodeError too
        raise openai.APIResponseValidationError(
            raw, None, message=f"the reply is not a chat completion: {exc}"
        ) from exc


def _message(exc: openai.APIError) -> str:
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:500]
    return str(exc)[:500]


def completion_from_body(body: Any, model: str) -> Completion:
    """A chat completion's JSON (a reply, or a line of a batch's output file) as a
    completion of one call; ValueError if it is not one."""
    try:
        choices = body["choices"]
        choice = choices[0] if choices else {}
        message = choice.get("message") or {}
        usage = body.get("usage") or {}
        text = message.get("content") or ""
        finish, named = choice.get("finish_reason"), body.get("model") or model
        if not all(isinstance(v, str) for v in (text, named)) or not (
            finish is None or isinstance(finish, str)
        ):
            raise TypeError("content, model or finish_reason is not text")
        return Completion(
            text=text,
            finish_reason=finish,
            model=named,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            calls=1,
            errors=0,
            latency_ms=0,
        )
    except (KeyError, IndexError, TypeError, AttributeError, OverflowError) as exc:
        raise ValueError(f"not a chat completion ({type(exc).__name__}: {exc})") from None
