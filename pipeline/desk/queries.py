"""Read-only questions the desk asks of the ledger. Nothing here writes.

The figures (who sent on time, late, nothing ...) are those of pipeline.plan.reports, the same the staff
mail and the workbook show: the desk groups them for its pages and counts nothing itself."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable

import sqlalchemy as sa

from pipeline.plan import deadlines
from pipeline.plan.deadlines import STANDING_LABELS_VI, ObligationState
from pipeline.plan.reports import ComplianceRow, ObligationCounts, ReportData, compliance_rows
from pipeline.forms.rules import Rules
from pipeline.plan.obligations import Obligation
from pipeline.model import DocumentRecord, Unit, period_label
from pipeline.ledger.schema import (bounces, documents, entries, findings, from_iso, kv, locks, messages, outbox,
                                    reminders)
from pipeline.textnorm import fold
from pipeline.ledger.leases import LOCK_NAME
from pipeline.worker.lock import LOCK_STALE_AFTER

if TYPE_CHECKING:
    from pipeline.context import Context

def sort_units(units: Iterable[Unit]) -> list[Unit]:
    """By name as a Vietnamese reader looks for it: diacritics and case ignored, then by id."""
    return sorted(units, key=lambda u: (fold(u.name), u.unit_id))


def search_units(units: Iterable[Unit], query: str) -> list[Unit]:
    q = fold(query or "")
    if not q:
        return sort_units(units)
    return sort_units(u for u in units
                      if q in fold(u.name) or q in fold(u.unit_id) or any(q in fold(e) for e in u.emails))


def short_title(ob: Obligation, rules: Rules) -> str:
    """A column header for an obligation: 'Đăng ký mô hình', 'Quý I/2022', ... (by how its forms count)."""
    if ob.period:
        label = period_label(ob.period) or ob.period
        return label[:1].upper() + label[1:]
    roles = {rules.forms[k].report_as for k in ob.kinds if k in rules.forms}
    if roles & {"registration", "summary"}:
        return "Đăng ký mô hình"
    if "commendation" in roles:
        return "Đề xuất khen thưởng"
    return ob.title


# --------------------------------------------------------------------------- health

HEALTH_TITLES = {"ok": "Hệ thống hoạt động bình thường", "warn": "Cần chú ý", "bad": "Hệ thống đang có sự cố"}


@dataclass(frozen=True)
class HealthVerdict:
    level: str                   # ok | warn (amber) | bad (red)
    problems: tuple[str, ...]    # Vietnamese: what is wrong and what to do, one sentence each

    @property
    def title(self) -> str:
        return HEALTH_TITLES[self.level]


@dataclass(frozen=True)
class Health:
    last_ok: datetime | None
    failing_since: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    outbox: dict[str, int]
    worker_host: str | None = None
    worker_pid: int | None = None
    worker_heartbeat: datetime | None = None
    tz: Any = timezone.utc

    @property
    def backlog(self) -> int:
        return sum(self.outbox.get(s, 0) for s in ("pending", "sending", "uncertain", "failed"))

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def worker_alive(self, now: datetime) -> bool:
        """A worker holds the lock and beat within LOCK_STALE_AFTER (after that another may take it over)."""
        return self.worker_heartbeat is not None and now - self.worker_heartbeat < LOCK_STALE_AFTER

    def verdict(self, now: datetime) -> HealthVerdict:
        """Red when mail is not being read (no worker, or the last pass failed), amber when something needs
        a look (the mailbox never read yet, outgoing mail stuck); each problem says what to do."""
        def at(dt: datetime) -> str:
            return dt.astimezone(self.tz).strftime("%H:%M ngày %d/%m/%Y")

        bad: list[str] = []
        warn: list[str] = []
        if self.worker_heartbeat is None:
            bad.append("Dịch vụ tiếp nhận thư không chạy: thư của các đơn vị không được đọc, không có thư báo nhận "
                       "hay thư nhắc nào được gửi. Đề nghị khởi động dịch vụ trên máy chủ (hoặc báo cán bộ kỹ thuật "
                       "phụ trách).")
        elif not self.worker_alive(now):
            bad.append(f"Không thấy tín hiệu của dịch vụ tiếp nhận thư từ {at(self.worker_heartbeat)}: máy chủ có "
                       "thể đã tắt hoặc dịch vụ đã dừng, thư của các đơn vị không được đọc. Đề nghị kiểm tra máy chủ "
                       "và khởi động lại dịch vụ (hoặc báo cán bộ kỹ thuật phụ trách).")
        if self.failing_since is not None:
            bad.append(f"Không đọc được hộp thư từ {at(self.failing_since)}"
                       + (f" (lỗi: {self.last_error})" if self.last_error else "")
                       + ". Đề nghị kiểm tra kết nối Internet của máy chủ và mật khẩu ứng dụng của hộp thư Gmail; "
                         "thư của các đơn vị vẫn nằm trong hộp thư và sẽ được xử lý khi đọc lại được.")
        elif self.last_ok is None:
            warn.append("Hệ thống chưa đọc được hộp thư lần nào. Nếu dịch vụ vừa khởi động, hãy chờ vài phút rồi tải "
                        "lại trang; nếu vẫn vậy, đề nghị kiểm tra địa chỉ và mật khẩu ứng dụng của hộp thư trong cấu "
                        "hình.")
        stuck = self.outbox.get("failed", 0) + self.outbox.get("uncertain", 0)
        if stuck:
            warn.append(f"Có {stuck} thư gửi đi bị lỗi hoặc chưa rõ đã gửi chưa (xem mục Hộp thư đi). Đề nghị kiểm "
                        "tra tài khoản gửi thư; nếu cần, gọi điện báo cho đơn vị liên quan.")
        level = "bad" if bad else "warn" if warn else "ok"
        return HealthVerdict(level, tuple(bad + warn))


def health(ctx: Context) -> Health:
    with ctx.store.tx() as c:
        kvs = {r.key: r for r in c.execute(sa.select(kv).where(
            kv.c.key.in_(("poll.last_ok", "poll.failing_since", "poll.last_error"))))}
        counts = {r[0]: int(r[1]) for r in c.execute(
            sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state))}
        lock = c.execute(sa.select(locks).where(locks.c.name == LOCK_NAME)).first()

    def when(key: str) -> datetime | None:
        row = kvs.get(key)
        return from_iso(row.value) if row is not None and row.value else None

    err = kvs.get("poll.last_error")
    return Health(
        last_ok=when("poll.last_ok"), failing_since=when("poll.failing_since"),
        last_error=err.value if err is not None and err.value else None,
        last_error_at=from_iso(err.updated_at) if err is not None and err.value else None,
        outbox={s: counts.get(s, 0) for s in ("pending", "sending", "uncertain", "failed", "sent", "dropped")},
        worker_host=lock.host if lock else None, worker_pid=lock.pid if lock else None,
        worker_heartbeat=from_iso(lock.heartbeat_at) if lock else None, tz=ctx.cfg.tz,
    )


# --------------------------------------------------------------------------- overview


@dataclass(frozen=True)
class StandingGroup:
    standing: str
    label: str
    rows: tuple[ComplianceRow, ...]  # by unit name


@dataclass(frozen=True)
class ObligationView:
    """One obligation on the overview: its counts (reports.ObligationCounts) and the units behind each."""

    counts: ObligationCounts
    short: str
    groups: tuple[StandingGroup, ...]

    @property
    def obligation(self) -> Obligation:
        return self.counts.obligation


def states(ctx: Context, docs: list[DocumentRecord] | None = None) -> dict[tuple[str, str], ObligationState]:
    """Every unit's state on every obligation of the campaign ``ctx`` looks at (its documents only)."""
    return deadlines.unit_states(ctx.obligations, ctx.units.units, docs if docs is not None else ctx.documents(),
                                 keep_first_attempt_date=ctx.cfg.keep_first_attempt_date)


def standings(ctx: Context, today: date,
              st: dict[tuple[str, str], ObligationState] | None = None) -> dict[tuple[str, str], ComplianceRow]:
    """Every unit's standing on every obligation it owes on ``today``, keyed by (unit_id, obligation_id)."""
    rows = compliance_rows(ctx.obligations, ctx.units.units, st if st is not None else states(ctx), today)
    return {(r.unit.unit_id, r.obligation.id): r for r in rows}


def obligation_views(data: ReportData, rules: Rules) -> list[ObligationView]:
    """Per obligation, the units of each standing it can have (accepted, rejected, waiting for staff, not
    sent), from the report's own rows: the overview lists exactly the units its counts count."""
    out = []
    for counts in data.obligations:
        ob = counts.obligation
        rows = sorted((r for r in data.compliance if r.obligation.id == ob.id),
                      key=lambda r: (fold(r.unit.name), r.unit.unit_id))
        shown = (("on_time", "late") if ob.due_at is not None else ("submitted",)) + (
            "rejected", "under_review", counts.not_sent_standing)
        groups = tuple(StandingGroup(s, STANDING_LABELS_VI[s], tuple(r for r in rows if r.standing == s))
                       for s in shown)
        out.append(ObligationView(counts, short_title(ob, rules), groups))
    return out


@dataclass(frozen=True)
class WeekBar:
    start: date
    before: int  # documents received on or before the deadline
    after: int


@dataclass(frozen=True)
class WeeklySeries:
    obligation: Obligation
    weeks: tuple[WeekBar, ...]
    total: int


def weekly_submissions(obligation: Obligation, docs: Iterable[DocumentRecord], tz: Any,
                       max_weeks: int = 26) -> WeeklySeries:
    """Documents matching an obligation per week (Monday–Sunday, local time), split at the deadline;
    from a few weeks before the deadline to after the last document, at most ``max_weeks`` weeks."""
    matching = [d for d in docs if obligation.matches(d.kind, d.period) and d.state in ("accepted", "rejected",
                                                                                         "needs_review")]
    due = obligation.due_at

    def monday(d: date) -> date:
        return d - timedelta(days=d.weekday())

    per: dict[date, list[int]] = {}
    for d in matching:
        local = d.received_at.astimezone(tz)
        slot = per.setdefault(monday(local.date()), [0, 0])
        slot[0 if due is None or d.received_at <= due else 1] += 1
    anchors = list(per)
    if due is not None:
        due_week = monday(due.astimezone(tz).date())
        anchors += [due_week - timedelta(weeks=4), due_week + timedelta(weeks=1)]
    if not anchors:
        return WeeklySeries(obligation, (), 0)
    first, last = min(anchors), max(anchors)
    n = (last - first).days // 7 + 1
    if n > max_weeks:  # keep the weeks around the deadline and the newest documents
        first = last - timedelta(weeks=max_weeks - 1)
        n = max_weeks
    weeks = tuple(WeekBar(first + timedelta(weeks=i), *per.get(first + timedelta(weeks=i), [0, 0])) for i in range(n))
    return WeeklySeries(obligation, weeks, len(matching))


# --------------------------------------------------------------------------- a unit's history


@dataclass
class DocView:
    row: Any
    findings: list[Any] = field(default_factory=list)
    entries: int = 0


@dataclass
class MailView:
    row: Any
    documents: list[DocView] = field(default_factory=list)
    outbox: list[Any] = field(default_factory=list)


@dataclass
class UnitHistory:
    mails: list[MailView]
    outbox: list[Any]      # every outbox item for the unit (receipts, reminders, notices), newest first
    reminders: list[Any]   # reminder stages with their outbox state
    bounces: list[Any]


def _outbox_cols() -> list[Any]:
    return [outbox.c.id, outbox.c.key, outbox.c.purpose, outbox.c.message_pk, outbox.c.unit_id, outbox.c.recipients,
            outbox.c.subject, outbox.c.state, outbox.c.attempts, outbox.c.last_error, outbox.c.created_at,
            outbox.c.sent_at]


def unit_history(ctx: Context, unit: Unit) -> UnitHistory:
    """Everything about a unit, whatever the campaign (each document and reminder row carries its own)."""
    addrs = [e.lower() for e in unit.emails]
    with ctx.store.tx() as c:
        cond = sa.or_(messages.c.unit_id == unit.unit_id, messages.c.assigned_unit_id == unit.unit_id,
                      sa.func.lower(messages.c.sender).in_(addrs) if addrs else sa.false())
        msgs = list(c.execute(sa.select(*[col for col in messages.c]).where(cond)
                              .order_by(messages.c.received_at.desc(), messages.c.id.desc())))
        pks = [m.id for m in msgs]
        docs = list(c.execute(sa.select(documents).where(
            sa.or_(documents.c.message_pk.in_(pks), documents.c.unit_id == unit.unit_id)).order_by(documents.c.id)))
        doc_ids = [d.id for d in docs]
        fnd = list(c.execute(sa.select(findings).where(findings.c.document_id.in_(doc_ids))
                             .order_by(findings.c.id))) if doc_ids else []
        n_entries = {r[0]: int(r[1]) for r in c.execute(
            sa.select(entries.c.document_id, sa.func.count()).where(entries.c.document_id.in_(doc_ids))
            .group_by(entries.c.document_id))} if doc_ids else {}
        obx = list(c.execute(sa.select(*_outbox_cols()).where(
            sa.or_(outbox.c.unit_id == unit.unit_id, outbox.c.message_pk.in_(pks))).order_by(outbox.c.id.desc())))
        rem = list(c.execute(sa.select(reminders.c.id, reminders.c.campaign, reminders.c.obligation_id,
                                       reminders.c.stage, reminders.c.created_at, reminders.c.outbox_id,
                                       outbox.c.state.label("outbox_state"), outbox.c.sent_at,
                                       outbox.c.last_error.label("outbox_error"))
                             .select_from(reminders.outerjoin(outbox, outbox.c.id == reminders.c.outbox_id))
                             .where(reminders.c.unit_id == unit.unit_id).order_by(reminders.c.id.desc())))
        bnc = list(c.execute(sa.select(bounces).where(bounces.c.unit_id == unit.unit_id).order_by(bounces.c.id.desc())))
    by_doc: dict[int, list[Any]] = {}
    for f in fnd:
        by_doc.setdefault(f.document_id, []).append(f)
    views = {m.id: MailView(m) for m in msgs}
    for d in docs:
        mv = views.get(d.message_pk)
        if mv is not None:
            mv.documents.append(DocView(d, by_doc.get(d.id, []), n_entries.get(d.id, 0)))
    for o in obx:
        if o.message_pk in views:
            views[o.message_pk].outbox.append(o)
    return UnitHistory(list(views.values()), obx, rem, bnc)


def message_row(ctx: Context, pk: int) -> Any:
    return ctx.store.message(pk)


def recipients(row: Any) -> list[str]:
    try:
        return list(json.loads(row.recipients))
    except (TypeError, ValueError):
        return []
