"""Everything a worker needs to turn a job's work items into documents."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.evalsets.service import contamination_index, selected_sets
from app.jobs.planner import PlannedItem, plan_items
from app.jobs.spec import JobSpec
from app.llm.provider import ProviderConfig, resolve_provider
from app.models import Job
from app.prompting.catalog import SurfaceForm, select_forms
from app.prompting.render import PromptLibrary, RenderedPrompt, prompt_library
from app.quality.decontam import ContaminationIndex
from app.scenarios.bank import Scenario
from app.scenarios.selection import select_scenarios
from app.scenarios.service import team_bank

NIL = uuid.UUID(int=0)


@dataclass(frozen=True)
class JobContext:
    job_id: uuid.UUID
    team_id: uuid.UUID
    dataset_id: uuid.UUID
    spec: JobSpec
    scenarios: dict[str, Scenario]
    forms: dict[str, SurfaceForm]
    library: PromptLibrary
    # What documents must not leak; built only where documents are checked (a worker).
    contamination: ContaminationIndex | None = None

    @classmethod
    def for_job(cls, job: Job, session: Session, *, decontaminate: bool = False) -> JobContext:
        return cls.for_spec(
            JobSpec.model_validate(job.spec),
            job.team_id,
            session,
            job.id,
            job.dataset_id or NIL,
            decontaminate=decontaminate,
        )

    @classmethod
    def for_spec(
        cls,
        spec: JobSpec,
        team_id: uuid.UUID,
        session: Session,
        job_id: uuid.UUID = NIL,
        dataset_id: uuid.UUID = NIL,
        *,
        decontaminate: bool = False,
    ) -> JobContext:
        """Resolve a spec against the team's scenarios, forms and evaluation sets (validating
        it); with ``decontaminate``, also load the index documents are checked against."""
        bank = team_bank(session, team_id)
        sets = selected_sets(session, team_id, spec.decontam)  # validates the names
        return cls(
            job_id=job_id,
            team_id=team_id,
            dataset_id=dataset_id,
            spec=spec,
            scenarios={s.id: s for s in select_scenarios(spec.scenarios, bank)},
            forms={f.id: f for f in select_forms(spec.surface_forms)},
            library=prompt_library(),
            contamination=(
                contamination_index(session, team_id, spec.decontam, bank, sets)
                if decontaminate
                else None
            ),
        )

    def provider(self, settings: Settings) -> ProviderConfig:
        return resolve_provider(settings, self.spec.provider, self.spec.model)

    def model(self, settings: Settings) -> str:
        return self.spec.model or self.provider(settings).model

    def plan(self, start: int, count: int) -> list[PlannedItem]:
        return plan_items(
            self.spec, list(self.scenarios.values()), list(self.forms.values()), start, count
        )

    def render(self, item: PlannedItem) -> RenderedPrompt:
        length = (self.spec.length_words.min, self.spec.length_words.max)
        return self.library.render(
            item,
            self.scenarios[item.scenario_id],
            self.forms[item.surface_form],
            length,
            self.spec.reasoning_depth.value,
        )
