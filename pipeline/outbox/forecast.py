"""When waiting mail will leave: the outbox's order and sending limits played forward from now (pure).

What the desk shows ("38 thư đang chờ, thư cuối dự kiến đi lúc 10:42") and what the receipt-delay alert
judges (pipeline/plan/sending.py). It mirrors send.py's rules: most awaited first (ledger/outbox.py
PRIORITY), ``per_minute`` a rolling minute, ``per_day`` a rolling 24 hours, reminders and reports only while
more than ``reserve`` of the day remain. An estimate: a reminder dropped as stale leaves earlier room.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable, Sequence

from pipeline.ledger.outbox import MAY_USE_RESERVE, rank_of

STEP = timedelta(minutes=1)
HORIZON = timedelta(days=14)  # beyond this the forecast says "later" (None)


@dataclass(frozen=True)
class Waiting:
    """An item waiting to leave: its id, purpose, when it was queued and when it may leave at the earliest."""

    id: int
    purpose: str
    created_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class Departure:
    item: Waiting
    at: datetime | None  # None: not within HORIZON

    @property
    def wait(self) -> timedelta | None:
        """How long the item will have waited since it was queued when it leaves."""
        return None if self.at is None else max(self.at - self.item.created_at, timedelta(0))


class _Lane:
    """Items of one kind of room (receipts and alerts may use the reserve, the rest may not), in order."""

    def __init__(self, items: list[Waiting]) -> None:
        self.items = items
        self.left = [True] * len(items)
        self.first = 0  # items[:first] have all left
        self.remaining = len(items)

    def take(self, t: datetime, room: Callable[[], bool], leave: Callable[[Waiting], None]) -> None:
        """Items due at ``t`` leave, in order, while ``room()`` says there is room."""
        i = self.first
        while i < len(self.items) and room():
            if self.left[i] and self.items[i].due_at <= t:
                self.left[i] = False
                self.remaining -= 1
                leave(self.items[i])
            i += 1
        while self.first < len(self.items) and not self.left[self.first]:
            self.first += 1

    def alive(self) -> list[Waiting]:
        return [w for w, alive in zip(self.items[self.first:], self.left[self.first:]) if alive]


def forecast(waiting: Iterable[Waiting], sent: Sequence[datetime], now: datetime, *, per_minute: int,
             per_day: int, reserve: int) -> list[Departure]:
    """Each waiting item with the minute it is expected to leave, given the send times of the last day."""
    queue = sorted(waiting, key=lambda w: (rank_of(w.purpose), w.due_at, w.id))
    # Every purpose that may use the reserve ranks before every one that may not: two lanes, urgent first.
    urgent = _Lane([w for w in queue if w.purpose in MAY_USE_RESERVE])
    ordinary = _Lane([w for w in queue if w.purpose not in MAY_USE_RESERVE])
    day: deque[datetime] = deque(t for t in sorted(sent) if t > now - timedelta(days=1))
    minute: deque[datetime] = deque(t for t in day if t > now - STEP)
    result: list[Departure] = []
    t = now
    while urgent.remaining + ordinary.remaining and t - now <= HORIZON:
        while day and day[0] <= t - timedelta(days=1):
            day.popleft()
        while minute and minute[0] <= t - STEP:
            minute.popleft()
        minute_room = per_minute - len(minute)
        before = len(result)

        def leave(item: Waiting) -> None:
            day.append(t)
            minute.append(t)
            result.append(Departure(item, t))

        for lane, limit in ((urgent, per_day), (ordinary, per_day - reserve)):
            lane.take(t, lambda limit=limit: len(minute) < per_minute and len(day) < limit, leave)
        sent_now = len(result) - before
        if not urgent.remaining + ordinary.remaining:
            break
        # Nothing could leave though the minute had room: skip to when something changes.
        stuck = sent_now == 0 and minute_room > 0
        t = _next_moment(t, urgent.alive() + ordinary.alive() if stuck else [], day, stuck=stuck)
    result.extend(Departure(item, None) for item in urgent.alive() + ordinary.alive())
    return result


def _next_moment(t: datetime, queue: list[Waiting], window: deque[datetime], *, stuck: bool) -> datetime:
    """The next minute worth looking at: the next minute, or, when nothing could leave, the first moment
    something changes (an item falls due, or the day's oldest mail leaves the 24-hour window)."""
    if not stuck:
        return t + STEP
    later = [w.due_at for w in queue if w.due_at > t]
    if window:
        later.append(window[0] + timedelta(days=1))
    return max(min(later), t + STEP) if later else t + STEP


def summary(departures: Sequence[Departure]) -> dict[str, dict[str, object]]:
    """Per purpose: how many wait, and when the first and the last are expected to leave."""
    out: dict[str, dict[str, object]] = {}
    for d in departures:
        s = out.setdefault(d.item.purpose, {"count": 0, "first": None, "last": None, "later": 0})
        s["count"] = int(s["count"]) + 1  # type: ignore[call-overload]
        if d.at is None:
            s["later"] = int(s["later"]) + 1  # type: ignore[call-overload]
            continue
        s["first"] = d.at if s["first"] is None else min(s["first"], d.at)  # type: ignore[type-var]
        s["last"] = d.at if s["last"] is None else max(s["last"], d.at)  # type: ignore[type-var]
    return out
