"""The city's figures: per district, what that district's own report says, and the city's total.

Nothing is counted here. Each district's figures are its staff report's (staffreport.report_data →
reports.ReportData, reports.headline, reports.ObligationCounts), made from its own Context looking at the
campaign of the year; the city row of a district is therefore the same number as the district's desk, mail
and workbook show (tests/test_city.py checks it). The total row adds the districts' rows up.

Registration: the units that had to register (the district's units), those registered (Headline), of which
on time and late, those that sent nothing, and the share against the campaign's target
(``targets.registration_share``) — the district's "Chỉ tiêu" sheet. Reports: every report obligation whose
deadline is on or before the day of the figures: sent (of which late) and not sent.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from pipeline.city.config import City
from pipeline.config import Config
from pipeline.errors import IntakeError
from pipeline.plan.reports import Headline, ObligationCounts, ReportData, headline
from pipeline.textnorm import fold


def district_label(organisation: str) -> str:
    """"Liên đoàn Lao động quận Long Biên" → "Quận Long Biên": the row's name, as the city says it."""
    words = organisation.split(maxsplit=4)
    text = words[4] if len(words) == 5 and fold(" ".join(words[:4])) == "lien doan lao dong" else organisation.strip()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class ReportColumn:
    """One report obligation shown for the city, by id (the districts' plans name their obligations alike)."""

    obligation_id: str
    title: str
    due_date: date | None


@dataclass(frozen=True)
class DistrictFigures:
    label: str
    config: Path | None
    year: int
    data: ReportData | None = None
    head: Headline | None = None
    registration: ObligationCounts | None = None  # the campaign's registration obligation (registration_counts)
    error: str | None = None  # the district's figures could not be read: why (Vietnamese)

    @property
    def ok(self) -> bool:
        return self.data is not None

    @property
    def target(self) -> float | None:
        return self.data.registration_share if self.data is not None else None

    def report(self, obligation_id: str) -> ObligationCounts | None:
        if self.data is None:
            return None
        return next((o for o in self.data.reports_on_time if o.obligation_id == obligation_id), None)


@dataclass(frozen=True)
class Totals:
    units: int
    registered: int
    on_time: int
    late: int
    pending: int  # registrations rejected or waiting for staff: neither registered on time/late nor not sent
    not_sent: int
    target: float | None  # the districts' common target; None when they differ
    reports: tuple[tuple[int, int, int], ...]  # per report column: sent, late, not sent

    @property
    def share(self) -> float:
        return self.registered / self.units if self.units else 0.0


@dataclass(frozen=True)
class CityFigures:
    name: str
    today: date
    districts: tuple[DistrictFigures, ...]
    reports: tuple[ReportColumn, ...]

    @property
    def years(self) -> tuple[int, ...]:
        return tuple(sorted({d.year for d in self.districts}))

    @property
    def totals(self) -> Totals:
        ok = [d for d in self.districts if d.ok]
        regs = [d.registration for d in ok if d.registration is not None]
        targets = {d.target for d in ok}
        reports = []
        for col in self.reports:
            counts = [c for c in (d.report(col.obligation_id) for d in ok) if c is not None]
            reports.append((sum(c.sent for c in counts), sum(c.late for c in counts), sum(c.not_sent for c in counts)))
        return Totals(
            units=sum(d.head.units_total for d in ok if d.head),
            registered=sum(d.head.units_registered for d in ok if d.head),
            on_time=sum(on_time(r) for r in regs), late=sum(r.late for r in regs),
            pending=sum(r.rejected + r.under_review for r in regs), not_sent=sum(r.not_sent for r in regs),
            target=targets.pop() if len(targets) == 1 else None, reports=tuple(reports))


def on_time(counts: ObligationCounts) -> int:
    """Sent in time: on time, or sent where the plan sets no deadline (neither on time nor late)."""
    return counts.on_time + counts.count("submitted")


def verdict(share: float, target: float | None, units: int) -> str:
    """Against the target, as the district's Chỉ tiêu sheet says it ("" where the districts' targets differ)."""
    if units == 0:
        return "Không có đơn vị"
    if target is None:
        return ""
    return "Đạt" if share >= target else "Chưa đạt"


def notes(figures: CityFigures) -> list[str]:
    """What the workbook and the page say under the table."""
    out = ["Số liệu của mỗi quận, huyện là số liệu trong báo cáo tổng hợp của chính quận, huyện đó cùng ngày. "
           "“Chưa đạt, chờ xem xét”: đơn vị đã gửi nhưng văn bản bị trả lại hoặc đang chờ cán bộ xem xét (không "
           "tính là đã đăng ký, cũng không tính là chưa gửi). Cột báo cáo: các kỳ báo cáo đã đến hạn; “—”: kế "
           "hoạch của quận, huyện không có kỳ báo cáo này."]
    if figures.totals.target is None and any(d.ok for d in figures.districts):
        out.append("Chỉ tiêu đăng ký của các quận, huyện khác nhau: dòng toàn thành phố không đánh giá đạt/chưa đạt.")
    missing = [d.label for d in figures.districts if not d.ok]
    if missing:
        out.append(f"Chưa có số liệu của: {', '.join(missing)}; dòng toàn thành phố không gồm các quận, huyện này.")
    return out


def registration_counts(data: ReportData, kinds_role: dict[str, str]) -> ObligationCounts | None:
    """The obligation without a period that registration or summary forms meet (the plan's "Đăng ký")."""
    for counts in data.obligations:
        ob = counts.obligation
        if ob.period is None and any(kinds_role.get(k) in ("registration", "summary") for k in ob.kinds):
            return counts
    return None


def district_figures(cfg: Config, *, year: int | None, today: date) -> DistrictFigures:
    """One district's figures, from its own Context; a ledger that cannot be read gives a row saying why,
    so that one district's outage does not hide the others."""
    from pipeline.context import Context
    from pipeline.plan.staffreport import report_data

    label = district_label(cfg.organisation)
    want = year or cfg.year
    ctx = None
    try:
        ctx = Context(cfg).for_year(want)
        data = report_data(ctx, today)
        roles = {k: f.report_as for k, f in ctx.rules.forms.items()}
        return DistrictFigures(label, cfg.path, ctx.year, data, headline(data), registration_counts(data, roles))
    except (SQLAlchemyError, OSError) as exc:
        return DistrictFigures(label, cfg.path, want, error=f"không đọc được sổ ghi của quận: {type(exc).__name__}")
    except IntakeError as exc:
        return DistrictFigures(label, cfg.path, want, error=str(exc))
    finally:
        if ctx is not None:
            ctx.store.engine.dispose()


def report_columns(districts: Sequence[DistrictFigures], today: date) -> tuple[ReportColumn, ...]:
    """The report obligations due on or before ``today`` in any district, in the order of the plans."""
    out: dict[str, ReportColumn] = {}
    for d in districts:
        if d.data is None:
            continue
        for counts in d.data.reports_on_time:
            if counts.due_date is not None and counts.due_date <= today:
                out.setdefault(counts.obligation_id, ReportColumn(counts.obligation_id, counts.title, counts.due_date))
    return tuple(out.values())


def city_figures(city: City, *, year: int | None = None, today: date | None = None) -> CityFigures:
    """Every district's figures on ``today`` (default: today in the city's zone), for ``year`` (default:
    city.yaml's, else each district's own)."""
    today = today or datetime.now(timezone.utc).astimezone(city.tz).date()
    districts = tuple(district_figures(cfg, year=year or city.year, today=today) for cfg in city.districts)
    return CityFigures(city.name, today, districts, report_columns(districts, today))


__all__ = ["CityFigures", "DistrictFigures", "ReportColumn", "Totals", "city_figures", "district_figures",
           "district_label", "notes", "on_time", "verdict", "registration_counts", "report_columns"]
