"""The consolidated report for district staff, from the ledger: workbook on disk, email via the outbox.

reports.py (figures), staffmail.py (the email text) and workbook.py build the report (pure); this module reads
the store, writes the file and enqueues the mail under a key per occasion (``report:weekly:2022-W08``,
``report:deadline:registration``, ``report:manual:2022-02-23``), so an occasion is mailed once
however often the job runs or the worker restarts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pipeline.plan import reports
from pipeline.plan.staffmail import render_staff_email
from pipeline.plan.workbook import build_workbook
from pipeline.mail.archive import write_atomically
from pipeline.model import Entry
from pipeline.outbox.compose import build_mail
from pipeline.plan.sending import send_due
from pipeline.plan.reminders import current_states, local_today
from pipeline.ledger.outbox import OutboxItem

if TYPE_CHECKING:
    from pipeline.context import Context

log = logging.getLogger(__name__)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook_name(today: date, year: int | None = None) -> str:
    """The workbook's file name: ``bao-cao-tong-hop-2022-02-25.xlsx`` when the day is in the campaign's year
    (or no year is given), else with the campaign too, so that 2022's figures made in 2023 are neither taken
    for 2023's nor overwrite them (``bao-cao-tong-hop-2022-ngay-2023-01-10.xlsx``)."""
    if year is None or today.year == year:
        return f"bao-cao-tong-hop-{today:%Y-%m-%d}.xlsx"
    return f"bao-cao-tong-hop-{year}-ngay-{today:%Y-%m-%d}.xlsx"


def manual_key(ctx: Context, today: date) -> str:
    """The outbox key of a report asked for by hand: once per day and campaign."""
    if ctx.year == ctx.cfg.year:
        return f"report:manual:{today.isoformat()}"
    return f"report:manual:{ctx.year}:{today.isoformat()}"


def default_out_dir(ctx: Context) -> Path:
    """``reports/`` beside the config file."""
    return ctx.cfg.path.parent / "reports"


@dataclass
class ReportSummary:
    today: date
    path: Path | None = None
    key: str | None = None
    queued: bool = False  # the staff email was enqueued by this run (False: already sent for this occasion)
    figures: reports.Headline | None = None
    outbox: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        h = self.figures
        parts = [f"báo cáo ngày {self.today:%d/%m/%Y}"]
        if h is not None:
            parts.append(f"{h.units_registered}/{h.units_total} đơn vị đã đăng ký, {h.models_total} mô hình, "
                         f"{h.commendations_total} đề xuất khen thưởng")
        if self.path:
            parts.append(f"tệp {self.path}")
        if self.key:
            parts.append(f"thư gửi cán bộ ({self.key}): " + ("đưa vào hộp thư đi" if self.queued else "đã gửi trước đó"))
        if self.outbox:
            parts.append(f"outbox {self.outbox}")
        return "; ".join(parts)


def entries_by_document(ctx: Context) -> dict[int, list[Entry]]:
    snap = ctx.store.snapshot()
    out: dict[int, list[Entry]] = {}
    for doc_id, rows in snap["entries"].items():
        out[doc_id] = [Entry(section=e.section, name=e.name, model=e.model,
                             categories=tuple(json.loads(e.categories)), result=e.result, note=e.note,
                             row=e.row, location=e.location,
                             extra=tuple(json.loads(e.extra).items()) if e.extra else ()) for e in rows]
    return out


def report_data(ctx: Context, today: date) -> reports.ReportData:
    """The figures of the campaign in view, counted and named by its forms' definitions."""
    cfg = ctx.cfg
    campaign = ctx.campaign
    return reports.build_report_data(
        organisation=cfg.organisation, year=ctx.year, today=today, units=ctx.units.units,
        obligations=ctx.obligations, documents=ctx.documents(),
        entries=entries_by_document(ctx), states=current_states(ctx),
        reminders_sent=ctx.store.reminder_counts(ctx.year), timezone=cfg.timezone,
        rules=ctx.rules, forms=campaign.forms, registration_share=campaign.registration_share,
    )


def run_report(ctx: Context, *, today: date | None = None, out_dir: Path | None = None, send: bool = False,
               key: str | None = None, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
               transport_factory: Any = None, flush: bool = True) -> ReportSummary:
    """Write the workbook; with ``send``, enqueue the staff email (HTML + text + workbook) under
    ``key`` (default ``report:manual:<today>``, with the campaign's year when it is not the current one) and
    flush the outbox."""
    cfg = ctx.cfg
    now = clock()
    today = today or local_today(ctx, now)
    data = report_data(ctx, today)
    workbook = build_workbook(data)
    name = workbook_name(today, ctx.year)
    summary = ReportSummary(today=today, figures=reports.headline(data))
    summary.path = (out_dir or default_out_dir(ctx)) / name
    write_atomically(summary.path, workbook)
    log.info("report for %s written to %s", today, summary.path)
    if send:
        summary.key = key or manual_key(ctx, today)
        if not cfg.staff:
            log.warning("no staff addresses configured: report %s not mailed", summary.key)
        else:
            subject, html, text = render_staff_email(ctx.env, data, attachment_name=name)
            mid, raw = build_mail(sender=cfg.smtp.sender, to=cfg.staff, subject=subject, text=text, html=html,
                                  attachments=[(name, workbook, XLSX)])
            summary.queued = ctx.store.enqueue(OutboxItem(
                key=summary.key, purpose="report", recipients=tuple(cfg.staff), subject=subject,
                smtp_message_id=mid, raw=raw), now)
            log.info("report mail %s %s", summary.key, "queued" if summary.queued else "was already queued before")
        if flush:
            kwargs = {"transport_factory": transport_factory} if transport_factory else {}
            summary.outbox = send_due(ctx, clock(), **kwargs)
    return summary


__all__ = ["ReportSummary", "run_report", "report_data", "entries_by_document", "workbook_name", "default_out_dir"]
