"""Geometry of the desk's charts, drawn as SVG by templates/desk/_charts.html (autoescaped, no script).

Only numbers and labels are computed here; the markup lives in the template so that every label
(a category name, a date) goes through Jinja's escaping like any other text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Sequence

from pipeline.desk.queries import WeeklySeries


def nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5, 10, 20, 50, ...)."""
    if value <= 1:
        return 1
    exp = 10 ** int(math.floor(math.log10(value)))
    for m in (1, 2, 5, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp  # pragma: no cover


def ticks(top: int) -> list[int]:
    step = max(1, top // 5 if top >= 5 else 1)
    return list(range(0, top + 1, step))


@dataclass(frozen=True)
class HBar:
    label: str
    value: int
    y: float
    width: float


@dataclass(frozen=True)
class HBarChart:
    width: int
    height: int
    label_width: int
    bar_height: int
    plot_width: int
    bars: tuple[HBar, ...]
    total: int


def hbar_chart(items: Sequence[tuple[str, int]], *, width: int = 620, label_width: int = 160,
               bar_height: int = 22, gap: int = 8) -> HBarChart:
    """Horizontal bars, one per (label, value); the longest bar fills the plot."""
    plot = width - label_width - 50
    top = max((v for _, v in items), default=0) or 1
    bars = tuple(HBar(label, value, 10 + i * (bar_height + gap), plot * value / top)
                 for i, (label, value) in enumerate(items))
    height = 20 + len(items) * (bar_height + gap)
    return HBarChart(width, height, label_width, bar_height, plot, bars, sum(v for _, v in items))


@dataclass(frozen=True)
class VBar:
    x: float
    label: str | None  # shown under every few bars
    week: str          # dd/mm–dd/mm, the bar's tooltip
    before: int
    after: int
    y_before: float
    h_before: float
    y_after: float
    h_after: float


@dataclass(frozen=True)
class WeekChart:
    title: str
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    bar_width: float
    bars: tuple[VBar, ...]
    yticks: tuple[tuple[int, float], ...]  # (value, y)
    deadline_x: float | None
    deadline_label: str | None
    total: int


def week_chart(series: WeeklySeries, tz: object, *, width: int = 620, height: int = 220) -> WeekChart:
    """Vertical bars of documents per week, the part after the deadline stacked on top in another
    colour, and a dashed line at the end of the due day."""
    left, top, bottom, right = 36, 26, 36, 10
    pw, ph = width - left - right, height - top - bottom
    weeks = series.weeks
    n = max(len(weeks), 1)
    slot = pw / n
    bw = max(3.0, slot * 0.7)
    ymax = nice_max(max((w.before + w.after for w in weeks), default=0))
    scale = ph / ymax
    every = max(1, math.ceil(n / 8))
    bars = []
    for i, w in enumerate(weeks):
        x = left + i * slot + (slot - bw) / 2
        hb, ha = w.before * scale, w.after * scale
        end = w.start + timedelta(days=6)
        bars.append(VBar(x, w.start.strftime("%d/%m") if i % every == 0 else None,
                         f"{w.start:%d/%m}–{end:%d/%m/%Y}", w.before, w.after,
                         top + ph - hb, hb, top + ph - hb - ha, ha))
    deadline_x = deadline_label = None
    due = series.obligation.due_at
    if due is not None and weeks:
        local = due.astimezone(tz)  # type: ignore[arg-type]
        days = (local.date() - weeks[0].start).days + 1  # the due day counts in full
        if 0 <= days <= 7 * n:
            deadline_x = left + days / 7 * slot
            deadline_label = f"Hạn {local:%d/%m}"
    yt = tuple((v, top + ph - v * scale) for v in ticks(ymax))
    return WeekChart(series.obligation.title, width, height, left, top, pw, ph, bw, tuple(bars), yt,
                     deadline_x, deadline_label, series.total)
