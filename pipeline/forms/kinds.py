"""What a document is, which period a report covers and which year it names, from its title, filename or
subject."""
from __future__ import annotations

import re

from pipeline.forms.rules import Rules
from pipeline.textnorm import fold, fold_compact

_SEP = re.compile(r"[_\-.,;:/\\()\[\]]+")
_QUARTER = re.compile(r"\b(?:quy|q)\s*(iii|ii|iv|i|1|2|3|4)\b")
_H1 = re.compile(r"\b(?:6|sau)\s*thang\b|\bnua nam\b|\bso ket\b|\bh1\b")
_Q3 = re.compile(r"\b(?:9|chin)\s*thang\b")
_YEAR_WORDS = re.compile(r"\btong ket\b|\bca nam\b|\bnam\s*20\d\d\b|\bbao cao nam\b|\bhang nam\b|\bbc nam\b")
_YEAR = re.compile(r"(?<!\d)(20\d\d)(?!\d)")
# The plan asks for a report each quarter; the second quarter's is the 6-month report and the
# fourth quarter's the annual one (both due 15/06 and 15/12).
_QUARTER_PERIOD = {"i": "Q1", "1": "Q1", "ii": "H1", "2": "H1", "iii": "Q3", "3": "Q3", "iv": "Y", "4": "Y"}


def _prep(text: str) -> str:
    return " ".join(_SEP.sub(" ", fold(text)).split())


def detect_kind(text: str, rules: Rules, forms: tuple[str, ...] | frozenset[str] | None = None) -> str | None:
    """The first form (in recognition order) among ``forms`` (all when None) whose phrase occurs in ``text``."""
    if not text:
        return None
    compact = fold_compact(text)
    for kind, phrases in rules.recognition(forms):
        for phrase in phrases:
            if phrase in compact:
                return kind
    return None


# "ngày 15 tháng 02 năm 2022", "….. ngày …tháng …năm 2022", "15/02/2022": when a text was signed, not the
# year it is about.
_DATE_WORDS = re.compile(r"\bngay\b[\s\d.…_/-]*\bthang\b[\s\d.…_/-]*\bnam\s*\d{4}")
_DATE_DIGITS = re.compile(r"(?<!\d)\d{1,2}\s*[/.-]\s*\d{1,2}\s*[/.-]\s*\d{4}(?!\d)")


def named_year(text: str | None) -> int | None:
    """The first year (20xx) a text names, leaving out dates ("ngày … tháng … năm 2022", "15/02/2022")."""
    if not text:
        return None
    t = _DATE_DIGITS.sub(" ", _DATE_WORDS.sub(" ", fold(text)))
    m = _YEAR.search(t)
    return int(m.group(1)) if m else None


def detect_period(text: str) -> tuple[str | None, int | None]:
    """(period suffix "Q1" | "H1" | "Q3" | "Y" or None, year written in the text or None)."""
    if not text:
        return None, None
    t = _prep(text)
    years = _YEAR.findall(t)
    year = int(years[0]) if years else None
    m = _QUARTER.search(t)
    if m:
        return _QUARTER_PERIOD[m.group(1)], year
    if _H1.search(t):
        return "H1", year
    if _Q3.search(t):
        return "Q3", year
    if _YEAR_WORDS.search(t):
        return "Y", year
    return None, year
