"""Read the forms and reports that units attach: bytes in, a DocumentReading out.

    read_document(filename, data, ...)  one attachment → kind, period, state, entries, findings
    summarise(reading)                  counts per section and category, for the receipt

Flow: precheck (magic bytes, zip directory, encryption, dimensions; < 1 ms) → the isolated
reading process (readers → layout → validation) → DocumentReading. Images and unknown formats
never reach a reader. Nothing here raises for bad input.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pipeline.model import CATEGORIES, SECTIONS, DocumentReading

if TYPE_CHECKING:
    from pipeline.forms.core import Request
    from pipeline.model import Unit
    from pipeline.rules import Rules

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
) -> DocumentReading:
    """Read one attachment. Never raises for bad input: problems are findings on the reading."""
    from pipeline.forms.isolation import isolated_parse
    from pipeline.rules import default_rules

    rules = rules or default_rules()
    step = _begin(filename, data, content_type, subject, unit, year, rules)
    if isinstance(step, DocumentReading):
        return step
    try:
        return _end(isolated_parse(step, rules), filename, subject, rules)
    except Exception:  # noqa: BLE001 - a bug here must not lose the unit's mail
        return _crashed(filename, step.fmt, rules)


class DocumentBatch:
    """``read_document`` for several attachments, the isolated reader working on them while the caller
    goes on (e.g. parses the next message): ``submit`` each, then ``result`` each. The same readings as
    ``read_document`` one by one. A context manager; one thread at a time.

        with DocumentBatch(rules) as batch:
            tickets = [batch.submit(name, data, subject=..., unit=..., year=...) for ...]
            readings = [batch.result(t) for t in tickets]
    """

    def __init__(self, rules: Rules | None = None) -> None:
        from pipeline.forms.isolation import IsolatedBatch
        from pipeline.rules import default_rules

        self.rules = rules or default_rules()
        self._isolated = IsolatedBatch(self.rules)

    def __enter__(self) -> DocumentBatch:
        self._isolated.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._isolated.__exit__(*exc)

    def submit(self, filename: str, data: bytes, *, content_type: str | None = None, subject: str = "",
               unit: Unit | None = None, year: int = 2022) -> object:
        step = _begin(filename, data, content_type, subject, unit, year, self.rules)
        if isinstance(step, DocumentReading):
            return step
        try:
            return (filename, subject, step, self._isolated.submit(step, self.rules))
        except Exception:  # noqa: BLE001
            return _crashed(filename, step.fmt, self.rules)

    def result(self, ticket: object) -> DocumentReading:
        if isinstance(ticket, DocumentReading):
            return ticket
        filename, subject, req, inner = ticket  # type: ignore[misc]
        try:
            return _end(self._isolated.result(inner), filename, subject, self.rules)
        except Exception:  # noqa: BLE001
            return _crashed(filename, req.fmt, self.rules)


def _crashed(filename: str, fmt: str | None, rules: Rules) -> DocumentReading:
    from pipeline.forms.core import fail

    log.exception("reading %r failed", filename)
    return fail(rules, "kind-unknown", fmt)


_BEGIN: tuple[Any, ...] = ()


def _begin_imports() -> tuple[Any, ...]:
    """What _begin needs, imported on first use (importing pipeline.forms stays cheap) and kept: an import
    statement per document costs ~1 us in the parent, which is the busy side of a batch."""
    global _BEGIN
    from pipeline.forms import kinds, precheck
    from pipeline.forms.core import Request, fail

    _BEGIN = (kinds, precheck, Request, fail)
    return _BEGIN


def _begin(filename: str, data: bytes, content_type: str | None, subject: str, unit: Unit | None, year: int,
           rules: Rules) -> DocumentReading | Request:
    """Everything before the isolated reader: the reading when it is already decided (precheck refused
    it, an image, an unknown format), else the request for the reader."""
    kinds, precheck, Request, fail = _BEGIN or _begin_imports()
    fmt: str | None = None
    try:
        verdict = precheck.check(filename or "", data or b"", rules.limits)
        fmt = verdict.format
        if verdict.problem:
            kind = kinds.detect_kind(PurePath(filename or "").stem, rules) or kinds.detect_kind(subject, rules)
            return fail(rules, verdict.problem, fmt, verdict.detail, kind or "unknown")
        if fmt in _READABLE:
            return Request(fmt, filename or "", bytes(data), subject or "", unit, year)
        kind = kinds.detect_kind(PurePath(filename or "").stem, rules) or kinds.detect_kind(subject, rules)
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
        return _crashed(filename, fmt, rules)


def _end(reading: DocumentReading, filename: str, subject: str, rules: Rules) -> DocumentReading:
    from pipeline.forms import kinds

    if reading.kind == "unknown" and reading.state == "rejected" and not reading.entries:
        # The file could not be read at all: its name or the subject may still say what it was.
        kind = kinds.detect_kind(PurePath(filename or "").stem, rules) or kinds.detect_kind(subject, rules)
        if kind:
            reading = replace(reading, kind=kind)
    return reading


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


def warm_up(rules: Rules | None = None) -> None:
    """Start the reading process now, so the first mail does not wait for it (optional)."""
    from pipeline.forms.core import Request
    from pipeline.forms.isolation import isolated_parse
    from pipeline.rules import default_rules

    isolated_parse(Request("unsupported", "", b"", "", None, 2022), rules or default_rules())


__all__ = ["read_document", "DocumentBatch", "summarise", "warm_up"]
