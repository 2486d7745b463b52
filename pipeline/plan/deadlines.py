"""Where each unit stands: on time or late against an obligation, and every unit's state on every
obligation its group owes (missing, rejected, on time, late).

Pure: no I/O and no clock. What counts as on time is ``Obligation.due_at`` (see obligations.py):
``received_at <= due_at``.

STATES is what the ledger logic (reminders, receipts) works with. What people are shown is finer
(``standing``): a missing report after its deadline ("Quá hạn, chưa nộp") is not one still to come
("Chưa đến hạn"), and a unit whose document waits for staff is neither. The desk, the staff mail and
the workbook all show standings, so they say the same thing of the same unit on the same day.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from pipeline.model import DocumentRecord, Finding, Unit
from pipeline.plan.obligations import Obligation

STATES = ("missing", "rejected", "on_time", "late")
STATE_LABELS_VI = {
    "missing": "Chưa nộp",
    "rejected": "Chưa đạt, chờ gửi lại",
    "on_time": "Đúng hạn",
    "late": "Quá hạn",
}


# What people are shown, in the order the desk and the workbook list them. Every unit owing an
# obligation has exactly one standing, so the counts of a row add up to the units that owe it.
STANDINGS = ("on_time", "late", "submitted", "rejected", "under_review", "overdue", "not_due", "missing")
STANDING_LABELS_VI = {
    "on_time": "Đúng hạn",
    "late": "Nộp quá hạn",
    "submitted": "Đã nộp",                    # no deadline set: neither on time nor late
    "rejected": "Chưa đạt, chờ gửi lại",
    "under_review": "Chờ cán bộ xem xét",     # owing, but a document of it waits for staff
    "overdue": "Quá hạn, chưa nộp",
    "not_due": "Chưa đến hạn",
    "missing": "Chưa nộp",                    # no deadline set
}
# The short form a grid cell shows before the date ("Đúng hạn 14/02").
STANDING_SHORT_VI = {**STANDING_LABELS_VI, "rejected": "Chưa đạt", "under_review": "Chờ xem xét"}
SENT_STANDINGS = ("on_time", "late", "submitted")
NOT_SENT_STANDINGS = ("overdue", "not_due", "missing")


def past_due(obligation: Obligation, today: date) -> bool:
    """True from the day after the obligation's last on-time day (never without a deadline).

    By the day, like the staff mail and the workbook (which know only the day of their figures), so
    that all of them call the same unit overdue on the same day."""
    due = obligation.due_date
    return due is not None and today > due


def standing(state: str, obligation: Obligation, today: date, *, under_review: bool = False) -> str:
    """What a unit's ``state`` (one of STATES) on ``obligation`` is shown as on ``today``: one of STANDINGS."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    if state in ("on_time", "late"):
        return state if obligation.due_at is not None else "submitted"
    if under_review:
        return "under_review"
    if state == "rejected":
        return "rejected"
    if obligation.due_at is None:
        return "missing"
    return "overdue" if past_due(obligation, today) else "not_due"


@dataclass(frozen=True)
class ObligationState:
    """Where one unit stands on one obligation.

    ``received_at`` is when the counting document arrived; ``counted_at`` is the time judged
    against the deadline (the first attempt's time when the config keeps it, else received_at).
    For "rejected", document and findings are those of the newest rejected document.
    ``under_review_document_id``: a matching document still waiting for staff (needs_review).
    """

    unit_id: str
    obligation_id: str
    state: str  # one of STATES
    document_id: int | None = None
    received_at: datetime | None = None
    findings: tuple[Finding, ...] = ()
    counted_at: datetime | None = None
    under_review_document_id: int | None = None

    @property
    def owes(self) -> bool:
        return self.state in ("missing", "rejected")

    @property
    def label_vi(self) -> str:
        return STATE_LABELS_VI[self.state]


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware: {value!r}")
    return value


def is_on_time(obligation: Obligation, received_at: datetime) -> bool:
    """True when ``received_at`` is at or before the obligation's last on-time instant.

    An obligation without a date yet cannot be late.
    """
    _aware(received_at, "received_at")
    return obligation.due_at is None or received_at <= obligation.due_at


def obligation_for(kind: str, period: str | None, obligations: Iterable[Obligation]) -> Obligation | None:
    """The obligation a document of ``kind`` (and ``period`` for reports) counts towards."""
    for obligation in obligations:
        if obligation.matches(kind, period):
            return obligation
    return None


def document_on_time(
    document: DocumentRecord, obligations: Iterable[Obligation], *, keep_first_attempt_date: bool = False
) -> bool | None:
    """On time / late for an accepted document; None when it meets no obligation or is not accepted."""
    if document.state != "accepted":
        return None
    obligation = obligation_for(document.kind, document.period, obligations)
    if obligation is None:
        return None
    return is_on_time(obligation, _counted_at(document, keep_first_attempt_date))


def _counted_at(document: DocumentRecord, keep_first_attempt_date: bool) -> datetime:
    if keep_first_attempt_date and document.first_attempt_at is not None:
        return min(document.first_attempt_at, document.received_at)
    return document.received_at


def _newest(documents: list[DocumentRecord]) -> DocumentRecord:
    return max(documents, key=lambda d: (d.received_at, d.document_id))


def unit_states(
    obligations: Iterable[Obligation],
    units: Iterable[Unit],
    documents: Iterable[DocumentRecord],
    *,
    keep_first_attempt_date: bool = False,
) -> dict[tuple[str, str], ObligationState]:
    """State of every unit on every obligation its group owes, keyed by (unit_id, obligation_id).

    The newest accepted, non-superseded matching document counts (on time or late against
    ``counted_at``); with no accepted one, the newest rejected one makes the state "rejected";
    otherwise "missing". Documents in needs_review change nothing but are reported in
    ``under_review_document_id``.
    """
    obligations = tuple(obligations)
    by_unit: dict[str, list[DocumentRecord]] = {}
    for document in documents:
        by_unit.setdefault(document.unit_id, []).append(document)

    states: dict[tuple[str, str], ObligationState] = {}
    for unit in units:
        own = by_unit.get(unit.unit_id, [])
        for obligation in obligations:
            if not obligation.applies_to(unit):
                continue
            matching = [d for d in own if obligation.matches(d.kind, d.period)]
            accepted = [d for d in matching if d.state == "accepted" and not d.superseded]
            rejected = [d for d in matching if d.state == "rejected"]
            review = [d for d in matching if d.state == "needs_review" and not d.superseded]
            under_review = _newest(review).document_id if review else None
            key = (unit.unit_id, obligation.id)
            if accepted:
                doc = _newest(accepted)
                counted = _counted_at(doc, keep_first_attempt_date)
                states[key] = ObligationState(
                    unit.unit_id, obligation.id,
                    "on_time" if is_on_time(obligation, counted) else "late",
                    doc.document_id, doc.received_at, (), counted, under_review,
                )
            elif rejected:
                doc = _newest(rejected)
                states[key] = ObligationState(
                    unit.unit_id, obligation.id, "rejected", doc.document_id, doc.received_at,
                    tuple(doc.findings), None, under_review,
                )
            else:
                states[key] = ObligationState(
                    unit.unit_id, obligation.id, "missing", under_review_document_id=under_review
                )
    return states


__all__ = [
    "STATES", "STATE_LABELS_VI", "STANDINGS", "STANDING_LABELS_VI", "STANDING_SHORT_VI", "SENT_STANDINGS",
    "NOT_SENT_STANDINGS", "past_due", "standing", "ObligationState", "is_on_time", "obligation_for", "document_on_time",
    "unit_states",
]
