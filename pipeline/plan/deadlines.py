"""Deadlines: who owes what, by when, where each unit stands, and which reminders are due.

Pure: the only I/O is reading the YAML rules file and the templates handed in. The clock is never
read here: ``today`` is a parameter.

Deadline semantics (``rules/deadlines.yaml``): a due date is the *inclusive end of that day* in the
configured time zone (Asia/Ho_Chi_Minh), unless the obligation gives a ``time`` or says
``exclusive: true``. ``Obligation.due_at`` is the last instant that still counts as on time, so
``received_at <= due_at`` is on time. For 22/02/2022: 23:59 local on 22/02 is on time, 00:00 on
23/02 is late. The plan's "trước ngày 15 tháng cuối quý" for reports is read as "by the 15th"
(the 15th counts); the rules file says how to make it strict.

Reminder policy (``rules/reminders.yaml``): stages "before-7", "before-2", "after-1", then
"weekly-1", "weekly-2", ... every 7 days while the unit still owes the document, up to a cut-off
(60 days after the due day by default). Each stage is counted from the last day that is still on
time. Stage k is *current* from its own day until the day before stage k+1 (the last stage until
the cut-off). On a given ``today`` only the current stage can be sent, and only if it was never
sent: so a worker that missed days catches up with the stage it missed as long as the next stage
has not come, and a unit never gets two reminders for the same obligation on the same day. Earlier
stages that were never sent are returned with ``superseded=True`` so that the caller records them
as "sent-not-needed" and never sends them later.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from pipeline.errors import ConfigError
from pipeline.model import GROUPS, KINDS, DocumentRecord, Finding, Unit
from pipeline.textnorm import fold

if TYPE_CHECKING:
    import jinja2

STATES = ("missing", "rejected", "on_time", "late")
STATE_LABELS_VI = {
    "missing": "Chưa nộp",
    "rejected": "Chưa đạt, chờ gửi lại",
    "on_time": "Đúng hạn",
    "late": "Quá hạn",
}
_OBLIGATION_KINDS = tuple(k for k in KINDS if k != "unknown")
_OBLIGATION_KEYS = {"id", "title", "form_name", "kinds", "period", "due", "time", "exclusive", "groups"}
_POLICY_KEYS = {"before_days", "after_days", "weekly_every_days", "cutoff_days_after", "remind_under_review"}
_PERIOD = re.compile(r"^\d{4}-(Q1|H1|Q3|Y)$")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_EPS = timedelta(microseconds=1)


def vn_date(value: date | datetime) -> str:
    """dd/mm/yyyy, the way every Vietnamese administrative document writes a date."""
    return value.strftime("%d/%m/%Y")


def vn_datetime(value: datetime, tz: str | None = None) -> str:
    """dd/mm/yyyy HH:MM, converted to ``tz`` when given."""
    if tz is not None:
        value = value.astimezone(ZoneInfo(tz))
    return value.strftime("%d/%m/%Y %H:%M")


@dataclass(frozen=True)
class Obligation:
    """What every unit of ``groups`` must send, and the last instant that still counts as on time.

    ``due_at`` is None when the district has not set a date yet (the commendation list by
    default): the obligation is tracked but never late and nobody is reminded.
    """

    id: str
    title: str
    kinds: tuple[str, ...]
    period: str | None
    due_at: datetime | None
    groups: tuple[str, ...]
    form_name: str
    deadline_text: str = ""  # Vietnamese, e.g. "chậm nhất ngày 22/02/2022"

    @property
    def enabled(self) -> bool:
        return self.due_at is not None

    @property
    def due_date(self) -> date | None:
        """The last local day that is still on time (due_at carries the configured zone)."""
        return None if self.due_at is None else self.due_at.date()

    def applies_to(self, unit: Unit) -> bool:
        return unit.group in self.groups

    def matches(self, kind: str, period: str | None) -> bool:
        return kind in self.kinds and (self.period is None or self.period == period)


@dataclass(frozen=True)
class ObligationState:
    """Where one unit stands on one obligation.

    ``received_at`` is when the counting document arrived; ``counted_at`` is the time judged
    against the deadline (the first attempt's time when the config keeps it, else received_at).
    For "rejected", document and findings are those of the newest rejected document.
    ``under_review_document_id``: a matching document still waiting for staff (needs_review).
    """

    unit_id: str
    obligation_id: str
    state: str  # one of STATES
    document_id: int | None = None
    received_at: datetime | None = None
    findings: tuple[Finding, ...] = ()
    counted_at: datetime | None = None
    under_review_document_id: int | None = None

    @property
    def owes(self) -> bool:
        return self.state in ("missing", "rejected")

    @property
    def label_vi(self) -> str:
        return STATE_LABELS_VI[self.state]


@dataclass(frozen=True)
class ReminderPolicy:
    before_days: tuple[int, ...] = (7, 2)
    after_days: tuple[int, ...] = (1,)
    weekly_every_days: int = 7
    cutoff_days_after: int = 60
    remind_under_review: bool = False


@dataclass(frozen=True)
class ReminderDue:
    """One stage of one obligation for one unit. ``superseded``: record as sent-not-needed, don't send."""

    unit_id: str
    obligation_id: str
    stage: str
    stage_date: date
    superseded: bool = False


# --------------------------------------------------------------------------- loading obligations


def _fail(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {problem}")


def _parse_due(raw: Any, year: int) -> date:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"ngày không hợp lệ / not a date: {raw!r}")
    text = raw.strip().replace("{year}", str(year))
    try:
        return _parse_due_text(text, year)
    except ValueError as exc:
        raise ValueError(f"ngày không hợp lệ / bad date {raw!r}: {exc}") from exc


def _parse_due_text(text: str, year: int) -> date:
    m = re.fullmatch(r"(\d{1,2})-(\d{1,2})", text)
    if m:
        return date(year, int(m[1]), int(m[2]))
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
    if m:
        return date(int(m[1]), int(m[2]), int(m[3]))
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})(?:/(\d{4}))?", text)
    if m:
        return date(int(m[3]) if m[3] else year, int(m[2]), int(m[1]))
    raise ValueError("viết MM-DD, {year}-MM-DD, DD/MM hoặc DD/MM/{year} / write MM-DD or DD/MM")


def _str_list(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def load_obligations(path: Path, year: int, tz: str) -> tuple[Obligation, ...]:
    """Read rules/deadlines.yaml for ``year``; every error names the file and the obligation."""
    path = Path(path)
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{path}: múi giờ không tồn tại / unknown time zone: {tz!r}") from exc
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: không đọc được tệp / cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML không hợp lệ / invalid YAML: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("obligations"), list):
        raise _fail(path, "obligations", "phải là một danh sách / must be a list of obligations")
    unknown_top = set(data) - {"obligations"}
    if unknown_top:
        raise _fail(path, ", ".join(sorted(map(str, unknown_top))), "khoá không được hỗ trợ / unknown key")

    result: list[Obligation] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["obligations"]):
        where = f"obligations[{index}]"
        if not isinstance(raw, Mapping):
            raise _fail(path, where, "phải là một nhóm khoá / must be a mapping")
        oid = raw.get("id")
        if not isinstance(oid, str) or not _ID.match(oid):
            raise _fail(path, f"{where}.id", f"mã không hợp lệ / bad or missing id: {oid!r}")
        where = f"obligation {oid!r} ({where})"
        if oid in seen:
            raise _fail(path, where, "trùng mã / duplicate id")
        seen.add(oid)
        unknown = set(raw) - _OBLIGATION_KEYS
        if unknown:
            raise _fail(path, f"{where}.{sorted(map(str, unknown))[0]}", "khoá không được hỗ trợ / unknown key")

        title = raw.get("title")
        if not isinstance(title, str) or not title.strip():
            raise _fail(path, f"{where}.title", "thiếu tiêu đề / missing title")
        title = title.replace("{year}", str(year)).strip()
        form_name = raw.get("form_name", title)
        if not isinstance(form_name, str) or not form_name.strip():
            raise _fail(path, f"{where}.form_name", "phải là chuỗi / must be text")
        form_name = form_name.replace("{year}", str(year)).strip()

        kinds = _str_list(raw.get("kinds"))
        if not kinds:
            raise _fail(path, f"{where}.kinds", "thiếu loại văn bản / missing kinds")
        for kind in kinds:
            if kind not in _OBLIGATION_KINDS:
                raise _fail(
                    path, f"{where}.kinds",
                    f"loại văn bản không hợp lệ / unknown kind {kind!r} (one of {', '.join(_OBLIGATION_KINDS)})",
                )

        period = raw.get("period")
        if period is not None:
            if not isinstance(period, str):
                raise _fail(path, f"{where}.period", f"kỳ không hợp lệ / bad period {period!r}")
            period = period.replace("{year}", str(year)).strip()
            if not _PERIOD.match(period):
                raise _fail(path, f"{where}.period", f"kỳ không hợp lệ / bad period {period!r} (e.g. {year}-Q1)")
        elif "report" in kinds:
            raise _fail(path, f"{where}.period", "báo cáo phải có kỳ / a report obligation needs a period")

        groups = _str_list(raw.get("groups", list(GROUPS)))
        if not groups:
            raise _fail(path, f"{where}.groups", "phải là danh sách khối / must be a list of groups")
        for group in groups:
            if group not in GROUPS:
                raise _fail(
                    path, f"{where}.groups",
                    f"khối không hợp lệ / unknown group {group!r} (one of {', '.join(GROUPS)})",
                )

        exclusive = raw.get("exclusive", False)
        if not isinstance(exclusive, bool):
            raise _fail(path, f"{where}.exclusive", "phải là true/false / must be a boolean")
        at_raw = raw.get("time")
        at: time | None = None
        if at_raw is not None:
            # YAML 1.1 reads an unquoted 17:00 as the sexagesimal integer 1020.
            if isinstance(at_raw, int) and not isinstance(at_raw, bool) and 0 <= at_raw < 24 * 60:
                at = time(at_raw // 60, at_raw % 60)
            elif isinstance(at_raw, str) and _TIME.match(at_raw.strip()):
                hh, mm = at_raw.strip().split(":")
                at = time(int(hh), int(mm))
            else:
                raise _fail(path, f"{where}.time", f"giờ không hợp lệ / bad time {at_raw!r} (HH:MM)")

        due_raw = raw.get("due")
        due_at: datetime | None = None
        deadline_text = "chưa quy định thời hạn"
        if due_raw is not None:
            try:
                due_day = _parse_due(due_raw, year)
            except ValueError as exc:
                raise _fail(path, f"{where}.due", str(exc)) from exc
            if at is None:
                start_next = datetime.combine(due_day + timedelta(days=1), time(0), tzinfo=zone)
                if exclusive:
                    due_at = datetime.combine(due_day, time(0), tzinfo=zone) - _EPS
                    deadline_text = f"trước ngày {vn_date(due_day)}"
                else:
                    due_at = start_next - _EPS
                    deadline_text = f"chậm nhất ngày {vn_date(due_day)}"
            else:
                instant = datetime.combine(due_day, at, tzinfo=zone)
                due_at = instant - _EPS if exclusive else instant
                word = "trước" if exclusive else "chậm nhất"
                deadline_text = f"{word} {at:%H:%M} ngày {vn_date(due_day)}"
        elif at is not None or exclusive:
            raise _fail(
                path, f"{where}.due", "có time/exclusive nhưng thiếu ngày / time or exclusive without a due date"
            )

        result.append(Obligation(
            id=oid, title=title, kinds=kinds, period=period, due_at=due_at, groups=groups,
            form_name=form_name, deadline_text=deadline_text,
        ))
    return tuple(result)


def load_reminder_policy(path: Path) -> ReminderPolicy:
    """Read rules/reminders.yaml; missing keys take the defaults of ReminderPolicy."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: không đọc được tệp / cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML không hợp lệ / invalid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: phải là một nhóm khoá / must be a mapping")
    unknown = set(data) - _POLICY_KEYS
    if unknown:
        raise _fail(path, sorted(map(str, unknown))[0], "khoá không được hỗ trợ / unknown key")
    default = ReminderPolicy()

    def days_list(key: str, fallback: tuple[int, ...]) -> tuple[int, ...]:
        value = data.get(key, list(fallback))
        if value is None:
            return ()
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
        ):
            raise _fail(path, key, "phải là danh sách số ngày dương / must be a list of positive integers")
        return tuple(sorted(set(value), reverse=key == "before_days"))

    def non_negative(key: str, fallback: int) -> int:
        value = data.get(key, fallback)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _fail(path, key, "phải là số nguyên không âm / must be a non-negative integer")
        return value

    under_review = data.get("remind_under_review", default.remind_under_review)
    if not isinstance(under_review, bool):
        raise _fail(path, "remind_under_review", "phải là true/false / must be a boolean")
    return ReminderPolicy(
        before_days=days_list("before_days", default.before_days),
        after_days=days_list("after_days", default.after_days),
        weekly_every_days=non_negative("weekly_every_days", default.weekly_every_days),
        cutoff_days_after=non_negative("cutoff_days_after", default.cutoff_days_after),
        remind_under_review=under_review,
    )


# --------------------------------------------------------------------------- on time, states


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware: {value!r}")
    return value


def is_on_time(obligation: Obligation, received_at: datetime) -> bool:
    """True when ``received_at`` is at or before the obligation's last on-time instant.

    An obligation without a date yet cannot be late.
    """
    _aware(received_at, "received_at")
    return obligation.due_at is None or received_at <= obligation.due_at


def obligation_for(kind: str, period: str | None, obligations: Iterable[Obligation]) -> Obligation | None:
    """The obligation a document of ``kind`` (and ``period`` for reports) counts towards."""
    for obligation in obligations:
        if obligation.matches(kind, period):
            return obligation
    return None


def document_on_time(
    document: DocumentRecord, obligations: Iterable[Obligation], *, keep_first_attempt_date: bool = False
) -> bool | None:
    """On time / late for an accepted document; None when it meets no obligation or is not accepted."""
    if document.state != "accepted":
        return None
    obligation = obligation_for(document.kind, document.period, obligations)
    if obligation is None:
        return None
    return is_on_time(obligation, _counted_at(document, keep_first_attempt_date))


def _counted_at(document: DocumentRecord, keep_first_attempt_date: bool) -> datetime:
    if keep_first_attempt_date and document.first_attempt_at is not None:
        return min(document.first_attempt_at, document.received_at)
    return document.received_at


def _newest(documents: list[DocumentRecord]) -> DocumentRecord:
    return max(documents, key=lambda d: (d.received_at, d.document_id))


def unit_states(
    obligations: Iterable[Obligation],
    units: Iterable[Unit],
    documents: Iterable[DocumentRecord],
    *,
    keep_first_attempt_date: bool = False,
) -> dict[tuple[str, str], ObligationState]:
    """State of every unit on every obligation its group owes, keyed by (unit_id, obligation_id).

    The newest accepted, non-superseded matching document counts (on time or late against
    ``counted_at``); with no accepted one, the newest rejected one makes the state "rejected";
    otherwise "missing". Documents in needs_review change nothing but are reported in
    ``under_review_document_id``.
    """
    obligations = tuple(obligations)
    by_unit: dict[str, list[DocumentRecord]] = {}
    for document in documents:
        by_unit.setdefault(document.unit_id, []).append(document)

    states: dict[tuple[str, str], ObligationState] = {}
    for unit in units:
        own = by_unit.get(unit.unit_id, [])
        for obligation in obligations:
            if not obligation.applies_to(unit):
                continue
            matching = [d for d in own if obligation.matches(d.kind, d.period)]
            accepted = [d for d in matching if d.state == "accepted" and not d.superseded]
            rejected = [d for d in matching if d.state == "rejected"]
            review = [d for d in matching if d.state == "needs_review" and not d.superseded]
            under_review = _newest(review).document_id if review else None
            key = (unit.unit_id, obligation.id)
            if accepted:
                doc = _newest(accepted)
                counted = _counted_at(doc, keep_first_attempt_date)
                states[key] = ObligationState(
                    unit.unit_id, obligation.id,
                    "on_time" if is_on_time(obligation, counted) else "late",
                    doc.document_id, doc.received_at, (), counted, under_review,
                )
            elif rejected:
                doc = _newest(rejected)
                states[key] = ObligationState(
                    unit.unit_id, obligation.id, "rejected", doc.document_id, doc.received_at,
                    tuple(doc.findings), None, under_review,
                )
            else:
                states[key] = ObligationState(
                    unit.unit_id, obligation.id, "missing", under_review_document_id=under_review
                )
    return states


# --------------------------------------------------------------------------- reminders


def reminder_schedule(obligation: Obligation, policy: ReminderPolicy) -> tuple[tuple[str, date], ...]:
    """Every stage of an obligation and its day, in order; empty when the obligation has no date."""
    due = obligation.due_date
    if due is None:
        return ()
    cutoff = policy.cutoff_days_after
    stages: list[tuple[str, date]] = []
    for days in sorted(policy.before_days, reverse=True):
        stages.append((f"before-{days}", due - timedelta(days=days)))
    after = [d for d in sorted(policy.after_days) if d <= cutoff]
    for days in after:
        stages.append((f"after-{days}", due + timedelta(days=days)))
    if policy.weekly_every_days > 0:
        offset = (after[-1] if after else 0) + policy.weekly_every_days
        number = 1
        while offset <= cutoff:
            stages.append((f"weekly-{number}", due + timedelta(days=offset)))
            offset += policy.weekly_every_days
            number += 1
    return tuple(stages)


def reminders_due(
    obligations: Iterable[Obligation],
    policy: ReminderPolicy,
    states: Mapping[tuple[str, str], ObligationState],
    units: Iterable[Unit],
    today: date,
    already_sent: set[tuple[str, str, str]] | frozenset[tuple[str, str, str]],
) -> list[ReminderDue]:
    """Reminders to send ``today`` and the stages they supersede.

    Only units in state missing or rejected (a unit absent from ``states`` counts as missing).
    ``already_sent`` holds (unit_id, obligation_id, stage) of everything recorded before, whether
    sent or superseded. At most one non-superseded item per unit and obligation: the current stage
    (see the module docstring). Items with ``superseded=True`` must be recorded, not sent.
    Order: obligations as given, then unit_id, then stage order.
    """
    units = sorted(units, key=lambda u: u.unit_id)
    result: list[ReminderDue] = []
    for obligation in obligations:
        schedule = reminder_schedule(obligation, policy)
        if not schedule or obligation.due_date is None:
            continue
        last_day = obligation.due_date + timedelta(days=policy.cutoff_days_after)
        passed = [(i, stage, day) for i, (stage, day) in enumerate(schedule) if day <= today]
        if not passed:
            continue
        current_index = passed[-1][0]
        current_open = today <= last_day
        for unit in units:
            if not obligation.applies_to(unit):
                continue
            state = states.get((unit.unit_id, obligation.id))
            if state is not None:
                if not state.owes:
                    continue
                if state.under_review_document_id is not None and not policy.remind_under_review:
                    continue
            for index, stage, day in passed:
                if (unit.unit_id, obligation.id, stage) in already_sent:
                    continue
                send = index == current_index and current_open
                result.append(ReminderDue(unit.unit_id, obligation.id, stage, day, superseded=not send))
    return result


def _addressee(name: str) -> str:
    # Units' names often already start with "Công đoàn ..." / "CĐCS ...": do not say it twice.
    folded = fold(name)
    if folded.startswith(("cong doan", "cdcs", "cd ")):
        return f"Ban Chấp hành {name}"
    return f"Ban Chấp hành Công đoàn cơ sở {name}"


def _stage_kind(stage: str) -> str:
    return stage.split("-", 1)[0]


def render_reminder(
    env: jinja2.Environment,
    unit: Unit,
    obligation: Obligation,
    state: ObligationState | None,
    stage: str,
    *,
    organisation: str,
    today: date | None = None,
) -> tuple[str, str, str]:
    """Subject, plain text and HTML of one reminder, from templates/reminder.txt.j2 and .html.j2.

    ``env`` is a jinja2.Environment whose loader sees templates/; the HTML template switches
    autoescaping on by itself, so any environment is safe.
    """
    if obligation.due_date is None:
        raise ValueError(f"obligation {obligation.id!r} has no due date: nothing to remind")
    due = obligation.due_date
    kind = _stage_kind(stage)
    rejected = state is not None and state.state == "rejected"
    findings = []
    if rejected and state is not None:
        for f in state.findings:
            where = f.location
            if not where and f.row is not None:
                where = f"dòng {f.row}" + (f", cột {f.column}" if f.column else "")
            findings.append({
                "location": where or "toàn văn bản",
                "message": f.message,
                "severity": "Lỗi" if f.severity == "error" else "Lưu ý",
            })
    days_left = (due - today).days if today is not None else None
    context = {
        "organisation": organisation,
        "unit_name": unit.name,
        "addressee": _addressee(unit.name),
        "unit_id": unit.unit_id,
        "title": obligation.title,
        "form_name": obligation.form_name,
        "deadline": vn_date(due),
        "deadline_text": obligation.deadline_text,
        "stage": stage,
        "before": kind == "before",
        "overdue": kind != "before",
        "days_left": days_left,
        "rejected": rejected,
        "rejected_received": (
            vn_datetime(state.received_at.astimezone(obligation.due_at.tzinfo))
            if rejected and state is not None and state.received_at is not None and obligation.due_at
            else None
        ),
        "findings": findings,
    }
    text = env.get_template("reminder.txt.j2").render(**context)
    html = env.get_template("reminder.html.j2").render(**context)
    if rejected:
        subject = f"Đề nghị gửi lại {obligation.title} (hạn {vn_date(due)})"
    elif kind == "before":
        subject = f"Nhắc gửi {obligation.title} – hạn {vn_date(due)}"
    else:
        subject = f"Đề nghị gửi {obligation.title} – đã quá hạn {vn_date(due)}"
    subject = f"[{organisation}] {subject}"
    # A header must stay on one line whatever the names contain.
    subject = re.sub(r"[\r\n\t]+", " ", subject).strip()
    return subject, text, html


__all__ = [
    "STATES", "STATE_LABELS_VI", "Obligation", "ObligationState", "ReminderPolicy", "ReminderDue",
    "load_obligations", "load_reminder_policy", "is_on_time", "obligation_for", "document_on_time",
    "unit_states", "reminder_schedule", "reminders_due", "render_reminder", "vn_date", "vn_datetime",
]

