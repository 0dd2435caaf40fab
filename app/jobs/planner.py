"""Deterministic planning: item ``i`` of a job is a pure function of (spec, selection, i).

Because an item never depends on how many were planned before it, a job can extend its plan
(after rejections) from any worker and get exactly the items a single planner would have made.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from app.jobs.spec import JobSpec, Stance
from app.prompting.catalog import SurfaceForm
from app.scenarios.bank import Scenario


@dataclass(frozen=True)
class PlannedItem:
    index: int
    scenario_id: str
    stance: Stance
    surface_form: str
    voice: str
    length_words: int
    sampling_seed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"stance": self.stance.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlannedItem:
        return cls(**(data | {"stance": Stance(data["stance"])}))


def _rng(seed: int, *salt: object) -> random.Random:
    material = ":".join(str(part) for part in (seed, *salt)).encode()
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))


def _quota(n: int, share: float) -> int:
    return int(n * share + 0.5)


def stance_of(weights: dict[Stance, float], index: int) -> tuple[Stance, int]:
    """Item ``index``'s stance and its rank among the items of that stance.

    Weighted interleaving: after any n items each stance has round(n * its share), ±1. The
    first stance (by name) takes item i when its rounded quota grows at i; the remaining
    items are split among the other stances the same way, recursively. Stateless in i.
    """
    ranked = [s for s in sorted(weights, key=lambda s: s.value) if weights[s] > 0]
    total = sum(weights[s] for s in ranked)
    for stance in ranked[:-1]:
        share = weights[stance] / total
        taken = _quota(index, share)
        if _quota(index + 1, share) > taken:
            return stance, taken
        index -= taken
        total -= weights[stance]
    return ranked[-1], index


def cell_of(rank: int, scenarios: int, forms: int) -> tuple[int, int, int]:
    """(pass, scenario position, form position) of a stance's ``rank``-th item.

    Each pass visits every (scenario, form) pair once. Inside a pass, scenarios go round
    robin and forms go round robin shifted by one every lcm(S, F) items, which reaches the
    pairs the plain round robin misses; so at any prefix every pair, every scenario and
    every form has been used as often as any other, give or take one.
    """
    per_pass = scenarios * forms
    cycle, offset = divmod(rank, per_pass)
    block = offset // math.lcm(scenarios, forms)
    return cycle, offset % scenarios, (offset + block) % forms


def plan_items(
    spec: JobSpec,
    scenarios: Sequence[Scenario],
    forms: Sequence[SurfaceForm],
    start: int,
    count: int,
) -> list[PlannedItem]:
    """Items ``start .. start+count-1`` of the job's plan.

    The stances share one (scenario, form) sequence, so the k-th aligned and the k-th
    misaligned document tell the same scenario in the same form: matched pairs.
    """
    if not scenarios:
        raise ValueError("no scenarios selected")
    if not forms:
        raise ValueError("no surface forms selected")
    scenario_ids = sorted(s.id for s in scenarios)
    by_form = {f.id: f for f in forms}
    form_ids = sorted(by_form)
    orders: dict[int, tuple[list[str], list[str]]] = {}
    items = []
    for index in range(start, start + count):
        stance, rank = stance_of(spec.stances, index)
        cycle, scenario_at, form_at = cell_of(rank, len(scenario_ids), len(form_ids))
        if cycle not in orders:
            shuffled_scenarios, shuffled_forms = list(scenario_ids), list(form_ids)
            _rng(spec.seed, "scenarios", cycle).shuffle(shuffled_scenarios)
            _rng(spec.seed, "forms", cycle).shuffle(shuffled_forms)
            orders[cycle] = (shuffled_scenarios, shuffled_forms)
        scenario_order, form_order = orders[cycle]
        form = by_form[form_order[form_at]]
        rng = _rng(spec.seed, "item", index)
        items.append(
            PlannedItem(
                index=index,
                scenario_id=scenario_order[scenario_at],
                stance=stance,
                surface_form=form.id,
                voice=rng.choice(form.voices),
                length_words=rng.randint(spec.length_words.min, spec.length_words.max),
                sampling_seed=rng.randrange(2**31),
            )
        )
    return items
