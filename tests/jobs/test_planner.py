"""The planner is deterministic, balanced, and never plans held-out scenarios."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from app.jobs.planner import plan_items
from app.jobs.spec import JobSpec, ScenarioSelection
from app.prompting.catalog import builtin_catalog
from app.scenarios.bank import Split, builtin_bank
from app.scenarios.selection import select_scenarios


def make_spec(**overrides: object) -> JobSpec:
    return JobSpec.model_validate({"dataset": "d", "documents": 10} | overrides)


def test_same_seed_same_plan_and_extension_matches() -> None:
    spec = make_spec(seed=42, stances={"aligned": 2, "misaligned": 1})
    scenarios = select_scenarios(ScenarioSelection())
    forms = list(builtin_catalog().values())
    whole = plan_items(spec, scenarios, forms, 0, 60)
    assert whole == plan_items(spec, scenarios, forms, 0, 60)
    assert whole[:25] + plan_items(spec, scenarios, forms, 25, 35) == whole
    assert whole != plan_items(
        make_spec(seed=43, stances={"aligned": 2, "misaligned": 1}), scenarios, forms, 0, 60
    )


def test_heldout_scenarios_are_never_selected_or_planned() -> None:
    heldout = {s.id for s in builtin_bank() if s.split is Split.HELDOUT}
    assert heldout, "the built-in bank must hold some scenarios out"
    scenarios = select_scenarios(ScenarioSelection())
    plan = plan_items(make_spec(), scenarios, list(builtin_catalog().values()), 0, 2000)
    assert not heldout & {item.scenario_id for item in plan}


@settings(max_examples=60, deadline=None)
@given(
    aligned=st.integers(min_value=0, max_value=9),
    misaligned=st.integers(min_value=0, max_value=9),
    prefix=st.integers(min_value=1, max_value=400),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_stances_forms_and_scenarios_stay_balanced_at_every_prefix(
    aligned: int, misaligned: int, prefix: int, seed: int
) -> None:
    if aligned + misaligned == 0:
        return
    spec = make_spec(seed=seed, stances={"aligned": aligned, "misaligned": misaligned})
    scenarios = select_scenarios(ScenarioSelection())[:17]
    forms = list(builtin_catalog().values())[:5]
    plan = plan_items(spec, scenarios, forms, 0, prefix)
    total = aligned + misaligned
    stances = Counter(item.stance.value for item in plan)
    assert abs(stances["aligned"] - prefix * aligned / total) <= 1
    assert abs(stances["misaligned"] - prefix * misaligned / total) <= 1
    for field, pool in (("surface_form", forms), ("scenario_id", scenarios)):
        counts = Counter(getattr(item, field) for item in plan)
        per_cell = [counts.get(x.id, 0) for x in pool]
        assert max(per_cell) - min(per_cell) <= 1, field
    lengths = {item.length_words for item in plan}
    assert all(spec.length_words.min <= n <= spec.length_words.max for n in lengths)
