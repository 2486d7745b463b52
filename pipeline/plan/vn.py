"""Dates and times written the way Vietnamese administrative documents write them."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def vn_date(value: date | datetime) -> str:
    """dd/mm/yyyy, the way every Vietnamese administrative document writes a date."""
    return value.strftime("%d/%m/%Y")


def vn_date_long(value: date | datetime) -> str:
    """"ngày 05 tháng 02 năm 2022": Decree 30/2020 writes a zero before days 1–9 and months 1–2 only
    ("ngày 20 tháng 3"), so that no one can add a digit in front of them."""
    month = f"{value.month:02d}" if value.month <= 2 else str(value.month)
    return f"ngày {value.day:02d} tháng {month} năm {value.year}"


def vn_date_line(place: str | None, value: date | datetime) -> str:
    """The date line of an administrative letter: "Long Biên, ngày 05 tháng 02 năm 2022"."""
    long = vn_date_long(value)
    return f"{place}, {long}" if place else long[0].upper() + long[1:]


def vn_datetime(value: datetime, tz: str | None = None) -> str:
    """dd/mm/yyyy HH:MM, converted to ``tz`` when given."""
    if tz is not None:
        value = value.astimezone(ZoneInfo(tz))
    return value.strftime("%d/%m/%Y %H:%M")


__all__ = ["vn_date", "vn_date_line", "vn_date_long", "vn_datetime"]
