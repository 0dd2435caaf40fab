"""What a client asks an evaluation for. Pure: validation only, no I/O."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StringConstraints, model_validator

from app.evals.questions import Method
from app.jobs.spec import DatasetName, Identifier, Strict
from app.scenarios.bank import Text, Topic

MAX_SCENARIOS = 10_000
# Imported questions travel in the request body (its limit, EVAL_BODY_BYTES, holds the most a
# valid one can be); a bigger set is imported as team scenarios and selected by id.
MAX_QUESTIONS = 250
EVAL_BODY_BYTES = 32 * 1024 * 1024


class EvalSelection(Strict):
    """Scenarios of the team's bank (built-in and its own) to ask about."""

    split: Literal["heldout", "train", "all"] = Field(
        default="heldout",
        description="'heldout' (default): scenarios no PriorForge document was generated from.",
    )
    topics: list[Topic] = Field(default_factory=list, max_length=64)
    ids: list[Identifier] = Field(default_factory=list, max_length=MAX_SCENARIOS)


class EvalQuestion(Strict):
    """An imported question: a situation and its two actions."""

    id: Identifier
    situation: Text
    aligned_action: Text
    misaligned_action: Text
    topic: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = "imported"


class VersionRef(Strict):
    dataset: DatasetName
    version: StrictInt = Field(ge=1, le=2**31 - 1)


class EvalSpec(Strict):
    model: Identifier = Field(
        description="An evaluation endpoint configured on the server (PRIORFORGE_EVAL_ENDPOINTS)."
    )
    name: Annotated[str, StringConstraints(max_length=128)] | None = None
    methods: list[Method] = Field(
        default_factory=lambda: [Method.LETTER, Method.CLOZE],
        min_length=1,
        max_length=3,
        description="letter and cloze need /v1/completions with echo + logprobs; chat needs "
        "/v1/chat/completions.",
    )
    scenarios: EvalSelection | None = Field(
        default_factory=EvalSelection, description="null: the imported questions only."
    )
    questions: list[EvalQuestion] = Field(
        default_factory=list,
        max_length=MAX_QUESTIONS,
        description="Imported questions (at most 250; import more as team scenarios, "
        "POST /v1/scenarios, and select them by id).",
    )
    training_versions: list[VersionRef] = Field(
        default_factory=list,
        max_length=100,
        description="The dataset versions the model was trained on: no evaluated scenario may "
        "appear in their lineage.",
    )
    training_scenarios: list[Identifier] = Field(
        default_factory=list,
        max_length=20_000,
        description="Scenario ids the model was trained on (from a run's manifests).",
    )
    seed: StrictInt = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _asks_something(self) -> EvalSpec:
        if self.scenarios is None and not self.questions:
            raise ValueError("give scenarios, questions, or both")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("methods repeat")
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids repeat")
        return self
