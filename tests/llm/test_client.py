from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.llm.client import ChatClient, CompletionFailed, retry_after_seconds
from app.llm.provider import ProviderConfig
from tests.llm_server import LLMTestServer


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "3"}) == 3
    assert retry_after_seconds({"retry-after": "Thu, 01 Jan 2026 00:00:05 GMT"}, now) == 5
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def config(base_url: str, **overrides: object) -> ProviderConfig:
    values: dict[str, object] = {
        "name": "default",
        "base_url": base_url,
        "api_key": "k",
        "model": "m",
        "timeout_seconds": 5.0,
        "max_retries": 2,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.1,
        "concurrency": 4,
        "price_prompt_per_mtok": 1.0,
        "price_completion_per_mtok": 2.0,
    }
    return ProviderConfig(**(values | overrides))  # type: ignore[arg-type]


def complete(cfg: ProviderConfig) -> object:
    async def go() -> object:
        async with ChatClient(cfg) as client:
            return await client.complete(
                [{"role": "user", "content": "write about 20 words"}],
                model="m",
                temperature=0.5,
                top_p=1.0,
                max_tokens=200,
                seed=1,
            )

    return asyncio.run(go())


def test_a_call_sends_its_parameters_as_a_json_body(llm: LLMTestServer) -> None:
    # The body goes out as bytes we encode: what the server decodes must be the request,
    # every parameter with its value, declared as JSON (the test server answers 415 to a
    # chat request of another content type, as real servers do).
    completion = complete(config(llm.base_url))
    assert not isinstance(completion, CompletionFailed)
    assert llm.state.recent[-1] == {
        "model": "m",
        "messages": [{"role": "user", "content": "write about 20 words"}],
        "temperature": 0.5,
        "top_p": 1.0,
        "max_tokens": 200,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "seed": 1,
    }


def test_permanent_errors_are_not_retried(llm: LLMTestServer) -> None:
    with pytest.raises(CompletionFailed) as failed:
        complete(config(llm.base_url.replace("/v1", "/nowhere")))
    assert failed.value.reason == "llm_rejected"
    assert failed.value.calls == 1


def test_unreachable_endpoint_fails_after_retries() -> None:
    with pytest.raises(CompletionFailed) as failed:
        complete(config("http://127.0.0.1:9/v1", max_retries=1))
    assert failed.value.reason == "llm_unavailable"
    assert failed.value.errors == 2


def test_cost_is_priced_per_million_tokens() -> None:
    assert config("x").cost_usd(1_000_000, 500_000) == pytest.approx(2.0)


def test_a_cancelled_call_gives_its_limiter_slot_back(llm: LLMTestServer) -> None:
    import uuid

    from tests.llm_server import FaultConfig
    from tests.services import REDIS_URL

    llm.reset(FaultConfig(latency=5.0))
    cfg = config(llm.base_url, rpm=6000, limiter_url=REDIS_URL, api_key=f"k-{uuid.uuid4().hex}")

    async def go() -> float:
        async with ChatClient(cfg) as client:
            assert client.limiter is not None
            call = asyncio.create_task(
                client.complete(
                    [{"role": "user", "content": "write about 20 words"}],
                    model="m",
                    temperature=0.5,
                    top_p=1.0,
                    max_tokens=64,
                )
            )
            while (await client.limiter.state())["inflight"] == 0:
                await asyncio.sleep(0.02)
            call.cancel()  # a job cancelled mid-call, say
            with pytest.raises(asyncio.CancelledError):
                await call
            return (await client.limiter.state())["inflight"]

    assert asyncio.run(go()) == 0


@pytest.mark.parametrize("fault", ["malformed", "cut", "hang"])
def test_a_broken_reply_is_retried_as_an_error_of_the_call(llm: LLMTestServer, fault: str) -> None:
    """A 200 whose body is not JSON, a body cut short, a socket that never answers: each is
    one failed attempt, retried, never an exception that takes the whole chunk down."""
    llm.faults.hang_seconds = 3
    llm.faults.script.extend([fault, fault])
    result = complete(config(llm.base_url, timeout_seconds=0.5, max_retries=2))
    assert not isinstance(result, CompletionFailed)
    assert (result.calls, result.errors) == (3, 2)  # type: ignore[attr-defined]
    llm.faults.script.extend([fault] * 3)
    with pytest.raises(CompletionFailed) as failed:
        complete(config(llm.base_url, timeout_seconds=0.5, max_retries=2))
    last = {
        "malformed": "APIResponseValidationError: the reply is not a chat completion",
        "cut": "APIConnectionError",
        "hang": "APITimeoutError",
    }
    assert failed.value.reason == "llm_unavailable"
    assert last[fault] in failed.value.detail
