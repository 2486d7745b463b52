"""The database: messages, documents, entries, findings, outbox, poll state, reminders.

SQLAlchemy Core; SQLite by default, any SQLAlchemy URL works. Times are stored as UTC ISO-8601
strings so that they sort and compare the same way on every backend. Writes are idempotent: the
dedup keys (Message-ID + content hash, Gmail's X-GM-MSGID, outbox keys, reminder stages) are unique
constraints, so a replay after a crash finds what was already done instead of doing it again.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from pipeline.errors import StoreBusy
from pipeline.model import DocumentReading, DocumentRecord, Finding

metadata = sa.MetaData()

poll_state = sa.Table(
    "poll_state", metadata,
    sa.Column("folder", sa.String(255), primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("last_uid", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_id", sa.String(998), nullable=False, default=""),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("gm_msgid", sa.BigInteger, nullable=True, unique=True),
    sa.Column("folder", sa.String(255), nullable=False),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("uid", sa.BigInteger, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Column("sender", sa.String(320)),
    sa.Column("from_name", sa.Text),
    sa.Column("subject", sa.Text),
    sa.Column("unit_id", sa.String(64)),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    # set by staff on the desk: process this mail as if it came from that unit / despite a failed auth check
    sa.Column("assigned_unit_id", sa.String(64), nullable=True),
    sa.Column("released", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.UniqueConstraint("message_id", "sha256", name="uq_message_identity"),
)

documents = sa.Table(
    "documents", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_pk", sa.Integer, sa.ForeignKey("messages.id"), nullable=False, index=True),
    sa.Column("unit_id", sa.String(64), index=True),
    sa.Column("part", sa.String(64), nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("content_type", sa.String(255)),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("period", sa.String(16)),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("format", sa.String(16)),
    sa.Column("title", sa.Text),
    sa.Column("unit_line", sa.Text),
    sa.Column("on_time", sa.Boolean, nullable=True),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Column("superseded_by", sa.Integer, nullable=True),
    sa.Column("reviewed_by", sa.String(120), nullable=True),
)

entries = sa.Table(
    "entries", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False, index=True),
    sa.Column("section", sa.String(20), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("categories", sa.Text, nullable=False),  # JSON list
    sa.Column("result", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("row", sa.Integer),
    sa.Column("location", sa.String(120)),
)

findings = sa.Table(
    "findings", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False, index=True),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(10), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("location", sa.String(120)),
    sa.Column("row", sa.Integer),
    sa.Column("column", sa.String(120)),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(255), nullable=False, unique=True),
    sa.Column("purpose", sa.String(20), nullable=False),  # receipt | reminder | report | alert
    sa.Column("message_pk", sa.Integer, nullable=True),
    sa.Column("unit_id", sa.String(64), nullable=True),
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("smtp_message_id", sa.String(255), nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # pending | sending | sent | failed | uncertain
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("next_attempt_at", sa.String(40), nullable=False),
    sa.Column("sent_at", sa.String(40)),
)

reminders = sa.Table(
    "reminders", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("unit_id", sa.String(64), nullable=False),
    sa.Column("obligation_id", sa.String(64), nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("outbox_id", sa.Integer, nullable=True),  # None: stage passed over by a later one
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("unit_id", "obligation_id", "stage", name="uq_reminder_stage"),
)

bounces = sa.Table(
    "bounces", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_pk", sa.Integer, nullable=False, unique=True),
    sa.Column("outbox_id", sa.Integer, nullable=True),
    sa.Column("unit_id", sa.String(64), nullable=True),
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

review_actions = sa.Table(
    "review_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("action", sa.String(20), nullable=False),  # assign | release | accept | reject | ignore
    sa.Column("target", sa.String(20), nullable=False),  # message | document | bounce
    sa.Column("target_id", sa.Integer, nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON: what staff chose
    sa.Column("before", sa.Text, nullable=False),  # JSON: what it was, so that undo restores it
    sa.Column("actor", sa.String(120), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("undone_by", sa.String(120), nullable=True),
    sa.Column("undone_at", sa.String(40), nullable=True),
)

desk_sessions = sa.Table(
    "desk_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 of the cookie value
    sa.Column("username", sa.String(120), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("last_seen_at", sa.String(40), nullable=False),
    sa.Column("expires_at", sa.String(40), nullable=False),
)

locks = sa.Table(
    "locks", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(120), nullable=False),  # unique per process start: host:pid:random
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.String(40), nullable=False),
    sa.Column("heartbeat_at", sa.String(40), nullable=False),
)

kv = sa.Table(
    "kv", metadata,
    sa.Column("key", sa.String(120), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)


# Hot queries of every pass must not scan tables that grow with the mailbox (or read outbox.raw).
sa.Index("ix_messages_state", messages.c.state)
sa.Index("ix_outbox_state_due", outbox.c.state, outbox.c.next_attempt_at)
sa.Index("ix_outbox_state_sent", outbox.c.state, outbox.c.sent_at)
sa.Index("ix_review_target", review_actions.c.target, review_actions.c.target_id)
sa.Index("ix_documents_group", documents.c.unit_id, documents.c.kind, documents.c.period, documents.c.state)


def iso(dt: datetime) -> str:
    """UTC ISO string of an aware datetime."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


@dataclass(frozen=True)
class RawRecord:
    """An archived message as ``record_raw`` records it."""
    message_id: str
    sha256: str
    gm_msgid: int | None
    uid: int
    size: int
    received_at: datetime


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
    """One message's outcome, as ``record_outcome`` takes it."""
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


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                from pathlib import Path

                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(url, future=True, **kwargs)
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
        with self.tx():
            metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
            for table in metadata.sorted_tables:  # indexes added after a database was first made
                for index in table.indexes:
                    index.create(self.engine, checkfirst=True)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One transaction; a locked or unreachable database becomes StoreBusy (temporary)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise StoreBusy(f"database unavailable: {exc.orig}") from exc

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

    def reset_for_reprocess(self, pk: int, now: datetime) -> None:
        """Forget a message's outcome (documents, entries, findings) so it can be replayed."""
        with self.tx() as c:
            self.forget_documents(c, pk)
            c.execute(bounces.delete().where(bounces.c.message_pk == pk))
            c.execute(messages.update().where(messages.c.id == pk).values(
                state="received", reason=None, generation=messages.c.generation + 1, updated_at=iso(now)))

    def forget_documents(self, c: Connection, pk: int) -> None:
        """Delete a message's documents with their entries and findings; re-mark what they superseded."""
        rows = list(c.execute(sa.select(documents.c.id, documents.c.unit_id, documents.c.kind, documents.c.period)
                              .where(documents.c.message_pk == pk)))
        ids = [d.id for d in rows]
        if ids:
            c.execute(entries.delete().where(entries.c.document_id.in_(ids)))
            c.execute(findings.delete().where(findings.c.document_id.in_(ids)))
            c.execute(documents.update().where(documents.c.superseded_by.in_(ids)).values(superseded_by=None))
            c.execute(documents.delete().where(documents.c.id.in_(ids)))
        for d in rows:
            self._resupersede(c, d.unit_id, d.kind, d.period)

    def record_outcome(self, pk: int, *, state: str, reason: str | None, sender: str | None,
                       from_name: str | None, subject: str, unit_id: str | None,
                       outcomes: Sequence[DocumentOutcome], outbox_items: Sequence[OutboxItem],
                       bounce: tuple[tuple[str, ...], str | None] | None, now: datetime) -> list[int]:
        """Write a message's final state, its documents and its receipt in one transaction."""
        [ids] = self.record_outcomes([OutcomeRecord(
            pk=pk, state=state, reason=reason, sender=sender, from_name=from_name, subject=subject, unit_id=unit_id,
            outcomes=tuple(outcomes), outbox_items=tuple(outbox_items), bounce=bounce)], now)
        return ids

    def record_outcomes(self, records: Sequence[OutcomeRecord], now: datetime) -> list[list[int]]:
        """Write the outcomes of several messages (states, documents, receipts) in ONE transaction.

        Each record is what ``record_outcome`` takes, with the same rule: only a message still 'received'
        is written (one finished by an earlier run is left alone and gets ``[]``). Supersession is
        recomputed once per (unit, kind, period) group touched, at the end: the result is the same as
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
            groups: dict[tuple[str, str, str | None], None] = {}
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
            for unit_id, kind, period in groups:
                self._resupersede(c, unit_id, kind, period)
            return [doc_ids[i] if i is not None else [] for i in slots]

    def _write_outcomes(self, c: Connection, todo: Sequence[tuple[OutcomeRecord, str]], now: datetime,
                        groups: dict[tuple[str, str, str | None], None]) -> list[list[int]]:
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
                    received_at=received_at))
                if r.state == "accepted" and rec.unit_id:
                    groups[(rec.unit_id, r.kind, r.period)] = None
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
                    row=e.row, location=e.location) for e in o.reading.entries]
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
                c.execute(outbox.insert(), [dict(
                    key=i.key, purpose=i.purpose, message_pk=i.message_pk, unit_id=i.unit_id,
                    recipients=json.dumps(list(i.recipients)), subject=i.subject,
                    smtp_message_id=i.smtp_message_id, raw=i.raw, state="pending", attempts=0,
                    created_at=iso(now), next_attempt_at=iso(now)) for i in new_items])
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
            unit_id=sa.bindparam("b_unit_id"), attempts=messages.c.attempts + 1, updated_at=iso(now),
        ), [dict(b_pk=rec.pk, b_state=rec.state, b_reason=rec.reason, b_sender=rec.sender,
                 b_from_name=rec.from_name, b_subject=rec.subject, b_unit_id=rec.unit_id) for rec, _ in todo])
        return out

    def first_received_at(self, unit_id: str, kind: str, period: str | None) -> datetime | None:
        """When the unit's first recorded document of this kind and period arrived (any state)."""
        period_cond = documents.c.period.is_(None) if period is None else documents.c.period == period
        with self.tx() as c:
            value = c.execute(sa.select(sa.func.min(documents.c.received_at)).where(
                documents.c.unit_id == unit_id, documents.c.kind == kind, period_cond)).scalar()
        return from_iso(value) if value else None

    def _resupersede(self, c: Connection, unit_id: str | None, kind: str, period: str | None) -> None:
        """The newest accepted document of a kind for a unit and period counts; older ones are superseded."""
        if unit_id is None:
            return
        period_cond = documents.c.period.is_(None) if period is None else documents.c.period == period
        group = sa.and_(documents.c.unit_id == unit_id, documents.c.kind == kind, period_cond,
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

    # -- outbox -----------------------------------------------------------------------------
    def _enqueue(self, c: Connection, item: OutboxItem, now: datetime) -> bool:
        if c.execute(sa.select(outbox.c.id).where(outbox.c.key == item.key)).first():
            return False
        c.execute(outbox.insert().values(
            key=item.key, purpose=item.purpose, message_pk=item.message_pk, unit_id=item.unit_id,
            recipients=json.dumps(list(item.recipients)), subject=item.subject,
            smtp_message_id=item.smtp_message_id, raw=item.raw, state="pending", attempts=0,
            created_at=iso(now), next_attempt_at=iso(now)))
        return True

    def enqueue(self, item: OutboxItem, now: datetime) -> bool:
        with self.tx() as c:
            return self._enqueue(c, item, now)

    def due_outbox(self, now: datetime, limit: int) -> list[sa.Row[Any]]:
        with self.tx() as c:
            return list(c.execute(sa.select(outbox).where(
                outbox.c.state == "pending", outbox.c.next_attempt_at <= iso(now)
            ).order_by(outbox.c.id).limit(limit)))

    def claim_outbox(self, oid: int, now: datetime) -> bool:
        """Mark an item 'sending' before the SMTP conversation; only one claimant wins."""
        with self.tx() as c:
            return c.execute(outbox.update().where(outbox.c.id == oid, outbox.c.state == "pending").values(
                state="sending", attempts=outbox.c.attempts + 1, next_attempt_at=iso(now))).rowcount == 1

    def finish_outbox(self, oid: int, state: str, now: datetime, error: str | None = None,
                      retry_at: datetime | None = None) -> None:
        values: dict[str, Any] = {"state": state, "last_error": error}
        if state == "sent":
            values["sent_at"] = iso(now)
        if retry_at is not None:
            values["next_attempt_at"] = iso(retry_at)
        with self.tx() as c:
            c.execute(outbox.update().where(outbox.c.id == oid).values(**values))

    def recover_interrupted_sends(self, now: datetime) -> int:
        """Items left 'sending' by a crash may or may not have gone out: never resend them blindly.

        They become 'uncertain' and are shown to staff, who can release one with `intake outbox retry`.
        """
        with self.tx() as c:
            return c.execute(outbox.update().where(outbox.c.state == "sending").values(
                state="uncertain", last_error="worker stopped during sending; check the Sent folder")).rowcount

    def sent_since(self, since: datetime, limit: int | None = None) -> int:
        """Items sent at or after ``since`` (counted on the covering index (state, sent_at)); with ``limit``,
        counting stops there (``min(count, limit)``): enough to know whether a sending limit is reached."""
        where = (outbox.c.state == "sent", outbox.c.sent_at >= iso(since))
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

    # -- reminders --------------------------------------------------------------------------
    def reminder_stages_sent(self) -> set[tuple[str, str, str]]:
        with self.tx() as c:
            return {(r.unit_id, r.obligation_id, r.stage) for r in c.execute(sa.select(reminders))}

    def record_reminder(self, unit_id: str, obligation_id: str, stage: str, item: OutboxItem | None,
                        now: datetime) -> bool:
        """Record a reminder stage and its mail together; False when that stage was already recorded."""
        with self.tx() as c:
            try:
                with c.begin_nested():
                    rid = c.execute(reminders.insert().values(
                        unit_id=unit_id, obligation_id=obligation_id, stage=stage, created_at=iso(now)
                    )).inserted_primary_key[0]
            except IntegrityError:
                return False
            if item is not None:
                self._enqueue(c, item, now)
                oid = c.execute(sa.select(outbox.c.id).where(outbox.c.key == item.key)).scalar()
                c.execute(reminders.update().where(reminders.c.id == rid).values(outbox_id=oid))
            return True

    def reminder_counts(self) -> dict[tuple[str, str], int]:
        with self.tx() as c:
            rows = c.execute(sa.select(reminders.c.unit_id, reminders.c.obligation_id, sa.func.count())
                             .where(reminders.c.outbox_id.is_not(None))
                             .group_by(reminders.c.unit_id, reminders.c.obligation_id))
            return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- key/value (liveness, alerts) -------------------------------------------------------
    def get_kv(self, key: str) -> str | None:
        with self.tx() as c:
            return c.execute(sa.select(kv.c.value).where(kv.c.key == key)).scalar()

    def set_kv(self, key: str, value: str, now: datetime) -> None:
        with self.tx() as c:
            if not c.execute(kv.update().where(kv.c.key == key).values(value=value, updated_at=iso(now))).rowcount:
                c.execute(kv.insert().values(key=key, value=value, updated_at=iso(now)))

    # -- locks (one worker per database) ----------------------------------------------------
    def lock_row(self, name: str) -> sa.Row[Any] | None:
        with self.tx() as c:
            return c.execute(sa.select(locks).where(locks.c.name == name)).first()

    def acquire_lock(self, name: str, holder: str, host: str, pid: int, now: datetime,
                     can_take: Callable[[sa.Row[Any]], bool]) -> tuple[bool, sa.Row[Any] | None]:
        """Take the named lock; an existing holder's row is taken over only when ``can_take(row)``
        (stale heartbeat, dead process). Compare-and-set on the old holder and heartbeat, so two
        starters never both win. Returns (won, the row that blocked us)."""
        with self.tx() as c:
            try:
                with c.begin_nested():
                    c.execute(locks.insert().values(name=name, holder=holder, host=host, pid=pid,
                                                    acquired_at=iso(now), heartbeat_at=iso(now)))
                return True, None
            except IntegrityError:
                pass
            row = c.execute(sa.select(locks).where(locks.c.name == name)).first()
            if row is None:
                return False, None
            if row.holder != holder and not can_take(row):
                return False, row
            won = c.execute(locks.update().where(
                locks.c.name == name, locks.c.holder == row.holder, locks.c.heartbeat_at == row.heartbeat_at,
            ).values(holder=holder, host=host, pid=pid, acquired_at=iso(now), heartbeat_at=iso(now))).rowcount == 1
            return won, (None if won else row)

    def heartbeat_lock(self, name: str, holder: str, now: datetime) -> bool:
        """False when the lock is no longer ours (taken over after we looked stale)."""
        with self.tx() as c:
            return c.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                             .values(heartbeat_at=iso(now))).rowcount == 1

    def release_lock(self, name: str, holder: str) -> bool:
        with self.tx() as c:
            return c.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder)).rowcount == 1

    def last_received_at(self) -> datetime | None:
        """When the newest recorded mail arrived (any state)."""
        with self.tx() as c:
            value = c.execute(sa.select(sa.func.max(messages.c.received_at))).scalar()
        return from_iso(value) if value else None

    def reminder_rows(self) -> list[sa.Row[Any]]:
        with self.tx() as c:
            return list(c.execute(sa.select(reminders).order_by(reminders.c.id)))

    # -- reading back -----------------------------------------------------------------------
    def document_records(self) -> list[DocumentRecord]:
        """Every document of a known unit, as the deadline logic sees them."""
        with self.tx() as c:
            docs = list(c.execute(sa.select(documents).where(documents.c.unit_id.is_not(None)).order_by(documents.c.id)))
            fnd = _group(c.execute(sa.select(findings).order_by(findings.c.id)), "document_id")
        first: dict[tuple[str, str, str | None], datetime] = {}
        for d in docs:
            key = (d.unit_id, d.kind, d.period)
            t = from_iso(d.received_at)
            first[key] = min(first.get(key, t), t)
        return [DocumentRecord(
            document_id=d.id, unit_id=d.unit_id, kind=d.kind, period=d.period, state=d.state,
            received_at=from_iso(d.received_at), superseded=d.superseded_by is not None,
            first_attempt_at=first[(d.unit_id, d.kind, d.period)],
            findings=tuple(_finding(f) for f in fnd.get(d.id, [])),
        ) for d in docs]

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
                                           outbox.c.created_at, outbox.c.sent_at).order_by(outbox.c.id)))
        return {"messages": msgs, "documents": docs, "entries": ents, "findings": fnds, "bounces": bnc,
                "outbox": obx}


def bounces_set_aside(c: Connection) -> set[int]:
    """Ids of bounces staff have set aside (an ignore on the desk or `intake review`, not undone)."""
    return set(c.execute(sa.select(review_actions.c.target_id).where(
        review_actions.c.target == "bounce", review_actions.c.undone_at.is_(None))).scalars())


def _add_missing_columns(engine: Engine) -> None:
    """Columns added to a table after a database was first made (nullable or with a server default)."""
    inspector = sa.inspect(engine)
    with engine.begin() as c:
        for table in metadata.sorted_tables:
            have = {col["name"] for col in inspector.get_columns(table.name)}
            for col in table.columns:
                if col.name in have:
                    continue
                ddl = sa.schema.CreateColumn(col).compile(dialect=engine.dialect)
                c.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))


def _group(rows: Any, key: str) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for r in rows:
        out.setdefault(getattr(r, key), []).append(r)
    return out


def _finding(f: Any) -> Finding:
    return Finding(code=f.code, severity=f.severity, message=f.message, location=f.location, row=f.row,
                   column=f.column)
