"""What automation leaves to a person: the review queue and the actions staff take on it.

The queue holds quarantined mail (unknown sender, or a sender that failed the server's authentication
check), mail that ended in error, needs_review documents (photos, scans, unreadable files) and
bounced mail. Every action is recorded in ``review_actions`` with who, when, what was chosen and what
the thing was before, so that ``undo`` can put it back. An action changes state with a compare-and-set
in one transaction: a second click, a second browser tab or a second staff member gets a clear
"already handled" instead of a second receipt. Mail to the unit goes through the outbox (its key
names the action), so it leaves exactly once even when the process dies right after the action.

Assigning and releasing are written on the message first (``assigned_unit_id`` / ``released``) and
only then processed: a crash in between leaves a 'received' message that the worker's next pass
finishes the same way.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.mail import mime
from pipeline.forms.blank import form_attachment
from pipeline.errors import IntakeError, TemporaryError
from pipeline.model import KIND_LABELS, period_label
from pipeline.outbox.notify import build_mail, flush_outbox
from pipeline.ledger.store import (OutboxItem, bounces, bounces_set_aside, documents, entries, findings, from_iso, iso,
                            messages, outbox, review_actions)

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context

log = logging.getLogger(__name__)

ACTIONS = ("assign", "release", "accept", "reject", "ignore")
ACCEPT_KINDS = ("registration", "summary", "commendation", "report")
REPORT_PARTS = ("Q1", "H1", "Q3", "Y")
STAFF_REJECT_CODE = "staff-rejected"


class ReviewError(IntakeError):
    """The action is not possible now (already handled, wrong state, unknown unit); the text says why."""


@dataclass(frozen=True)
class QueueItem:
    kind: str  # quarantined | spoof | needs_review | bounce | error
    target: str  # message | document | bounce
    target_id: int
    message_pk: int
    received_at: datetime
    sender: str | None
    from_name: str | None
    subject: str
    unit_id: str | None
    reason: str
    filename: str | None = None
    doc_kind: str | None = None
    period: str | None = None
    actions: tuple[str, ...] = ()
    suggested_unit_id: str | None = None  # for quarantined mail: the unit its forms or name point to
    suggested_why: str | None = None


@dataclass(frozen=True)
class ActionResult:
    action_id: int
    message: str
    outbox_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ActionRow:
    id: int
    action: str
    target: str
    target_id: int
    params: dict[str, Any]
    actor: str
    created_at: datetime
    undone_by: str | None
    undone_at: datetime | None
    summary: str
    unit_id: str | None = None
    before: dict[str, Any] = field(default_factory=dict)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def period_choices(year: int) -> tuple[tuple[str, str], ...]:
    """(value, label) of every report period of the plan's year, for a select box."""
    return tuple((f"{year}-{p}", period_label(f"{year}-{p}") or p) for p in REPORT_PARTS)


# ------------------------------------------------------------------------------------------ queue

@dataclass(frozen=True)
class _Look:
    auth_failed: bool
    suggested: str | None
    why: str | None


_look_cache: dict[tuple[str, str, int], _Look] = {}


def _look(ctx: Context, row: Any) -> _Look:
    """What the archived copy of a quarantined mail says: did it fail authentication, which unit is it from?"""
    units = ctx.units  # re-read first when the file changed: a new list may change the suggestion
    key = (row.sha256, ctx.cfg.units_file.as_posix(), hash(units.units))
    if key not in _look_cache:
        _look_cache[key] = _look_uncached(ctx, row)
    return _look_cache[key]


def _look_uncached(ctx: Context, row: Any) -> _Look:
    from pipeline import forms

    try:
        raw = ctx.archive.get(row.sha256)
        parsed = mime.parse_message(raw, own_addresses=ctx.cfg.own_addresses,
                                    trusted_authserv_ids=ctx.cfg.mailbox.trusted_authserv_ids)
    except Exception:  # an unreadable archive copy is shown as it is, without a suggestion
        return _Look(False, None, None)
    clues: list[tuple[str, str]] = []
    for att in parsed.attachments[:5]:
        try:
            reading = forms.read_document(att.filename, att.data, content_type=att.content_type,
                                          subject=parsed.subject, unit=None, year=ctx.cfg.year, rules=ctx.rules)
        except Exception:
            continue
        if reading.unit_line:
            clues.append((reading.unit_line, f"dòng “ĐƠN VỊ” trong tệp {att.filename}"))
    if parsed.from_name:
        clues.append((parsed.from_name, "tên người gửi"))
    if parsed.subject:
        clues.append((parsed.subject, "tiêu đề thư"))
    best = suggest_unit(ctx.units.units, clues)
    return _Look(bool(parsed.auth_failure), best[0] if best else None, best[1] if best else None)


_NOISE = re.compile(r"\b(cong doan co so|cong doan|cdcs|cd|ban chap hanh|bch|don vi)\b")
_ABBREV = {"th": "tieu hoc", "thcs": "trung hoc co so", "thpt": "trung hoc pho thong", "mn": "mam non",
           "ubnd": "uy ban nhan dan", "cty": "cong ty", "tnhh": "trach nhiem huu han", "cp": "co phan",
           "q.": "quan", "p.": "phuong"}


def _key(text: str) -> str:
    from pipeline.textnorm import fold

    t = _NOISE.sub(" ", fold(text).replace(":", " "))
    words = [_ABBREV.get(w, w) for w in t.replace(",", " ").replace("-", " ").split()]
    return " ".join(words)


def suggest_unit(units: Any, clues: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The unit whose name the clues (a form's ĐƠN VỊ line, the sender's name, the subject) match best.

    Accents, case and the usual abbreviations (TH, THCS, MN, UBND, Cty…) are ignored; a weak match
    suggests nothing rather than the wrong unit."""
    from difflib import SequenceMatcher

    best: tuple[float, str, str] | None = None
    keyed = [(u.unit_id, _key(u.name)) for u in units]
    for text, why in clues:
        k = _key(text)
        if len(k) < 4:
            continue
        for unit_id, name in keyed:
            if not name:
                continue
            if name in k:  # the whole name appears in the clue
                score = 1.0
            else:
                score = SequenceMatcher(None, k, name).ratio()
            if best is None or score > best[0]:
                best = (score, unit_id, why)
    if best is None or best[0] < 0.82:
        return None
    return best[1], best[2]


def queue(ctx: Context) -> list[QueueItem]:
    """Everything waiting for a person, oldest first."""
    with ctx.store.tx() as c:
        msgs = list(c.execute(sa.select(messages).where(messages.c.state.in_(("quarantined", "error")))))
        docs = list(c.execute(
            sa.select(documents, messages.c.sender, messages.c.from_name, messages.c.subject)
            .join(messages, messages.c.id == documents.c.message_pk)
            .where(documents.c.state == "needs_review", documents.c.superseded_by.is_(None),
                   messages.c.state == "processed")))
        done_bounces = bounces_set_aside(c)
        bnc = list(c.execute(
            sa.select(bounces, messages.c.received_at, messages.c.sender, messages.c.from_name, messages.c.subject)
            .join(messages, messages.c.id == bounces.c.message_pk)))
        subjects = {r.id: r.subject for r in c.execute(sa.select(outbox.c.id, outbox.c.subject).where(
            outbox.c.id.in_([b.outbox_id for b in bnc if b.outbox_id])))} if bnc else {}
    items: list[QueueItem] = []
    for m in msgs:
        look = _look(ctx, m)
        if m.state == "error":
            kind, actions = "error", ("assign", "ignore")
        elif look.auth_failed and not m.released:
            kind, actions = "spoof", ("release", "assign", "ignore")
        else:
            kind, actions = "quarantined", ("assign", "ignore")
        items.append(QueueItem(kind=kind, target="message", target_id=m.id, message_pk=m.id,
                               received_at=from_iso(m.received_at), sender=m.sender, from_name=m.from_name,
                               subject=m.subject or "", unit_id=m.unit_id, reason=m.reason or "", actions=actions,
                               suggested_unit_id=look.suggested, suggested_why=look.why))
    for d in docs:
        items.append(QueueItem(kind="needs_review", target="document", target_id=d.id, message_pk=d.message_pk,
                               received_at=from_iso(d.received_at), sender=d.sender, from_name=d.from_name,
                               subject=d.subject or "", unit_id=d.unit_id, reason=_doc_reason(ctx, d.id),
                               filename=d.filename, doc_kind=d.kind, period=d.period,
                               actions=("accept", "reject", "ignore")))
    for b in bnc:
        if b.id in done_bounces:
            continue
        recips = ", ".join(json.loads(b.recipients)) or "(không rõ người nhận)"
        what = f" (thư “{subjects[b.outbox_id]}”)" if b.outbox_id in subjects else ""
        unit = ctx.units.by_id(b.unit_id) if b.unit_id else None
        reason = f"Thư gửi tới {recips}{what} không đến được"
        if unit:
            reason += f"; đơn vị {unit.name} có thể chưa nhận được nhắc nhở — kiểm tra lại địa chỉ email"
        items.append(QueueItem(kind="bounce", target="bounce", target_id=b.id, message_pk=b.message_pk,
                               received_at=from_iso(b.received_at), sender=b.sender, from_name=b.from_name,
                               subject=b.subject or "", unit_id=b.unit_id, reason=reason, actions=("ignore",)))
    items.sort(key=lambda i: (i.received_at, i.target_id))
    return items


def _doc_reason(ctx: Context, doc_id: int) -> str:
    with ctx.store.tx() as c:
        msgs = [r.message for r in c.execute(sa.select(findings.c.message).where(
            findings.c.document_id == doc_id).order_by(findings.c.id))]
    return "; ".join(msgs) or "hệ thống không tự đọc được tệp này"


# ------------------------------------------------------------------------------------------ helpers

def _record(c: Connection, action: str, target: str, target_id: int, params: dict[str, Any],
            before: dict[str, Any], actor: str, now: datetime) -> int:
    return int(c.execute(review_actions.insert().values(
        action=action, target=target, target_id=target_id, params=json.dumps(params, ensure_ascii=False),
        before=json.dumps(before, ensure_ascii=False, default=str), actor=actor, created_at=iso(now),
    )).inserted_primary_key[0])


def _flush(ctx: Context, now: datetime) -> None:
    """Send what the action queued; when SMTP is down the worker's next pass sends it."""
    try:
        flush_outbox(ctx.store, ctx.cfg.smtp, now)
    except TemporaryError as exc:
        log.warning("outbox not flushed after a review action: %s", exc)
    except IntakeError as exc:
        log.error("outbox not flushed after a review action: %s", exc)


def _process(ctx: Context, pk: int, now: datetime) -> str:
    from pipeline.worker.mailpass import PassSummary, process_safely

    row = ctx.store.message(pk)
    assert row is not None
    raw = ctx.archive.get(row.sha256)
    process_safely(ctx, pk, raw, from_iso(row.received_at), now, PassSummary())
    after = ctx.store.message(pk)
    return after.state if after is not None else "unknown"


def _message_or_fail(c: Connection, pk: int) -> Any:
    row = c.execute(sa.select(messages).where(messages.c.id == pk)).first()
    if row is None:
        raise ReviewError(f"không có thư #{pk}")
    return row


def _already(what: str, state: str) -> ReviewError:
    return ReviewError(f"{what} đã được xử lý (trạng thái hiện tại: {state}); không làm lại lần nữa")


# ------------------------------------------------------------------------------------------ actions

def assign(ctx: Context, message_pk: int, unit_id: str, *, actor: str, add_address: bool = False,
           now: datetime | None = None) -> ActionResult:
    """Process a quarantined (or failed) mail as if that unit had sent it; its receipt goes to the sender."""
    from pipeline.desk.unitsadmin import UnitsError, add_address as add_addr

    now = _now(now)
    unit = ctx.units.by_id(unit_id)
    if unit is None:
        raise ReviewError(f"không có đơn vị {unit_id!r} trong danh sách")
    with ctx.store.tx() as c:
        row = _message_or_fail(c, message_pk)
        if row.state not in ("quarantined", "error"):
            raise _already(f"Thư #{message_pk}", row.state)
        sender = row.sender
        if add_address:
            if not sender:
                raise ReviewError("thư không có địa chỉ người gửi để thêm vào đơn vị")
            owner = ctx.units.by_email(sender)
            if owner is not None and owner.unit_id != unit_id:
                raise ReviewError(f"địa chỉ {sender} đã thuộc đơn vị {owner.unit_id} ({owner.name})")
        won = c.execute(messages.update().where(messages.c.id == message_pk, messages.c.state == row.state).values(
            state="received", reason=None, assigned_unit_id=unit_id, generation=messages.c.generation + 1,
            updated_at=iso(now))).rowcount == 1
        if not won:
            raise _already(f"Thư #{message_pk}", "đang được xử lý")
        ctx.store.forget_documents(c, message_pk)
        action_id = _record(c, "assign", "message", message_pk,
                            {"unit_id": unit_id, "add_address": bool(add_address), "address": sender},
                            {"state": row.state, "reason": row.reason, "assigned_unit_id": row.assigned_unit_id,
                             "released": bool(row.released), "unit_id": row.unit_id}, actor, now)
    added = False
    note = ""
    if add_address and sender:
        try:
            added = add_addr(ctx, unit_id, sender, now)
        except UnitsError as exc:
            note = f" Chưa thêm được địa chỉ: {exc}."
        if added:
            _set_params(ctx, action_id, address_added=True)
    state = _process(ctx, message_pk, now)
    _flush(ctx, now)
    msg = f"Thư #{message_pk} đã được gán cho {unit.name} và xử lý ({state}); biên nhận gửi tới {sender}."
    if added:
        msg += f" Địa chỉ {sender} đã được thêm vào đơn vị: thư sau sẽ được nhận thẳng."
    return ActionResult(action_id, msg + note, _outbox_ids(ctx, f"receipt:{message_pk}:"))


def release(ctx: Context, message_pk: int, *, actor: str, now: datetime | None = None) -> ActionResult:
    """Let a mail through despite a failed authentication check (staff confirmed it with the unit)."""
    now = _now(now)
    with ctx.store.tx() as c:
        row = _message_or_fail(c, message_pk)
        if row.state != "quarantined" or row.released:
            raise _already(f"Thư #{message_pk}", row.state)
        won = c.execute(messages.update().where(messages.c.id == message_pk, messages.c.state == "quarantined",
                                                messages.c.released.is_(False)).values(
            state="received", reason=None, released=True, generation=messages.c.generation + 1,
            updated_at=iso(now))).rowcount == 1
        if not won:
            raise _already(f"Thư #{message_pk}", "đang được xử lý")
        action_id = _record(c, "release", "message", message_pk, {},
                            {"state": row.state, "reason": row.reason, "assigned_unit_id": row.assigned_unit_id,
                             "released": bool(row.released), "unit_id": row.unit_id}, actor, now)
    state = _process(ctx, message_pk, now)
    _flush(ctx, now)
    after = ctx.store.message(message_pk)
    if state == "processed":
        msg = f"Thư #{message_pk} đã được cho qua và xử lý; biên nhận gửi tới {after.sender if after else ''}."
    else:
        msg = (f"Thư #{message_pk} đã được cho qua nhưng vẫn chưa xử lý được: {after.reason if after else state}. "
               "Hãy gán thư cho một đơn vị.")
    return ActionResult(action_id, msg, _outbox_ids(ctx, f"receipt:{message_pk}:"))


def _document_or_fail(c: Connection, doc_id: int) -> Any:
    row = c.execute(sa.select(documents).where(documents.c.id == doc_id)).first()
    if row is None:
        raise ReviewError(f"không có tài liệu #{doc_id}")
    return row


def _doc_before(c: Connection, d: Any) -> dict[str, Any]:
    ents = [dict(section=e.section, name=e.name, model=e.model, categories=e.categories, result=e.result,
                 note=e.note, row=e.row, location=e.location)
            for e in c.execute(sa.select(entries).where(entries.c.document_id == d.id).order_by(entries.c.id))]
    return {"state": d.state, "kind": d.kind, "period": d.period, "on_time": d.on_time,
            "reviewed_by": d.reviewed_by, "entries": ents}


def _notice(ctx: Context, action: str, action_id: int, d: Any, msg_row: Any, now: datetime, *,
            reason: str = "", on_time: bool | None = None, due: datetime | None = None) -> OutboxItem | None:
    """The mail that tells the unit what staff decided about its file."""
    unit = ctx.units.by_id(d.unit_id) if d.unit_id else None
    to = msg_row.sender
    if unit is None or not to:
        return None
    attachments = []
    if action == "reject":
        form = form_attachment(d.kind, year=ctx.cfg.year, unit_name=unit.name)
        if form:
            attachments.append(form)
    received = from_iso(d.received_at).astimezone(ctx.cfg.tz)
    view = dict(action=action, unit_name=unit.name, organisation=ctx.cfg.organisation, filename=d.filename,
                received_at=received, kind_label=KIND_LABELS.get(d.kind, d.kind), period_label=period_label(d.period),
                on_time=on_time, due=due.astimezone(ctx.cfg.tz) if due else None, reason=reason,
                form_attached=bool(attachments))
    text = ctx.env.get_template("review_notice.txt.j2").render(**view)
    html = ctx.env.get_template("review_notice.html.j2").render(**view)
    base = (msg_row.subject or "").strip() or d.filename
    subject = base if base.lower().startswith(("re:", "trả lời:")) else f"Re: {base}"
    mid, raw = build_mail(sender=ctx.cfg.smtp.sender, to=[to], subject=subject, text=text, html=html,
                          in_reply_to=msg_row.message_id or None, references=(), attachments=attachments)
    return OutboxItem(key=f"review:{action_id}", purpose="receipt", recipients=(to,), subject=subject,
                      smtp_message_id=mid, raw=raw, message_pk=msg_row.id, unit_id=unit.unit_id)


def _check_kind_period(ctx: Context, kind: str, period: str | None) -> str | None:
    if kind not in ACCEPT_KINDS:
        raise ReviewError(f"loại văn bản {kind!r} không hợp lệ (chọn: {', '.join(ACCEPT_KINDS)})")
    if kind == "report":
        allowed = [v for v, _ in period_choices(ctx.cfg.year)]
        if period not in allowed:
            raise ReviewError(f"báo cáo cần chọn kỳ: {', '.join(allowed)}")
        return period
    return None


def accept(ctx: Context, document_id: int, *, kind: str, period: str | None, actor: str,
           now: datetime | None = None) -> ActionResult:
    """Count a needs_review document (a scanned report, a photo of a signed form) as the given kind and period."""
    from pipeline.worker.mailpass import on_time_for

    now = _now(now)
    period = _check_kind_period(ctx, kind, period or None)
    with ctx.store.tx() as c:
        d = _document_or_fail(c, document_id)
        if d.state != "needs_review":
            raise _already(f"Tài liệu #{document_id}", d.state)
        msg_row = _message_or_fail(c, d.message_pk)
        on_time, due = on_time_for(ctx, kind, period, from_iso(d.received_at), unit_id=d.unit_id)
        before = _doc_before(c, d)
        won = c.execute(documents.update().where(documents.c.id == document_id, documents.c.state == "needs_review")
                        .values(state="accepted", kind=kind, period=period, on_time=on_time,
                                reviewed_by=actor)).rowcount == 1
        if not won:
            raise _already(f"Tài liệu #{document_id}", "đang được xử lý")
        ctx.store._resupersede(c, d.unit_id, d.kind, d.period)
        ctx.store._resupersede(c, d.unit_id, kind, period)
        action_id = _record(c, "accept", "document", document_id, {"kind": kind, "period": period}, before, actor, now)
        item = _notice(ctx, "accept", action_id, d, msg_row, now, on_time=on_time, due=due)
        if item is not None:
            ctx.store._enqueue(c, item, now)
    _flush(ctx, now)
    label = KIND_LABELS[kind] + (f" ({period_label(period)})" if period else "")
    timing = "" if on_time is None else (", đúng hạn" if on_time else ", nộp muộn")
    return ActionResult(action_id, f"Tệp “{d.filename}” đã được ghi nhận là {label}{timing}; đơn vị được báo.",
                        _outbox_ids(ctx, f"review:{action_id}"))


def reject(ctx: Context, document_id: int, *, reason: str, actor: str, now: datetime | None = None) -> ActionResult:
    """Refuse a needs_review document; the reason goes back to the unit (with the blank form when there is one)."""
    now = _now(now)
    reason = " ".join((reason or "").split())
    if len(reason) < 5:
        raise ReviewError("hãy ghi lý do từ chối để đơn vị biết cần sửa gì (ít nhất vài chữ)")
    with ctx.store.tx() as c:
        d = _document_or_fail(c, document_id)
        if d.state != "needs_review":
            raise _already(f"Tài liệu #{document_id}", d.state)
        msg_row = _message_or_fail(c, d.message_pk)
        before = _doc_before(c, d)
        won = c.execute(documents.update().where(documents.c.id == document_id, documents.c.state == "needs_review")
                        .values(state="rejected", on_time=None, reviewed_by=actor)).rowcount == 1
        if not won:
            raise _already(f"Tài liệu #{document_id}", "đang được xử lý")
        c.execute(entries.delete().where(entries.c.document_id == document_id))
        c.execute(findings.insert().values(document_id=document_id, code=STAFF_REJECT_CODE, severity="error",
                                           message=f"Cán bộ LĐLĐ Quận không ghi nhận tệp này: {reason}"))
        action_id = _record(c, "reject", "document", document_id, {"reason": reason}, before, actor, now)
        item = _notice(ctx, "reject", action_id, d, msg_row, now, reason=reason)
        if item is not None:
            ctx.store._enqueue(c, item, now)
    _flush(ctx, now)
    return ActionResult(action_id, f"Tệp “{d.filename}” đã bị từ chối; lý do đã gửi cho đơn vị.",
                        _outbox_ids(ctx, f"review:{action_id}"))


def ignore(ctx: Context, target: str, target_id: int, *, actor: str, reason: str = "",
           now: datetime | None = None) -> ActionResult:
    """Take an item off the queue without acting on it (spam, a test mail, a bounce already dealt with)."""
    now = _now(now)
    reason = " ".join((reason or "").split())
    note = f"cán bộ {actor} bỏ qua" + (f": {reason}" if reason else "")
    with ctx.store.tx() as c:
        if target == "message":
            row = _message_or_fail(c, target_id)
            if row.state not in ("quarantined", "error"):
                raise _already(f"Thư #{target_id}", row.state)
            c.execute(messages.update().where(messages.c.id == target_id, messages.c.state == row.state)
                      .values(state="ignored", reason=note, updated_at=iso(now)))
            before = {"state": row.state, "reason": row.reason}
            what = f"Thư #{target_id}"
        elif target == "document":
            d = _document_or_fail(c, target_id)
            if d.state != "needs_review":
                raise _already(f"Tài liệu #{target_id}", d.state)
            c.execute(documents.update().where(documents.c.id == target_id, documents.c.state == "needs_review")
                      .values(state="ignored", reviewed_by=actor))
            before = {"state": d.state}
            what = f"Tệp “{d.filename}”"
        elif target == "bounce":
            if c.execute(sa.select(bounces.c.id).where(bounces.c.id == target_id)).first() is None:
                raise ReviewError(f"không có thư báo lỗi #{target_id}")
            if target_id in bounces_set_aside(c):
                raise _already(f"Thư báo lỗi #{target_id}", "đã xem")
            before = {}
            what = f"Thư báo không gửi được #{target_id}"
        else:
            raise ReviewError(f"không bỏ qua được loại {target!r} (message | document | bounce)")
        action_id = _record(c, "ignore", target, target_id, {"reason": reason}, before, actor, now)
    return ActionResult(action_id, f"{what} đã được bỏ qua.")


def undo(ctx: Context, action_id: int, *, actor: str, now: datetime | None = None) -> ActionResult:
    """Put back what an action changed. Mail already sent to a unit cannot be called back; that is said."""
    from pipeline.desk.unitsadmin import remove_address, restore_backup

    now = _now(now)
    with ctx.store.tx() as c:
        a = c.execute(sa.select(review_actions).where(review_actions.c.id == action_id)).first()
        if a is None:
            raise ReviewError(f"không có thao tác #{action_id}")
        if a.undone_at is not None:
            raise ReviewError(f"thao tác #{action_id} đã được hoàn tác lúc "
                              f"{from_iso(a.undone_at).astimezone(ctx.cfg.tz):%H:%M %d/%m/%Y} bởi {a.undone_by}")
        before, params = json.loads(a.before), json.loads(a.params)
        sent_note = ""
        if a.action in ("assign", "release"):
            row = _message_or_fail(c, a.target_id)
            if row.state == "received":
                raise ReviewError(f"thư #{a.target_id} đang được xử lý; thử lại sau ít phút")
            ctx.store.forget_documents(c, a.target_id)
            c.execute(messages.update().where(messages.c.id == a.target_id).values(
                state=before["state"], reason=before["reason"], assigned_unit_id=before.get("assigned_unit_id"),
                released=bool(before.get("released")), unit_id=before.get("unit_id"),
                generation=messages.c.generation + 1, updated_at=iso(now)))
            sent_note = " Biên nhận đã gửi (nếu có) không thu hồi được."
            what = f"Thư #{a.target_id} trở lại trạng thái {before['state']}."
        elif a.action in ("accept", "reject"):
            d = _document_or_fail(c, a.target_id)
            expected = "accepted" if a.action == "accept" else "rejected"
            if d.state != expected:
                raise ReviewError(f"tài liệu #{a.target_id} đã thay đổi (trạng thái {d.state}); không hoàn tác được")
            c.execute(documents.update().where(documents.c.id == d.id).values(
                state=before["state"], kind=before["kind"], period=before["period"], on_time=before["on_time"],
                reviewed_by=before["reviewed_by"], superseded_by=None))
            c.execute(findings.delete().where(findings.c.document_id == d.id, findings.c.code == STAFF_REJECT_CODE))
            c.execute(entries.delete().where(entries.c.document_id == d.id))
            if before["entries"]:
                c.execute(entries.insert(), [dict(document_id=d.id, **e) for e in before["entries"]])
            c.execute(documents.update().where(documents.c.superseded_by == d.id).values(superseded_by=None))
            ctx.store._resupersede(c, d.unit_id, d.kind, d.period)
            ctx.store._resupersede(c, d.unit_id, before["kind"], before["period"])
            sent_note = " Thư báo đã gửi cho đơn vị không thu hồi được."
            what = f"Tệp “{d.filename}” trở lại trạng thái chờ xem xét."
        elif a.action == "ignore":
            if a.target == "message":
                row = _message_or_fail(c, a.target_id)
                if row.state != "ignored":
                    raise ReviewError(f"thư #{a.target_id} đã thay đổi (trạng thái {row.state}); không hoàn tác được")
                c.execute(messages.update().where(messages.c.id == a.target_id).values(
                    state=before["state"], reason=before["reason"], updated_at=iso(now)))
            elif a.target == "document":
                d = _document_or_fail(c, a.target_id)
                if d.state != "ignored":
                    raise ReviewError(f"tài liệu #{a.target_id} đã thay đổi (trạng thái {d.state}); không hoàn tác được")
                c.execute(documents.update().where(documents.c.id == a.target_id).values(state=before["state"],
                                                                                          reviewed_by=None))
            what = "Mục đã bỏ qua trở lại danh sách cần xử lý."
        elif a.action == "units_replace":
            what = "Danh sách đơn vị trước lần tải lên đã được khôi phục."
        else:
            raise ReviewError(f"thao tác {a.action!r} không hoàn tác được")
        cancelled = _cancel_unsent(c, a, params)
        if cancelled:
            sent_note = f" {cancelled} thư chưa kịp gửi đã được huỷ."
        c.execute(review_actions.update().where(review_actions.c.id == action_id).values(
            undone_by=actor, undone_at=iso(now)))
    if a.action == "units_replace":
        restore_backup(ctx, before["backup"], now)
    if a.action == "assign" and params.get("address_added") and params.get("address"):
        if remove_address(ctx, params["unit_id"], params["address"], now):
            what += f" Địa chỉ {params['address']} đã được gỡ khỏi đơn vị {params['unit_id']}."
    return ActionResult(action_id, what + sent_note)


def _cancel_unsent(c: Connection, a: Any, params: dict[str, Any]) -> int:
    """Mail an undone action queued but did not send yet never leaves (receipts of an assignment, notices)."""
    if a.action in ("assign", "release"):
        cond = outbox.c.key.like(f"receipt:{a.target_id}:%")
    elif a.action in ("accept", "reject"):
        cond = outbox.c.key == f"review:{a.id}"
    else:
        return 0
    return int(c.execute(outbox.update().where(cond, outbox.c.state == "pending")
                         .values(state="cancelled", last_error="huỷ vì thao tác của cán bộ đã được hoàn tác")).rowcount)


def _set_params(ctx: Context, action_id: int, **extra: Any) -> None:
    with ctx.store.tx() as c:
        raw = c.execute(sa.select(review_actions.c.params).where(review_actions.c.id == action_id)).scalar()
        params = json.loads(raw or "{}")
        params.update(extra)
        c.execute(review_actions.update().where(review_actions.c.id == action_id)
                  .values(params=json.dumps(params, ensure_ascii=False)))


def _outbox_ids(ctx: Context, key_prefix: str) -> tuple[int, ...]:
    with ctx.store.tx() as c:
        return tuple(c.execute(sa.select(outbox.c.id).where(outbox.c.key.like(f"{key_prefix}%"))
                               .order_by(outbox.c.id)).scalars())


# ------------------------------------------------------------------------------------------ history

_VERBS = {"assign": "gán thư", "release": "cho qua thư", "accept": "ghi nhận tệp", "reject": "từ chối tệp",
          "ignore": "bỏ qua", "units_replace": "thay danh sách đơn vị"}


def _summary(ctx: Context, a: Any, params: dict[str, Any], names: dict[int, str]) -> str:
    target = {"message": f"thư #{a.target_id}", "document": f"tệp “{names.get(a.target_id, a.target_id)}”",
              "bounce": f"thư báo lỗi #{a.target_id}", "units": "danh sách đơn vị"}.get(a.target, a.target)
    verb = _VERBS.get(a.action, a.action)
    if a.action == "assign":
        unit = ctx.units.by_id(params.get("unit_id"))
        text = f"Gán {target} cho {unit.name if unit else params.get('unit_id')}"
        if params.get("address_added"):
            text += f" (thêm địa chỉ {params.get('address')})"
        return text
    if a.action == "accept":
        return (f"Ghi nhận {target} là {KIND_LABELS.get(params.get('kind'), params.get('kind'))}"
                + (f" ({period_label(params.get('period'))})" if params.get("period") else ""))
    if a.action == "reject":
        return f"Từ chối {target}: {params.get('reason')}"
    if a.action == "ignore":
        return f"Bỏ qua {target}" + (f": {params['reason']}" if params.get("reason") else "")
    if a.action == "units_replace":
        return (f"Thay danh sách đơn vị từ tệp {params.get('filename')} (thêm {len(params.get('added', []))}, "
                f"bỏ {len(params.get('removed', []))}, sửa {len(params.get('changed', []))})")
    return f"{verb.capitalize()} {target}"


def history(ctx: Context, *, unit_id: str | None = None, limit: int = 200) -> list[ActionRow]:
    """Recorded actions, newest first; with unit_id, only those about that unit's mail and files."""
    with ctx.store.tx() as c:
        rows = list(c.execute(sa.select(review_actions).order_by(review_actions.c.id.desc())
                              .limit(limit if unit_id is None else limit * 20)))
        doc_ids = [r.target_id for r in rows if r.target == "document"]
        doc_info = {d.id: d for d in c.execute(sa.select(documents.c.id, documents.c.filename, documents.c.unit_id)
                                               .where(documents.c.id.in_(doc_ids)))} if doc_ids else {}
        msg_ids = [r.target_id for r in rows if r.target == "message"]
        msg_unit = {m.id: m.unit_id for m in c.execute(sa.select(messages.c.id, messages.c.unit_id)
                                                       .where(messages.c.id.in_(msg_ids)))} if msg_ids else {}
        bnc_ids = [r.target_id for r in rows if r.target == "bounce"]
        bnc_unit = {b.id: b.unit_id for b in c.execute(sa.select(bounces.c.id, bounces.c.unit_id)
                                                       .where(bounces.c.id.in_(bnc_ids)))} if bnc_ids else {}
    names = {i: d.filename for i, d in doc_info.items()}
    out: list[ActionRow] = []
    for r in rows:
        params = json.loads(r.params or "{}")
        owner = {"document": getattr(doc_info.get(r.target_id), "unit_id", None),
                 "message": msg_unit.get(r.target_id) or params.get("unit_id"),
                 "bounce": bnc_unit.get(r.target_id)}.get(r.target)
        if unit_id is not None and owner != unit_id:
            continue
        out.append(ActionRow(id=r.id, action=r.action, target=r.target, target_id=r.target_id, params=params,
                             actor=r.actor, created_at=from_iso(r.created_at), undone_by=r.undone_by,
                             undone_at=from_iso(r.undone_at) if r.undone_at else None,
                             summary=_summary(ctx, r, params, names), unit_id=owner,
                             before=json.loads(r.before or "{}")))
        if len(out) >= limit:
            break
    return out


def local_day(ctx: Context, now: datetime | None = None) -> date:
    return _now(now).astimezone(ctx.cfg.tz).date()
