"""The staff actions on the review queue: assign, release, accept, reject, ignore.

Every action is recorded in ``review_actions`` with who, when, what was chosen and what the thing was
before, so that pipeline.desk.actionlog can undo it. An action changes state with a compare-and-set in
one transaction: a second click, a second browser tab or a second staff member gets a clear "already
handled" instead of a second receipt. Mail to the unit goes through the outbox (its key names the
action), so it leaves exactly once even when the process dies right after the action.

Assigning and releasing are written on the message first (``assigned_unit_id`` / ``released``) and
only then processed: a crash in between leaves a 'received' message that the worker's next pass
finishes the same way.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.forms.blank import form_attachment
from pipeline.errors import IntakeError, TemporaryError
from pipeline.model import KIND_LABELS, period_label
from pipeline.outbox.compose import build_mail
from pipeline.outbox.send import flush_outbox
from pipeline.ledger.outbox import OutboxItem
from pipeline.ledger.schema import (bounces, documents, entries, findings, from_iso, iso, messages, outbox,
                                    review_actions)
from pipeline.ledger.store import bounces_set_aside

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context

log = logging.getLogger(__name__)

ACCEPT_KINDS = ("registration", "summary", "commendation", "report")
REPORT_PARTS = ("Q1", "H1", "Q3", "Y")
STAFF_REJECT_CODE = "staff-rejected"


class ReviewError(IntakeError):
    """The action is not possible now (already handled, wrong state, unknown unit); the text says why."""


@dataclass(frozen=True)
class ActionResult:
    action_id: int
    message: str
    outbox_ids: tuple[int, ...] = ()


def action_time(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def period_choices(year: int) -> tuple[tuple[str, str], ...]:
    """(value, label) of every report period of the plan's year, for a select box."""
    return tuple((f"{year}-{p}", period_label(f"{year}-{p}") or p) for p in REPORT_PARTS)


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


def message_or_fail(c: Connection, pk: int) -> Any:
    row = c.execute(sa.select(messages).where(messages.c.id == pk)).first()
    if row is None:
        raise ReviewError(f"không có thư #{pk}")
    return row


def document_or_fail(c: Connection, doc_id: int) -> Any:
    row = c.execute(sa.select(documents).where(documents.c.id == doc_id)).first()
    if row is None:
        raise ReviewError(f"không có tài liệu #{doc_id}")
    return row


def already_handled(what: str, state: str) -> ReviewError:
    return ReviewError(f"{what} đã được xử lý (trạng thái hiện tại: {state}); không làm lại lần nữa")


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


# ------------------------------------------------------------------------------------------ actions

def assign(ctx: Context, message_pk: int, unit_id: str, *, actor: str, add_address: bool = False,
           now: datetime | None = None) -> ActionResult:
    """Process a quarantined (or failed) mail as if that unit had sent it; its receipt goes to the sender."""
    from pipeline.desk.unitsadmin import UnitsError, add_address as add_addr

    now = action_time(now)
    unit = ctx.units.by_id(unit_id)
    if unit is None:
        raise ReviewError(f"không có đơn vị {unit_id!r} trong danh sách")
    with ctx.store.tx() as c:
        row = message_or_fail(c, message_pk)
        if row.state not in ("quarantined", "error"):
            raise already_handled(f"Thư #{message_pk}", row.state)
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
            raise already_handled(f"Thư #{message_pk}", "đang được xử lý")
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
    now = action_time(now)
    with ctx.store.tx() as c:
        row = message_or_fail(c, message_pk)
        if row.state != "quarantined" or row.released:
            raise already_handled(f"Thư #{message_pk}", row.state)
        won = c.execute(messages.update().where(messages.c.id == message_pk, messages.c.state == "quarantined",
                                                messages.c.released.is_(False)).values(
            state="received", reason=None, released=True, generation=messages.c.generation + 1,
            updated_at=iso(now))).rowcount == 1
        if not won:
            raise already_handled(f"Thư #{message_pk}", "đang được xử lý")
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

    now = action_time(now)
    period = _check_kind_period(ctx, kind, period or None)
    with ctx.store.tx() as c:
        d = document_or_fail(c, document_id)
        if d.state != "needs_review":
            raise already_handled(f"Tài liệu #{document_id}", d.state)
        msg_row = message_or_fail(c, d.message_pk)
        on_time, due = on_time_for(ctx, kind, period, from_iso(d.received_at), unit_id=d.unit_id)
        before = _doc_before(c, d)
        won = c.execute(documents.update().where(documents.c.id == document_id, documents.c.state == "needs_review")
                        .values(state="accepted", kind=kind, period=period, on_time=on_time,
                                reviewed_by=actor)).rowcount == 1
        if not won:
            raise already_handled(f"Tài liệu #{document_id}", "đang được xử lý")
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
    now = action_time(now)
    reason = " ".join((reason or "").split())
    if len(reason) < 5:
        raise ReviewError("hãy ghi lý do từ chối để đơn vị biết cần sửa gì (ít nhất vài chữ)")
    with ctx.store.tx() as c:
        d = document_or_fail(c, document_id)
        if d.state != "needs_review":
            raise already_handled(f"Tài liệu #{document_id}", d.state)
        msg_row = message_or_fail(c, d.message_pk)
        before = _doc_before(c, d)
        won = c.execute(documents.update().where(documents.c.id == document_id, documents.c.state == "needs_review")
                        .values(state="rejected", on_time=None, reviewed_by=actor)).rowcount == 1
        if not won:
            raise already_handled(f"Tài liệu #{document_id}", "đang được xử lý")
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
    now = action_time(now)
    reason = " ".join((reason or "").split())
    note = f"cán bộ {actor} bỏ qua" + (f": {reason}" if reason else "")
    with ctx.store.tx() as c:
        if target == "message":
            row = message_or_fail(c, target_id)
            if row.state not in ("quarantined", "error"):
                raise already_handled(f"Thư #{target_id}", row.state)
            c.execute(messages.update().where(messages.c.id == target_id, messages.c.state == row.state)
                      .values(state="ignored", reason=note, updated_at=iso(now)))
            before = {"state": row.state, "reason": row.reason}
            what = f"Thư #{target_id}"
        elif target == "document":
            d = document_or_fail(c, target_id)
            if d.state != "needs_review":
                raise already_handled(f"Tài liệu #{target_id}", d.state)
            c.execute(documents.update().where(documents.c.id == target_id, documents.c.state == "needs_review")
                      .values(state="ignored", reviewed_by=actor))
            before = {"state": d.state}
            what = f"Tệp “{d.filename}”"
        elif target == "bounce":
            if c.execute(sa.select(bounces.c.id).where(bounces.c.id == target_id)).first() is None:
                raise ReviewError(f"không có thư báo lỗi #{target_id}")
            if target_id in bounces_set_aside(c):
                raise already_handled(f"Thư báo lỗi #{target_id}", "đã xem")
            before = {}
            what = f"Thư báo không gửi được #{target_id}"
        else:
            raise ReviewError(f"không bỏ qua được loại {target!r} (message | document | bounce)")
        action_id = _record(c, "ignore", target, target_id, {"reason": reason}, before, actor, now)
    return ActionResult(action_id, f"{what} đã được bỏ qua.")


