"""The text of a reminder to a unit: subject, plain text and HTML, in Vietnamese."""
from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

from pipeline.model import Unit
from pipeline.plan.deadlines import ObligationState
from pipeline.plan.obligations import Obligation
from pipeline.plan.vn import vn_date, vn_date_long, vn_datetime
from pipeline.textnorm import fold

if TYPE_CHECKING:
    import jinja2


def _addressee(name: str) -> str:
    # Units' names often already start with "Công đoàn ..." / "CĐCS ...": do not say it twice.
    folded = fold(name)
    if folded.startswith(("cong doan", "cdcs", "cd ")):
        return f"Ban Chấp hành {name}"
    return f"Ban Chấp hành Công đoàn cơ sở {name}"


def _stage_kind(stage: str) -> str:
    return stage.split("-", 1)[0]


def stage_label(stage: str) -> str:
    """The stage in words for the unit ("before-2" → "nhắc trước hạn 2 ngày"); the code stays in the outbox key."""
    kind, _, n = stage.partition("-")
    words = {"before": f"nhắc trước hạn {n} ngày", "after": f"nhắc sau hạn {n} ngày",
             "weekly": f"nhắc hằng tuần lần {n} sau hạn"}
    return words.get(kind, "nhắc gửi văn bản")


def render_reminder(
    env: jinja2.Environment,
    unit: Unit,
    obligation: Obligation,
    state: ObligationState | None,
    stage: str,
    *,
    organisation: str,
    today: date | None = None,
    form_attached: bool = False,
) -> tuple[str, str, str]:
    """Subject, plain text and HTML of one reminder, from templates/reminder.txt.j2 and .html.j2.

    ``env`` is a jinja2.Environment whose loader sees templates/; the HTML template switches
    autoescaping on by itself, so any environment is safe. ``form_attached``: the mail carries the blank form
    with the unit's name filled in (the text says so).
    """
    if obligation.due_date is None:
        raise ValueError(f"obligation {obligation.id!r} has no due date: nothing to remind")
    due = obligation.due_date
    kind = _stage_kind(stage)
    rejected = state is not None and state.state == "rejected"
    findings = []
    if rejected and state is not None:
        for f in state.findings:
            where = f.location
            if not where and f.row is not None:
                where = f"dòng {f.row}" + (f", cột {f.column}" if f.column else "")
            findings.append({
                "location": where or "toàn văn bản",
                "message": f.message,
                "severity": "Lỗi" if f.severity == "error" else "Lưu ý",
            })
    days_left = (due - today).days if today is not None else None
    context = {
        "organisation": organisation,
        "unit_name": unit.name,
        "addressee": _addressee(unit.name),
        "unit_id": unit.unit_id,
        "title": obligation.title,
        "form_name": obligation.form_name,
        "deadline": vn_date(due),
        "deadline_text": obligation.deadline_text,
        "stage_label": stage_label(stage),
        "form_attached": form_attached,
        "date_line": vn_date_long(today) if today is not None else None,
        "before": kind == "before",
        "overdue": kind != "before",
        "days_left": days_left,
        "rejected": rejected,
        "rejected_received": (
            vn_datetime(state.received_at.astimezone(obligation.due_at.tzinfo))
            if rejected and state is not None and state.received_at is not None and obligation.due_at
            else None
        ),
        "findings": findings,
    }
    text = env.get_template("reminder.txt.j2").render(**context)
    html = env.get_template("reminder.html.j2").render(**context)
    if rejected:
        subject = f"Đề nghị gửi lại {obligation.title} (hạn {vn_date(due)})"
    elif kind == "before":
        subject = f"Nhắc gửi {obligation.title} – hạn {vn_date(due)}"
    else:
        subject = f"Đề nghị gửi {obligation.title} – đã quá hạn {vn_date(due)}"
    subject = f"[{organisation}] {subject}"
    # A header must stay on one line whatever the names contain.
    subject = re.sub(r"[\r\n\t]+", " ", subject).strip()
    return subject, text, html


__all__ = ["render_reminder", "stage_label"]
