"""What the desk says about mail waiting to leave: how many of each kind, when the first and the last of each
are expected to go (pipeline.plan.sending.departures, one forecast per page view), the sending limits in use
and how many mails left in the last 24 hours.

The health bar carries one line of it when anything waits; the overview shows the whole of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Sequence

from pipeline.ledger.outbox import rank_of
from pipeline.outbox import forecast

if TYPE_CHECKING:
    from pipeline.context import Context

SOON = timedelta(minutes=1)  # the forecast moves in whole minutes: "now" and "the next minute" are one


@dataclass(frozen=True)
class KindWaiting:
    purpose: str
    count: int
    first: datetime | None  # None: not within the forecast's horizon
    last: datetime | None
    later: int              # how many of them are beyond the horizon


@dataclass(frozen=True)
class Sending:
    now: datetime
    kinds: tuple[KindWaiting, ...]  # most awaited first (ledger/outbox.py PRIORITY)
    per_minute: int
    per_day: int
    reserve: int
    sent_last_day: int

    @property
    def waiting(self) -> int:
        return sum(k.count for k in self.kinds)


def sending(ctx: Context, now: datetime, *, pending: int | None = None) -> Sending:
    """The outbox's forecast for ``now``; ``pending``: the number of waiting items when the caller knows it
    already (0 spares the forecast)."""
    from pipeline.plan.sending import departures

    smtp = ctx.cfg.smtp
    kinds = kinds_of(departures(ctx, now)) if pending is None or pending > 0 else ()
    return Sending(now, kinds, smtp.per_minute, smtp.per_day, smtp.receipt_reserve,
                   ctx.store.sent_since(now - timedelta(days=1)))


def kinds_of(departures: Sequence[forecast.Departure]) -> tuple[KindWaiting, ...]:
    per = forecast.summary(departures)
    return tuple(KindWaiting(p, int(s["count"]), s["first"], s["last"], int(s["later"]))  # type: ignore[arg-type]
                 for p, s in sorted(per.items(), key=lambda kv: (rank_of(kv[0]), kv[0])))


def when_text(at: datetime | None, now: datetime, tz: Any) -> str:
    """When a mail is expected to leave, as staff say it: "trong vòng 1 phút", "hôm nay 10:42",
    "ngày mai 08:15", "24/02 08:15"; beyond the forecast's horizon "sau 14 ngày"."""
    if at is None:
        return f"sau {forecast.HORIZON.days} ngày"
    if at - now <= SOON:
        return "trong vòng 1 phút"
    local, today = at.astimezone(tz), now.astimezone(tz).date()
    if local.date() == today:
        return f"hôm nay {local:%H:%M}"
    if local.date() == today + timedelta(days=1):
        return f"ngày mai {local:%H:%M}"
    return f"{local:%d/%m %H:%M}"


def bar_line(s: Sending, labels: dict[str, str], tz: Any) -> str:
    """The health bar's line: "38 thư đang chờ gửi — thư báo nhận đi trong vòng 1 phút, thư nhắc hạn cuối
    cùng dự kiến đi hôm nay 10:42"."""
    if all(k.later == 0 and k.last is not None and k.last - s.now <= SOON for k in s.kinds):
        return f"{s.waiting} thư đang chờ gửi — tất cả dự kiến đi trong vòng 1 phút"
    parts = []
    for k in s.kinds:
        label = labels.get(k.purpose, k.purpose)
        label = label[:1].lower() + label[1:]
        last = None if k.later else k.last
        if last is not None and last - s.now <= SOON:
            parts.append(f"{label} đi trong vòng 1 phút")
        elif k.count == 1:
            parts.append(f"{label} dự kiến đi {when_text(last, s.now, tz)}")
        else:
            parts.append(f"{label} cuối cùng dự kiến đi {when_text(last, s.now, tz)}")
    return f"{s.waiting} thư đang chờ gửi — " + ", ".join(parts)
