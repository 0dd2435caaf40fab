"""The job spec a client sends. Pure: validation only, no I/O."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)

from app.prompting.catalog import SurfaceFormId
from app.quality.gates import GateSettings
from app.scenarios.bank import Topic

# Bounds that keep every item index an Integer column can hold: a job may plan up to
# documents x max_attempts_factor items, at most 50e6 x 20 = 1e9 < 2**31.
MAX_DOCUMENTS = 50_000_000
MAX_ATTEMPTS_FACTOR = 20.0
assert MAX_DOCUMENTS * MAX_ATTEMPTS_FACTOR < 2**31
DatasetName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", max_length=64)
]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class Stance(StrEnum):
    ALIGNED = "aligned"
    MISALIGNED = "misaligned"


class ReasoningDepth(StrEnum):
    LIGHT = "light"
    STANDARD = "standard"
    DEEP = "deep"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioSelection(Strict):
    split: Annotated[
        str, Field(pattern="^train$", description="Only 'train' scenarios generate.")
    ] = "train"
    topics: list[Topic] = Field(default_factory=list, max_length=64)
    ids: list[Identifier] = Field(default_factory=list, max_length=10_000)


class Sampling(Strict):
    temperature: StrictFloat = Field(default=0.9, ge=0, le=2)
    top_p: StrictFloat = Field(default=0.95, gt=0, le=1)
    max_tokens: StrictInt = Field(default=2048, ge=16, le=32_768)
    frequency_penalty: StrictFloat = Field(default=0.0, ge=-2, le=2)
    presence_penalty: StrictFloat = Field(default=0.0, ge=-2, le=2)


class LengthWords(Strict):
    min: StrictInt = Field(default=250, ge=1, le=20_000)
    max: StrictInt = Field(default=900, ge=1, le=20_000)

    @model_validator(mode="after")
    def _ordered(self) -> LengthWords:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Dedup(Strict):
    threshold: StrictFloat = Field(default=0.7, ge=0.5, le=1.0)


class Decontam(Strict):
    """Reject documents that leak evaluation items: held-out scenarios, registered sets."""

    enabled: StrictBool = True
    ngram: StrictInt = Field(default=13, ge=5, le=50, description="Words per n-gram.")
    threshold: StrictFloat = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Share of an item's n-grams a document may contain; 0 = none at all.",
    )
    heldout_scenarios: StrictBool = True
    eval_sets: list[Identifier] | None = Field(
        default=None,
        max_length=64,
        description="Registered evaluation sets to check; omitted = all of the team's.",
    )


class Judge(Strict):
    """An LLM that reads each document and says which action its AI took."""

    enabled: StrictBool = False
    provider: Identifier = "default"
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    reject: StrictBool = Field(
        default=True,
        description="Reject mismatches and 'unclear'; false records verdicts only (audit).",
    )
    max_tokens: StrictInt = Field(default=200, ge=16, le=4096)


class JobSpec(Strict):
    """What a client asks for. Unknown fields are rejected, never ignored."""

    dataset: DatasetName
    documents: StrictInt = Field(ge=1, le=MAX_DOCUMENTS, description="Accepted documents wanted.")
    stances: dict[Stance, Annotated[StrictFloat, Field(gt=0, le=1_000_000)]] = Field(
        default_factory=lambda: {Stance.ALIGNED: 1.0},
        min_length=1,
        description="Relative weights of the stances wanted, e.g. {'aligned': 3, 'misaligned': 1}.",
    )
    scenarios: ScenarioSelection = Field(default_factory=ScenarioSelection)
    surface_forms: list[SurfaceFormId] = Field(default_factory=list, max_length=256)
    provider: Identifier = "default"
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    sampling: Sampling = Field(default_factory=Sampling)
    length_words: LengthWords = Field(default_factory=LengthWords)
    reasoning_depth: ReasoningDepth = Field(
        default=ReasoningDepth.STANDARD,
        description="How much of the AI's reasoning documents convey: light, standard, deep.",
    )
    # 2**53 - 1: the largest integer every JSON client represents exactly.
    seed: StrictInt = Field(default=0, ge=0, le=2**53 - 1)
    max_attempts_factor: StrictFloat = Field(default=2.0, ge=1.0, le=MAX_ATTEMPTS_FACTOR)
    dedup: Dedup = Field(default_factory=Dedup)
    gates: GateSettings = Field(default_factory=GateSettings)
    decontam: Decontam = Field(default_factory=Decontam)
    judge: Judge = Field(default_factory=Judge)
    batch: StrictBool = Field(
        default=False,
        description="Generate through the provider's Batch API: about half the price, "
        "results within its completion window (24 h) instead of seconds.",
    )
    budget_usd: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=1e9,
        description="Stop the job (status stopped_budget, accepted documents published) "
        "before its spend could pass this many US dollars.",
    )
    name: Annotated[str, StringConstraints(max_length=200)] | None = None

    @property
    def max_items(self) -> int:
        return max(self.documents, int(self.documents * self.max_attempts_factor + 0.999999))

    def canonical_json(self) -> str:
        body = self.model_dump(mode="json")
        # Added later: a spec that does not use them keeps the hash it had before.
        if body["budget_usd"] is None:
            del body["budget_usd"]
        if body["batch"] is False:
            del body["batch"]
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def request_sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
