"""Obligations: what every unit owes the district and the last instant that counts as on time,
read from ``rules/deadlines.yaml``.

Deadline semantics: a due date is the *inclusive end of that day* in the configured time zone
(Asia/Ho_Chi_Minh), unless the obligation gives a ``time`` or says ``exclusive: true``.
``Obligation.due_at`` is the last instant that still counts as on time, so ``received_at <= due_at``
is on time. For 22/02/2022: 23:59 local on 22/02 is on time, 00:00 on 23/02 is late. The plan's
"trước ngày 15 tháng cuối quý" for reports is read as "by the 15th" (the 15th counts); the rules
file says how to make it strict.

The file is checked with pydantic (unknown keys refused); every error is a ConfigError naming the
file, the obligation (``obligation 'q1' (obligations[0]).due``) and what is wrong.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.model import GROUPS, Unit
from pipeline.plan.vn import vn_date
from pipeline.schema import Problem, Text, validate

_PERIOD = re.compile(r"^\d{4}-(Q1|H1|Q3|Y)$")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_EPS = timedelta(microseconds=1)


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


# --------------------------------------------------------------------------- the file's schema


def _one_or_more(value: Any) -> Any:
    # `kinds: report` means the same as `kinds: [report]`.
    return [value] if isinstance(value, str) else value


def _not_empty(problem: str) -> Any:
    def check(value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(problem)
        return value
    return AfterValidator(check)


def _one_of(choices: tuple[str, ...], what: str) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{what} {value!r} (one of {', '.join(choices)})")
        return value
    return AfterValidator(check)


def _rule_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"mã không hợp lệ / bad or missing id: {value!r}")
    return value


def _clock(value: Any) -> time | None:
    if value is None:
        return None
    # YAML 1.1 reads an unquoted 17:00 as the sexagesimal integer 1020.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, str) and _TIME.match(value.strip()):
        hh, mm = value.strip().split(":")
        return time(int(hh), int(mm))
    raise ValueError(f"giờ không hợp lệ / bad time {value!r} (HH:MM)")


def _year(info: ValidationInfo) -> int:
    return int((info.context or {})["year"])


_Str = Annotated[str, Strict()]
_Kinds = Annotated[
    tuple[Annotated[_Str, AfterValidator(_rule_id)], ...],
    BeforeValidator(_one_or_more), _not_empty("thiếu loại văn bản / missing kinds"),
]
_Groups = Annotated[
    tuple[Annotated[_Str, _one_of(GROUPS, "khối không hợp lệ / unknown group")], ...],
    BeforeValidator(_one_or_more), _not_empty("phải là danh sách khối / must be a list of groups"),
]
_DueTime = Annotated[time | None, BeforeValidator(_clock)]


class _ObligationRule(BaseModel):
    """One entry of ``obligations:`` as written; ``{year}`` is already replaced in period and due."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[_Str, AfterValidator(_rule_id)]
    title: Text
    form_name: Text | None = None
    kinds: _Kinds
    period: _Str | None = None
    due: date | None = None
    time: _DueTime = None
    exclusive: Annotated[bool, Strict()] = False
    groups: _Groups = GROUPS

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        year = _year(info)
        period = value.replace("{year}", str(year)).strip()
        if not _PERIOD.match(period):
            raise ValueError(f"kỳ không hợp lệ / bad period {value!r} (e.g. {year}-Q1)")
        return period

    @field_validator("due", mode="before")
    @classmethod
    def _due(cls, value: Any, info: ValidationInfo) -> date | None:
        return None if value is None else _parse_due(value, _year(info))

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> _ObligationRule:
        # the report forms (no table, a period) of the rules, given by the loader
        reports = set((info.context or {}).get("reports") or ("report",)) & set(self.kinds)
        if self.period is None and reports:
            raise Problem("period", f"báo cáo ({', '.join(sorted(reports))}) phải có kỳ / a report obligation needs "
                                    f"a period")
        if self.due is None and (self.time is not None or self.exclusive):
            raise Problem("due", "có time/exclusive nhưng thiếu ngày / time or exclusive without a due date")
        return self


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


# --------------------------------------------------------------------------- loading


def _deadline(day: date | None, at: time | None, exclusive: bool, zone: ZoneInfo) -> tuple[datetime | None, str]:
    """The last on-time instant and its Vietnamese wording."""
    if day is None:
        return None, "chưa quy định thời hạn"
    if at is None:
        if exclusive:
            return datetime.combine(day, time(0), tzinfo=zone) - _EPS, f"trước ngày {vn_date(day)}"
        start_next = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        return start_next - _EPS, f"chậm nhất ngày {vn_date(day)}"
    instant = datetime.combine(day, at, tzinfo=zone)
    word = "trước" if exclusive else "chậm nhất"
    return (instant - _EPS if exclusive else instant), f"{word} {at:%H:%M} ngày {vn_date(day)}"


def obligations_from(listing: Any, year: int, zone: ZoneInfo, path: Path, *, prefix: str = "obligations",
                     kinds: tuple[str, ...] | None = None,
                     reports: frozenset[str] | None = None) -> tuple[Obligation, ...]:
    """The obligations of ``year`` from the list written under ``prefix`` in ``path``; every error names the
    file and the obligation. ``kinds``: the form ids a document may have (those of the campaign); ``reports``:
    those that are reports (an obligation they meet needs a period)."""
    if not isinstance(listing, list):
        raise ConfigError(f"{path}: {prefix}: phải là danh sách / must be a list")
    result: list[Obligation] = []
    seen: set[str] = set()
    for index, raw in enumerate(listing):
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: {prefix}[{index}]: phải là một nhóm khoá / must be a mapping")
        oid = raw.get("id")
        named = isinstance(oid, str) and bool(_ID.match(oid))
        # Staff look for the id they wrote; the index tells apart two entries with the same id.
        where = f"obligation {oid!r} ({prefix}[{index}])" if named else f"{prefix}[{index}]"
        if named and oid in seen:
            raise ConfigError(f"{path}: {where}: trùng mã / duplicate id")
        rule = validate(_ObligationRule, raw, path, f"{where}.", context={"year": year, "reports": reports})
        unknown = [k for k in rule.kinds if kinds is not None and k not in kinds]
        if unknown:
            raise ConfigError(f"{path}: {where}.kinds: {', '.join(map(repr, unknown))} không có trong forms của kế hoạch "
                              f"/ not among the campaign's forms ({', '.join(kinds or ())})")
        seen.add(rule.id)
        due_at, deadline_text = _deadline(rule.due, rule.time, rule.exclusive, zone)
        title = rule.title.replace("{year}", str(year)).strip()
        form_name = (rule.form_name or rule.title).replace("{year}", str(year)).strip()
        result.append(Obligation(
            id=rule.id, title=title, kinds=rule.kinds, period=rule.period, due_at=due_at, groups=rule.groups,
            form_name=form_name, deadline_text=deadline_text,
        ))
    return tuple(result)


def zone_of(tz: str, path: Path) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{path}: múi giờ không tồn tại / unknown time zone: {tz!r}") from exc


__all__ = ["Obligation", "obligations_from", "zone_of"]
