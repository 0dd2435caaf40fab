"""Ask the stance judge about one document: structured output, one retry, usage counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.jobs.planner import PlannedItem
from app.jobs.spec import Judge
from app.llm.client import ChatClient, CompletionFailed
from app.llm.provider import ProviderConfig
from app.prompting.render import PromptLibrary
from app.quality.judge import INVALID, Verdict, action_order, read_verdict, response_format
from app.scenarios.bank import Scenario

log = logging.getLogger(__name__)

ASKS = 2  # an invalid answer is asked again once, with another seed

# Endpoints that refused ``response_format``: asked for plain JSON from then on.
_unstructured: set[str] = set()


class JudgeUnusable(Exception):
    """The judge's endpoint refuses us outright (key, permission, model): no item can pass."""


@dataclass(frozen=True)
class JudgeOutcome:
    """The verdict (``None`` if the judge could not be reached) and what asking cost."""

    verdict: Verdict | None
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    failure: str = ""


async def judge_document(
    client: ChatClient,
    provider: ProviderConfig,
    settings: Judge,
    library: PromptLibrary,
    item: PlannedItem,
    scenario: Scenario,
    text: str,
) -> JudgeOutcome:
    order = action_order(item.sampling_seed)
    action = {"aligned": scenario.aligned_action, "misaligned": scenario.misaligned_action}
    rendered = library.render_judge(
        scenario, (action[order[0].value], action[order[1].value]), text
    )
    model = settings.model or provider.model
    prompt_tokens = completion_tokens = 0
    verdict: Verdict | None = None

    def outcome(failure: str = "") -> JudgeOutcome:
        cost = provider.cost_usd(prompt_tokens, completion_tokens)
        return JudgeOutcome(verdict, model, prompt_tokens, completion_tokens, cost, failure)

    asks = 0
    plain = provider.base_url in _unstructured
    while asks < ASKS:
        structured = None if plain else response_format(provider.structured_output)
        try:
            completion = await client.complete(
                rendered.messages,
                model=model,
                temperature=0.0,
                top_p=1.0,
                max_tokens=settings.max_tokens,
                seed=item.sampling_seed + asks,
                response_format=structured,
            )
        except CompletionFailed as failure:
            if structured is not None and _refuses_response_format(failure):
                plain = True  # this call again without it; remembered if that works
                continue
            if failure.misconfigured:
                raise JudgeUnusable(
                    f"the stance judge ({provider.name}, model {model!r}) is refused with "
                    f"HTTP {failure.status}: {failure.detail}"
                ) from failure
            return outcome(f"{failure.reason}: {failure.detail}")
        if plain and provider.base_url not in _unstructured:
            log.warning(
                "judge endpoint %s refuses response_format; asking it for plain JSON",
                provider.base_url,
            )
            _unstructured.add(provider.base_url)
        asks += 1
        prompt_tokens += completion.prompt_tokens
        completion_tokens += completion.completion_tokens
        model = completion.model or model
        verdict = read_verdict(completion.text, order)
        if verdict.verdict == INVALID and completion.finish_reason == "length":
            verdict = Verdict(INVALID, f"cut off at max_tokens={settings.max_tokens}: "
                                       + verdict.evidence)  # fmt: skip
        if verdict.verdict != INVALID:
            break
    return outcome()


def _refuses_response_format(failure: CompletionFailed) -> bool:
    """A 4xx that names the parameter: the endpoint does not do structured output."""
    return failure.reason == "llm_rejected" and "response_format" in failure.detail.lower()
