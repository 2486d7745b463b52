"""Campaigns: the plan of each year, as data in ``rules/campaigns/<year>.yaml``.

A campaign file holds the plan of the year it names and of every later year until a file for a later
year replaces it: its dates are written without a year ("26/01", "02-22") or with ``{year}``, so next
year's campaign is the same plan moved by a year. The office starts a new year by changing ``year`` in
config.yaml; a new file is needed only where the plan itself changed.

A campaign *opens* on the plan's date (the 2022 plan is dated 26/01/2022): mail received before is
not the campaign's. A mail belongs to the campaign open when it arrived (the latest one opened by
then, and not later than config.yaml's ``year``: next year's campaign begins when the office says so);
a document in it belongs to the year it names when that campaign exists (a 2022 annual report
sent on 05/01/2023 counts for 2022), else to the mail's. The reader decides the latter
(``pipeline.forms``): it is given ``candidates(year)``.

Pure apart from reading the files; every mistake is a ConfigError naming the file and the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, model_validator

from pipeline.errors import ConfigError
from pipeline.plan.obligations import Obligation, _rule_id, obligations_from, zone_of
from pipeline.plan.reminder_rules import ReminderPolicy
from pipeline.schema import Problem, Text, int_in, number_in, read_mapping, validate

FOLDER = "campaigns"
_FILE = re.compile(r"^(\d{4})\.ya?ml$")


class _Targets(BaseModel):
    """What the consolidated report measures the campaign against."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    registration_share: number_in(0.0, 1.0) = 1.0  # share of units registering at least one model


class _CampaignFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    year: int_in(2000, 2100)
    title: Text
    opens: Text
    forms: Annotated[tuple[Annotated[str, Strict(), AfterValidator(_rule_id)], ...], AfterValidator(lambda v: _some(v))]
    targets: _Targets = _Targets()
    reminders: dict[str, Any] | None = None
    obligations: list[Any]

    @model_validator(mode="after")
    def _opens(self) -> _CampaignFile:
        try:
            _day_month(self.opens, self.year)
        except ValueError as exc:
            raise Problem("opens", str(exc)) from exc
        return self


def _some(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("phải có ít nhất một biểu mẫu / at least one form")
    if len(set(value)) != len(value):
        raise ValueError("một biểu mẫu bị ghi hai lần / a form is listed twice")
    return value


def _day_month(text: str, year: int) -> date:
    """'26/01', '01-26', '26/01/{year}' or '{year}-01-26' in ``year``."""
    t = text.strip().replace("{year}", str(year))
    for pattern, order in ((r"(\d{1,2})/(\d{1,2})(?:/(\d{4}))?", "dmy"), (r"(\d{1,2})-(\d{1,2})", "md"),
                           (r"(\d{4})-(\d{1,2})-(\d{1,2})", "ymd")):
        m = re.fullmatch(pattern, t)
        if not m:
            continue
        try:
            if order == "dmy":
                return date(int(m[3]) if m[3] else year, int(m[2]), int(m[1]))
            if order == "md":
                return date(year, int(m[1]), int(m[2]))
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError as exc:
            raise ValueError(f"ngày không tồn tại / no such day: {text!r}") from exc
    raise ValueError(f"ngày không hợp lệ / bad date {text!r} (viết DD/MM, ví dụ 26/01)")


@dataclass(frozen=True)
class Campaign:
    """The plan of one year: when it opens, its forms, obligations, reminders and targets."""

    year: int
    title: str
    opens_at: datetime  # the first instant of the opening day, in the configured zone
    forms: tuple[str, ...]  # ids of form definitions (rules/forms/<id>.yaml), in the file's order
    obligations: tuple[Obligation, ...]
    reminders: ReminderPolicy
    registration_share: float
    source: Path  # the file it comes from (a file of an earlier year when the plan recurs)


@dataclass
class Campaigns:
    """Every campaign the rules describe: one per year from the first file's year on."""

    files: dict[int, tuple[Path, _CampaignFile]]
    zone: ZoneInfo
    policy: ReminderPolicy  # rules/reminders.yaml: a campaign's `reminders:` overrides its keys
    form_ids: frozenset[str] | None = None
    report_ids: frozenset[str] | None = None  # the report forms among them (their obligations need a period)
    _cache: dict[int, Campaign] = field(default_factory=dict)

    @property
    def first_year(self) -> int:
        return min(self.files)

    def get(self, year: int) -> Campaign | None:
        """The campaign of ``year``: the latest file of that year or earlier, its dates moved to ``year``."""
        if year < self.first_year:
            return None
        got = self._cache.get(year)
        if got is None:
            base = max(y for y in self.files if y <= year)
            got = self._cache[year] = self._build(year, *self.files[base])
        return got

    def __getitem__(self, year: int) -> Campaign:
        got = self.get(year)
        if got is None:
            raise KeyError(year)
        return got

    def _build(self, year: int, path: Path, f: _CampaignFile) -> Campaign:
        try:
            opens = _day_month(f.opens, year)
        except ValueError as exc:
            raise ConfigError(f"{path}: opens: {exc}") from exc
        obligations = obligations_from(f.obligations, year, self.zone, path, kinds=f.forms, reports=self.report_ids)
        policy = self.policy
        if f.reminders:
            merged = {**self.policy.model_dump(), **f.reminders}
            policy = validate(ReminderPolicy, merged, path, "reminders.")
        return Campaign(year=year, title=f.title.replace("{year}", str(year)),
                        opens_at=datetime.combine(opens, time(0), tzinfo=self.zone), forms=f.forms,
                        obligations=obligations, reminders=policy,
                        registration_share=f.targets.registration_share, source=path)

    def open_at(self, instant: datetime, upto: int) -> Campaign | None:
        """The campaign open at ``instant``: the latest one up to ``upto`` (the configured year: a later
        year's campaign has not begun until the office moves to it) whose opening is not after it."""
        year = min(instant.astimezone(self.zone).year + 1, upto)
        while year >= self.first_year:
            c = self.get(year)
            if c is not None and c.opens_at <= instant:
                return c
            year -= 1
        return None

    def candidates(self, upto: int) -> tuple[tuple[int, tuple[str, ...]], ...]:
        """(year, form ids) of every campaign from the first to ``upto``: the years a document may name."""
        return tuple((y, self[y].forms) for y in range(self.first_year, upto + 1))

    def years(self, upto: int) -> list[int]:
        return list(range(self.first_year, upto + 1))

    def check(self, upto: int) -> None:
        """Build every campaign up to ``upto`` now, so that a mistake in any file stops the start."""
        for y in sorted(self.files):
            if y <= upto:
                self._check_forms(self[y])
        self._check_forms(self[upto])

    def _check_forms(self, c: Campaign) -> None:
        if self.form_ids is None:
            return
        unknown = [f for f in c.forms if f not in self.form_ids]
        if unknown:
            raise ConfigError(f"{c.source}: forms: {', '.join(unknown)}: không có định nghĩa biểu mẫu trong "
                              f"rules/forms/ / no such form definition")


def load_campaigns(rules_dir: Path, tz: str, *, policy: ReminderPolicy | None = None,
                   form_ids: frozenset[str] | None = None, report_ids: frozenset[str] | None = None) -> Campaigns:
    """Read every ``rules/campaigns/<year>.yaml``; a file whose name is not its year is refused."""
    folder = Path(rules_dir) / FOLDER
    zone = zone_of(tz, folder)
    files: dict[int, tuple[Path, _CampaignFile]] = {}
    paths = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    for path in paths:
        m = _FILE.match(path.name)
        if not m:
            raise ConfigError(f"{path}: tên tệp phải là năm của kế hoạch, ví dụ 2023.yaml "
                              f"/ a campaign file is named after its year")
        f = validate(_CampaignFile, read_mapping(path), path)
        if f.year != int(m[1]):
            raise ConfigError(f"{path}: year: {f.year} khác với tên tệp {path.name} / does not match the file name")
        files[f.year] = (path, f)
    if not files:
        raise ConfigError(f"{folder}: không có tệp kế hoạch nào (ví dụ {folder}/2022.yaml) / no campaign file")
    return Campaigns(files=files, zone=zone, policy=policy or ReminderPolicy(), form_ids=form_ids,
                     report_ids=report_ids)


__all__ = ["Campaign", "Campaigns", "load_campaigns"]
