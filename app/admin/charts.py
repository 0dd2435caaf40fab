"""Throughput charts: per-minute counts binned into at most ``CHART_BARS`` bars. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

CHART_BARS = 180
BAR_WIDTH = 4  # of the SVG's 720


@dataclass(frozen=True)
class Bar:
    x: int
    height: float
    accepted: int
    other: int
    minute: datetime  # the first of its minutes


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    accepted: int
    since: datetime
    minutes_a_bar: int


def binned(
    minutes: dict[datetime, tuple[int, int, float]], since: datetime, until: datetime
) -> Chart:
    """Bars of accepted documents from ``since`` to ``until`` (whole minutes), as many
    minutes to a bar as it takes to fit ``CHART_BARS``."""
    span = int((until - since).total_seconds() // 60) + 1
    width = -(-span // CHART_BARS)  # minutes a bar, rounded up
    sums: dict[int, list[int]] = {}
    for minute, (accepted, other, _cost) in minutes.items():
        if since <= minute <= until:
            bucket = sums.setdefault(int((minute - since).total_seconds() // 60) // width, [0, 0])
            bucket[0] += accepted
            bucket[1] += other
    peak = max((accepted for accepted, _other in sums.values()), default=0)
    bars = [
        Bar(
            n * BAR_WIDTH,
            100 * accepted / peak if peak else 0,
            accepted,
            other,
            since + timedelta(minutes=n * width),
        )
        for n, (accepted, other) in sorted(sums.items())
        if accepted or other
    ]
    total = sum(accepted for accepted, _other in sums.values())
    return Chart(bars, peak, total, since, width)
