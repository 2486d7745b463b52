"""Read the forms and reports that units attach: bytes in, a DocumentReading out.

    read_document(filename, data, ...)  one attachment → campaign, kind, period, state, entries, findings
    summarise(reading)                  counts per section and category, for the receipt

Flow: precheck (magic bytes, zip directory and CRCs, OLE root, encryption, dimensions) → the isolated
reading process (readers → core: campaign, title and kind → layout: header → body: entries and checks, by the
form's definition in rules/forms/; .doc and .rtf converted to .docx by LibreOffice first, see convert.py and
isolation.py) → DocumentReading. A document that is not read (a photo, a scan, an unknown format, a broken or
encrypted file, one LibreOffice cannot open) takes its campaign, kind and period from its file name and the
mail's subject, so that an officer who accepts it finds them filled in. Nothing here raises for bad input.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING

from pipeline.forms import kinds, precheck
from pipeline.forms.convert import read_request
from pipeline.forms.core import Attribution, Campaigns, Request, attribute_by_name, candidates, fail, mismatch
from pipeline.forms.isolation import read_isolated
from pipeline.model import SECTIONS, DocumentReading

if TYPE_CHECKING:
    from pipeline.model import Unit
    from pipeline.forms.rules import Rules

log = logging.getLogger(__name__)

_READABLE = ("xlsx", "xlsm", "xls", "ods", "docx", "doc", "odt", "rtf", "pdf")
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
            reading = fail(rules, verdict.problem, fmt, verdict.detail)
        elif fmt in _READABLE:
            req = Request(fmt, filename or "", bytes(data), subject or "", unit, year, cands)
            in_child = isolated and sys.platform != "win32"
            reading = read_isolated(req, rules) if in_child else read_request(req, rules)
        elif fmt in _IMAGES:
            f = rules.finding("needs-review", detail="ảnh ." + fmt)
            reading = DocumentReading(kind="unknown", period=None, state="needs_review", findings=(f,) if f else (),
                                      format=fmt)
        else:
            shown = "." + fmt if fmt else (content_type or "không rõ")
            reading = fail(rules, "unsupported-format", fmt, shown)
    except Exception:  # noqa: BLE001 - a bug here must not lose the unit's mail
        log.exception("reading %r failed", filename)
        reading = fail(rules, "kind-unknown", fmt)
    return _by_name(reading, filename or "", subject or "", att, cands, rules)


def _by_name(reading: DocumentReading, filename: str, subject: str, att: Attribution, cands: Campaigns,
             rules: Rules) -> DocumentReading:
    """What the file name and the subject tell of a document its reader could not read.

    A reading without a campaign was not read (the reader attributes every document it reads): it takes the
    campaign the name or the subject names, with the year-mismatch warning when that is no candidate's, and
    the kind they name. A report with no period takes the period they name (the reader already looked there
    for one it read: nothing changes then). Its state is left as the reading has it: needs_review waits for
    an officer, who finds the kind and period filled in; rejected stays rejected."""
    unread = reading.campaign is None
    if unread:
        reading = replace(reading, campaign=att.year)
    if reading.kind == "unknown" and not reading.entries:
        kind = _named_kind(filename, subject, rules, _forms_of(reading.campaign, cands, att.forms))
        if kind:
            reading = replace(reading, kind=kind)
    form = rules.forms.get(reading.kind)
    if unread:
        findings = mismatch(att, rules, form)
        if findings:
            reading = replace(reading, findings=(*findings, *reading.findings))
    if form is not None and form.is_report and reading.period is None:
        suffix = kinds.detect_period(PurePath(filename).stem)[0] or kinds.detect_period(subject)[0]
        if suffix:
            reading = replace(reading, period=f"{reading.campaign}-{suffix}")
    return reading


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
