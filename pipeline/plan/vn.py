"""Dates and times written the way Vietnamese administrative documents write them."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def vn_date(value: date | datetime) -> str:
    """dd/mm/yyyy, the way every Vietnamese administrative document writes a date."""
    return value.strftime("%d/%m/%Y")


def vn_datetime(value: datetime, tz: str | None = None) -> str:
    """dd/mm/yyyy HH:MM, converted to ``tz`` when given."""
    if tz is not None:
        value = value.astimezone(ZoneInfo(tz))
    return value.strftime("%d/%m/%Y %H:%M")


__all__ = ["vn_date", "vn_datetime"]
