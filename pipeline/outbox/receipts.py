"""View-models for receipts: pure, from a message's document readings to what the template shows.

Names come from the form definitions (``rules.forms``): the kind's name and short name, and the category
columns of the document's own form, so a receipt of a form added as data names its categories as that
form prints them."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from pipeline.forms.rules import Rules
from pipeline.forms import _IMAGES  # the formats read as photos: one list, the reader's
from pipeline.forms.rules import cell_label
from pipeline.model import DOC_STATE_LABELS, SECTION_LABELS, DocumentReading, period_label


def document_view(filename: str, reading: DocumentReading, on_time: bool | None,
                  due: datetime | None, arrival: int | None = None, *, rules: Rules) -> dict[str, Any]:
    """What the receipt says of one attachment; ``arrival``: the campaign open when the mail came (a document
    that counts for another year says so)."""
    form = rules.forms.get(reading.kind)
    # A kind with no definition (none is ever accepted with entries) shows every form's categories.
    categories = form.category_labels() if form is not None else rules.category_labels()
    counts = []
    total = 0
    for section in ("collective", "individual"):
        ents = [e for e in reading.entries if e.section == section]
        if not ents:
            continue
        row = [sum(1 for e in ents if c in e.categories) for c in categories]
        counts.append({
            "section_label": SECTION_LABELS[section],
            "total": len(ents),
            "row": row,
            "by_category": [(label, n) for label, n in zip(categories.values(), row) if n],
        })
        total += len(ents)
    # A file left for staff: the receipt itself says so and what the unit may do, the finding would repeat it.
    shown = [f for f in reading.findings if not (reading.state == "needs_review" and f.code == "needs-review")]
    issues = sorted(shown, key=lambda f: (f.severity != "error", f.row or 0))
    return {
        "filename": filename,
        "kind": reading.kind,
        "kind_label": rules.kind_label(reading.kind),
        "kind_label_short": form.short_name if form is not None else None,
        "period_label": period_label(reading.period),
        # A report's period already names its year; a form says which year's plan it counts for.
        "campaign_label": (f"tính cho kế hoạch năm {reading.campaign}"
                           if reading.campaign and arrival and reading.campaign != arrival and not reading.period
                           else None),
        "state": reading.state,
        "is_image": reading.format in _IMAGES,
        "state_label": DOC_STATE_LABELS.get(reading.state, reading.state),
        "on_time": on_time,
        "due": due,
        "due_label": due.strftime("%d/%m/%Y") if due else "",
        "counts": counts,
        "total": total,
        "category_labels": list(categories.values()),
        # A finding whose message names its cell is not prefixed with it again.
        "issues": [{"severity": f.severity, "code": f.code, "message": f.message,
                    "location": None if cell_label(f.location) in f.message else cell_label(f.location) or None}
                   for f in issues],
    }


def resend_by(due: datetime | None, now: datetime) -> str | None:
    """What a rejection says of the deadline: resend before it ends, or, once it has passed, at once."""
    if due is None:
        return None
    if now <= due:
        return f"Đề nghị đơn vị gửi lại trước hết ngày {due.strftime('%d/%m/%Y')}."
    return (f"Hạn gửi là ngày {due.strftime('%d/%m/%Y')}, đến nay đã quá hạn; "
            "đề nghị đơn vị gửi lại sớm nhất có thể.")


def receipt_view(*, organisation: str, unit_name: str, received_at: datetime, subject: str,
                 documents: Sequence[dict[str, Any]], standings: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The receipt of one mail; a rejected document's deadline is judged at ``received_at`` (the receipt
    leaves within the pass that read the mail). ``standings``: where the unit stands in the campaigns of its
    documents (pipeline/outbox/standing.py), shown after them."""
    docs = [dict(d, resend=resend_by(d.get("due"), received_at) if d["state"] == "rejected" else None)
            for d in documents]
    return {"organisation": organisation, "unit_name": unit_name, "received_at": received_at,
            "subject": subject, "documents": docs, "standings": list(standings)}
