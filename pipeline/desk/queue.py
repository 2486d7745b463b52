"""What automation leaves to a person: the review queue, and for unknown senders the unit they seem to be.

The queue holds quarantined mail (unknown sender, or a sender that failed the server's authentication
check), mail that ended in error, needs_review documents (photos, scans, unreadable files) and
bounced mail. What staff can do with each item is in pipeline.desk.actions; the record of what they
did, and undoing it, in pipeline.desk.actionlog.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pipeline.mail import mime
from pipeline.ledger.schema import bounces, documents, findings, from_iso, messages, outbox
from pipeline.ledger.review import bounces_set_aside

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context


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
    # The campaign (year) the item is about when known: a document's own, a mail's (the one open when it
    # arrived), a bounced mail's; the queue itself is one for every year.
    campaign: int | None = None
    # A mail's attachments, (part, file name), each opened on the desk (a document opens on its own page)
    files: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Look:
    auth_failed: bool
    suggested: str | None
    why: str | None
    files: tuple[tuple[str, str], ...] = ()


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
    files = tuple((a.part, a.filename) for a in parsed.attachments)
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
    return _Look(bool(parsed.auth_failure), best[0] if best else None, best[1] if best else None, files)


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
        bounced = {r.id: r for r in c.execute(sa.select(outbox.c.id, outbox.c.subject, outbox.c.campaign).where(
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
                               suggested_unit_id=look.suggested, suggested_why=look.why, campaign=m.campaign,
                               files=look.files))
    for d in docs:
        items.append(QueueItem(kind="needs_review", target="document", target_id=d.id, message_pk=d.message_pk,
                               received_at=from_iso(d.received_at), sender=d.sender, from_name=d.from_name,
                               subject=d.subject or "", unit_id=d.unit_id, reason=_doc_reason(ctx, d.id),
                               filename=d.filename, doc_kind=d.kind, period=d.period,
                               actions=("accept", "reject", "ignore"), campaign=d.campaign))
    for b in bnc:
        if b.id in done_bounces:
            continue
        recips = ", ".join(json.loads(b.recipients)) or "(không rõ người nhận)"
        sent = bounced.get(b.outbox_id)
        what = f" (thư “{sent.subject}”)" if sent is not None else ""
        unit = ctx.units.by_id(b.unit_id) if b.unit_id else None
        reason = f"Thư gửi tới {recips}{what} không đến được"
        if unit:
            reason += f"; đơn vị {unit.name} có thể chưa nhận được nhắc nhở — kiểm tra lại địa chỉ email"
        items.append(QueueItem(kind="bounce", target="bounce", target_id=b.id, message_pk=b.message_pk,
                               received_at=from_iso(b.received_at), sender=b.sender, from_name=b.from_name,
                               subject=b.subject or "", unit_id=b.unit_id, reason=reason, actions=("ignore",),
                               campaign=sent.campaign if sent is not None else None))
    items.sort(key=lambda i: (i.received_at, i.target_id))
    return items


def _doc_reason(ctx: Context, doc_id: int) -> str:
    with ctx.store.tx() as c:
        msgs = [r.message for r in c.execute(sa.select(findings.c.message).where(
            findings.c.document_id == doc_id).order_by(findings.c.id))]
    return "; ".join(msgs) or "hệ thống không tự đọc được tệp này"

