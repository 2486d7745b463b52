"""Where a unit stands in a campaign, as its receipts and review notices tell it: what is recorded, what
waits for staff, what it still owes and by when, so that one mail answers "what else do we have to send?".

``standing_view`` is pure (obligations, the unit, its documents and the day → what the templates show);
``unit_standings`` reads the unit's own documents of a campaign from the ledger (one indexed query per
campaign) and adds those not recorded yet: a receipt is built before its mail's documents are written (they
are written together, in one transaction, with the receipt itself), so the standing it shows is the ledger's
plus this mail's documents, plus those of the unit's earlier mail in the same batch.

Which obligations a receipt lists: every one the unit has sent something for, every one whose deadline has
passed, and those due within ``UPCOMING_DAYS``, so that a receipt in February names the registration and the
first-quarter report but not the year-end report; those it has not sent (or must send again) are what it
"still has to send". With nothing owed, the receipt says all that is due was sent and names the next
deadline. Obligations without a date yet (nobody is asked for them) are listed only once the unit has sent
something for them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from pipeline.ledger.schema import from_iso
from pipeline.model import DocumentReading, DocumentRecord, Unit
from pipeline.plan.deadlines import standing, unit_states
from pipeline.plan.obligations import Obligation
from pipeline.plan.vn import vn_date

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context

# A quarterly report is due every three months: a month and a half ahead names the next one while it is being
# written, without listing the whole year in every receipt.
UPCOMING_DAYS = 45

_SENT = ("on_time", "late", "submitted")


def _line(obligation: Obligation, shown: str, received: datetime | None, today: date, tz: tzinfo | None) -> str:
    """What one obligation's line says after its title."""
    due = vn_date(obligation.due_date) if obligation.due_date else None
    got = f"nhận ngày {vn_date(received.astimezone(tz) if tz else received)}" if received is not None else None
    if shown == "on_time":
        return f"đã ghi nhận ({got}), đúng hạn"
    if shown == "late":
        return f"đã ghi nhận ({got}), nộp muộn so với hạn {due}"
    if shown == "submitted":
        return f"đã ghi nhận ({got})"
    if shown == "under_review":
        return f"đã nhận{' (' + got + ')' if got else ''}, đang chờ cán bộ xem xét"
    if shown == "rejected":
        if obligation.due_date is None:
            return f"chưa đạt ({got}), đề nghị gửi lại"
        if today > obligation.due_date:
            return f"chưa đạt ({got}), đã quá hạn {due}, đề nghị gửi lại sớm nhất có thể"
        return f"chưa đạt ({got}), đề nghị gửi lại trước hết ngày {due}"
    if shown == "overdue":
        return f"chưa gửi, đã quá hạn {due}"
    if shown == "not_due":
        return f"chưa gửi, hạn {due}"
    return "chưa gửi"


def _owed(obligation: Obligation, shown: str, today: date) -> str:
    """One obligation in the sentence "Đơn vị còn phải gửi: …"."""
    due = obligation.due_date
    if due is None:
        return f"{obligation.form_name} (gửi lại)"
    if today > due:
        return f"{obligation.form_name} ({'gửi lại, ' if shown == 'rejected' else ''}đã quá hạn {vn_date(due)})"
    return f"{obligation.form_name} ({'gửi lại, ' if shown == 'rejected' else ''}hạn {vn_date(due)})"


def standing_view(obligations: Iterable[Obligation], unit: Unit, documents: Iterable[DocumentRecord], today: date,
                  *, title: str, keep_first_attempt_date: bool = False, tz: tzinfo | None = None,
                  upcoming_days: int = UPCOMING_DAYS) -> dict[str, Any] | None:
    """The section of a receipt on ``unit``'s standing in one campaign (``title``: the plan's name) on ``today``;
    None when no obligation of the campaign applies to the unit.

    ``documents``: the unit's documents of the campaign, those of the mail being answered included (the first
    attempt at each form is taken from them); ``tz``: the zone the days of arrival are written in (the
    obligations' own when not given)."""
    own = _first_attempts([d for d in documents if d.unit_id == unit.unit_id])
    by_id = {d.document_id: d for d in own}
    obligations = [o for o in obligations if o.applies_to(unit)]
    if not obligations:
        return None
    states = unit_states(obligations, [unit], own, keep_first_attempt_date=keep_first_attempt_date)
    tz = tz or next((o.due_at.tzinfo for o in obligations if o.due_at is not None), None)
    rows = []
    for ob in obligations:
        st = states[(unit.unit_id, ob.id)]
        shown = standing(st.state, ob, today, under_review=st.under_review_document_id is not None)
        review = by_id.get(st.under_review_document_id) if st.under_review_document_id is not None else None
        rows.append((ob, shown, review.received_at if review is not None and shown == "under_review"
                     else st.received_at))
    horizon = today + timedelta(days=upcoming_days)
    listed = [r for r in rows if r[1] in (*_SENT, "under_review", "rejected", "overdue")
              or (r[1] == "not_due" and r[0].due_date is not None and r[0].due_date <= horizon)]
    # By deadline, then in the plan's order (a stable sort keeps it).
    listed.sort(key=lambda r: r[0].due_date or date.max)
    owed = [_owed(ob, shown, today) for ob, shown, _r in listed if shown in ("rejected", "overdue", "not_due")]
    if owed:
        summary = "Đơn vị còn phải gửi: " + "; ".join(owed) + "."
    else:
        summary = "Đơn vị đã gửi đủ các văn bản đến hạn."
        # Nothing owed within the horizon: the unit still learns what comes next and when.
        later = sorted((ob.due_date, i) for i, (ob, shown, _r) in enumerate(rows)
                       if shown == "not_due" and ob.due_date is not None)
        if later:
            nxt = [rows[i][0] for day, i in later if day == later[0][0]]
            summary += (" Văn bản tiếp theo: " + "; ".join(ob.form_name for ob in nxt)
                        + f" (hạn {vn_date(later[0][0])}).")
    waiting = [ob.title for ob, shown, _r in listed if shown == "under_review"]
    if waiting:
        summary += " Đang chờ cán bộ xem xét: " + "; ".join(waiting) + " (đơn vị sẽ nhận thư báo kết quả)."
    return {
        "heading": f"Tình hình gửi văn bản của đơn vị theo {title} (đến ngày {vn_date(today)})",
        "lines": [{"obligation": ob.id, "title": ob.title, "standing": shown,
                   "status": _line(ob, shown, received, today, tz)} for ob, shown, received in listed],
        "owed": owed,
        "summary": summary,
        "all_sent": not owed,
    }


# -- what the ledger holds, and what is about to be written ---------------------------------------------

def reading_records(unit_id: str | None, readings: Iterable[DocumentReading], received_at: datetime,
                    ) -> list[DocumentRecord]:
    """A mail's readings as the deadline logic sees documents, before they are recorded (id 0: not yet known)."""
    if unit_id is None:
        return []
    return [DocumentRecord(document_id=0, unit_id=unit_id, kind=r.kind, period=r.period, state=r.state,
                           received_at=received_at, campaign=r.campaign) for r in readings]


def _first_attempts(docs: Sequence[DocumentRecord]) -> list[DocumentRecord]:
    """``docs`` (one unit's, one campaign's) with the first attempt at each form set over all of them, as the
    ledger sets it: the mail being answered is not recorded yet, and a correction counts from the first try."""
    first: dict[tuple[str, str | None], datetime] = {}
    for d in docs:
        first[(d.kind, d.period)] = min(first.get((d.kind, d.period), d.received_at), d.received_at)
    return [dataclasses.replace(d, first_attempt_at=first[(d.kind, d.period)]) for d in docs]


def _merged(recorded: Sequence[DocumentRecord], new: Sequence[DocumentRecord]) -> list[DocumentRecord]:
    """``recorded`` plus ``new``, the new ones without an id numbered after the recorded ones (they are newer,
    and the ledger breaks a tie of arrival times by id)."""
    top = max((d.document_id for d in recorded), default=0)
    docs = list(recorded)
    for d in new:
        if d.document_id <= 0:
            top += 1
            d = dataclasses.replace(d, document_id=top)
        docs.append(d)
    return docs


def unit_standings(ctx: Context, unit: Unit, years: Iterable[int], now: datetime,
                   new: Sequence[DocumentRecord] = (), *, replaces: int | None = None) -> list[dict[str, Any]]:
    """The standing sections of a mail to ``unit`` at ``now``: one per campaign of ``years`` (those of the
    documents it answers for, then the current one), from the ledger plus ``new`` (documents about to be
    recorded); ``replaces``: a recorded document that ``new`` rewrites (a staff decision)."""
    today = now.astimezone(ctx.cfg.tz).date()
    out = []
    for year in dict.fromkeys(years):
        campaign = ctx.campaigns.get(year)
        if campaign is None:
            continue
        recorded = [d for d in ctx.store.document_records(campaign=year, unit_id=unit.unit_id)
                    if d.document_id != replaces]
        docs = _merged(recorded, [d for d in new if d.unit_id == unit.unit_id and d.campaign == year])
        view = standing_view(campaign.obligations, unit, docs, today, title=campaign.title, tz=ctx.cfg.tz,
                             keep_first_attempt_date=ctx.cfg.keep_first_attempt_date)
        if view is not None:
            out.append(view)
    return out


def standings_after_decision(ctx: Context, unit: Unit, document: Any, *, accepted: bool, now: datetime,
                             counts_as: tuple[str, str | None, int] | None = None) -> list[dict[str, Any]]:
    """The unit's standing once staff's decision on ``document`` (its ledger row, waiting for review) is written:
    a review notice is built before the decision is. ``counts_as``: the (kind, period, campaign) an accepted
    document is recorded as."""
    kind, period, campaign = counts_as or (document.kind, document.period, document.campaign or ctx.cfg.year)
    decided = DocumentRecord(document_id=document.id, unit_id=unit.unit_id, kind=kind, period=period,
                             state="accepted" if accepted else "rejected", campaign=campaign,
                             received_at=from_iso(document.received_at))
    return unit_standings(ctx, unit, [campaign], now, [decided], replaces=document.id)


__all__ = ["UPCOMING_DAYS", "reading_records", "standing_view", "standings_after_decision", "unit_standings"]
