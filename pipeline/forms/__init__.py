"""Read the forms and reports that units attach: bytes in, a DocumentReading out.

    read_document(filename, data, ...)  one attachment → kind, period, state, entries, findings
    summarise(reading)                  counts per section and category, for the receipt

Flow: precheck (magic bytes, zip directory, encryption, dimensions) → the isolated reading
process (readers → layout → validation, see isolation.py) → DocumentReading. Images and unknown formats
never reach a reader. Nothing here raises for bad input.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING

from pipeline.forms import kinds, precheck
from pipeline.forms.core import Request, fail, parse
from pipeline.forms.isolation import read_isolated
from pipeline.model import CATEGORIES, SECTIONS, DocumentReading

if TYPE_CHECKING:
    from pipeline.model import Unit
    from pipeline.forms.rules import Rules

log = logging.getLogger(__name__)

_READABLE = ("xlsx", "xlsm", "xls", "ods", "docx", "pdf")
_IMAGES = ("jpg", "png")


def read_document(
    filename: str,
    data: bytes,
    *,
    content_type: str | None = None,
    subject: str = "",
    unit: Unit | None = None,
    year: int = 2022,
    rules: Rules | None = None,
    isolated: bool = True,
) -> DocumentReading:
    """Read one attachment. Never raises for bad input: problems are findings on the reading.

    ``isolated=False`` reads in this process, without the memory limit and the timeout: only for
    trusted files (tests, tools). On Windows the reading process is not available and it is always so.
    """
    from pipeline.forms.rules import default_rules

    rules = rules or default_rules()
    fmt: str | None = None
    try:
        verdict = precheck.check(filename or "", data or b"", rules.limits)
        fmt = verdict.format
        if verdict.problem:
            return fail(rules, verdict.problem, fmt, verdict.detail, _named_kind(filename, subject, rules) or "unknown")
        if fmt in _READABLE:
            req = Request(fmt, filename or "", bytes(data), subject or "", unit, year)
            in_child = isolated and sys.platform != "win32"
            reading = read_isolated(req, rules) if in_child else parse(req, rules)
            if reading.kind == "unknown" and reading.state == "rejected" and not reading.entries:
                # The file could not be read at all: its name or the subject may still say what it was.
                kind = _named_kind(filename, subject, rules)
                if kind:
                    reading = replace(reading, kind=kind)
            return reading
        kind = _named_kind(filename, subject, rules)
        if fmt in _IMAGES:
            f = rules.finding("needs-review", detail="ảnh ." + fmt)
            period = None
            if kind == "report":
                suffix, _ = kinds.detect_period(PurePath(filename or "").stem)
                suffix = suffix or kinds.detect_period(subject)[0]
                period = f"{year}-{suffix}" if suffix else None
            return DocumentReading(kind=kind or "unknown", period=period, state="needs_review",
                                   findings=(f,) if f else (), format=fmt)
        shown = "." + fmt if fmt else (content_type or "không rõ")
        return fail(rules, "unsupported-format", fmt, shown, kind or "unknown")
    except Exception:  # noqa: BLE001 - a bug here must not lose the unit's mail
        log.exception("reading %r failed", filename)
        return fail(rules, "kind-unknown", fmt)


def _named_kind(filename: str, subject: str, rules: Rules) -> str | None:
    return kinds.detect_kind(PurePath(filename or "").stem, rules) or kinds.detect_kind(subject, rules)


def summarise(reading: DocumentReading) -> dict[str, dict[str, int]]:
    """{"collective": {"gpmb": 2, ...}, "individual": {...}}: entries per section and category.

    Every category appears (0 when none); an entry with several categories counts in each, one
    with none counts under "none" only when such entries exist.
    """
    out: dict[str, dict[str, int]] = {s: {c: 0 for c in CATEGORIES} for s in SECTIONS}
    for e in reading.entries:
        counts = out.setdefault(e.section, {c: 0 for c in CATEGORIES})
        if not e.categories:
            counts["none"] = counts.get("none", 0) + 1
        for c in e.categories:
            counts[c] = counts.get(c, 0) + 1
    return out


__all__ = ["read_document", "summarise"]
