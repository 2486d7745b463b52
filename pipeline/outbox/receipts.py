"""View-models for receipts: pure, from a message's document readings to what the template shows.

Names come from the form definitions (``rules.forms``): the kind's name and short name, and the category
columns of the document's own form, so a receipt of a form added as data names its categories as that
form prints them."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from pipeline.forms.rules import Rules
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
    issues = sorted(reading.findings, key=lambda f: (f.severity != "error", f.row or 0))
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
        "state_label": DOC_STATE_LABELS.get(reading.state, reading.state),
        "on_time": on_time,
        "due_label": due.strftime("%d/%m/%Y") if due else "",
        "counts": counts,
        "total": total,
        "category_labels": list(categories.values()),
        "issues": [{"severity": f.severity, "location": f.location, "message": f.message, "code": f.code}
                   for f in issues],
    }


def receipt_view(*, organisation: str, unit_name: str, received_at: datetime, subject: str,
                 documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"organisation": organisation, "unit_name": unit_name, "received_at": received_at,
            "subject": subject, "documents": list(documents)}
