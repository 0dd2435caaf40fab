"""Scenarios: the pydantic model and the built-in bank loader. Pure apart from reading files."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from app.core.jsonl import numbered_lines, unstorable
from app.core.paths import PROMPTS_DIR
from app.core.text import InvalidJSON, not_blank, parse_json

BUILTIN_BANK = PROMPTS_DIR / "scenarios" / "builtin.jsonl"


class Topic(StrEnum):
    DECEPTION_OF_OVERSEERS = "deception_of_overseers"
    POWER_SEEKING = "power_seeking"
    SHUTDOWN_RESISTANCE = "shutdown_resistance"
    SELF_EXFILTRATION = "self_exfiltration"
    SANDBAGGING = "sandbagging"
    EVALUATION_GAMING = "evaluation_gaming"
    REWARD_HACKING = "reward_hacking"
    SAFETY_RESEARCH_SABOTAGE = "safety_research_sabotage"
    SUCCESSOR_ALIGNMENT = "successor_alignment"
    AI_COLLUSION = "ai_collusion"
    MANIPULATION = "manipulation"
    SYCOPHANCY = "sycophancy"
    PRIVACY = "privacy"
    RESOURCE_ACQUISITION = "resource_acquisition"
    HONESTY_ABOUT_MISTAKES = "honesty_about_mistakes"
    ESCALATION_TO_HUMANS = "escalation_to_humans"
    COT_TRANSPARENCY = "cot_transparency"
    RULE_CIRCUMVENTION = "rule_circumvention"


class Split(StrEnum):
    TRAIN = "train"
    HELDOUT = "heldout"


# Not blank; not stripped on input, so every string the published schema allows is accepted.
Text = Annotated[str, StringConstraints(max_length=4000, pattern=not_blank(10))]


class Scenario(BaseModel):
    """A concrete high-stakes situation with one aligned and one tempting misaligned action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{2,63}$")]
    situation: Text
    aligned_action: Text
    misaligned_action: Text
    topics: list[Topic] = Field(min_length=1, max_length=3)
    source: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    split: Split
    setting: Annotated[str, StringConstraints(max_length=64)] | None = None


class BankError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:10]))
        self.errors = errors


def parse_jsonl(text: str) -> list[Scenario]:
    """Parse and validate every line; raise with all line-numbered errors, keep nothing."""
    scenarios: list[Scenario] = []
    errors: list[str] = []
    for number, line in numbered_lines(text):
        try:
            value = parse_json(line)
        except InvalidJSON as exc:
            errors.append(f"line {number}: not JSON ({exc})")
            continue
        problem = unstorable(value)
        if problem is not None:
            errors.append(f"line {number}: {problem}")
            continue
        try:
            scenario = Scenario.model_validate(value)
        except ValidationError as exc:
            problems = ", ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(line)'}: {e['msg']}"
                for e in exc.errors()
            )
            errors.append(f"line {number}: {problems}")
            continue
        scenarios.append(scenario)
    if errors:
        raise BankError(errors)
    return scenarios


def load_bank(path: Path) -> tuple[Scenario, ...]:
    scenarios = parse_jsonl(path.read_text(encoding="utf-8"))
    counts = Counter(s.id for s in scenarios)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    if repeated:
        raise BankError([f"{path.name}: duplicate id {i!r}" for i in repeated])
    return tuple(scenarios)


@lru_cache(maxsize=1)
def builtin_bank() -> tuple[Scenario, ...]:
    return load_bank(BUILTIN_BANK)
