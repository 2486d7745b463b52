"""Reminder stages already taken per unit and obligation, each recorded together with its mail.

A stage is unique per (campaign, unit, obligation): a replayed reminder run records and sends nothing twice,
and next year's "registration" obligation starts with no stage taken.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

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
        with self.tx() as c:
            try:
                with c.begin_nested():
                    rid = c.execute(reminders.insert().values(
                        unit_id=unit_id, obligation_id=obligation_id, stage=stage, created_at=iso(now),
                        campaign=campaign,
                    )).inserted_primary_key[0]
            except IntegrityError:
                return False
            if item is not None:
                self._enqueue(c, item, now)
                oid = c.execute(sa.select(outbox.c.id).where(outbox.c.key == item.key)).scalar()
                c.execute(reminders.update().where(reminders.c.id == rid).values(outbox_id=oid))
            return True

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
