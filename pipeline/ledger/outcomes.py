"""What a pass concluded about a message: its state, documents with their entries and findings, the
receipt to send, a bounce; which accepted document of a group counts (supersession); and forgetting
an outcome so that the message can be replayed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.ledger.db import Database, serialise
from pipeline.ledger.outbox import OutboxItem, outbox_row
from pipeline.ledger.schema import bounces, documents, entries, findings, from_iso, iso, messages, outbox
from pipeline.model import DocumentReading


@dataclass(frozen=True)
class DocumentOutcome:
    part: str
    filename: str
    content_type: str
    sha256: str
    size: int
    reading: DocumentReading
    on_time: bool | None


@dataclass(frozen=True)
class OutcomeRecord:
    """One message's outcome: its final state, documents, receipts and bounce, written together."""
    pk: int
    state: str
    reason: str | None
    sender: str | None
    from_name: str | None
    subject: str
    unit_id: str | None
    outcomes: tuple[DocumentOutcome, ...] = ()
    outbox_items: tuple[OutboxItem, ...] = ()
    bounce: tuple[tuple[str, ...], str | None] | None = None
    campaign: int | None = None  # the campaign open when the mail arrived (None: before any)
    duplicate_of: int | None = None  # a resent copy: the message it repeats (recorded, not answered)


class OutcomesMixin(Database):
    def reset_for_reprocess(self, pk: int, now: datetime) -> None:
        """Forget a message's outcome (documents, entries, findings) so it can be replayed."""
        with self.tx() as c:
            self.forget_documents(c, pk)
            c.execute(bounces.delete().where(bounces.c.message_pk == pk))
            c.execute(messages.update().where(messages.c.id == pk).values(
                state="received", reason=None, duplicate_of=None, generation=messages.c.generation + 1,
                updated_at=iso(now)))

    def forget_documents(self, c: Connection, pk: int) -> None:
        """Delete a message's documents with their entries and findings; re-mark what they superseded."""
        rows = list(c.execute(sa.select(documents.c.id, documents.c.unit_id, documents.c.campaign, documents.c.kind,
                                        documents.c.period).where(documents.c.message_pk == pk)))
        ids = [d.id for d in rows]
        if ids:
            c.execute(entries.delete().where(entries.c.document_id.in_(ids)))
            c.execute(findings.delete().where(findings.c.document_id.in_(ids)))
            c.execute(documents.update().where(documents.c.superseded_by.in_(ids)).values(superseded_by=None))
            c.execute(documents.delete().where(documents.c.id.in_(ids)))
        for d in sorted(rows, key=lambda d: repr((d.unit_id, d.kind, d.period))):  # the locks in one order
            self._resupersede(c, d.unit_id, d.campaign, d.kind, d.period)

    def record_outcomes(self, records: Sequence[OutcomeRecord], now: datetime) -> list[list[int]]:
        """Write the outcomes of several messages (states, documents, receipts) in ONE transaction.

        Only a message still 'received' is written (one finished by an earlier run is left alone and gets
        ``[]``). Supersession is recomputed once per (unit, campaign, kind, period) group touched, at the end: the same as
        recomputing it after each document, since it depends only on the set of accepted documents.
        """
        if not records:
            return []
        with self.tx() as c:
            known: dict[int, Any] = {}
            pks = [r.pk for r in records]
            for start in range(0, len(pks), 500):
                for row in c.execute(sa.select(messages.c.id, messages.c.state, messages.c.received_at)
                                     .where(messages.c.id.in_(pks[start:start + 500]))):
                    known[row.id] = row
            groups: dict[tuple[str, int | None, str, str | None], None] = {}
            todo: list[tuple[OutcomeRecord, str]] = []
            slots: list[int | None] = []  # per record: its index in todo, or None (nothing written)
            for rec in records:
                row = known.get(rec.pk)
                if row is None or row.state != "received":
                    slots.append(None)  # already finished by an earlier run (or twice in this batch)
                    continue
                slots.append(len(todo))
                todo.append((rec, row.received_at))
                known[rec.pk] = None  # a second record for the same message in this batch is a no-op
            doc_ids = self._write_outcomes(c, todo, now, groups) if todo else []
            # in one order for every writer: two passes locking the same groups never wait on each other
            for unit_id, campaign, kind, period in sorted(groups, key=lambda g: repr((g[0], g[2], g[3]))):
                self._resupersede(c, unit_id, campaign, kind, period)
            return [doc_ids[i] if i is not None else [] for i in slots]

    def _write_outcomes(self, c: Connection, todo: Sequence[tuple[OutcomeRecord, str]], now: datetime,
                        groups: dict[tuple[str, int | None, str, str | None], None]) -> list[list[int]]:
        """Documents, entries, findings, outbox items, bounces and message states of several messages,
        a few statements for all of them. Returns the new document ids per message."""
        doc_rows: list[dict[str, Any]] = []
        owners: list[tuple[int, DocumentOutcome]] = []
        for i, (rec, received_at) in enumerate(todo):
            for o in rec.outcomes:
                r = o.reading
                owners.append((i, o))
                doc_rows.append(dict(
                    message_pk=rec.pk, unit_id=rec.unit_id, part=o.part, filename=o.filename,
                    content_type=o.content_type, sha256=o.sha256, size=o.size, kind=r.kind, period=r.period,
                    state=r.state, format=r.format, title=r.title, unit_line=r.unit_line, on_time=o.on_time,
                    received_at=received_at, campaign=r.campaign if r.campaign is not None else rec.campaign))
                if r.state == "accepted" and rec.unit_id:
                    groups[(rec.unit_id, doc_rows[-1]["campaign"], r.kind, r.period)] = None
        out: list[list[int]] = [[] for _ in todo]
        if doc_rows:
            ids = [int(x) for x in c.execute(
                documents.insert().returning(documents.c.id, sort_by_parameter_order=True), doc_rows).scalars()]
            entry_rows: list[dict[str, Any]] = []
            finding_rows: list[dict[str, Any]] = []
            for doc_id, (i, o) in zip(ids, owners):
                out[i].append(doc_id)
                entry_rows += [dict(
                    document_id=doc_id, section=e.section, name=e.name, model=e.model,
                    categories=json.dumps(list(e.categories)), result=e.result, note=e.note,
                    row=e.row, location=e.location,
                    extra=json.dumps(dict(e.extra), ensure_ascii=False) if e.extra else None)
                    for e in o.reading.entries]
                finding_rows += [dict(
                    document_id=doc_id, code=f.code, severity=f.severity, message=f.message,
                    location=f.location, row=f.row, column=f.column) for f in o.reading.findings]
            if entry_rows:
                c.execute(entries.insert(), entry_rows)
            if finding_rows:
                c.execute(findings.insert(), finding_rows)
        items: list[OutboxItem] = []
        keys: set[str] = set()
        for rec, _ in todo:  # as _enqueue: the first item with a key wins
            for item in rec.outbox_items:
                if item.key not in keys:
                    keys.add(item.key)
                    items.append(item)
        if items:
            have = set(c.execute(sa.select(outbox.c.key).where(outbox.c.key.in_([i.key for i in items]))).scalars())
            new_items = [i for i in items if i.key not in have]
            if new_items:
                c.execute(outbox.insert(), [outbox_row(i, now) for i in new_items])
        for rec, _ in todo:
            if rec.bounce is not None:
                recips, bounced_mid = rec.bounce
                ob = None
                bounced_unit = None
                if bounced_mid:
                    hit = c.execute(sa.select(outbox.c.id, outbox.c.unit_id)
                                    .where(outbox.c.smtp_message_id == bounced_mid)).first()
                    if hit:
                        ob, bounced_unit = hit.id, hit.unit_id
                c.execute(bounces.insert().values(message_pk=rec.pk, outbox_id=ob, unit_id=bounced_unit,
                                                  recipients=json.dumps(list(recips)), created_at=iso(now)))
        c.execute(messages.update().where(messages.c.id == sa.bindparam("b_pk")).values(
            state=sa.bindparam("b_state"), reason=sa.bindparam("b_reason"), sender=sa.bindparam("b_sender"),
            from_name=sa.bindparam("b_from_name"), subject=sa.bindparam("b_subject"),
            unit_id=sa.bindparam("b_unit_id"), campaign=sa.bindparam("b_campaign"),
            duplicate_of=sa.bindparam("b_duplicate_of"), attempts=messages.c.attempts + 1, updated_at=iso(now),
        ), [dict(b_pk=rec.pk, b_state=rec.state, b_reason=rec.reason, b_sender=rec.sender,
                 b_from_name=rec.from_name, b_subject=rec.subject, b_unit_id=rec.unit_id, b_campaign=rec.campaign,
                 b_duplicate_of=rec.duplicate_of)
            for rec, _ in todo])
        return out

    def first_received_at(self, unit_id: str, kind: str, period: str | None, campaign: int) -> datetime | None:
        """When the unit's first recorded document of this kind and period in ``campaign`` arrived (any state)."""
        period_cond = documents.c.period.is_(None) if period is None else documents.c.period == period
        with self.tx() as c:
            value = c.execute(sa.select(sa.func.min(documents.c.received_at)).where(
                documents.c.unit_id == unit_id, documents.c.campaign == campaign, documents.c.kind == kind,
                period_cond)).scalar()
        return from_iso(value) if value else None

    def _lock_groups(self, c: Connection, unit_id: str | None, groups: Sequence[tuple[str, str | None]]) -> None:
        """Take the locks of a unit's (kind, period) groups in one order before re-marking several of them."""
        if unit_id is not None:
            for kind, period in sorted(set(groups), key=repr):
                serialise(c, "supersede", unit_id, kind, period)

    def _resupersede(self, c: Connection, unit_id: str | None, campaign: int | None, kind: str,
                     period: str | None) -> None:
        """The newest accepted document of a kind for a unit, campaign and period counts; older ones are
        superseded (a registration of 2023 does not supersede the one of 2022).

        Serialised per unit, kind and period until the transaction ends: two writers (a pass and a desk
        action) each seeing only their own new document would otherwise both leave it current."""
        if unit_id is None:
            return
        serialise(c, "supersede", unit_id, kind, period)
        period_cond = documents.c.period.is_(None) if period is None else documents.c.period == period
        campaign_cond = documents.c.campaign.is_(None) if campaign is None else documents.c.campaign == campaign
        group = sa.and_(documents.c.unit_id == unit_id, campaign_cond, documents.c.kind == kind, period_cond,
                        documents.c.state == "accepted")
        newest = c.execute(sa.select(documents.c.id).where(group)
                           .order_by(documents.c.received_at.desc(), documents.c.id.desc()).limit(1)).scalar()
        if newest is None:
            return
        c.execute(documents.update().where(documents.c.id == newest, documents.c.superseded_by.is_not(None))
                  .values(superseded_by=None))
        # only rows whose mark changes are written, and in SQL: no id list travels through Python
        c.execute(documents.update().where(
            group, documents.c.id != newest,
            sa.or_(documents.c.superseded_by.is_(None), documents.c.superseded_by != newest),
        ).values(superseded_by=newest))
