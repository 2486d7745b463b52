"""The ledger: messages, documents, entries, findings, outbox, poll state, reminders, locks, sessions,
staff actions.

``Store`` is the one object callers hold (``ctx.store``); its methods come from one module per
group of tables (messages, outcomes, outbox, reminders, liveness, sessions, review), all on one engine and
``tx()`` (db.py), over the tables of schema.py. Writes are idempotent: the dedup keys are unique
constraints, so a replay after a crash finds what was already done instead of doing it again.
Here: reading everything back (export, deadlines).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pipeline.ledger.leases import LeaseMixin
from pipeline.ledger.liveness import LivenessMixin
from pipeline.ledger.messages import MessagesMixin
from pipeline.ledger.outbox import OutboxMixin
from pipeline.ledger.outcomes import OutcomesMixin
from pipeline.ledger.reminders import RemindersMixin
from pipeline.ledger.review import ReviewMixin
from pipeline.ledger.schema import bounces, documents, entries, findings, from_iso, messages, outbox
from pipeline.ledger.sessions import DeskSessionsMixin
from pipeline.model import DocumentRecord, Finding


class Store(ReviewMixin, MessagesMixin, OutcomesMixin, RemindersMixin, OutboxMixin, LivenessMixin,
            LeaseMixin, DeskSessionsMixin):
    def document_records(self, campaign: int | None = None, unit_id: str | None = None) -> list[DocumentRecord]:
        """Every document of a known unit (of ``campaign``, of ``unit_id`` when given), as the deadline logic
        sees them."""
        cond = documents.c.unit_id.is_not(None) if unit_id is None else documents.c.unit_id == unit_id
        if campaign is not None:
            cond = sa.and_(cond, documents.c.campaign == campaign)
        with self.tx() as c:
            docs = list(c.execute(sa.select(documents).where(cond).order_by(documents.c.id)))
            query = sa.select(findings).order_by(findings.c.id)
            if campaign is not None:
                query = query.where(findings.c.document_id.in_(sa.select(documents.c.id).where(cond)))
            fnd = _group(c.execute(query), "document_id")
        first: dict[tuple[str, int | None, str, str | None], datetime] = {}
        for d in docs:
            key = (d.unit_id, d.campaign, d.kind, d.period)
            t = from_iso(d.received_at)
            first[key] = min(first.get(key, t), t)
        return [DocumentRecord(
            document_id=d.id, unit_id=d.unit_id, kind=d.kind, period=d.period, state=d.state,
            received_at=from_iso(d.received_at), superseded=d.superseded_by is not None,
            first_attempt_at=first[(d.unit_id, d.campaign, d.kind, d.period)],
            findings=tuple(_finding(f) for f in fnd.get(d.id, [])), campaign=d.campaign,
        ) for d in docs]

    def campaign_years(self) -> list[int]:
        """The campaigns the ledger holds documents for."""
        with self.tx() as c:
            return sorted(int(y) for y in c.execute(sa.select(documents.c.campaign).distinct()
                                                    .where(documents.c.campaign.is_not(None))).scalars())

    def snapshot(self) -> dict[str, Any]:
        """All messages with their documents, entries and findings, as plain rows."""
        with self.tx() as c:
            msgs = list(c.execute(sa.select(messages).order_by(messages.c.received_at, messages.c.id)))
            docs = _group(c.execute(sa.select(documents).order_by(documents.c.id)), "message_pk")
            ents = _group(c.execute(sa.select(entries).order_by(entries.c.id)), "document_id")
            fnds = _group(c.execute(sa.select(findings).order_by(findings.c.id)), "document_id")
            bnc = list(c.execute(sa.select(bounces).order_by(bounces.c.id)))
            obx = list(c.execute(sa.select(outbox.c.id, outbox.c.key, outbox.c.purpose, outbox.c.message_pk,
                                           outbox.c.unit_id, outbox.c.recipients, outbox.c.subject,
                                           outbox.c.state, outbox.c.attempts, outbox.c.last_error,
                                           outbox.c.created_at, outbox.c.sent_at, outbox.c.campaign)
                                 .order_by(outbox.c.id)))
        return {"messages": msgs, "documents": docs, "entries": ents, "findings": fnds, "bounces": bnc,
                "outbox": obx}


def _group(rows: Any, key: str) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for r in rows:
        out.setdefault(getattr(r, key), []).append(r)
    return out


def _finding(f: Any) -> Finding:
    return Finding(code=f.code, severity=f.severity, message=f.message, location=f.location, row=f.row,
                   column=f.column)
