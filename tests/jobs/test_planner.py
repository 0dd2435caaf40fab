"""The planner is deterministic, balanced at every prefix, and never plans held-out scenarios."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.jobs.planner import plan_items
from app.jobs.spec import JobSpec, ScenarioSelection
from app.prompting.catalog import builtin_catalog
from app.scenarios.bank import Split, builtin_bank
from app.scenarios.selection import select_scenarios


def make_spec(**overrides: object) -> JobSpec:
    return JobSpec.model_validate({"dataset": "d", "documents": 10} | overrides)


SCENARIOS = select_scenarios(ScenarioSelection())
FORMS = list(builtin_catalog().values())


def test_same_seed_same_plan_and_extension_matches() -> None:
    spec = make_spec(seed=42, stances={"aligned": 2, "misaligned": 1})
    whole = plan_items(spec, SCENARIOS, FORMS, 0, 60)
    assert whole == plan_items(spec, SCENARIOS, FORMS, 0, 60)
    assert whole[:25] + plan_items(spec, SCENARIOS, FORMS, 25, 35) == whole
    other = make_spec(seed=43, stances={"aligned": 2, "misaligned": 1})
    assert whole != plan_items(other, SCENARIOS, FORMS, 0, 60)


def test_heldout_scenarios_are_never_selected_or_planned() -> None:
    heldout = {s.id for s in builtin_bank() if s.split is Split.HELDOUT}
    assert heldout, "the built-in bank must hold some scenarios out"
    plan = plan_items(make_spec(), SCENARIOS, FORMS, 0, 3000)
    assert not heldout & {item.scenario_id for item in plan}
    assert {item.scenario_id for item in plan} == {s.id for s in SCENARIOS}


def test_matched_pairs_share_scenario_and_form() -> None:
    plan = plan_items(make_spec(stances={"aligned": 1, "misaligned": 1}), SCENARIOS, FORMS, 0, 40)
    aligned = [(i.scenario_id, i.surface_form) for i in plan if i.stance.value == "aligned"]
    misaligned = [(i.scenario_id, i.surface_form) for i in plan if i.stance.value == "misaligned"]
    assert aligned == misaligned


def spread(counts: Counter[Any], cells: list[Any]) -> int:
    values = [counts.get(cell, 0) for cell in cells]
    return max(values) - min(values)


@settings(max_examples=80, deadline=None)
@given(
    aligned=st.integers(min_value=0, max_value=9),
    misaligned=st.integers(min_value=0, max_value=9),
    n_scenarios=st.integers(min_value=1, max_value=23),
    n_forms=st.integers(min_value=1, max_value=12),
    prefix=st.integers(min_value=1, max_value=700),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_prefix_is_balanced(
    aligned: int, misaligned: int, n_scenarios: int, n_forms: int, prefix: int, seed: int
) -> None:
    if aligned + misaligned == 0:
        return
    weights = {"aligned": aligned, "misaligned": misaligned}
    spec = make_spec(seed=seed, stances={k: v for k, v in weights.items() if v > 0})
    scenarios, forms = SCENARIOS[:n_scenarios], FORMS[:n_forms]
    plan = plan_items(spec, scenarios, forms, 0, prefix)
    total = aligned + misaligned
    stances = Counter(item.stance.value for item in plan)
    assert abs(stances["aligned"] - prefix * aligned / total) <= 1
    assert abs(stances["misaligned"] - prefix * misaligned / total) <= 1
    pairs = [(s.id, f.id) for s in scenarios for f in forms]
    for stance in ("aligned", "misaligned"):
        mine = [item for item in plan if item.stance.value == stance]
        if not mine:
            continue
        assert spread(Counter((i.scenario_id, i.surface_form) for i in mine), list(pairs)) <= 1
        assert spread(Counter(i.scenario_id for i in mine), [s.id for s in scenarios]) <= 1
        assert spread(Counter(i.surface_form for i in mine), [f.id for f in forms]) <= 1
    if aligned == misaligned:  # equal weights: every (scenario, stance, form) cell
        cells = [(s, st_, f) for s, f in pairs for st_ in ("aligned", "misaligned")]
        triples = Counter((i.scenario_id, i.stance.value, i.surface_form) for i in plan)
        assert spread(triples, list(cells)) <= 1
    assert all(spec.length_words.min <= i.length_words <= spec.length_words.max for i in plan)
