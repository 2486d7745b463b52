"""The staff actions on the review queue: assign, release, accept, reject, ignore.

Every action is recorded in ``review_actions`` with who, when, what was chosen and what the thing was
before, so that pipeline.desk.actionlog can undo it. An action changes state with a compare-and-set in
one transaction of the ledger (pipeline.ledger.review; here are the checks of what staff entered, the
mail and the words): a second click, a second browser tab or a second staff member gets a clear "already
handled" instead of a second receipt. Mail to the unit goes through the outbox (its key names the
action), so it leaves exactly once even when the process dies right after the action.

Assigning and releasing are written on the message first (``assigned_unit_id`` / ``released``) and
only then processed: a crash in between leaves a 'received' message that the worker's next pass
finishes the same way.

Nothing is rewritten silently: an assignment or an acceptance that would replace a unit's counting
document, make it late or add an address to it raises ``NeedsConfirmation`` with the change
(pipeline.desk.confirm) until it is called again with that change's token; a token of a change that is no
longer the one that would happen is refused the same way.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.desk import confirm as foresee
from pipeline.desk.confirm import Plan
from pipeline.forms.blank import form_attachment
from pipeline.errors import IntakeError, TemporaryError
from pipeline.model import DOC_STATE_LABELS, MAIL_STATE_LABELS, Entry, period_label
from pipeline.outbox.compose import build_mail
from pipeline.outbox.receipts import resend_by
from pipeline.outbox.standing import standings_after_decision
from pipeline.plan.sending import send_due
from pipeline.ledger.outbox import OutboxItem
from pipeline.ledger.review import ASSIGNABLE, ENTERED, RowMissing, StateChanged, review_key
from pipeline.ledger.schema import documents, from_iso, messages, outbox

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context

log = logging.getLogger(__name__)

REPORT_PARTS = ("Q1", "H1", "Q3", "Y")


class ReviewError(IntakeError):
    """The action is not possible now (already handled, wrong state, unknown unit); the text says why."""


class NeedsConfirmation(ReviewError):
    """The action would change a unit's record (``plan``) and was not confirmed, or was confirmed for a change
    that is no longer the one that would happen (``stale``). Nothing was done."""

    def __init__(self, plan: Plan, *, stale: bool) -> None:
        what = ("tình hình đã thay đổi từ lúc xem trước, thay đổi sẽ khác điều đã được xác nhận" if stale
                else "thao tác này thay đổi hồ sơ của đơn vị và cần được xác nhận")
        super().__init__(f"{what}; chưa thực hiện gì")
        self.plan, self.stale = plan, stale


def _guard(plan: Plan, confirm: str | None) -> None:
    """Go on only when the change needs no confirmation or this one was confirmed (and not another)."""
    if confirm is not None and confirm != plan.token:
        raise NeedsConfirmation(plan, stale=True)
    if plan.needs_confirmation and confirm is None:
        raise NeedsConfirmation(plan, stale=False)


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


@dataclass(frozen=True)
class AcceptChoices:
    """What a needs_review document may be accepted as: the forms and report periods of its campaign."""

    year: int
    kinds: tuple[tuple[str, str], ...]  # (form id, label) in the campaign file's order
    periods: tuple[tuple[str, str], ...]  # (period, label) of the campaign's year
    period_kinds: frozenset[str]  # the forms an obligation asks for per period (reports): they need one


def accept_choices(ctx: Context, campaign: int | None) -> AcceptChoices:
    """The choices for a document of ``campaign`` (the configured campaign's when it has none, or none the
    rules describe)."""
    plan = (ctx.campaigns.get(campaign) if campaign is not None else None) or ctx.campaigns[ctx.cfg.year]
    return AcceptChoices(year=plan.year, kinds=tuple((k, ctx.rules.kind_label(k)) for k in plan.forms),
                         periods=period_choices(plan.year),
                         period_kinds=frozenset(k for ob in plan.obligations if ob.period for k in ob.kinds))


# ------------------------------------------------------------------------------------------ helpers

def _flush(ctx: Context, now: datetime) -> None:
    """Send what the action queued; when SMTP is down the worker's next pass sends it."""
    try:
        send_due(ctx, now)
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
    shown = {**DOC_STATE_LABELS, **MAIL_STATE_LABELS}.get(state, state)  # staff read words, not state codes
    return ReviewError(f"{what} đã được xử lý (trạng thái hiện tại: {shown}); không làm lại lần nữa")


_MISSING = {"messages": "không có thư #{}", "documents": "không có tài liệu #{}",
            "bounces": "không có thư báo lỗi #{}"}
_WHAT = {"messages": "Thư #{}", "documents": "Tài liệu #{}", "bounces": "Thư báo lỗi #{}"}
_NOW_STATE = {None: "đang được xử lý", "set_aside": "đã xem",  # StateChanged.state None: lost the race
              ENTERED: "đã được nhập nội dung"}


@contextmanager
def _refusals() -> Iterator[None]:
    """The ledger's refusals of an action (row gone, state changed), in the words staff read."""
    try:
        yield
    except RowMissing as exc:
        raise ReviewError(_MISSING[exc.table].format(exc.row_id)) from None
    except StateChanged as exc:
        now_state = _NOW_STATE.get(exc.state) or str(exc.state)
        raise already_handled(_WHAT[exc.table].format(exc.row_id), now_state) from None


def _outbox_ids(ctx: Context, key_prefix: str) -> tuple[int, ...]:
    with ctx.store.tx() as c:
        return tuple(c.execute(sa.select(outbox.c.id).where(outbox.c.key.like(f"{key_prefix}%"))
                               .order_by(outbox.c.id)).scalars())


# ------------------------------------------------------------------------------------------ actions

def plan_assign(ctx: Context, message_pk: int, unit_id: str, *, add_address: bool = False) -> Plan:
    """What assigning the mail to the unit would change (or why it cannot be assigned: ReviewError)."""
    unit = ctx.units.by_id(unit_id)
    if unit is None:
        raise ReviewError(f"không có đơn vị {unit_id!r} trong danh sách")
    with ctx.store.tx() as c:
        row = message_or_fail(c, message_pk)
    if row.state not in ASSIGNABLE:
        raise already_handled(f"Thư #{message_pk}", row.state)
    sender = row.sender  # never changes once recorded: the ledger's write checks only the state
    if add_address:
        if not sender:
            raise ReviewError("thư không có địa chỉ người gửi để thêm vào đơn vị")
        owner = ctx.units.by_email(sender)
        if owner is not None and owner.unit_id != unit_id:
            raise ReviewError(f"địa chỉ {sender} đã thuộc đơn vị {owner.unit_id} ({owner.name})")
    return foresee.plan_assign(ctx, row, unit, add_address=add_address)


def assign(ctx: Context, message_pk: int, unit_id: str, *, actor: str, add_address: bool = False,
           now: datetime | None = None, confirm: str | None = None) -> ActionResult:
    """Process a quarantined (or failed) mail as if that unit had sent it; its receipt goes to the sender.

    ``confirm``: the token of the change staff were shown (plan_assign), when it needs a confirmation."""
    from pipeline.desk.unitsadmin import UnitsError, add_address as add_addr

    now = action_time(now)
    plan = plan_assign(ctx, message_pk, unit_id, add_address=add_address)
    _guard(plan, confirm)
    unit = ctx.units.by_id(unit_id)
    assert unit is not None  # plan_assign checked it
    row = ctx.store.message(message_pk)
    sender = row.sender if row is not None else None
    with _refusals():
        action_id = ctx.store.assign_message(message_pk, unit_id, add_address=add_address, actor=actor, now=now)
    if plan.needs_confirmation:  # what staff confirmed, in the action's record
        ctx.store.add_action_params(action_id, confirmed=plan.lines(ctx.cfg.tz))
    added = False
    note = ""
    if add_address and sender:
        try:
            added = add_addr(ctx, unit_id, sender, now)
        except UnitsError as exc:
            note = f" Chưa thêm được địa chỉ: {exc}."
        if added:
            ctx.store.add_action_params(action_id, address_added=True)
    state = _process(ctx, message_pk, now)
    _flush(ctx, now)
    msg = (f"Thư #{message_pk} đã được gán cho {unit.name} và xử lý ({MAIL_STATE_LABELS.get(state, state)}); "
           f"biên nhận gửi tới {sender}.")
    if added:
        msg += f" Địa chỉ {sender} đã được thêm vào đơn vị: thư sau sẽ được nhận thẳng."
    return ActionResult(action_id, msg + note, _outbox_ids(ctx, f"receipt:{message_pk}:"))


def release(ctx: Context, message_pk: int, *, actor: str, now: datetime | None = None) -> ActionResult:
    """Let a mail through despite a failed authentication check (staff confirmed it with the unit)."""
    now = action_time(now)
    with _refusals():
        action_id = ctx.store.release_message(message_pk, actor=actor, now=now)
    state = _process(ctx, message_pk, now)
    _flush(ctx, now)
    after = ctx.store.message(message_pk)
    if state == "processed":
        msg = f"Thư #{message_pk} đã được cho qua và xử lý; biên nhận gửi tới {after.sender if after else ''}."
    else:
        msg = (f"Thư #{message_pk} đã được cho qua nhưng vẫn chưa xử lý được: {after.reason if after else state}. "
               "Hãy gán thư cho một đơn vị.")
    return ActionResult(action_id, msg, _outbox_ids(ctx, f"receipt:{message_pk}:"))


def _notice(ctx: Context, action: str, d: Any, msg_row: Any, *, now: datetime, reason: str = "",
            on_time: bool | None = None, due: datetime | None = None,
            counts_as: tuple[str, str | None, int] | None = None) -> OutboxItem | None:
    """The mail that tells the unit what staff decided about its file (the ledger keys it by the action), and
    where the unit stands after it; ``counts_as``: the (kind, period, campaign) an accepted file is recorded as."""
    unit = ctx.units.by_id(d.unit_id) if d.unit_id else None
    to = msg_row.sender
    if unit is None or not to:
        return None
    attachments = []
    if action == "reject":  # the blank form of the document's own campaign
        form = form_attachment(d.kind, year=d.campaign or ctx.cfg.year, unit_name=unit.name, rules=ctx.rules)
        if form:
            attachments.append(form)
    received = from_iso(d.received_at).astimezone(ctx.cfg.tz)
    resend = None
    if action == "reject":  # by when to send again: the deadline of the document's own campaign
        from pipeline.worker.mailpass import on_time_for

        _, by = on_time_for(ctx, d.kind, d.period, received, campaign=d.campaign or ctx.cfg.year, accepted=False)
        resend = resend_by(by.astimezone(ctx.cfg.tz) if by else None, now)
    view = dict(action=action, unit_name=unit.name, organisation=ctx.cfg.organisation, filename=d.filename,
                received_at=received, kind_label=ctx.rules.kind_label(d.kind), period_label=period_label(d.period),
                on_time=on_time, due=due.astimezone(ctx.cfg.tz) if due else None, reason=reason,
                form_attached=bool(attachments), resend=resend, decided_at=now.astimezone(ctx.cfg.tz),
                standings=standings_after_decision(ctx, unit, d, accepted=action == "accept", counts_as=counts_as,
                                                   now=now))
    text = ctx.env.get_template("review_notice.txt.j2").render(**view)
    html = ctx.env.get_template("review_notice.html.j2").render(**view)
    base = (msg_row.subject or "").strip() or d.filename
    subject = base if base.lower().startswith(("re:", "trả lời:")) else f"Re: {base}"
    mid, raw = build_mail(sender=ctx.cfg.smtp.sender, to=[to], subject=subject, text=text, html=html,
                          in_reply_to=msg_row.message_id or None, references=(), attachments=attachments)
    return OutboxItem(key="", purpose="receipt", recipients=(to,), subject=subject,
                      smtp_message_id=mid, raw=raw, message_pk=msg_row.id, unit_id=unit.unit_id)


def _check_kind_period(choices: AcceptChoices, kind: str, period: str | None) -> str | None:
    """The period to record (None for a form that has none), or why the choice does not fit the campaign."""
    kinds = dict(choices.kinds)
    if kind not in kinds:
        raise ReviewError(f"loại văn bản {kind!r} không có trong kế hoạch năm {choices.year} "
                          f"(chọn: {', '.join(kinds)})")
    if kind in choices.period_kinds:
        if period not in dict(choices.periods):
            raise ReviewError(f"{kinds[kind]} cần chọn kỳ báo cáo của năm {choices.year} "
                              f"({', '.join(label for _, label in choices.periods)})")
        return period
    return None


def plan_accept(ctx: Context, document_id: int, *, kind: str, period: str | None) -> Plan:
    """What accepting the document as ``kind``/``period`` would change (or why it cannot be: ReviewError)."""
    d, _msg = _reviewable(ctx, document_id)
    period = _check_kind_period(accept_choices(ctx, d.campaign), kind, period or None)
    return foresee.plan_accept(ctx, d, ctx.units.by_id(d.unit_id) if d.unit_id else None, kind=kind, period=period)


def accept(ctx: Context, document_id: int, *, kind: str, period: str | None, actor: str,
           now: datetime | None = None, entries: tuple[Entry, ...] = (), confirm: str | None = None) -> ActionResult:
    """Count a needs_review document (a scanned report, a photo of a signed form) as one of the forms of its
    campaign, with a period of that campaign's year when the form is a periodic report.

    ``entries``: the rows staff typed in from it (pipeline.desk.typed), counted like a read form's.
    ``confirm``: the token of the change staff were shown (plan_accept), when it needs a confirmation."""
    from pipeline.worker.mailpass import on_time_for

    now = action_time(now)
    d, msg_row = _reviewable(ctx, document_id)
    choices = accept_choices(ctx, d.campaign)
    period = _check_kind_period(choices, kind, period or None)
    form = ctx.rules.forms.get(kind)
    if entries and (form is None or form.is_report):
        raise ReviewError(f"{ctx.rules.kind_label(kind)} không có bảng để nhập nội dung")
    plan = foresee.plan_accept(ctx, d, ctx.units.by_id(d.unit_id) if d.unit_id else None, kind=kind, period=period)
    _guard(plan, confirm)
    campaign = int(period[:4]) if period else choices.year  # as the ledger records it
    on_time, due = on_time_for(ctx, kind, period, from_iso(d.received_at), campaign=campaign, unit_id=d.unit_id)
    item = _notice(ctx, "accept", d, msg_row, now=now, on_time=on_time, due=due, counts_as=(kind, period, campaign))
    with _refusals():
        action_id = ctx.store.accept_document(document_id, kind=kind, period=period, on_time=on_time, actor=actor,
                                              now=now, notice=item, typed=entries)
    if plan.needs_confirmation:
        ctx.store.add_action_params(action_id, confirmed=plan.lines(ctx.cfg.tz))
    _flush(ctx, now)
    label = ctx.rules.kind_label(kind) + (f" ({period_label(period)})" if period else "")
    timing = "" if on_time is None else (", đúng hạn" if on_time else ", nộp muộn")
    text = f"Tệp “{d.filename}” đã được ghi nhận là {label}{timing}; đơn vị được báo."
    if entries:
        text += f" {len(entries)} dòng nội dung cán bộ nhập đã được ghi nhận."
    elif form is not None and not form.is_report and not ctx.store.entry_count(document_id):
        text += " Tệp chưa có nội dung (các dòng của biểu): mở tệp để nhập."
    return ActionResult(action_id, text, _outbox_ids(ctx, review_key(action_id)))


def enter_entries(ctx: Context, document_id: int, entries: tuple[Entry, ...], *, actor: str,
                  now: datetime | None = None) -> ActionResult:
    """Record the rows staff typed in from a photo or scan of a form accepted earlier without them."""
    now = action_time(now)
    with ctx.store.tx() as c:
        d = document_or_fail(c, document_id)
    form = ctx.rules.forms.get(d.kind)
    if form is None or form.is_report:
        raise ReviewError(f"{ctx.rules.kind_label(d.kind)} không có bảng để nhập nội dung")
    if not entries:
        raise ReviewError("chưa nhập dòng nào")
    with _refusals():
        action_id = ctx.store.record_typed_entries(document_id, entries, actor=actor, now=now)
    return ActionResult(action_id, f"Đã ghi nhận {len(entries)} dòng nội dung của tệp “{d.filename}” "
                                   f"({ctx.rules.kind_label(d.kind)}).")


def _reviewable(ctx: Context, document_id: int) -> tuple[Any, Any]:
    """A needs_review document and its message, read to build the notice; the ledger checks again as it writes
    (a document waiting for review changes only by leaving that state)."""
    with ctx.store.tx() as c:
        d = document_or_fail(c, document_id)
        if d.state != "needs_review":
            raise already_handled(f"Tài liệu #{document_id}", d.state)
        return d, message_or_fail(c, d.message_pk)


def reject(ctx: Context, document_id: int, *, reason: str, actor: str, now: datetime | None = None) -> ActionResult:
    """Refuse a needs_review document; the reason goes back to the unit (with the blank form when there is one)."""
    now = action_time(now)
    reason = " ".join((reason or "").split())
    if len(reason) < 5:
        raise ReviewError("hãy ghi lý do từ chối để đơn vị biết cần sửa gì (ít nhất vài chữ)")
    d, msg_row = _reviewable(ctx, document_id)
    item = _notice(ctx, "reject", d, msg_row, now=now, reason=reason)
    with _refusals():
        action_id = ctx.store.reject_document(document_id, reason=reason, actor=actor, now=now, notice=item,
                                              finding=f"Cán bộ LĐLĐ Quận không ghi nhận tệp này: {reason}")
    _flush(ctx, now)
    return ActionResult(action_id, f"Tệp “{d.filename}” đã bị từ chối; lý do đã gửi cho đơn vị.",
                        _outbox_ids(ctx, review_key(action_id)))


def ignore(ctx: Context, target: str, target_id: int, *, actor: str, reason: str = "",
           now: datetime | None = None) -> ActionResult:
    """Take an item off the queue without acting on it (spam, a test mail, a bounce already dealt with)."""
    now = action_time(now)
    reason = " ".join((reason or "").split())
    note = f"cán bộ {actor} bỏ qua" + (f": {reason}" if reason else "")
    if target not in ("message", "document", "bounce"):
        raise ReviewError(f"không bỏ qua được loại {target!r} (message | document | bounce)")
    with _refusals():
        action_id, row = ctx.store.ignore_item(target, target_id, reason=reason, note=note, actor=actor, now=now)
    if target == "message":
        what = f"Thư #{target_id}"
    elif target == "document":
        what = f"Tệp “{row.filename}”"
    else:
        what = f"Thư báo không gửi được #{target_id}"
    return ActionResult(action_id, f"{what} đã được bỏ qua.")


