"""Sending with the plan in mind: the outbox flushed with every reminder checked again just before it leaves,
and staff told once when receipts would wait too long.

send.py knows limits and order; this module knows what a unit still owes (the ledger, the campaign, the
reminder rules), which send.py must not import. Every caller that has a Context sends through ``send_due``.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pipeline.errors import ConfigError
from pipeline.ledger.outbox import AWAITED, OutboxItem
from pipeline.ledger.schema import from_iso
from pipeline.model import Unit
from pipeline.outbox import forecast
from pipeline.outbox.compose import build_mail
from pipeline.outbox.alerts import local_time, staff_alert
from pipeline.outbox.send import SEND, Verdict, flush_outbox
from pipeline.forms.blank import form_attachment
from pipeline.plan import deadlines
from pipeline.plan.reminder_rules import current_stage
from pipeline.plan.reminder_text import ReminderPart, render_reminder, stage_label
from pipeline.runtime import holder_id, job_lock, lease_held

if TYPE_CHECKING:
    from pipeline.context import Context

log = logging.getLogger(__name__)


def reminder_mail(ctx: Context, unit: Unit, parts: Sequence[ReminderPart], today: date) -> OutboxItem:
    """ONE reminder to a unit naming every obligation in ``parts`` (with each one's blank form attached)."""
    cfg = ctx.cfg
    cc = tuple(cfg.staff) if cfg.remind_cc_staff else ()
    forms: dict[str, tuple[str, bytes, str]] = {}
    for part in parts:
        form = next((f for f in (form_attachment(k, year=ctx.year, unit_name=unit.name, rules=ctx.rules)
                                 for k in part.obligation.kinds) if f is not None), None)
        if form is not None:
            forms.setdefault(form[0], form)
    subject, text, html = render_reminder(ctx.env, unit, parts, organisation=cfg.organisation, today=today,
                                          form_attached=bool(forms))
    to = tuple(unit.emails)
    mid, raw = build_mail(sender=cfg.smtp.sender, to=to, cc=cc, subject=subject, text=text, html=html,
                          attachments=list(forms.values()))
    # The campaign is in the key: next year's "registration" reminders are new mail, not repeats.
    stages = "+".join(f"{p.obligation.id}:{p.stage}" for p in parts)
    return OutboxItem(key=f"reminder:{ctx.year}:{unit.unit_id}:{stages}", purpose="reminder",
                      recipients=to + tuple(a for a in cc if a not in to), subject=subject,
                      smtp_message_id=mid, raw=raw, unit_id=unit.unit_id, campaign=ctx.year)


def recheck_reminder(ctx: Context, row: Any, now: datetime, today: date | None = None) -> Verdict:
    """Does the unit still owe what this reminder asks for, today? Drop it (saying why) when it owes none
    of it; make it again when it owes only part, or when it was written on an earlier day ("còn 2 ngày").

    ``today``: the day the reminder stages are judged for (``intake remind --today``); by default ``now``'s."""
    if row.purpose != "reminder":
        return SEND
    parts = ctx.store.reminder_parts(row.id)
    if not parts:
        return SEND  # a reminder queued by hand or before reminders were linked: nothing to check against
    campaign, unit_id = parts[0].campaign, parts[0].unit_id
    try:
        yctx = ctx.for_year(campaign)
    except ConfigError:
        return Verdict("drop", reason=f"kế hoạch năm {campaign} không còn trong cấu hình")
    unit = yctx.units.by_id(unit_id)
    if unit is None:
        return Verdict("drop", reason=f"đơn vị {unit_id} không còn trong danh sách đơn vị")
    written = from_iso(row.created_at).astimezone(ctx.cfg.tz).date() != now.astimezone(ctx.cfg.tz).date()
    today = today or now.astimezone(ctx.cfg.tz).date()
    policy = yctx.campaign.reminders
    obligations = {o.id: o for o in yctx.obligations}
    states = deadlines.unit_states(yctx.obligations, [unit], ctx.store.document_records(campaign, unit_id),
                                   keep_first_attempt_date=ctx.cfg.keep_first_attempt_date)
    keep: list[ReminderPart] = []
    why: list[str] = []
    for p in parts:
        obligation = obligations.get(p.obligation_id)
        if obligation is None or not obligation.applies_to(unit):
            why.append(f"“{p.obligation_id}” không còn là việc đơn vị phải gửi theo kế hoạch năm {campaign}")
            continue
        state = states.get((unit_id, obligation.id))
        if state is not None and not state.owes:
            why.append(f"đơn vị đã gửi {obligation.title} ({state.label_vi})")
            continue
        if state is not None and state.under_review_document_id is not None and not policy.remind_under_review:
            why.append(f"{obligation.title} của đơn vị đang chờ cán bộ xem xét")
            continue
        if current_stage(obligation, policy, today) != p.stage:
            why.append(f"{obligation.title}: lần nhắc “{stage_label(p.stage)}” đã qua thời điểm gửi")
            continue
        keep.append(ReminderPart(obligation, state, p.stage))
    if not keep:
        return Verdict("drop", reason="; ".join(why))
    if len(keep) == len(parts) and not written:
        return SEND
    mail = reminder_mail(yctx, unit, keep, today)
    if why:
        log.info("reminder %s now names %d of %d obligations: %s", row.id, len(keep), len(parts), "; ".join(why))
    return Verdict("rewrite", reason="; ".join(why), subject=mail.subject, message_id=mail.smtp_message_id,
                   raw=mail.raw, recipients=mail.recipients)


def send_due(ctx: Context, now: datetime, *, today: date | None = None, transport_factory: Any = None,
             checkpoint: Callable[[str], None] | None = None) -> dict[str, int]:
    """Flush the outbox with every reminder checked again just before it leaves (for ``today`` when given,
    see recheck_reminder); then judge how long the receipts still waiting will wait (an alert, if any, is
    urgent mail: it leaves with the next flush, right after the receipts)."""
    kwargs: dict[str, Any] = {"transport_factory": transport_factory} if transport_factory else {}
    if checkpoint is not None:
        kwargs["checkpoint"] = checkpoint
    district = job_lock(ctx.cfg.path)
    # Inside a job the lock is already ours (re-entrant); the desk's flush after an action does not wait for a
    # job in hand (the reminders take half a minute): the worker's next flush sends what the action queued.
    if not district.acquire(blocking=False):
        return {}
    try:
        counts = flush_outbox(ctx.store, ctx.cfg.smtp, now,
                              recheck=lambda row, at: recheck_reminder(ctx, row, at, today),
                              claimer=holder_id(), may_send=lambda: lease_held(ctx.cfg.path), **kwargs)
        check_receipt_delay(ctx, now)
    finally:
        district.release()
    return counts


def departures(ctx: Context, now: datetime) -> list[forecast.Departure]:
    """When each waiting mail is expected to leave (the desk, the alert below)."""
    smtp = ctx.cfg.smtp
    waiting = [forecast.Waiting(r.id, r.purpose, from_iso(r.created_at), from_iso(r.next_attempt_at))
               for r in ctx.store.waiting_outbox()]
    if not waiting:  # the usual case after every flush: no need to read the day's sending history
        return []
    return forecast.forecast(waiting, ctx.store.sent_times(now - timedelta(days=1)), now,
                             per_minute=smtp.per_minute, per_day=smtp.per_day, reserve=smtp.receipt_reserve)


ALERT_KEY = "alert.receipt_delay"


def check_receipt_delay(ctx: Context, now: datetime) -> bool:
    """One alert to staff when a receipt still waiting is expected to have waited longer than
    ``worker.receipt_delay_alert_minutes`` when it leaves; quiet again once no receipt is late. Returns
    whether an alert was queued now."""
    cfg = ctx.cfg
    limit = timedelta(minutes=cfg.receipt_delay_alert_minutes)
    late = [d for d in departures(ctx, now)
            if d.item.purpose in AWAITED and (d.wait is None or d.wait > limit)]
    episode = ctx.store.get_kv(ALERT_KEY) or ""
    if not late:
        if episode:
            ctx.store.set_kv(ALERT_KEY, "", now)
        return False
    if episode:
        return False
    worst = max(late, key=lambda d: d.wait or timedelta.max)
    when = local_time(worst.at, cfg) if worst.at else "sau nhiều ngày nữa"
    body = (f"Thư báo nhận gửi các đơn vị đang phải chờ: {len(late)} thư báo nhận dự kiến chờ quá "
            f"{cfg.receipt_delay_alert_minutes} phút; thư chờ lâu nhất dự kiến đi lúc {when}.\n\n"
            f"Giới hạn gửi của tài khoản: {cfg.smtp.per_minute} thư/phút, {cfg.smtp.per_day} thư/24 giờ "
            f"(giữ {cfg.smtp.receipt_reserve} thư cho thư báo nhận). Thư nhắc hạn và báo cáo đã được xếp sau thư "
            "báo nhận. Nếu tình trạng kéo dài, kiểm tra giới hạn gửi của tài khoản Gmail (smtp.per_day) hoặc "
            "số thư đang chờ trên trang Bàn làm việc.")
    key = f"alert:receipt-delay:{now.isoformat(timespec='minutes')}"
    queued = staff_alert(ctx, key, "Thư báo nhận đang phải chờ lâu", body, now)
    ctx.store.set_kv(ALERT_KEY, now.isoformat(), now)
    return queued
