"""Staff actions on the review queue (pipeline.desk.actions) and their undo, as ledger transactions.

Each action is one compare-and-set transaction: check the row is still in the state the action is
for, change it, record the action in ``review_actions`` with what undo needs, and queue the mail the
desk built. When the row is gone or no longer in that state nothing is written and ``RowMissing`` or
``StateChanged`` says so; the desk turns them into words. Which states an action is for, and what
"before" it keeps, is decided here, next to the writes that depend on it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.ledger.outbox import OutboxItem, OutboxMixin
from pipeline.ledger.outcomes import OutcomesMixin
from pipeline.ledger.schema import bounces, documents, entries, findings, iso, messages, outbox, review_actions
from pipeline.model import Entry

ASSIGNABLE = ("quarantined", "error")  # message states staff can assign to a unit, or ignore
STAFF_REJECT_CODE = "staff-rejected"  # the finding a staff rejection leaves on the document
# "entries": staff typed in the rows of an accepted photo or scan of a form after accepting it
UNDOABLE = ("assign", "release", "accept", "reject", "ignore", "entries", "units_replace")
ENTERED = "entered"  # StateChanged.state of a document whose rows were typed in already


class RowMissing(LookupError):
    """The row an action names is not there (``table`` as in schema.py)."""

    def __init__(self, table: str, row_id: int) -> None:
        super().__init__(f"no {table} row #{row_id}")
        self.table, self.row_id = table, row_id


class StateChanged(Exception):
    """The row is not in the state the action is for: ``state`` is what it is now, None when another
    writer changed it between the check and the write; ``row`` is the row as found, when useful."""

    def __init__(self, table: str, row_id: int, state: str | None, row: Any = None) -> None:
        super().__init__(f"{table} row #{row_id} is {state or 'changing'}")
        self.table, self.row_id, self.state, self.row = table, row_id, state, row


@dataclass(frozen=True)
class Undone:
    """What an undo put back: the action as it was recorded, and what the desk says about it."""
    action: Any  # the review_actions row, before the undo marked it
    before: dict[str, Any]
    params: dict[str, Any]
    filename: str | None = None  # of the document, for accept/reject/entries
    cancelled: int = 0  # mail the action queued and that is now never sent


def review_key(action_id: int) -> str:
    """The outbox key of the notice an action sends: the action's own, so it leaves once."""
    return f"review:{action_id}"


def bounces_set_aside(c: Connection) -> set[int]:
    """Ids of bounces staff have set aside (an ignore on the desk or `intake review`, not undone)."""
    return set(c.execute(sa.select(review_actions.c.target_id).where(
        review_actions.c.target == "bounce", review_actions.c.undone_at.is_(None))).scalars())


def _message_before(row: Any) -> dict[str, Any]:
    return {"state": row.state, "reason": row.reason, "assigned_unit_id": row.assigned_unit_id,
            "released": bool(row.released), "unit_id": row.unit_id}


def _doc_before(c: Connection, d: Any) -> dict[str, Any]:
    ents = [dict(section=e.section, name=e.name, model=e.model, categories=e.categories, result=e.result,
                 note=e.note, row=e.row, location=e.location, extra=e.extra)
            for e in c.execute(sa.select(entries).where(entries.c.document_id == d.id).order_by(entries.c.id))]
    return {"state": d.state, "kind": d.kind, "period": d.period, "on_time": d.on_time,
            "reviewed_by": d.reviewed_by, "entries": ents, "campaign": d.campaign}


def _entry_rows(document_id: int, typed: Sequence[Entry]) -> list[dict[str, Any]]:
    """Rows of the entries table, as a pass records a read form's (outcomes._write_outcomes)."""
    return [dict(document_id=document_id, section=e.section, name=e.name, model=e.model,
                 categories=json.dumps(list(e.categories)), result=e.result, note=e.note, row=e.row,
                 location=e.location, extra=json.dumps(dict(e.extra), ensure_ascii=False) if e.extra else None)
            for e in typed]


def _row(c: Connection, table: sa.Table, row_id: int) -> Any:
    row = c.execute(sa.select(table).where(table.c.id == row_id)).first()
    if row is None:
        raise RowMissing(table.name, row_id)
    return row


class ReviewMixin(OutcomesMixin, OutboxMixin):
    def review_action(self, action_id: int) -> sa.Row[Any] | None:
        with self.tx() as c:
            return c.execute(sa.select(review_actions).where(review_actions.c.id == action_id)).first()

    def entry_count(self, document_id: int) -> int:
        with self.tx() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(entries)
                                 .where(entries.c.document_id == document_id)).scalar() or 0)

    def record_action(self, action: str, target: str, target_id: int, params: dict[str, Any],
                      before: dict[str, Any], actor: str, now: datetime) -> int:
        """Record an action done outside the ledger (a units list replaced); its id."""
        with self.tx() as c:
            return self._record_action(c, action, target, target_id, params, before, actor, now)

    def _record_action(self, c: Connection, action: str, target: str, target_id: int, params: dict[str, Any],
                       before: dict[str, Any], actor: str, now: datetime) -> int:
        return int(c.execute(review_actions.insert().values(
            action=action, target=target, target_id=target_id, params=json.dumps(params, ensure_ascii=False),
            before=json.dumps(before, ensure_ascii=False, default=str), actor=actor, created_at=iso(now),
        )).inserted_primary_key[0])

    def add_action_params(self, action_id: int, **extra: Any) -> None:
        """Note what an action did after its transaction (an address added to the units file)."""
        with self.tx() as c:
            raw = c.execute(sa.select(review_actions.c.params).where(review_actions.c.id == action_id)).scalar()
            params = json.loads(raw or "{}")
            params.update(extra)
            c.execute(review_actions.update().where(review_actions.c.id == action_id)
                      .values(params=json.dumps(params, ensure_ascii=False)))

    # -- messages: written first, processed after (a crash in between leaves a 'received' message)

    def assign_message(self, pk: int, unit_id: str, *, add_address: bool, actor: str, now: datetime) -> int:
        """Mark a quarantined or failed message as the unit's, to be processed again; the action's id."""
        with self.tx() as c:
            row = _row(c, messages, pk)
            if row.state not in ASSIGNABLE:
                raise StateChanged("messages", pk, row.state)
            won = c.execute(messages.update().where(messages.c.id == pk, messages.c.state == row.state).values(
                state="received", reason=None, assigned_unit_id=unit_id, generation=messages.c.generation + 1,
                updated_at=iso(now))).rowcount == 1
            if not won:
                raise StateChanged("messages", pk, None)
            self.forget_documents(c, pk)
            return self._record_action(c, "assign", "message", pk,
                                       {"unit_id": unit_id, "add_address": bool(add_address), "address": row.sender},
                                       _message_before(row), actor, now)

    def release_message(self, pk: int, *, actor: str, now: datetime) -> int:
        """Let a quarantined message through its authentication check, to be processed again."""
        with self.tx() as c:
            row = _row(c, messages, pk)
            if row.state != "quarantined" or row.released:
                raise StateChanged("messages", pk, row.state)
            won = c.execute(messages.update().where(messages.c.id == pk, messages.c.state == "quarantined",
                                                    messages.c.released.is_(False)).values(
                state="received", reason=None, released=True, generation=messages.c.generation + 1,
                updated_at=iso(now))).rowcount == 1
            if not won:
                raise StateChanged("messages", pk, None)
            return self._record_action(c, "release", "message", pk, {}, _message_before(row), actor, now)

    # -- documents waiting for review

    def _claim_document(self, c: Connection, document_id: int, values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        d = _row(c, documents, document_id)
        if d.state != "needs_review":
            raise StateChanged("documents", document_id, d.state)
        before = _doc_before(c, d)
        won = c.execute(documents.update().where(documents.c.id == document_id, documents.c.state == "needs_review")
                        .values(**values)).rowcount == 1
        if not won:
            raise StateChanged("documents", document_id, None)
        return d, before

    def _notify(self, c: Connection, action_id: int, notice: OutboxItem | None, now: datetime) -> None:
        if notice is not None:
            self._enqueue(c, replace(notice, key=review_key(action_id)), now)

    def accept_document(self, document_id: int, *, kind: str, period: str | None, on_time: bool | None,
                        actor: str, now: datetime, notice: OutboxItem | None, typed: Sequence[Entry] = ()) -> int:
        """Count a needs_review document as ``kind``/``period`` and queue the notice (its key is set here).

        ``typed``: the rows staff typed in from a photo or scan of a form; they replace whatever the document
        had and count as a read form's entries (undo puts the old ones back)."""
        with self.tx() as c:
            values = dict(state="accepted", kind=kind, period=period, on_time=on_time, reviewed_by=actor)
            if period:  # a report's period names its campaign ("2022-Y" counts for 2022)
                values["campaign"] = int(period[:4])
            d, before = self._claim_document(c, document_id, values)
            if typed:
                c.execute(entries.delete().where(entries.c.document_id == document_id))
                c.execute(entries.insert(), _entry_rows(document_id, typed))
            self._lock_groups(c, d.unit_id, [(d.kind, d.period), (kind, period)])
            self._resupersede(c, d.unit_id, d.campaign, d.kind, d.period)
            self._resupersede(c, d.unit_id, values.get("campaign", d.campaign), kind, period)
            params: dict[str, Any] = {"kind": kind, "period": period}
            if typed:
                params["entries"] = len(typed)
            action_id = self._record_action(c, "accept", "document", document_id, params, before, actor, now)
            self._notify(c, action_id, notice, now)
            return action_id

    def record_typed_entries(self, document_id: int, typed: Sequence[Entry], *, actor: str, now: datetime) -> int:
        """The rows staff typed in from an accepted photo or scan of a form that had none; the action's id.

        Refused (StateChanged) when the document is no longer accepted, or has rows already (a second tab
        or a double click must not add them twice)."""
        if not typed:
            raise ValueError("no entries to record")
        with self.tx() as c:
            d = _row(c, documents, document_id)
            if d.state != "accepted":
                raise StateChanged("documents", document_id, d.state)
            before = _doc_before(c, d)
            if before["entries"]:
                raise StateChanged("documents", document_id, ENTERED)
            c.execute(entries.insert(), _entry_rows(document_id, typed))
            return self._record_action(c, "entries", "document", document_id, {"entries": len(typed)}, before,
                                       actor, now)

    def reject_document(self, document_id: int, *, reason: str, finding: str, actor: str, now: datetime,
                        notice: OutboxItem | None) -> int:
        """Refuse a needs_review document: its entries go, ``finding`` says why; queue the notice."""
        with self.tx() as c:
            _, before = self._claim_document(c, document_id, dict(state="rejected", on_time=None, reviewed_by=actor))
            c.execute(entries.delete().where(entries.c.document_id == document_id))
            c.execute(findings.insert().values(document_id=document_id, code=STAFF_REJECT_CODE, severity="error",
                                               message=finding))
            action_id = self._record_action(c, "reject", "document", document_id, {"reason": reason}, before,
                                            actor, now)
            self._notify(c, action_id, notice, now)
            return action_id

    # -- ignore

    def ignore_item(self, target: str, target_id: int, *, reason: str, note: str, actor: str,
                    now: datetime) -> tuple[int, Any]:
        """Take a message, document or bounce off the queue: (action id, the row as it was)."""
        with self.tx() as c:
            if target == "message":
                row = _row(c, messages, target_id)
                if row.state not in ASSIGNABLE:
                    raise StateChanged("messages", target_id, row.state)
                c.execute(messages.update().where(messages.c.id == target_id, messages.c.state == row.state)
                          .values(state="ignored", reason=note, updated_at=iso(now)))
                before: dict[str, Any] = {"state": row.state, "reason": row.reason}
            elif target == "document":
                row = _row(c, documents, target_id)
                if row.state != "needs_review":
                    raise StateChanged("documents", target_id, row.state)
                c.execute(documents.update().where(documents.c.id == target_id, documents.c.state == "needs_review")
                          .values(state="ignored", reviewed_by=actor))
                before = {"state": row.state}
            elif target == "bounce":
                row = _row(c, bounces, target_id)
                if target_id in bounces_set_aside(c):
                    raise StateChanged("bounces", target_id, "set_aside")
                before = {}
            else:
                raise ValueError(f"cannot ignore a {target!r}")
            return self._record_action(c, "ignore", target, target_id, {"reason": reason}, before, actor, now), row

    # -- undo

    def undo_action(self, action_id: int, *, actor: str, now: datetime) -> Undone:
        """Put back what an action changed, from the "before" it recorded, and cancel its unsent mail.

        A units list replacement is only marked undone: the desk puts the kept file back.
        """
        with self.tx() as c:
            a = _row(c, review_actions, action_id)
            if a.undone_at is not None:
                raise StateChanged("review_actions", action_id, "undone", a)
            before, params = json.loads(a.before), json.loads(a.params)
            filename = None
            if a.action in ("assign", "release"):
                row = _row(c, messages, a.target_id)
                if row.state == "received":  # being processed now
                    raise StateChanged("messages", a.target_id, row.state)
                self.forget_documents(c, a.target_id)
                c.execute(messages.update().where(messages.c.id == a.target_id).values(
                    state=before["state"], reason=before["reason"], assigned_unit_id=before.get("assigned_unit_id"),
                    released=bool(before.get("released")), unit_id=before.get("unit_id"),
                    generation=messages.c.generation + 1, updated_at=iso(now)))
            elif a.action in ("accept", "reject"):
                d = _row(c, documents, a.target_id)
                if d.state != ("accepted" if a.action == "accept" else "rejected"):
                    raise StateChanged("documents", a.target_id, d.state)
                filename = d.filename
                c.execute(documents.update().where(documents.c.id == d.id).values(
                    state=before["state"], kind=before["kind"], period=before["period"], on_time=before["on_time"],
                    reviewed_by=before["reviewed_by"], superseded_by=None,
                    campaign=before.get("campaign", d.campaign)))
                c.execute(findings.delete().where(findings.c.document_id == d.id,
                                                  findings.c.code == STAFF_REJECT_CODE))
                c.execute(entries.delete().where(entries.c.document_id == d.id))
                if before["entries"]:
                    c.execute(entries.insert(), [dict(document_id=d.id, **e) for e in before["entries"]])
                c.execute(documents.update().where(documents.c.superseded_by == d.id).values(superseded_by=None))
                self._lock_groups(c, d.unit_id, [(d.kind, d.period), (before["kind"], before["period"])])
                self._resupersede(c, d.unit_id, d.campaign, d.kind, d.period)
                self._resupersede(c, d.unit_id, before.get("campaign", d.campaign), before["kind"], before["period"])
            elif a.action == "entries":
                d = _row(c, documents, a.target_id)
                if d.state != "accepted":
                    raise StateChanged("documents", a.target_id, d.state)
                filename = d.filename
                c.execute(entries.delete().where(entries.c.document_id == d.id))
                if before["entries"]:
                    c.execute(entries.insert(), [dict(document_id=d.id, **e) for e in before["entries"]])
            elif a.action == "ignore":
                if a.target == "message":
                    row = _row(c, messages, a.target_id)
                    if row.state != "ignored":
                        raise StateChanged("messages", a.target_id, row.state)
                    c.execute(messages.update().where(messages.c.id == a.target_id).values(
                        state=before["state"], reason=before["reason"], updated_at=iso(now)))
                elif a.target == "document":
                    d = _row(c, documents, a.target_id)
                    if d.state != "ignored":
                        raise StateChanged("documents", a.target_id, d.state)
                    c.execute(documents.update().where(documents.c.id == a.target_id).values(
                        state=before["state"], reviewed_by=None))
            elif a.action != "units_replace":
                raise ValueError(f"action {a.action!r} cannot be undone")
            cancelled = _cancel_unsent(c, a)
            c.execute(review_actions.update().where(review_actions.c.id == action_id).values(
                undone_by=actor, undone_at=iso(now)))
        return Undone(a, before, params, filename, cancelled)


def _cancel_unsent(c: Connection, a: Any) -> int:
    """Mail an undone action queued but did not send yet never leaves (receipts of an assignment, notices)."""
    if a.action in ("assign", "release"):
        cond = outbox.c.key.like(f"receipt:{a.target_id}:%")
    elif a.action in ("accept", "reject"):
        cond = outbox.c.key == review_key(a.id)
    else:
        return 0
    return int(c.execute(outbox.update().where(cond, outbox.c.state == "pending")
                         .values(state="cancelled", last_error="huỷ vì thao tác của cán bộ đã được hoàn tác")).rowcount)
