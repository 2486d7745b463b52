"""Read the forms and reports that units attach: bytes in, a DocumentReading out.

    read_document(filename, data, ...)  one attachment → campaign, kind, period, state, entries, findings
    summarise(reading)                  counts per section and category, for the receipt

Flow: precheck (magic bytes, zip directory, encryption, dimensions) → the isolated reading
process (readers → core: campaign, title and kind → layout: header → body: entries and checks, by the
form's definition in rules/forms/; see isolation.py) → DocumentReading. Images and unknown formats never
reach a reader; their campaign and kind come from the file name and the subject. Nothing here raises for
bad input.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING

from pipeline.forms import kinds, precheck
from pipeline.forms.core import Campaigns, Request, attribute_by_name, candidates, fail, mismatch, parse
from pipeline.forms.isolation import read_isolated
from pipeline.model import SECTIONS, DocumentReading

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
    campaigns: Campaigns | None = None,
    rules: Rules | None = None,
    isolated: bool = True,
) -> DocumentReading:
    """Read one attachment. Never raises for bad input: problems are findings on the reading.

    ``year``: the campaign open when the mail arrived; ``campaigns``: the candidates, ((year, form ids), ...)
    from the first campaign up to ``year`` (default: ((year, every loaded form),)). The reading's ``campaign``
    is the year the document names when it is a candidate, else ``year``; its kind is one of that campaign's
    forms. ``isolated=False`` reads in this process, without the memory limit and the timeout: only for
    trusted files (tests, tools). On Windows the reading process is not available and it is always so.
    """
    from pipeline.forms.rules import default_rules

    rules = rules or default_rules()
    cands = candidates(year, tuple(campaigns or ()), rules)
    att = attribute_by_name(filename or "", subject or "", year, cands, rules)
    fmt: str | None = None
    try:
        verdict = precheck.check(filename or "", data or b"", rules.limits)
        fmt = verdict.format
        if verdict.problem:
            reading = fail(rules, verdict.problem, fmt, verdict.detail,
                           _named_kind(filename, subject, rules, att.forms) or "unknown")
            return replace(reading, campaign=att.year)
        if fmt in _READABLE:
            req = Request(fmt, filename or "", bytes(data), subject or "", unit, year, cands)
            in_child = isolated and sys.platform != "win32"
            reading = read_isolated(req, rules) if in_child else parse(req, rules)
            if reading.campaign is None:  # the file could not be read: its name or the subject may say more
                reading = replace(reading, campaign=att.year)
            if reading.kind == "unknown" and reading.state == "rejected" and not reading.entries:
                kind = _named_kind(filename, subject, rules, _forms_of(reading.campaign, cands, att.forms))
                if kind:
                    reading = replace(reading, kind=kind)
            return reading
        kind = _named_kind(filename, subject, rules, att.forms)
        if fmt in _IMAGES:
            form = rules.forms.get(kind or "")
            findings = mismatch(att, rules, form)
            f = rules.finding("needs-review", detail="ảnh ." + fmt)
            if f:
                findings.append(f)
            period = None
            if form is not None and form.is_report:
                suffix, _ = kinds.detect_period(PurePath(filename or "").stem)
                suffix = suffix or kinds.detect_period(subject)[0]
                period = f"{att.year}-{suffix}" if suffix else None
            return DocumentReading(kind=kind or "unknown", period=period, state="needs_review",
                                   findings=tuple(findings), format=fmt, campaign=att.year)
        shown = "." + fmt if fmt else (content_type or "không rõ")
        return replace(fail(rules, "unsupported-format", fmt, shown, kind or "unknown"), campaign=att.year)
    except Exception:  # noqa: BLE001 - a bug here must not lose the unit's mail
        log.exception("reading %r failed", filename)
        return replace(fail(rules, "kind-unknown", fmt), campaign=att.year)


def _forms_of(campaign: int | None, cands: Campaigns, default: tuple[str, ...]) -> tuple[str, ...]:
    return dict(cands).get(campaign, default) if campaign is not None else default


def _named_kind(filename: str, subject: str, rules: Rules, forms: tuple[str, ...]) -> str | None:
    return (kinds.detect_kind(PurePath(filename or "").stem, rules, forms)
            or kinds.detect_kind(subject, rules, forms))


def summarise(reading: DocumentReading, rules: Rules | None = None) -> dict[str, dict[str, int]]:
    """{"collective": {"gpmb": 2, ...}, "individual": {...}}: entries per section and category.

    Every category of the reading's form appears (0 when none); an entry with several categories counts
    in each, one with none counts under "none" only when such entries exist.
    """
    from pipeline.forms.rules import default_rules

    form = (rules or default_rules()).forms.get(reading.kind)
    codes = form.category_codes if form is not None else ()
    out: dict[str, dict[str, int]] = {s: {c: 0 for c in codes} for s in SECTIONS}
    for e in reading.entries:
        counts = out.setdefault(e.section, {c: 0 for c in codes})
        if not e.categories:
            counts["none"] = counts.get("none", 0) + 1
        for c in e.categories:
            counts[c] = counts.get(c, 0) + 1
    return out


__all__ = ["read_document", "summarise"]
