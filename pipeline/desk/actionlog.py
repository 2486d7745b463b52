"""The record of staff actions (``review_actions``): reading it back, and undoing an entry.

Undo puts back what the action changed, from the "before" the action recorded, in one transaction of
the ledger (pipeline.ledger.review); mail still waiting in the outbox is cancelled, mail already sent
cannot be called back and the result says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pipeline.desk.actions import ActionResult, ReviewError, action_time
from pipeline.model import period_label
from pipeline.ledger.review import UNDOABLE, RowMissing, StateChanged
from pipeline.ledger.schema import bounces, documents, from_iso, messages, review_actions

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context


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


def undo(ctx: Context, action_id: int, *, actor: str, now: datetime | None = None) -> ActionResult:
    """Put back what an action changed. Mail already sent to a unit cannot be called back; that is said."""
    from pipeline.desk.unitsadmin import remove_address, restore_backup

    now = action_time(now)
    a = ctx.store.review_action(action_id)
    if a is not None and a.undone_at is None and a.action not in UNDOABLE:
        raise ReviewError(f"thao tác {a.action!r} không hoàn tác được")
    try:
        u = ctx.store.undo_action(action_id, actor=actor, now=now)
    except RowMissing as exc:
        raise ReviewError(_MISSING[exc.table].format(exc.row_id)) from None
    except StateChanged as exc:
        raise _refused(ctx, exc, a.action if a is not None else "") from None
    before, params, sent_note = u.before, u.params, ""
    if u.action.action in ("assign", "release"):
        sent_note = " Biên nhận đã gửi (nếu có) không thu hồi được."
        what = f"Thư #{u.action.target_id} trở lại trạng thái {before['state']}."
    elif u.action.action in ("accept", "reject"):
        sent_note = " Thư báo đã gửi cho đơn vị không thu hồi được."
        what = f"Tệp “{u.filename}” trở lại trạng thái chờ xem xét."
    elif u.action.action == "entries":
        what = f"Các dòng cán bộ đã nhập cho tệp “{u.filename}” đã được gỡ; tệp vẫn được ghi nhận, chưa nhập nội dung."
    elif u.action.action == "ignore":
        what = "Mục đã bỏ qua trở lại danh sách cần xử lý."
    else:
        what = "Danh sách đơn vị trước lần tải lên đã được khôi phục."
    if u.cancelled:
        sent_note = f" {u.cancelled} thư chưa kịp gửi đã được huỷ."
    if u.action.action == "units_replace":
        restore_backup(ctx, before["backup"], now)
    if u.action.action == "assign" and params.get("address_added") and params.get("address"):
        if remove_address(ctx, params["unit_id"], params["address"], now):
            what += f" Địa chỉ {params['address']} đã được gỡ khỏi đơn vị {params['unit_id']}."
    return ActionResult(action_id, what + sent_note)


_MISSING = {"review_actions": "không có thao tác #{}", "messages": "không có thư #{}",
            "documents": "không có tài liệu #{}"}


def _refused(ctx: Context, exc: StateChanged, action: str) -> ReviewError:
    """Why the ledger would not undo: undone already, or the thing changed since the action."""
    if exc.table == "review_actions":
        a = exc.row
        return ReviewError(f"thao tác #{a.id} đã được hoàn tác lúc "
                           f"{from_iso(a.undone_at).astimezone(ctx.cfg.tz):%H:%M %d/%m/%Y} bởi {a.undone_by}")
    if exc.table == "messages" and action in ("assign", "release"):
        return ReviewError(f"thư #{exc.row_id} đang được xử lý; thử lại sau ít phút")
    what = "thư" if exc.table == "messages" else "tài liệu"
    return ReviewError(f"{what} #{exc.row_id} đã thay đổi (trạng thái {exc.state}); không hoàn tác được")


# ------------------------------------------------------------------------------------------ history

_VERBS = {"assign": "gán thư", "release": "cho qua thư", "accept": "ghi nhận tệp", "reject": "từ chối tệp",
          "ignore": "bỏ qua", "entries": "nhập nội dung tệp", "units_replace": "thay danh sách đơn vị"}


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
        return (f"Ghi nhận {target} là {ctx.rules.kind_label(params.get('kind'))}"
                + (f" ({period_label(params.get('period'))})" if params.get("period") else "")
                + (f", nhập {params['entries']} dòng" if params.get("entries") else ""))
    if a.action == "entries":
        return f"Nhập {params.get('entries')} dòng nội dung cho {target}"
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

