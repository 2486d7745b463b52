"""Mail as fetched: archived messages recorded as 'received', the folder's UID high-water mark, and the
per-message state a pass moves along (attempts, errors).

A message is recognised by Message-ID + content hash, or by Gmail's X-GM-MSGID: a duplicate
returns the id recorded before. A resent copy (same Message-ID, bytes composed again) is a new row: the pass
finds its original with ``earlier_with_message_id`` and records it as a copy (``duplicate_of``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pipeline.ledger.db import Database
from pipeline.ledger.schema import from_iso, iso, messages, poll_state


@dataclass(frozen=True)
class RawRecord:
    """An archived message as ``record_raw`` records it."""
    message_id: str
    sha256: str
    gm_msgid: int | None
    uid: int
    size: int
    received_at: datetime


class MessagesMixin(Database):
    # -- poll state -------------------------------------------------------------------------
    def poll_state(self, folder: str) -> tuple[int, int] | None:
        with self.tx() as c:
            row = c.execute(sa.select(poll_state).where(poll_state.c.folder == folder)).first()
        return (row.uidvalidity, row.last_uid) if row else None

    def set_poll_state(self, folder: str, uidvalidity: int, last_uid: int, now: datetime) -> None:
        with self.tx() as c:
            self._set_poll_state(c, folder, uidvalidity, last_uid, now)

    def _set_poll_state(self, c: Connection, folder: str, uidvalidity: int, last_uid: int, now: datetime) -> None:
        updated = c.execute(
            poll_state.update().where(poll_state.c.folder == folder)
            .values(uidvalidity=uidvalidity, last_uid=last_uid, updated_at=iso(now))
        ).rowcount
        if not updated:
            c.execute(poll_state.insert().values(folder=folder, uidvalidity=uidvalidity,
                                                 last_uid=last_uid, updated_at=iso(now)))

    # -- messages ---------------------------------------------------------------------------
    def find_message(self, c: Connection, message_id: str, sha256: str, gm_msgid: int | None) -> int | None:
        cond = sa.and_(messages.c.message_id == message_id, messages.c.sha256 == sha256)
        if gm_msgid is not None:
            cond = sa.or_(cond, messages.c.gm_msgid == gm_msgid)
        return c.execute(sa.select(messages.c.id).where(cond)).scalar()

    def record_raw(self, *, message_id: str, sha256: str, gm_msgid: int | None, folder: str,
                   uidvalidity: int, uid: int, size: int, received_at: datetime, now: datetime) -> tuple[int, bool]:
        """Record an archived message as 'received'; return (id, created). A duplicate returns the old id."""
        with self.tx() as c:
            return self._record_raw(c, RawRecord(message_id, sha256, gm_msgid, uid, size, received_at),
                                    folder, uidvalidity, now)

    def record_raw_batch(self, records: Sequence[RawRecord], *, folder: str, uidvalidity: int,
                         last_uid: int | None, now: datetime) -> list[tuple[int, bool]]:
        """Record a fetched batch of archived messages and move the folder's UID high-water mark to
        ``last_uid``, all in ONE transaction: the mark never gets ahead of what is recorded."""
        try:
            with self.tx() as c:
                out = self._record_raw_many(c, records, folder, uidvalidity, now)
                if last_uid is not None:
                    self._set_poll_state(c, folder, uidvalidity, last_uid, now)
                return out
        except IntegrityError:
            pass  # another writer recorded one of them meanwhile: again, one at a time, each checked
        with self.tx() as c:
            out = [self._record_raw(c, r, folder, uidvalidity, now) for r in records]
            if last_uid is not None:
                self._set_poll_state(c, folder, uidvalidity, last_uid, now)
            return out

    def _record_raw_many(self, c: Connection, records: Sequence[RawRecord], folder: str, uidvalidity: int,
                         now: datetime) -> list[tuple[int, bool]]:
        """``_record_raw`` for many: one query for those already recorded, one INSERT for the rest."""
        if not records:
            return []
        mids = sorted({r.message_id for r in records})
        gms = sorted({r.gm_msgid for r in records if r.gm_msgid is not None})
        by_identity: dict[tuple[str, str], int] = {}
        by_gm: dict[int, int] = {}
        cond = messages.c.message_id.in_(mids)
        if gms:
            cond = sa.or_(cond, messages.c.gm_msgid.in_(gms))
        for row in c.execute(sa.select(messages.c.id, messages.c.message_id, messages.c.sha256, messages.c.gm_msgid)
                             .where(cond).order_by(messages.c.id)):
            by_identity.setdefault((row.message_id, row.sha256), row.id)
            if row.gm_msgid is not None:
                by_gm.setdefault(row.gm_msgid, row.id)
        found: list[int | None] = []
        new_rows: list[dict[str, Any]] = []
        pending: dict[tuple[str, str], int] = {}  # identity → index in new_rows (the same mail twice in a batch)
        pending_gm: dict[int, int] = {}
        for r in records:
            hits = [h for h in (by_identity.get((r.message_id, r.sha256)),
                                by_gm.get(r.gm_msgid) if r.gm_msgid is not None else None) if h is not None]
            if hits:
                found.append(min(hits))
                continue
            same = pending.get((r.message_id, r.sha256))
            if same is None and r.gm_msgid is not None:
                same = pending_gm.get(r.gm_msgid)
            if same is not None:
                found.append(-1 - same)  # a duplicate of a row inserted below
                continue
            pending[(r.message_id, r.sha256)] = len(new_rows)
            if r.gm_msgid is not None:
                pending_gm[r.gm_msgid] = len(new_rows)
            found.append(None)
            new_rows.append(dict(
                message_id=r.message_id, sha256=r.sha256, gm_msgid=r.gm_msgid, folder=folder,
                uidvalidity=uidvalidity, uid=r.uid, size=r.size, received_at=iso(r.received_at),
                state="received", attempts=0, generation=0, created_at=iso(now), updated_at=iso(now)))
        ids: list[int] = []
        if new_rows:
            ids = [int(i) for i in c.execute(
                messages.insert().returning(messages.c.id, sort_by_parameter_order=True), new_rows).scalars()]
        out: list[tuple[int, bool]] = []
        it = iter(ids)
        for f in found:
            if f is None:
                out.append((next(it), True))
            elif f < 0:
                out.append((ids[-1 - f], False))
            else:
                out.append((f, False))
        return out

    def _record_raw(self, c: Connection, r: RawRecord, folder: str, uidvalidity: int,
                    now: datetime) -> tuple[int, bool]:
        existing = self.find_message(c, r.message_id, r.sha256, r.gm_msgid)
        if existing is not None:
            return existing, False
        try:
            with c.begin_nested():
                pk = c.execute(messages.insert().values(
                    message_id=r.message_id, sha256=r.sha256, gm_msgid=r.gm_msgid, folder=folder,
                    uidvalidity=uidvalidity, uid=r.uid, size=r.size, received_at=iso(r.received_at),
                    state="received", attempts=0, generation=0, created_at=iso(now), updated_at=iso(now),
                )).inserted_primary_key[0]
        except IntegrityError:
            again = self.find_message(c, r.message_id, r.sha256, r.gm_msgid)
            assert again is not None
            return again, False
        return int(pk), True

    def earlier_with_message_id(self, message_id: str, sender: str, before: int) -> list[sa.Row[Any]]:
        """(id, sha256) of the messages recorded before ``before`` with this Message-ID header (as recorded),
        oldest first, that may be from ``sender``: from it, or not processed yet (no sender recorded). Left out:
        those already recorded as a copy of another (their original is among them, earlier), and mail from
        other senders (a client that writes one Message-ID for every mail must not make each pass read them
        all). Mail without a Message-ID ("") has none."""
        if not message_id:
            return []
        with self.tx() as c:  # uq_message_identity's index leads with message_id: no scan
            return list(c.execute(sa.select(messages.c.id, messages.c.sha256).where(
                messages.c.message_id == message_id, messages.c.id < before, messages.c.duplicate_of.is_(None),
                sa.or_(messages.c.sender.is_(None), messages.c.sender == sender),
            ).order_by(messages.c.id)))

    def known_gm_msgids(self, ids: Sequence[int]) -> set[int]:
        if not ids:
            return set()
        with self.tx() as c:
            return set(c.execute(sa.select(messages.c.gm_msgid).where(messages.c.gm_msgid.in_(list(ids)))).scalars())

    def message(self, pk: int) -> sa.Row[Any] | None:
        with self.tx() as c:
            return c.execute(sa.select(messages).where(messages.c.id == pk)).first()

    def messages_by_id(self, pks: Sequence[int]) -> dict[int, sa.Row[Any]]:
        """Rows of the given messages (one query); missing ids are absent."""
        if not pks:
            return {}
        with self.tx() as c:
            return {r.id: r for r in c.execute(sa.select(messages).where(messages.c.id.in_(list(pks))))}

    def messages_in_state(self, state: str) -> list[sa.Row[Any]]:
        with self.tx() as c:
            return list(c.execute(sa.select(messages).where(messages.c.state == state).order_by(messages.c.id)))

    def note_attempt(self, pk: int, error: str, now: datetime) -> None:
        with self.tx() as c:
            c.execute(messages.update().where(messages.c.id == pk).values(
                attempts=messages.c.attempts + 1, reason=error, updated_at=iso(now)))

    def mark_error(self, pk: int, reason: str, now: datetime) -> None:
        with self.tx() as c:
            c.execute(messages.update().where(messages.c.id == pk).values(
                state="error", reason=reason, attempts=messages.c.attempts + 1, updated_at=iso(now)))

    def first_received_at_any(self) -> datetime | None:
        """When the oldest recorded mail arrived (any state); None for an empty ledger."""
        with self.tx() as c:
            value = c.execute(sa.select(sa.func.min(messages.c.received_at))).scalar()
        return from_iso(value) if value else None

    def last_received_at(self) -> datetime | None:
        """When the newest recorded mail arrived (any state)."""
        with self.tx() as c:
            value = c.execute(sa.select(sa.func.max(messages.c.received_at))).scalar()
        return from_iso(value) if value else None
