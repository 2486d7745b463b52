"""What the consolidated report for district staff says: the figures, and the staff email.

Pure: data in, figures and strings out. No database, no clock (``today`` is in ReportData).
workbook.py lays the same figures out as the .xlsx.

Which entries count (``build_report_data``) is said by each form's definition (``report_as``, see
pipeline/forms/definitions.py), never by its id: per unit, the entries of its accepted, non-superseded
summaries (Mẫu M2) when it has one (the summary is the unit's own consolidation of its registrations,
so adding both would count every model twice); otherwise the entries of all its accepted,
non-superseded registration forms. Commendation entries come from accepted, non-superseded
commendation lists. The category columns are those of the campaign's forms, and each list shows the
extra columns of the forms that feed it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

import pandas as pd

from pipeline.forms.definitions import Column, FormDef
from pipeline.forms.rules import Rules, default_rules
from pipeline.model import GROUPS, DocumentRecord, Entry, Unit
from pipeline.plan.deadlines import STATE_LABELS_VI, ObligationState
from pipeline.plan.obligations import Obligation
from pipeline.plan.vn import vn_date

if TYPE_CHECKING:
    import jinja2

GROUP_LABELS = {"hcsn": "Khối HCSN", "doanh_nghiep": "Khối doanh nghiệp", "truong_hoc": "Khối trường học"}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ComplianceRow:
    unit: Unit
    obligation: Obligation
    state: str  # missing | rejected | on_time | late
    received_at: datetime | None = None
    reminders_sent: int = 0
    document_id: int | None = None


@dataclass(frozen=True)
class PeriodOnTime:
    """How units did on one report obligation."""

    obligation_id: str
    title: str
    period: str | None
    due_date: date | None
    owed: int
    on_time: int
    late: int
    rejected: int
    missing: int

    @property
    def share_on_time(self) -> float:
        return self.on_time / self.owed if self.owed else 0.0


@dataclass(frozen=True)
class ReportData:
    organisation: str
    year: int
    today: date
    units: tuple[Unit, ...]
    categories: tuple[tuple[str, str], ...]  # (code, label) of the campaign's forms, in their order
    registered: tuple[tuple[Unit, Entry], ...] = ()
    commendations: tuple[tuple[Unit, Entry], ...] = ()
    compliance: tuple[ComplianceRow, ...] = ()
    reports_on_time: tuple[PeriodOnTime, ...] = ()
    timezone: str = "Asia/Ho_Chi_Minh"
    # The extra columns (Entry.extra) of the forms that feed each list, in the forms' order.
    registered_columns: tuple[Column, ...] = ()
    commendation_columns: tuple[Column, ...] = ()
    registration_share: float = 1.0  # the campaign's target: share of units registering a model

    @property
    def category_codes(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.categories)


@dataclass(frozen=True)
class Headline:
    units_total: int
    units_registered: int
    models_total: int
    collective_models: int
    individual_models: int
    models_by_category: tuple[tuple[str, int], ...]  # (Vietnamese header, count), in form order
    commendations_total: int
    obligations: tuple[tuple[str, str, int, int, int, int], ...] = field(default=())
    # (title, deadline dd/mm/yyyy, on_time, late, rejected, missing) for obligations with a date

    @property
    def share_registered(self) -> float:
        return self.units_registered / self.units_total if self.units_total else 0.0


@dataclass(frozen=True)
class MissingRow:
    obligation_title: str
    deadline: str
    unit_name: str
    group: str
    state: str  # Vietnamese
    overdue: bool


def percent(share: float) -> str:
    """1.0 → "100%", 0.855 → "85,5%" (as the plan writes a target)."""
    return ("%g" % (share * 100)).replace(".", ",") + "%"


def periods_on_time(compliance: Iterable[ComplianceRow]) -> tuple[PeriodOnTime, ...]:
    """Per report obligation (those for a period), counts of each state."""
    rows: dict[str, list[ComplianceRow]] = {}
    order: list[Obligation] = []
    for row in compliance:
        if row.obligation.period is None:
            continue
        if row.obligation.id not in rows:
            order.append(row.obligation)
        rows.setdefault(row.obligation.id, []).append(row)
    result = []
    for ob in order:
        states = [r.state for r in rows[ob.id]]
        result.append(PeriodOnTime(
            ob.id, ob.title, ob.period, ob.due_date, len(states), states.count("on_time"),
            states.count("late"), states.count("rejected"), states.count("missing"),
        ))
    return tuple(result)


def build_report_data(
    *,
    organisation: str,
    year: int,
    today: date,
    units: Iterable[Unit],
    obligations: Sequence[Obligation],
    documents: Iterable[DocumentRecord],
    entries: Mapping[int, Sequence[Entry]],
    states: Mapping[tuple[str, str], ObligationState],
    reminders_sent: Mapping[tuple[str, str], int] | None = None,
    timezone: str = "Asia/Ho_Chi_Minh",
    rules: Rules | None = None,
    forms: Sequence[str] | None = None,
    registration_share: float = 1.0,
) -> ReportData:
    """Assemble ReportData from the ledger: documents, their entries (by document_id), the states
    from deadlines.unit_states, and the count of reminders sent per (unit_id, obligation_id).

    ``forms``: the ids of the campaign's forms in ``rules`` (default: the shipped definitions, all of
    them); their definitions say how each kind counts, the categories and the extra columns."""
    rules = rules or default_rules()
    ids = tuple(forms) if forms is not None else tuple(rules.forms)
    role = {k: f.report_as for k, f in rules.forms.items()}
    units = tuple(units)
    by_id = {u.unit_id: u for u in units}
    counting = [d for d in documents if d.state == "accepted" and not d.superseded and d.unit_id in by_id]
    counting.sort(key=lambda d: (d.received_at, d.document_id))
    registered: list[tuple[Unit, Entry]] = []
    commendations: list[tuple[Unit, Entry]] = []
    for unit in units:
        own = [d for d in counting if d.unit_id == unit.unit_id]
        summaries = [d for d in own if role.get(d.kind) == "summary"]
        sources = summaries or [d for d in own if role.get(d.kind) == "registration"]
        for d in sources:
            registered.extend((unit, e) for e in entries.get(d.document_id, ()))
        for d in own:
            if role.get(d.kind) == "commendation":
                commendations.extend((unit, e) for e in entries.get(d.document_id, ()))
    sent = reminders_sent or {}
    compliance = []
    for ob in obligations:
        for unit in units:
            state = states.get((unit.unit_id, ob.id))
            if state is None:
                continue
            compliance.append(ComplianceRow(
                unit, ob, state.state, state.received_at, sent.get((unit.unit_id, ob.id), 0), state.document_id
            ))
    own_forms = [rules.forms[i] for i in ids if i in rules.forms]
    return ReportData(
        organisation=organisation, year=year, today=today, units=units,
        categories=tuple(rules.category_labels(ids).items()),
        registered=tuple(registered), commendations=tuple(commendations),
        compliance=tuple(compliance), reports_on_time=periods_on_time(compliance), timezone=timezone,
        registered_columns=extra_columns(own_forms, ("registration", "summary")),
        commendation_columns=extra_columns(own_forms, ("commendation",)),
        registration_share=registration_share,
    )


def extra_columns(forms: Iterable[FormDef], roles: tuple[str, ...]) -> tuple[Column, ...]:
    """The extra columns of the forms counted as ``roles``, once per key, in the forms' order."""
    out: dict[str, Column] = {}
    for form in forms:
        if form.report_as in roles:
            for col in form.extra_columns:
                out.setdefault(col.key, col)
    return tuple(out.values())


# --------------------------------------------------------------------------- figures


def entries_frame(data: ReportData) -> pd.DataFrame:
    """One row per (entry, category) of the registered models: unit_id, group, section, category."""
    rows = [
        {"unit_id": unit.unit_id, "group": unit.group, "section": entry.section, "category": cat, "entry": i}
        for i, (unit, entry) in enumerate(data.registered)
        for cat in entry.categories
    ]
    return pd.DataFrame(rows, columns=["unit_id", "group", "section", "category", "entry"])


def category_table(data: ReportData) -> pd.DataFrame:
    """Models per category (rows, form order) by section and by unit group, with a total."""
    frame = entries_frame(data)
    columns = ["collective", "individual", *GROUPS]
    by_section = frame.groupby(["category", "section"]).size().unstack(fill_value=0)
    by_group = frame.groupby(["category", "group"]).size().unstack(fill_value=0)
    codes = list(data.category_codes)
    table = pd.concat([by_section, by_group], axis=1).reindex(index=codes, columns=columns).fillna(0)
    table = table.astype(int)
    table["total"] = frame.groupby("category").size().reindex(codes).fillna(0).astype(int)
    return table


def group_table(data: ReportData) -> pd.DataFrame:
    """Per unit group: units, units with at least one registered model, models, share."""
    units = pd.DataFrame([{"unit_id": u.unit_id, "group": u.group} for u in data.units], columns=["unit_id", "group"])
    models = pd.DataFrame(
        [{"unit_id": u.unit_id, "group": u.group} for u, _ in data.registered], columns=["unit_id", "group"]
    )
    table = pd.DataFrame(index=list(GROUPS))
    table["units"] = units.groupby("group")["unit_id"].nunique()
    table["registered"] = models.groupby("group")["unit_id"].nunique()
    table["models"] = models.groupby("group").size()
    table = table.fillna(0).astype(int)
    table.loc["all"] = [len(units["unit_id"].unique()), models["unit_id"].nunique(), len(models)]
    table["share"] = (table["registered"] / table["units"].where(table["units"] > 0)).fillna(0.0)
    return table


def headline(data: ReportData) -> Headline:
    frame = entries_frame(data)
    per_cat = frame.groupby("category")["entry"].nunique() if len(frame) else pd.Series(dtype=int)
    obligations: list[tuple[str, str, int, int, int, int]] = []
    seen: dict[str, list[ComplianceRow]] = {}
    for row in data.compliance:
        seen.setdefault(row.obligation.id, []).append(row)
    for rows in seen.values():
        ob = rows[0].obligation
        if ob.due_date is None:
            continue
        states = [r.state for r in rows]
        obligations.append((ob.title, vn_date(ob.due_date), states.count("on_time"), states.count("late"),
                            states.count("rejected"), states.count("missing")))
    return Headline(
        units_total=len(data.units),
        units_registered=len({u.unit_id for u, _ in data.registered}),
        models_total=len(data.registered),
        collective_models=sum(1 for _, e in data.registered if e.section == "collective"),
        individual_models=sum(1 for _, e in data.registered if e.section == "individual"),
        models_by_category=tuple((label, int(per_cat.get(c, 0))) for c, label in data.categories),
        commendations_total=len(data.commendations),
        obligations=tuple(obligations),
    )


def missing_rows(data: ReportData, *, upcoming_days: int = 14) -> tuple[MissingRow, ...]:
    """Units still owing (missing or rejected): every overdue obligation, and those due within
    ``upcoming_days`` of ``data.today``."""
    result = []
    for row in data.compliance:
        due = row.obligation.due_date
        if due is None or row.state not in ("missing", "rejected"):
            continue
        overdue = due < data.today
        if not overdue and (due - data.today).days > upcoming_days:
            continue
        result.append(MissingRow(row.obligation.title, vn_date(due), row.unit.name,
                                 GROUP_LABELS.get(row.unit.group, row.unit.group),
                                 STATE_LABELS_VI[row.state], overdue))
    return tuple(result)


# --------------------------------------------------------------------------- staff email


def render_staff_email(
    env: jinja2.Environment,
    data: ReportData,
    *,
    headline_figures: Headline | None = None,
    missing: Sequence[MissingRow] | None = None,
    attachment_name: str | None = None,
) -> tuple[str, str, str]:
    """Subject, HTML (templates/report_email.html.j2, autoescaped) and plain text of the staff email."""
    figures = headline_figures or headline(data)
    owing = tuple(missing) if missing is not None else missing_rows(data)
    subject = (f"[{data.organisation}] Tổng hợp “Dân vận khéo” năm {data.year} – "
               f"số liệu đến ngày {vn_date(data.today)}")
    context = {
        "organisation": data.organisation,
        "year": data.year,
        "today": vn_date(data.today),
        "h": figures,
        "share_registered": f"{figures.share_registered * 100:.1f}%".replace(".", ","),
        "target": percent(data.registration_share),
        "overdue": [m for m in owing if m.overdue],
        "upcoming": [m for m in owing if not m.overdue],
        "attachment_name": attachment_name,
    }
    html = env.get_template("report_email.html.j2").render(**context)

    lines = [
        f"Kính gửi: Thường trực {data.organisation}",
        "",
        f"Tổng hợp phong trào thi đua “Dân vận khéo” năm {data.year}, số liệu đến ngày {vn_date(data.today)}:",
        f"- CĐCS đã đăng ký mô hình: {figures.units_registered}/{figures.units_total} "
        f"({context['share_registered']}; chỉ tiêu {context['target']})",
        f"- Tổng số mô hình: {figures.models_total} (tập thể {figures.collective_models}, "
        f"cá nhân {figures.individual_models})",
        "- Theo lĩnh vực: " + ", ".join(f"{name} {n}" for name, n in figures.models_by_category),
        f"- Đề xuất khen thưởng: {figures.commendations_total}",
    ]
    if figures.obligations:
        lines += ["", "Tiến độ theo từng nội dung (đúng hạn / quá hạn / chưa đạt / chưa nộp):"]
        lines += [f"- {t} (hạn {d}): {a} / {b} / {c} / {e}" for t, d, a, b, c, e in figures.obligations]
    for label, rows in (("Đơn vị chưa gửi, đã quá hạn:", context["overdue"]),
                        ("Đơn vị chưa gửi, sắp đến hạn:", context["upcoming"])):
        if rows:
            lines += ["", label]
            lines += [f"- {m.unit_name} ({m.group}) – {m.obligation_title}, hạn {m.deadline}: {m.state}" for m in rows]
    if attachment_name:
        lines += ["", f"Chi tiết xem tệp đính kèm {attachment_name}."]
    lines += ["", "(Thư tổng hợp tự động)"]
    return subject.replace("\n", " "), html, "\n".join(lines) + "\n"


__all__ = [
    "GROUP_LABELS", "ComplianceRow", "PeriodOnTime", "ReportData", "Headline", "MissingRow", "build_report_data",
    "extra_columns", "percent", "periods_on_time", "entries_frame", "category_table", "group_table", "headline",
    "missing_rows", "render_staff_email",
]
