"""Outbox rows: mail waiting to be sent, claimed for one SMTP conversation, then sent or failed.

An item's key is unique, so enqueueing the same mail twice (a replayed pass) adds nothing. What a person
waits for leaves first (``PRIORITY``): a unit's receipt before staff alerts, reminders and reports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.ledger.db import Database
from pipeline.ledger.schema import from_iso, iso, outbox


@dataclass(frozen=True)
class OutboxItem:
    key: str
    purpose: str
    recipients: tuple[str, ...]
    subject: str
    smtp_message_id: str
    raw: bytes
    message_pk: int | None = None
    unit_id: str | None = None
    campaign: int | None = None  # the campaign a receipt or reminder is about


# Lower leaves first; within a rank, the oldest due first. "notice" (a unit's document judged by staff) is a
# receipt too: the unit waits for it.
PRIORITY = {"receipt": 0, "notice": 0, "alert": 1, "reminder": 2, "report": 3}
LOWEST = max(PRIORITY.values())
# What a unit waits for: receipts and notices about its own document (the receipt-delay alert watches these).
AWAITED = frozenset(p for p, rank in PRIORITY.items() if rank == 0)
# What may use the part of the day's sending limit kept for receipts (smtp.reserve_for_receipts): receipts,
# and the few alerts that tell staff something is wrong.
MAY_USE_RESERVE = frozenset(p for p, rank in PRIORITY.items() if rank <= 1)


def rank_of(purpose: str) -> int:
    return PRIORITY.get(purpose, LOWEST)


_RANK = sa.case(*((outbox.c.purpose == p, r) for p, r in PRIORITY.items()), else_=LOWEST)


def outbox_row(item: OutboxItem, now: datetime) -> dict[str, Any]:
    """The row of a newly enqueued item: pending, due now."""
    return dict(
        key=item.key, purpose=item.purpose, message_pk=item.message_pk, unit_id=item.unit_id, campaign=item.campaign,
        recipients=json.dumps(list(item.recipients)), subject=item.subject,
        smtp_message_id=item.smtp_message_id, raw=item.raw, state="pending", attempts=0,
        created_at=iso(now), next_attempt_at=iso(now))


class OutboxMixin(Database):
    def _enqueue(self, c: Connection, item: OutboxItem, now: datetime) -> bool:
        if c.execute(sa.select(outbox.c.id).where(outbox.c.key == item.key)).first():
            return False
        c.execute(outbox.insert().values(**outbox_row(item, now)))
        return True

    def enqueue(self, item: OutboxItem, now: datetime) -> bool:
        with self.tx() as c:
            return self._enqueue(c, item, now)

    def due_outbox(self, now: datetime, limit: int) -> list[sa.Row[Any]]:
        """Pending items due at ``now``, in the order they leave: receipts first, then by due time."""
        with self.tx() as c:
            return list(c.execute(sa.select(outbox).where(
                outbox.c.state == "pending", outbox.c.next_attempt_at <= iso(now)
            ).order_by(_RANK, outbox.c.next_attempt_at, outbox.c.id).limit(limit)))

    def next_due(self, now: datetime, *, purposes: frozenset[str] | None = None,
                 skip: frozenset[int] = frozenset()) -> sa.Row[Any] | None:
        """The one item to send next (read just before it is sent, so a receipt recorded a second ago
        overtakes every reminder still waiting); ``purposes``: only these; ``skip``: ids passed over."""
        q = sa.select(outbox).where(outbox.c.state == "pending", outbox.c.next_attempt_at <= iso(now))
        if purposes is not None:
            q = q.where(outbox.c.purpose.in_(sorted(purposes)))
        if skip:
            q = q.where(outbox.c.id.not_in(sorted(skip)))
        with self.tx() as c:
            return c.execute(q.order_by(_RANK, outbox.c.next_attempt_at, outbox.c.id).limit(1)).first()

    def waiting_outbox(self) -> list[sa.Row[Any]]:
        """Every pending item (without its bytes), in the order it will leave: what the desk's forecast reads."""
        cols = [c for c in outbox.c if c.name != "raw"]
        with self.tx() as c:
            return list(c.execute(sa.select(*cols).where(outbox.c.state == "pending")
                                  .order_by(_RANK, outbox.c.next_attempt_at, outbox.c.id)))

    def sent_times(self, since: datetime) -> list[datetime]:
        """When each item sent since ``since`` left, oldest first (the sending limits' windows)."""
        with self.tx() as c:
            return [from_iso(r[0]) for r in c.execute(
                sa.select(outbox.c.sent_at).where(outbox.c.state == "sent", outbox.c.sent_at > iso(since))
                .order_by(outbox.c.sent_at))]

    def drop_outbox(self, oid: int, reason: str, now: datetime) -> bool:
        """A pending item that must not leave any more (a reminder the unit no longer owes): kept, with why."""
        with self.tx() as c:
            return c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state == "pending").values(
                state="dropped", last_error=reason, sent_at=None, next_attempt_at=iso(now))).rowcount == 1

    def rewrite_outbox(self, oid: int, subject: str, smtp_message_id: str, raw: bytes,
                       recipients: Sequence[str]) -> None:
        """A pending item's mail made again before it leaves (a reminder now naming fewer obligations, or
        going to the unit's addresses as they are now)."""
        with self.tx() as c:
            c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state == "pending").values(
                subject=subject, smtp_message_id=smtp_message_id, raw=raw, recipients=json.dumps(list(recipients))))

    def defer_outbox(self, oid: int, until: datetime) -> None:
        with self.tx() as c:
            c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state == "pending")
                      .values(next_attempt_at=iso(until)))

    def claim_outbox(self, oid: int, now: datetime, claimed_by: str | None = None) -> bool:
        """Mark an item 'sending' just before the SMTP conversation, by whom (the process's holder id); only
        one claimant wins."""
        with self.tx() as c:
            return c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state == "pending").values(
                state="sending", attempts=outbox.c.attempts + 1, next_attempt_at=iso(now),
                claimed_by=claimed_by)).rowcount == 1

    def finish_outbox(self, oid: int, state: str, now: datetime, error: str | None = None,
                      retry_at: datetime | None = None) -> None:
        values: dict[str, Any] = {"state": state, "last_error": error}
        if state == "sent":
            values["sent_at"] = iso(now)
        if retry_at is not None:
            values["next_attempt_at"] = iso(retry_at)
        with self.tx() as c:
            # Only the claimant's own claim is marked: one settled meanwhile (settle.py) is not overwritten.
            c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state == "sending").values(**values))

    def interrupted_sends(self, claimed_before: datetime, live: Sequence[str] = ()) -> list[sa.Row[Any]]:
        """Items claimed ('sending') at or before ``claimed_before`` and never marked: their sender died
        between the claim and the mark. A younger claim may be a live sender's (the desk, `intake poll`);
        so may a claim by one of the ``live`` holders (the worker holding the lease now)."""
        cols = [c for c in outbox.c if c.name != "raw"]
        where = [outbox.c.state == "sending", outbox.c.next_attempt_at <= iso(claimed_before)]
        if live:
            where.append(sa.or_(outbox.c.claimed_by.is_(None), outbox.c.claimed_by.not_in(sorted(set(live)))))
        with self.tx() as c:
            return list(c.execute(sa.select(*cols).where(*where).order_by(outbox.c.id)))

    def settle_send(self, oid: int, state: str, note: str, now: datetime) -> bool:
        """An interrupted send settled: 'sent' (found in the Sent folder), 'pending' (not sent: goes again,
        same Message-ID) or 'uncertain' (for staff: `intake outbox retry`)."""
        values: dict[str, Any] = {"state": state, "last_error": note}
        if state == "sent":
            values["sent_at"] = iso(now)
        if state == "pending":
            values["next_attempt_at"] = iso(now)
        with self.tx() as c:
            return c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state == "sending")
                             .values(**values)).rowcount == 1

    def sent_since(self, since: datetime, limit: int | None = None) -> int:
        """Items sent after ``since`` (counted on the covering index (state, sent_at)); with ``limit``,
        counting stops there (``min(count, limit)``): enough to know whether a sending limit is reached.
        After, not at: stamps are whole seconds, and a job that runs every 60 s must find last minute's mail
        outside the window, not every other minute."""
        where = (outbox.c.state == "sent", outbox.c.sent_at > iso(since))
        with self.tx() as c:
            if limit is None:
                return int(c.execute(sa.select(sa.func.count()).select_from(outbox).where(*where)).scalar() or 0)
            capped = sa.select(outbox.c.id).where(*where).limit(max(limit, 0)).subquery()
            return int(c.execute(sa.select(sa.func.count()).select_from(capped)).scalar() or 0)

    def outbox_rows(self, purpose: str | None = None) -> list[sa.Row[Any]]:
        with self.tx() as c:
            q = sa.select(outbox).order_by(outbox.c.id)
            if purpose:
                q = q.where(outbox.c.purpose == purpose)
            return list(c.execute(q))

    def retry_outbox(self, oid: int, now: datetime) -> bool:
        with self.tx() as c:
            return c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state.in_(("uncertain", "failed")))
                             .values(state="pending", next_attempt_at=iso(now))).rowcount == 1
