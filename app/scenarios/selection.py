"""Pick the scenarios a spec asks for. Held-out scenarios are never selectable."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.errors import UnknownReference
from app.jobs.spec import ScenarioSelection
from app.scenarios.bank import Scenario, Split, builtin_bank


def select_scenarios(
    selection: ScenarioSelection, bank: Sequence[Scenario] | None = None
) -> list[Scenario]:
    bank = builtin_bank() if bank is None else bank
    by_id = {scenario.id: scenario for scenario in bank}
    if selection.ids:
        unknown = sorted(set(selection.ids) - by_id.keys())
        if unknown:
            raise UnknownReference(f"unknown scenario ids: {', '.join(unknown[:20])}")
        heldout = sorted(i for i in selection.ids if by_id[i].split is Split.HELDOUT)
        if heldout:
            raise UnknownReference(
                f"scenarios {', '.join(heldout[:20])} are held out for evaluation and "
                "never used to generate"
            )
        chosen = [by_id[i] for i in dict.fromkeys(selection.ids)]
    else:
        chosen = [s for s in bank if s.split is Split.TRAIN]
    if selection.topics:
        wanted = set(selection.topics)
        chosen = [s for s in chosen if wanted & {t.value for t in s.topics}]
    if not chosen:
        raise UnknownReference(
            "no train scenarios match the selection (topics: "
            f"{', '.join(selection.topics) or 'any'}); widen scenarios.topics or scenarios.ids"
        )
    return chosen
