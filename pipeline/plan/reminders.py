"""Reminders to units that still owe a form or report: who, which stage, and sending them once.

reminder_rules.py decides (pure); this module reads the ledger, renders each reminder, and records the
stage together with its mail in ONE transaction (``Store.record_reminder``): the unique
(unit, obligation, stage) row is what makes "each stage at most once, ever" hold across crashes,
restarts and repeated runs. Stages passed over by a later one are recorded without a mail.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from pipeline.plan import deadlines, reminder_rules
from pipeline.plan.reminder_text import render_reminder
from pipeline.forms.blank import form_attachment
from pipeline.outbox.compose import build_mail
from pipeline.outbox.send import flush_outbox
from pipeline.ledger.outbox import OutboxItem

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
    queued: int = 0  # recorded with their mail by this run
    superseded: int = 0  # stages recorded as passed over
    already: int = 0  # recorded meanwhile by another run (lost the unique-row race)
    outbox: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def text(self) -> str:
        head = (f"{'[dry-run] ' if self.dry_run else ''}nhắc hạn ngày {self.today:%d/%m/%Y}: "
                f"{len(self.planned)} thư nhắc" + ("" if self.dry_run else
                f" (đưa vào hộp thư đi {self.queued}, bỏ qua giai đoạn đã lỡ {self.superseded}"
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
    for item in due:
        unit = ctx.units.by_id(item.unit_id)
        obligation = obligations[item.obligation_id]
        if unit is None:  # pragma: no cover - reminders_due only yields known units
            continue
        if item.superseded:
            if not dry_run:
                if ctx.store.record_reminder(unit.unit_id, obligation.id, item.stage, None, now, campaign=ctx.year):
                    summary.superseded += 1
                    log.info("reminder %s/%s/%s passed over by a later stage", unit.unit_id, obligation.id,
                             item.stage)
            continue
        state = states.get((unit.unit_id, obligation.id))
        to = tuple(unit.emails)
        summary.planned.append(PlannedReminder(unit.unit_id, unit.name, obligation.id, item.stage,
                                               state.state if state else "missing", to, cc))
        if dry_run:
            continue
        form = next((f for f in (form_attachment(k, year=ctx.year, unit_name=unit.name, rules=ctx.rules)
                                 for k in obligation.kinds) if f is not None), None)
        subject, text, html = render_reminder(ctx.env, unit, obligation, state, item.stage,
                                              organisation=cfg.organisation, today=today,
                                              form_attached=form is not None)
        mid, raw = build_mail(sender=cfg.smtp.sender, to=to, cc=cc, subject=subject, text=text, html=html,
                              attachments=[form] if form else [])
        # The campaign is in the key: next year's "registration" reminders are new mail, not repeats.
        mail = OutboxItem(key=f"reminder:{ctx.year}:{unit.unit_id}:{obligation.id}:{item.stage}", purpose="reminder",
                          recipients=to + tuple(a for a in cc if a not in to), subject=subject,
                          smtp_message_id=mid, raw=raw, unit_id=unit.unit_id, campaign=ctx.year)
        if ctx.store.record_reminder(unit.unit_id, obligation.id, item.stage, mail, now, campaign=ctx.year):
            summary.queued += 1
            log.info("reminder %s/%s/%s queued for %s", unit.unit_id, obligation.id, item.stage, ", ".join(to))
        else:
            summary.already += 1
    if flush and not dry_run:
        kwargs = {"transport_factory": transport_factory} if transport_factory else {}
        summary.outbox = flush_outbox(ctx.store, cfg.smtp, clock(), **kwargs)
    return summary


__all__ = ["PlannedReminder", "RemindSummary", "run_reminders", "current_states", "local_today"]
