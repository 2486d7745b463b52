"""What the consolidated report for district staff says: the figures.

Pure: data in, figures out. No database, no clock (``today`` is in ReportData). This is the one place
that says how many units registered, sent on time or late, or owe a report: the desk (pipeline/desk),
the staff mail (staffmail.py) and the workbook (workbook.py) show these figures and count nothing
themselves. Per obligation: ObligationCounts (one count per standing, see deadlines.STANDINGS, adding
up to the units that owe it); registered: ReportData.registered_unit_ids.

Registered means an accepted, non-superseded registration or summary, whether or not its models could be
read (an accepted photo has none until staff type them in: Headline.units_without_entries).

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

import pandas as pd

from pipeline.forms.definitions import Column, FormDef
from pipeline.forms.rules import Rules, default_rules
from pipeline.model import GROUPS, DocumentRecord, Entry, Unit
from pipeline.plan.deadlines import (NOT_SENT_STANDINGS, SENT_STANDINGS, STANDING_LABELS_VI, STANDINGS,
                                     ObligationState, past_due, standing)
from pipeline.plan.obligations import Obligation
from pipeline.plan.vn import vn_date

GROUP_LABELS = {"hcsn": "Khối HCSN", "doanh_nghiep": "Khối doanh nghiệp", "truong_hoc": "Khối trường học"}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ComplianceRow:
    """One unit on one obligation: the ledger's ``state`` and what people are shown (``standing``)."""

    unit: Unit
    obligation: Obligation
    state: str     # one of deadlines.STATES: missing | rejected | on_time | late
    standing: str  # one of deadlines.STANDINGS, on ReportData.today
    received_at: datetime | None = None
    reminders_sent: int = 0
    document_id: int | None = None
    under_review: bool = False  # a document meeting it waits for staff

    @property
    def label(self) -> str:
        return STANDING_LABELS_VI[self.standing]


@dataclass(frozen=True)
class ObligationCounts:
    """How the units owing one obligation stand: one count per standing; the counts add up to ``owed``.

    The one definition of "on time", "late", "not sent" ... per obligation that the desk, the staff
    mail and the workbook show."""

    obligation: Obligation
    counts: tuple[tuple[str, int], ...]  # (standing, units), every standing of STANDINGS in its order
    past_due: bool  # the deadline has passed on the day of the figures

    def count(self, which: str) -> int:
        return dict(self.counts)[which]

    @property
    def obligation_id(self) -> str:
        return self.obligation.id

    @property
    def title(self) -> str:
        return self.obligation.title

    @property
    def period(self) -> str | None:
        return self.obligation.period

    @property
    def due_date(self) -> date | None:
        return self.obligation.due_date

    @property
    def owed(self) -> int:
        return sum(n for _, n in self.counts)

    @property
    def on_time(self) -> int:
        return self.count("on_time")

    @property
    def late(self) -> int:
        return self.count("late")

    @property
    def sent(self) -> int:
        """Accepted: on time, late, or sent where no deadline is set."""
        return sum(self.count(s) for s in SENT_STANDINGS)

    @property
    def rejected(self) -> int:
        return self.count("rejected")

    @property
    def under_review(self) -> int:
        return self.count("under_review")

    @property
    def not_sent(self) -> int:
        """Nothing sent (nor waiting for staff): overdue, not yet due, or owed with no deadline."""
        return sum(self.count(s) for s in NOT_SENT_STANDINGS)

    @property
    def not_sent_standing(self) -> str:
        """What the units that sent nothing are: overdue, not yet due, or simply missing (no deadline)."""
        if self.obligation.due_date is None:
            return "missing"
        return "overdue" if self.past_due else "not_due"

    @property
    def not_sent_label(self) -> str:
        return STANDING_LABELS_VI[self.not_sent_standing]

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
    obligations: tuple[ObligationCounts, ...] = ()  # every obligation of the campaign, in its order
    timezone: str = "Asia/Ho_Chi_Minh"
    # The extra columns (Entry.extra) of the forms that feed each list, in the forms' order.
    registered_columns: tuple[Column, ...] = ()
    commendation_columns: tuple[Column, ...] = ()
    registration_share: float = 1.0  # the campaign's target: share of units registering a model
    # Units with an accepted, non-superseded registration (or summary): "đã đăng ký", whether or not
    # its models were read (an accepted photo has none until staff type them in).
    registered_unit_ids: frozenset[str] = frozenset()

    @property
    def category_codes(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.categories)

    @property
    def reports_on_time(self) -> tuple[ObligationCounts, ...]:
        """The report obligations (those for a period)."""
        return tuple(o for o in self.obligations if o.period is not None)


@dataclass(frozen=True)
class Headline:
    units_total: int
    units_registered: int
    models_total: int
    collective_models: int
    individual_models: int
    models_by_category: tuple[tuple[str, int], ...]  # (Vietnamese header, count), in form order
    commendations_total: int
    obligations: tuple[ObligationCounts, ...] = field(default=())
    units_without_entries: int = 0  # registered, but no model recorded (e.g. an accepted photo)

    @property
    def share_registered(self) -> float:
        return self.units_registered / self.units_total if self.units_total else 0.0


@dataclass(frozen=True)
class MissingRow:
    obligation_title: str
    deadline: str
    unit_name: str
    group: str
    state: str  # Vietnamese: the standing's label
    overdue: bool


def percent(share: float) -> str:
    """1.0 → "100%", 0.855 → "85,5%" (as the plan writes a target)."""
    return ("%g" % (share * 100)).replace(".", ",") + "%"


def compliance_rows(
    obligations: Iterable[Obligation],
    units: Iterable[Unit],
    states: Mapping[tuple[str, str], ObligationState],
    today: date,
    reminders_sent: Mapping[tuple[str, str], int] | None = None,
) -> tuple[ComplianceRow, ...]:
    """Every unit on every obligation it owes (obligation by obligation, units in the given order),
    with its standing on ``today``."""
    units = tuple(units)
    sent = reminders_sent or {}
    rows = []
    for ob in obligations:
        for unit in units:
            state = states.get((unit.unit_id, ob.id))
            if state is None:
                continue
            review = state.under_review_document_id is not None
            rows.append(ComplianceRow(
                unit, ob, state.state, standing(state.state, ob, today, under_review=review), state.received_at,
                sent.get((unit.unit_id, ob.id), 0), state.document_id, review,
            ))
    return tuple(rows)


def obligation_counts(obligations: Iterable[Obligation], compliance: Iterable[ComplianceRow],
                      today: date) -> tuple[ObligationCounts, ...]:
    """Per obligation, how many owing units have each standing."""
    by_ob: dict[str, list[str]] = {}
    for row in compliance:
        by_ob.setdefault(row.obligation.id, []).append(row.standing)
    out = []
    for ob in obligations:
        got = by_ob.get(ob.id, [])
        out.append(ObligationCounts(ob, tuple((s, got.count(s)) for s in STANDINGS), past_due(ob, today)))
    return tuple(out)


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
    registered_ids: set[str] = set()
    for unit in units:
        own = [d for d in counting if d.unit_id == unit.unit_id]
        summaries = [d for d in own if role.get(d.kind) == "summary"]
        sources = summaries or [d for d in own if role.get(d.kind) == "registration"]
        if sources:
            registered_ids.add(unit.unit_id)
        for d in sources:
            registered.extend((unit, e) for e in entries.get(d.document_id, ()))
        for d in own:
            if role.get(d.kind) == "commendation":
                commendations.extend((unit, e) for e in entries.get(d.document_id, ()))
    compliance = compliance_rows(obligations, units, states, today, reminders_sent)
    own_forms = [rules.forms[i] for i in ids if i in rules.forms]
    return ReportData(
        organisation=organisation, year=year, today=today, units=units,
        categories=tuple(rules.category_labels(ids).items()),
        registered=tuple(registered), commendations=tuple(commendations),
        compliance=compliance, obligations=obligation_counts(obligations, compliance, today), timezone=timezone,
        registered_columns=extra_columns(own_forms, ("registration", "summary")),
        commendation_columns=extra_columns(own_forms, ("commendation",)),
        registration_share=registration_share, registered_unit_ids=frozenset(registered_ids),
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
    """Per unit group: units, units registered (ReportData.registered_unit_ids), models, share."""
    units = pd.DataFrame([{"unit_id": u.unit_id, "group": u.group} for u in data.units], columns=["unit_id", "group"])
    models = pd.DataFrame(
        [{"unit_id": u.unit_id, "group": u.group} for u, _ in data.registered], columns=["unit_id", "group"]
    )
    registered = units[units["unit_id"].isin(data.registered_unit_ids)]
    table = pd.DataFrame(index=list(GROUPS))
    table["units"] = units.groupby("group")["unit_id"].nunique()
    table["registered"] = registered.groupby("group")["unit_id"].nunique()
    table["models"] = models.groupby("group").size()
    table = table.fillna(0).astype(int)
    table.loc["all"] = [units["unit_id"].nunique(), registered["unit_id"].nunique(), len(models)]
    table["share"] = (table["registered"] / table["units"].where(table["units"] > 0)).fillna(0.0)
    return table


def headline(data: ReportData) -> Headline:
    frame = entries_frame(data)
    per_cat = frame.groupby("category")["entry"].nunique() if len(frame) else pd.Series(dtype=int)
    with_models = {u.unit_id for u, _ in data.registered}
    return Headline(
        units_total=len(data.units),
        units_registered=len(data.registered_unit_ids),
        models_total=len(data.registered),
        collective_models=sum(1 for _, e in data.registered if e.section == "collective"),
        individual_models=sum(1 for _, e in data.registered if e.section == "individual"),
        models_by_category=tuple((label, int(per_cat.get(c, 0))) for c, label in data.categories),
        commendations_total=len(data.commendations),
        obligations=data.obligations,
        units_without_entries=len(data.registered_unit_ids - with_models),
    )


def missing_rows(data: ReportData, *, upcoming_days: int = 14) -> tuple[MissingRow, ...]:
    """Units still owing (nothing sent, or a rejected document), leaving out those whose document waits
    for staff: every overdue obligation, and those due within ``upcoming_days`` of ``data.today``."""
    result = []
    for row in data.compliance:
        due = row.obligation.due_date
        if due is None or row.standing not in ("rejected", "overdue", "not_due"):
            continue
        overdue = past_due(row.obligation, data.today)
        if not overdue and (due - data.today).days > upcoming_days:
            continue
        result.append(MissingRow(row.obligation.title, vn_date(due), row.unit.name,
                                 GROUP_LABELS.get(row.unit.group, row.unit.group), row.label, overdue))
    return tuple(result)


__all__ = [
    "GROUP_LABELS", "ComplianceRow", "ObligationCounts", "ReportData", "Headline", "MissingRow", "build_report_data",
    "compliance_rows", "obligation_counts", "extra_columns", "percent", "entries_frame", "category_table",
    "group_table", "headline", "missing_rows",
]
