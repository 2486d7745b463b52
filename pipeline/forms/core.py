"""From a file's bytes (format already known) to a DocumentReading. Runs inside the worker.

Kind: the title text inside the file decides, then the filename, then the mail subject, then
the table's own shape (a KẾT QUẢ THỰC HIỆN column → commendation, section rows → summary,
otherwise registration).

Sections: the summary and commendation lists set each entry's section from their I TẬP THỂ /
II CÁ NHÂN rows. The registration form has no section rows; its entries are "collective" unless
a section row is present (some units add one), because the plan asks each collective to register
and an individual registering alone is the exception staff can correct in review.

Period: forms carry no period (None): the plan asks for them once in the year. Reports carry
"<year>-Q1" | "-H1" | "-Q3" | "-Y", with ``year`` from the caller (a title that writes another
year is a warning, as the plan itself wrote 2021 for 2022).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import PurePath

from pipeline.forms import kinds as K
from pipeline.forms.layout import COLUMN_LABELS, REQUIRED_CATEGORIES, TableReading, read_grid, unit_from_cells
from pipeline.forms.readers import Document, read_docx, read_pdf_text, read_spreadsheet
from pipeline.model import DocumentReading, Finding, Unit
from pipeline.forms.rules import Rules
from pipeline.textnorm import fold, fold_compact

log = logging.getLogger(__name__)

SPREADSHEETS = ("xlsx", "xlsm", "xls", "ods", "xlsb")
TITLE_PARAGRAPHS = 25
_TITLE_HEADS = ("danh sach", "bao cao", "bieu dang ky", "bieu tong hop")
_UNIT_PREFIXES = ("congdoancoso", "congdoan", "cdcs", "cd")


@dataclass(frozen=True)
class Request:
    fmt: str
    filename: str
    data: bytes
    subject: str
    unit: Unit | None
    year: int


def state_of(kind: str, findings: list[Finding], period: str | None, fmt: str | None) -> str:
    if any(f.severity == "error" for f in findings):
        return "rejected"
    if kind == "report":
        return "accepted" if period else "needs_review"
    if kind == "unknown" or fmt in ("pdf", "jpg", "png"):
        return "needs_review"
    return "accepted"


def fail(rules: Rules, type_: str, fmt: str | None, detail: str = "", kind: str = "unknown") -> DocumentReading:
    f = rules.finding(type_, detail=detail)
    findings = (f,) if f else ()
    state = "rejected" if f and f.severity == "error" else "needs_review"
    return DocumentReading(kind=kind, period=None, state=state, findings=findings, format=fmt)


def parse(req: Request, rules: Rules) -> DocumentReading:
    """Never raises for bad input: failures become findings."""
    try:
        if req.fmt in SPREADSHEETS:
            doc = read_spreadsheet(req.data)
        elif req.fmt == "docx":
            doc = read_docx(req.data)
        elif req.fmt == "pdf":
            return _pdf(req, rules)
        else:
            return fail(rules, "unsupported-format", req.fmt, "." + req.fmt)
        return interpret(doc, req, rules)
    except MemoryError:
        return fail(rules, "file-too-large", req.fmt, "không đủ bộ nhớ để đọc")
    except Exception as exc:  # noqa: BLE001 - a reader's failure on a unit's file is a finding
        name = type(exc).__name__
        if name == "PasswordError" or isinstance(exc, PermissionError):
            return fail(rules, "file-encrypted", req.fmt)
        log.debug("reader failed on %s", req.filename, exc_info=True)
        return fail(rules, "file-corrupt", req.fmt, f"{name}: {str(exc)[:120]}")


def _stem(filename: str) -> str:
    return PurePath(filename.replace("\\", "/")).stem


def _title_from_lines(lines: list[str], rules: Rules) -> tuple[str | None, str | None]:
    """(title text, kind) from the first lines of a text: the line naming a kind and the two after."""
    head = lines[:TITLE_PARAGRAPHS]
    hits = [(i, k) for i, line in enumerate(head) if (k := K.detect_kind(line, rules))]
    if not hits:
        return None, None
    # "Mẫu M2" names the form but the title proper is the line below it.
    i, kind = next(((i, k) for i, k in hits if not fold(head[i]).startswith("mau")), hits[0])
    parts = [head[i]]
    if len(head[i]) <= 20 and i + 1 < len(head):
        parts.append(head[i + 1])  # "BÁO CÁO" / "Kết quả thực hiện quý I năm 2022"
    if i > 0 and fold(head[i - 1]) in _TITLE_HEADS:
        parts.insert(0, head[i - 1])  # "DANH SÁCH" / "Đề xuất khen thưởng ..."
    return " ".join(parts), kind


def _period(
    sources: list[str | None], year: int, rules: Rules, findings: list[Finding]
) -> str | None:
    for text in sources:
        if not text:
            continue
        suffix, written = K.detect_period(text)
        if suffix:
            if written and written != year:
                f = rules.finding("year-mismatch", found=written, expected=year)
                if f:
                    findings.append(f)
            return f"{year}-{suffix}"
    return None


def _report(req: Request, rules: Rules, title: str | None, fmt: str, findings: list[Finding]) -> DocumentReading:
    period = _period([title, _stem(req.filename), req.subject], req.year, rules, findings)
    if period is None:
        f = rules.finding("period-not-found")
        if f:
            findings.append(f)
    kind = "report"
    return DocumentReading(kind=kind, period=period, state=state_of(kind, findings, period, fmt),
                           findings=tuple(findings), format=fmt, title=title)


def _pdf(req: Request, rules: Rules) -> DocumentReading:
    lines = read_pdf_text(req.data)
    title, kind = _title_from_lines(lines, rules)
    kind = kind or K.detect_kind(_stem(req.filename), rules) or K.detect_kind(req.subject, rules)
    findings: list[Finding] = []
    if kind == "report":
        return _report(req, rules, title, "pdf", findings)
    f = rules.finding("needs-review", detail=".pdf")
    if f:
        findings.append(f)
    return DocumentReading(kind=kind or "unknown", period=None, state="needs_review", findings=tuple(findings),
                           format="pdf", title=title)


_WORDS = re.compile(r"[0-9a-z]+")


def _unit_key(text: str, rules: Rules) -> str:
    words = f" {' '.join(_WORDS.findall(fold(text)))} "
    for short, long in rules.unit_abbreviations:
        words = words.replace(f" {short} ", f" {long} ")
    return fold_compact(words)


def unit_matches(line: str, unit_name: str, rules: Rules) -> bool:
    """Whether the ĐƠN VỊ line names the unit: folded, abbreviations expanded, "Công đoàn" optional."""
    a, b = _unit_key(line, rules), _unit_key(unit_name, rules)
    for p in _UNIT_PREFIXES:
        if a.startswith(p) and len(a) > len(p) + 3:
            a = a[len(p):]
            break
    for p in _UNIT_PREFIXES:
        if b.startswith(p) and len(b) > len(p) + 3:
            b = b[len(p):]
            break
    return bool(a and b) and (a in b or b in a)


def interpret(doc: Document, req: Request, rules: Rules) -> DocumentReading:
    fmt = req.fmt
    findings: list[Finding] = []
    title, title_kind = _title_from_lines(doc.paragraphs, rules)
    unit_seen, unit_line = False, None
    for p in doc.paragraphs[:TITLE_PARAGRAPHS]:
        unit_seen, unit_line = unit_from_cells([p])
        if unit_seen:
            break

    name_kind = K.detect_kind(_stem(req.filename), rules)
    subject_kind = K.detect_kind(req.subject, rules)
    if title_kind == "report":
        return _report(req, rules, title, fmt, findings)

    tables: list[TableReading] = [read_grid(g, rules) for g in doc.grids]
    found = [t for t in tables if t.header]
    for t in tables:
        if not unit_seen and t.unit_seen:
            unit_seen, unit_line = True, t.unit_line
        if title_kind is None and t.title_lines:
            t_title, t_kind = _title_from_lines(t.title_lines, rules)
            if t_kind and (t.header or not found):
                title, title_kind = t_title, t_kind

    kind = title_kind or name_kind or subject_kind
    if found and (kind is None or (kind == "report" and title_kind is None)):
        first = found[0]
        if first.header and "result" in first.header.columns:
            kind = "commendation"
        elif any(t.sections_seen for t in found):
            kind = "summary"
        else:
            kind = "registration"
    if kind == "report":
        if not title and doc.grids and not doc.paragraphs:
            title = " ".join(tables[0].title_lines[:3]) if tables else None
        return _report(req, rules, title, fmt, findings)
    if kind is None:
        f = rules.finding("kind-unknown")
        return DocumentReading(kind="unknown", period=None, state="needs_review", findings=(f,) if f else (),
                               unit_line=unit_line, format=fmt, title=title)

    # A form.
    raw: list[Finding | None] = []
    entries = []
    if not found:
        best = max(tables, key=lambda t: t.score, default=None)
        missing = best.missing if best else ["name", "model", *REQUIRED_CATEGORIES]
        where = f" trong {best.grid_name}" if best else ""
        raw.append(rules.finding("header-not-found", where=where,
                                 missing=", ".join(COLUMN_LABELS.get(k, k) for k in missing)))
    for t in found:
        assert t.header is not None
        missing_cats = [k for k in REQUIRED_CATEGORIES if k not in t.header.columns]
        if "name" not in t.header.columns or "model" not in t.header.columns:
            raw.append(rules.finding("header-not-found", where=f" trong {t.grid_name}",
                                     missing=", ".join(COLUMN_LABELS[k] for k in t.missing)))
            continue
        if missing_cats:
            raw.append(rules.finding("missing-column", where=t.grid_name,
                                     missing=", ".join(COLUMN_LABELS[k] for k in missing_cats)))
        raw.extend(t.findings)
        entries.extend(t.entries)
    if found and not entries:
        raw.append(rules.finding("no-entries", where=f" ({found[0].grid_name})"))
    if req.unit is not None:
        if unit_line and not unit_matches(unit_line, req.unit.name, rules):
            raw.append(rules.finding("unit-mismatch", found=unit_line, expected=req.unit.name))
    if not unit_line:
        raw.append(rules.finding("unit-missing"))
    findings.extend(_cap([f for f in raw if f is not None], rules))
    return DocumentReading(kind=kind, period=None, state=state_of(kind, findings, None, fmt),
                           entries=tuple(entries), findings=tuple(findings), unit_line=unit_line,
                           format=fmt, title=title)


def _cap(findings: list[Finding], rules: Rules) -> list[Finding]:
    limit = rules.limits["max_findings_per_code"]
    counts: dict[str, int] = {}
    out: list[Finding] = []
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
        if counts[f.code] <= limit:
            out.append(f)
    for code, n in counts.items():
        if n > limit:
            more = rules.finding("too-many-findings", count=n - limit, code=code)
            if more:
                out.append(more)
    return out


__all__ = ["Request", "parse", "state_of", "fail", "unit_matches"]
