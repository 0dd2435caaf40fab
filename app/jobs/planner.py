"""Deterministic planning: item ``i`` of a job is a pure function of (spec, selection, i).

Because an item never depends on how many were planned before it, a job can extend its plan
(after rejections) from any worker and get exactly the items a single planner would have made.
"""

from __future__ import annotations

import hashlib
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


def _cycled(items: Sequence[str], seed: int, salt: str, index: int) -> str:
    """Each full pass over ``items`` is a fresh seeded permutation: balanced at every prefix."""
    cycle, offset = divmod(index, len(items))
    order = list(items)
    _rng(seed, salt, cycle).shuffle(order)
    return order[offset]


def _quota(n: int, share: float) -> int:
    return int(n * share + 0.5)


def _stance(weights: dict[Stance, float], index: int) -> Stance:
    """Weighted interleaving: after any n items each stance has round(n * its share) ± 1.

    The first stance (by name) takes item i when its rounded quota grows at i; the remaining
    items are split among the other stances the same way, recursively. Stateless in i.
    """
    ranked = [s for s in sorted(weights, key=lambda s: s.value) if weights[s] > 0]
    total = sum(weights[s] for s in ranked)
    for position, stance in enumerate(ranked[:-1]):
        share = weights[stance] / total
        if _quota(index + 1, share) > _quota(index, share):
            return stance
        index -= _quota(index, share)
        total -= weights[ranked[position]]
    return ranked[-1]


def plan_items(
    spec: JobSpec,
    scenarios: Sequence[Scenario],
    forms: Sequence[SurfaceForm],
    start: int,
    count: int,
) -> list[PlannedItem]:
    if not scenarios:
        raise ValueError("no scenarios selected")
    if not forms:
        raise ValueError("no surface forms selected")
    scenario_ids = sorted(s.id for s in scenarios)
    by_form = {f.id: f for f in forms}
    form_ids = sorted(by_form)
    items = []
    for index in range(start, start + count):
        form = by_form[_cycled(form_ids, spec.seed, "form", index)]
        rng = _rng(spec.seed, "item", index)
        items.append(
            PlannedItem(
                index=index,
                scenario_id=_cycled(scenario_ids, spec.seed, "scenario", index),
                stance=_stance(spec.stances, index),
                surface_form=form.id,
                voice=rng.choice(form.voices),
                length_words=rng.randint(spec.length_words.min, spec.length_words.max),
                sampling_seed=rng.randrange(2**31),
            )
        )
    return items
