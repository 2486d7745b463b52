"""The text of a reminder to a unit: subject, plain text and HTML, in Vietnamese."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Sequence

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


@dataclass(frozen=True)
class ReminderPart:
    """One obligation a reminder names: the unit's state on it and the stage being sent."""

    obligation: Obligation
    state: ObligationState | None
    stage: str


def _part_context(part: ReminderPart, today: date | None) -> dict[str, object]:
    obligation, state, stage = part.obligation, part.state, part.stage
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
    return {
        "title": obligation.title,
        "form_name": obligation.form_name,
        "deadline": vn_date(due),
        "deadline_text": obligation.deadline_text,
        "before": kind == "before",
        "overdue": kind != "before",
        "days_left": (due - today).days if today is not None else None,
        "rejected": rejected,
        "rejected_received": (
            vn_datetime(state.received_at.astimezone(obligation.due_at.tzinfo))
            if rejected and state is not None and state.received_at is not None and obligation.due_at
            else None
        ),
        "findings": findings,
    }


def _subject(parts: Sequence[ReminderPart], items: Sequence[dict[str, object]]) -> str:
    if len(parts) == 1:
        part, item = parts[0], items[0]
        title, due = part.obligation.title, item["deadline"]
        if item["rejected"]:
            return f"Đề nghị gửi lại {title} (hạn {due})"
        if item["before"]:
            return f"Nhắc gửi {title} – hạn {due}"
        return f"Đề nghị gửi {title} – đã quá hạn {due}"
    earliest = min(parts, key=lambda p: p.obligation.due_date or date.max)
    late = any(not i["before"] for i in items)
    return (f"Nhắc gửi {len(parts)} văn bản: " + "; ".join(p.obligation.title for p in parts)
            + (" – có văn bản đã quá hạn" if late else f" – hạn gần nhất {vn_date(earliest.obligation.due_date)}"))


def render_reminder(
    env: jinja2.Environment,
    unit: Unit,
    parts: Sequence[ReminderPart],
    *,
    organisation: str,
    today: date | None = None,
    form_attached: bool = False,
) -> tuple[str, str, str]:
    """Subject, plain text and HTML of one reminder naming every obligation in ``parts`` (one mail per unit
    and day: several obligations due the same day go together), from templates/reminder.txt.j2 and .html.j2.

    ``env`` is a jinja2.Environment whose loader sees templates/; the HTML template switches
    autoescaping on by itself, so any environment is safe. ``form_attached``: the mail carries the blank
    form(s) with the unit's name filled in (the text says so).
    """
    if not parts:
        raise ValueError("a reminder names at least one obligation")
    parts = sorted(parts, key=lambda p: (p.obligation.due_date or date.max, p.obligation.id))
    items = [_part_context(p, today) for p in parts]
    labels = list(dict.fromkeys(stage_label(p.stage) for p in parts))
    context = {
        "organisation": organisation,
        "unit_name": unit.name,
        "addressee": _addressee(unit.name),
        "unit_id": unit.unit_id,
        "title": "; ".join(p.obligation.title for p in parts),
        "items": items,
        "stage_label": "; ".join(labels),
        "form_attached": form_attached,
        "date_line": vn_date_long(today) if today is not None else None,
    }
    text = env.get_template("reminder.txt.j2").render(**context)
    html = env.get_template("reminder.html.j2").render(**context)
    subject = f"[{organisation}] {_subject(parts, items)}"
    # A header must stay on one line whatever the names contain.
    subject = re.sub(r"[\r\n\t]+", " ", subject).strip()
    return subject, text, html


__all__ = ["ReminderPart", "render_reminder", "stage_label"]
