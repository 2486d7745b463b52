"""Reminder stages already taken per unit and obligation, recorded together with their mail (one mail a unit
may name several obligations).

A stage is unique per (campaign, unit, obligation): a replayed reminder run records and sends nothing twice,
and next year's "registration" obligation starts with no stage taken.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pipeline.ledger.outbox import OutboxItem, OutboxMixin
from pipeline.ledger.schema import iso, outbox, reminders


class RemindersMixin(OutboxMixin):
    def reminder_stages_sent(self, campaign: int) -> set[tuple[str, str, str]]:
        with self.tx() as c:
            return {(r.unit_id, r.obligation_id, r.stage)
                    for r in c.execute(sa.select(reminders).where(reminders.c.campaign == campaign))}

    def record_reminder(self, unit_id: str, obligation_id: str, stage: str, item: OutboxItem | None,
                        now: datetime, *, campaign: int) -> bool:
        """Record a reminder stage and its mail together; False when that stage was already recorded."""
        recorded = self.record_reminders(unit_id, [(obligation_id, stage)],
                                         (lambda _taken: item) if item is not None else None, now, campaign=campaign)
        return bool(recorded)

    def record_reminders(self, unit_id: str, stages: Sequence[tuple[str, str]],
                         build: Callable[[list[tuple[str, str]]], OutboxItem] | None, now: datetime, *,
                         campaign: int) -> list[tuple[str, str]]:
        """Record the (obligation, stage) pairs of one unit and ONE mail naming those that were not recorded
        before (``build`` makes it from them; None: passed over, no mail), all in one transaction. Returns
        the pairs this call recorded: a pair another run recorded first is neither recorded nor mailed again."""
        taken: list[tuple[str, str]] = []
        ids: list[int] = []
        with self.tx() as c:
            for obligation_id, stage in stages:
                try:
                    with c.begin_nested():
                        ids.append(c.execute(reminders.insert().values(
                            unit_id=unit_id, obligation_id=obligation_id, stage=stage, created_at=iso(now),
                            campaign=campaign,
                        )).inserted_primary_key[0])
                        taken.append((obligation_id, stage))
                except IntegrityError:
                    continue
            if taken and build is not None:
                item = build(taken)
                self._enqueue(c, item, now)
                oid = c.execute(sa.select(outbox.c.id).where(outbox.c.key == item.key)).scalar()
                c.execute(reminders.update().where(reminders.c.id.in_(ids)).values(outbox_id=oid))
        return taken

    def reminder_parts(self, outbox_id: int) -> list[sa.Row[Any]]:
        """The stages one reminder mail names (one mail may name several obligations of a unit)."""
        with self.tx() as c:
            return list(c.execute(sa.select(reminders).where(reminders.c.outbox_id == outbox_id)
                                  .order_by(reminders.c.id)))

    def reminder_counts(self, campaign: int) -> dict[tuple[str, str], int]:
        with self.tx() as c:
            rows = c.execute(sa.select(reminders.c.unit_id, reminders.c.obligation_id, sa.func.count())
                             .where(reminders.c.outbox_id.is_not(None), reminders.c.campaign == campaign)
                             .group_by(reminders.c.unit_id, reminders.c.obligation_id))
            return {(r[0], r[1]): int(r[2]) for r in rows}

    def reminder_rows(self, campaign: int | None = None) -> list[sa.Row[Any]]:
        query = sa.select(reminders).order_by(reminders.c.id)
        if campaign is not None:
            query = query.where(reminders.c.campaign == campaign)
        with self.tx() as c:
            return list(c.execute(query))
