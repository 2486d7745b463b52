"""Reading the ledger back: the JSON export and the readable status summary, of one campaign or all.

A message belongs to a campaign when it arrived while that campaign was open or carries a document that
counts for it (a 2022 report sent in January 2023 shows under both 2022 and 2023)."""
from __future__ import annotations

import json
from typing import Any, Callable
from zoneinfo import ZoneInfo

from pipeline.forms.rules import default_rules
from pipeline.model import DOC_STATE_LABELS, MAIL_STATE_LABELS, period_label
from pipeline.ledger.schema import from_iso
from pipeline.ledger.review import bounces_set_aside
from pipeline.ledger.store import Store
from pipeline.plan.units import UnitDirectory


def _local(text: str | None, tz: ZoneInfo) -> str | None:
    return from_iso(text).astimezone(tz).isoformat(timespec="seconds") if text else None


def _in_campaign(snap: dict[str, Any], campaign: int | None) -> list[Any]:
    if campaign is None:
        return list(snap["messages"])
    return [m for m in snap["messages"]
            if m.campaign == campaign or any(d.campaign == campaign for d in snap["documents"].get(m.id, []))]


def export(store: Store, tz: ZoneInfo, campaign: int | None = None) -> dict[str, Any]:
    """Everything recorded (of ``campaign`` when given), as plain data."""
    snap = store.snapshot()
    out = []
    msgs = _in_campaign(snap, campaign)
    for m in msgs:
        docs = []
        for d in snap["documents"].get(m.id, []):
            docs.append({
                "id": d.id,
                "filename": d.filename,
                "sha256": d.sha256,
                "kind": d.kind,
                "period": d.period,
                "campaign": d.campaign,
                "state": d.state,
                "on_time": d.on_time,
                "superseded": d.superseded_by is not None,
                "unit_line": d.unit_line,
                "issues": [{"code": f.code, "severity": f.severity, "row": f.row, "column": f.column,
                            "location": f.location, "message": f.message} for f in snap["findings"].get(d.id, [])],
                "entries": [{"section": e.section, "name": e.name, "model": e.model,
                             "categories": json.loads(e.categories), "result": e.result,
                             **({"extra": json.loads(e.extra)} if e.extra else {})}
                            for e in snap["entries"].get(d.id, [])],
            })
        out.append({
            "id": m.id,
            "message_id": m.message_id or None,
            "sender": m.sender,
            "unit_id": m.unit_id,
            "subject": m.subject,
            "received_at": _local(m.received_at, tz),
            "campaign": m.campaign,
            "state": m.state,
            "reason": m.reason,
            "duplicate_of": m.duplicate_of,  # a resent copy: the id of the message it repeats
            "documents": docs,
        })
    receipts = [{"id": o.id, "purpose": o.purpose, "message": o.message_pk, "unit_id": o.unit_id,
                 "to": json.loads(o.recipients), "subject": o.subject, "state": o.state,
                 "sent_at": _local(o.sent_at, tz), "campaign": o.campaign} for o in snap["outbox"]
                if campaign is None or o.campaign == campaign]
    return {"campaign": campaign, "messages": out, "outbox": receipts}


def _when(text: str, tz: ZoneInfo) -> str:
    return from_iso(text).astimezone(tz).strftime("%d/%m/%Y %H:%M")


def status_text(store: Store, units: UnitDirectory, tz: ZoneInfo, campaign: int | None = None, *,
                kind_label: Callable[[str | None], str] | None = None) -> str:
    """A readable summary: what needs a person first (whatever the campaign), then per unit what arrived
    for ``campaign`` (every campaign when None) and its state. ``kind_label`` names a document kind (the
    configured rules' ``Rules.kind_label``; default: the shipped definitions')."""
    label = kind_label or default_rules().kind_label
    snap = store.snapshot()
    every = snap["messages"]
    msgs = _in_campaign(snap, campaign)
    lines: list[str] = [f"== KẾ HOẠCH NĂM {campaign} ==" if campaign is not None else "== MỌI NĂM =="]
    attention = [m for m in every if m.state in ("quarantined", "error", "received")]
    review_docs = [(m, d) for m in every for d in snap["documents"].get(m.id, [])
                   if d.state == "needs_review" and d.superseded_by is None]
    copies: dict[int, list[int]] = {}  # original → its resent copies
    for m in every:
        if m.duplicate_of is not None:
            copies.setdefault(m.duplicate_of, []).append(m.id)
    lines.append("== CẦN XỬ LÝ (needs a person) ==")
    if not attention and not review_docs:
        lines.append("  (không có)")
    for m in attention:
        lines.append(f"  [{m.state}] #{m.id} {_when(m.received_at, tz)} {m.sender or '?'} — "
                     f"{m.subject or ''!s:.60} — {m.reason or MAIL_STATE_LABELS.get(m.state, '')}"
                     + _copies_note(copies.get(m.id)))
    for m, d in review_docs:
        lines.append(f"  [needs_review] #{m.id}/doc {d.id} {_when(m.received_at, tz)} {m.sender} — {d.filename} "
                     f"({label(d.kind)})")
    with store.tx() as c:
        handled = bounces_set_aside(c)
    bounced = [b for b in snap["bounces"] if b.id not in handled]
    for b in bounced:
        lines.append(f"  [bounce] #{b.message_pk} thư gửi tới {', '.join(json.loads(b.recipients)) or '?'} không tới được"
                     + (f" (đơn vị {b.unit_id})" if b.unit_id else ""))
    stuck = [o for o in snap["outbox"] if o.state in ("uncertain", "failed")]
    health = _health_lines(store, tz)
    for o in stuck:
        lines.append(f"  [outbox {o.state}] #{o.id} {o.purpose} → {', '.join(json.loads(o.recipients))}: {o.last_error}")
    lines.append("")
    lines += health
    lines.append("")
    lines.append("== THEO ĐƠN VỊ (per unit) ==")
    by_unit: dict[str, list[Any]] = {}
    for m in msgs:
        if m.unit_id:
            by_unit.setdefault(m.unit_id, []).append(m)
    for u in units.units:
        ms = by_unit.get(u.unit_id, [])
        lines.append(f"  {u.unit_id} {u.name} [{u.group}]: " + ("chưa gửi gì" if not ms else f"{len(ms)} thư"))
        for m in ms:
            docs = snap["documents"].get(m.id, [])
            lines.append(f"    #{m.id} {_when(m.received_at, tz)} [{m.state}] {m.subject or ''}"
                         + (f" — {m.reason}" if m.duplicate_of is not None else _copies_note(copies.get(m.id))))
            for d in docs:
                extra = []
                if d.period:
                    extra.append(period_label(d.period) or d.period)
                elif d.campaign is not None and d.campaign != campaign:
                    extra.append(f"tính cho năm {d.campaign}")
                if d.on_time is not None:
                    extra.append("đúng hạn" if d.on_time else "muộn")
                if d.superseded_by is not None:
                    extra.append(f"đã thay bằng #{d.superseded_by}")
                n_err = sum(1 for f in snap["findings"].get(d.id, []) if f.severity == "error")
                if n_err:
                    extra.append(f"{n_err} lỗi")
                lines.append(f"      - {d.filename}: {d.kind} → {d.state} ({DOC_STATE_LABELS.get(d.state, '')})"
                             + (f" [{'; '.join(extra)}]" if extra else ""))
    unknown_units = sorted({m.unit_id for m in msgs if m.unit_id and units.by_id(m.unit_id) is None})
    for uid in unknown_units:
        lines.append(f"  {uid} (không còn trong danh sách đơn vị): {len(by_unit[uid])} thư")
    counts: dict[str, int] = {}
    for m in msgs:
        counts[m.state] = counts.get(m.state, 0) + 1
    ob: dict[str, int] = {}
    for o in snap["outbox"]:  # the outbox is one queue, whatever the campaign
        ob[o.state] = ob.get(o.state, 0) + 1
    lines.append("")
    n_copies = sum(1 for m in msgs if m.duplicate_of is not None)
    lines.append("Tổng: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
                 (f" (trong đó {n_copies} bản gửi lặp lại)" if n_copies else "") +
                 " | Hộp thư đi: " + (", ".join(f"{k} {v}" for k, v in sorted(ob.items())) or "trống"))
    return "\n".join(lines)


def _copies_note(ids: list[int] | None) -> str:
    """After a mail that was sent again: its copies, recorded and not answered."""
    if not ids:
        return ""
    return f" (đã nhận thêm {len(ids)} bản gửi lặp lại: {', '.join(f'#{i}' for i in ids)}, không trả lời lại)"


def _health_lines(store: Store, tz: ZoneInfo) -> list[str]:
    """The worker's liveness as `intake run` records it (kv poll.*)."""
    last_ok = store.get_kv("poll.last_ok")
    failing = store.get_kv("poll.failing_since")
    error = store.get_kv("poll.last_error")
    lines = ["== WORKER =="]
    lines.append("  lần nhận thư thành công gần nhất: " + (_when(last_ok, tz) if last_ok else
                                                              "chưa có (worker `intake run` chưa chạy?)"))
    if failing:
        lines.append(f"  ĐANG LỖI từ {_when(failing, tz)}: {error or '?'}")
    return lines
