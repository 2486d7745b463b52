"""Reminders to units that still owe a form or report: who, which stage, and sending them once.

reminder_rules.py decides (pure); this module reads the ledger and records each unit's stages due today
together with ONE mail naming them all (``Store.record_reminders``, one transaction): the unique
(campaign, unit, obligation, stage) row is what makes "each stage at most once, ever" hold across crashes,
restarts and repeated runs. Stages passed over by a later one are recorded without a mail. A queued
reminder is checked again just before it leaves (sending.py): one the unit no longer owes is dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from pipeline.plan import deadlines, reminder_rules
from pipeline.plan.reminder_text import ReminderPart
from pipeline.plan.sending import reminder_mail, send_due

if TYPE_CHECKING:
    from pipeline.context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedReminder:
    unit_id: str
    unit_name: str
    obligation_id: str
    stage: str
    state: str  # missing | rejected
    to: tuple[str, ...]
    cc: tuple[str, ...]


@dataclass
class RemindSummary:
    today: date
    planned: list[PlannedReminder] = field(default_factory=list)
    queued: int = 0  # mails recorded by this run (one per unit, naming each obligation it owes today)
    superseded: int = 0  # stages recorded as passed over
    already: int = 0  # recorded meanwhile by another run (lost the unique-row race)
    outbox: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def text(self) -> str:
        head = (f"{'[dry-run] ' if self.dry_run else ''}nhắc hạn ngày {self.today:%d/%m/%Y}: "
                f"{len(self.planned)} thư nhắc" + ("" if self.dry_run else
                f" (đưa vào hộp thư đi {self.queued} thư, bỏ qua giai đoạn đã lỡ {self.superseded}"
                f"{', đã có từ trước ' + str(self.already) if self.already else ''}), outbox {self.outbox}"))
        lines = [head]
        for p in self.planned:
            lines.append(f"  {p.unit_id}\t{p.obligation_id}\t{p.stage}\t{p.state}\t{', '.join(p.to)}"
                         + (f" (cc {', '.join(p.cc)})" if p.cc else ""))
        return "\n".join(lines)


def current_states(ctx: Context) -> dict[tuple[str, str], deadlines.ObligationState]:
    """Every unit's state on every obligation of the campaign in view (``ctx.year``)."""
    return deadlines.unit_states(ctx.obligations, ctx.units.units, ctx.documents(),
                                 keep_first_attempt_date=ctx.cfg.keep_first_attempt_date)


def local_today(ctx: Context, now: datetime | None = None) -> date:
    return (now or datetime.now(timezone.utc)).astimezone(ctx.cfg.tz).date()


def run_reminders(ctx: Context, *, today: date | None = None, dry_run: bool = False,
                  clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                  transport_factory: Any = None, flush: bool = True) -> RemindSummary:
    """Record and send the reminders of the campaign in view (``ctx.year``) due ``today`` (default: today
    in the configured zone).

    ``today`` only moves the decision; mail is stamped and sent with the real clock.
    """
    cfg = ctx.cfg
    now = clock()
    today = today or local_today(ctx, now)
    summary = RemindSummary(today=today, dry_run=dry_run)
    states = current_states(ctx)
    due = reminder_rules.reminders_due(ctx.obligations, ctx.campaign.reminders, states, ctx.units.units, today,
                                       already_sent=ctx.store.reminder_stages_sent(ctx.year))
    obligations = {o.id: o for o in ctx.obligations}
    cc = tuple(cfg.staff) if cfg.remind_cc_staff else ()
    owed: dict[str, list[reminder_rules.ReminderDue]] = {}
    for item in due:
        if item.superseded:
            if not dry_run and ctx.store.record_reminder(item.unit_id, item.obligation_id, item.stage, None, now,
                                                         campaign=ctx.year):
                summary.superseded += 1
                log.info("reminder %s/%s/%s passed over by a later stage", item.unit_id, item.obligation_id,
                         item.stage)
            continue
        owed.setdefault(item.unit_id, []).append(item)
    # One mail per unit and day: every obligation it is reminded of today goes in the same mail.
    for unit_id, items in owed.items():
        unit = ctx.units.by_id(unit_id)
        if unit is None:  # pragma: no cover - reminders_due only yields known units
            continue
        parts = {(i.obligation_id, i.stage): ReminderPart(obligations[i.obligation_id],
                                                          states.get((unit_id, i.obligation_id)), i.stage)
                 for i in items}
        for part in parts.values():
            summary.planned.append(PlannedReminder(unit.unit_id, unit.name, part.obligation.id, part.stage,
                                                   part.state.state if part.state else "missing",
                                                   tuple(unit.emails), cc))
        if dry_run:
            continue
        taken = ctx.store.record_reminders(
            unit_id, list(parts), lambda pairs: reminder_mail(ctx, unit, [parts[p] for p in pairs], today),
            now, campaign=ctx.year)
        summary.already += len(parts) - len(taken)
        if taken:
            summary.queued += 1
            log.info("reminder for %s queued to %s: %s", unit_id, ", ".join(unit.emails),
                     ", ".join(f"{o}/{st}" for o, st in taken))
    if flush and not dry_run:
        summary.outbox = send_due(ctx, clock(), today=today, transport_factory=transport_factory)
    return summary


__all__ = ["PlannedReminder", "RemindSummary", "run_reminders", "current_states", "local_today"]
