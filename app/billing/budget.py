"""Budgets: how many more items a job may plan without its worst case passing a cap. Pure.

Every item in flight holds its worst-case cost (``reserve_usd_per_item``: its prompt and
``max_tokens`` at the provider's prices, and the judge's read) until its outcome is recorded
with what it really cost. Planning checks ``spent + in flight + new <= cap`` for the job's
budget and for the team's budget this month, so a job's spend never passes its cap by more
than what was in flight when the cap was reached, and then only if an item cost more than
its reservation (a prompt longer than the one the reservation was measured on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UNCAPPED = 2**31 - 1
# Float sums of many small costs: a cap met exactly must still admit its last item.
EPSILON_USD = 1e-9


@dataclass(frozen=True)
class Cap:
    """One budget's state: its cap, what was spent against it, and what is reserved."""

    what: str  # "the job's budget" / "the team's budget for 2026-12"
    cap_usd: float
    spent_usd: float
    reserved_usd: float

    @property
    def left_usd(self) -> float:
        return self.cap_usd - self.spent_usd - self.reserved_usd

    def items(self, per_item_usd: float) -> int:
        """How many more items fit, at ``per_item_usd`` each."""
        if per_item_usd <= 0:
            return UNCAPPED if self.left_usd > -EPSILON_USD else 0
        return max(0, math.floor((self.left_usd + EPSILON_USD) / per_item_usd))

    def reached(self) -> str:
        return (
            f"{self.what} is reached: ${self.spent_usd:.4f} spent of ${self.cap_usd:.4f}, and "
            "the next item could cost more than is left; accepted documents are published"
        )


def affordable(wanted: int, per_item_usd: float, caps: list[Cap]) -> tuple[int, Cap | None]:
    """How many of ``wanted`` items the caps allow, and the cap that binds (None: all fit)."""
    allowed = wanted
    binding: Cap | None = None
    for cap in caps:
        fits = cap.items(per_item_usd)
        if fits < allowed:
            allowed, binding = fits, cap
    return allowed, binding
