"""From a file's bytes (format already known) to a DocumentReading. Runs inside the worker.

Campaign: a document belongs to the campaign of the year it names, when that campaign is one of the
candidates (``Request.campaigns``, every campaign up to the one open when the mail arrived): the year in its
title (the line naming the kind and the line right after, never the date line), else in the file name,
else in the mail subject. Otherwise it belongs to the arrival year's campaign, with a warning when it named
another year. The title is found with the phrases of every candidate's forms; the kind is then recognised
among the chosen campaign's forms only, and the document read with their definitions.

Kind: the title text inside the file decides, then the filename, then the mail subject, then the table's
own shape (each form's ``recognise.shape``: a KẾT QUẢ THỰC HIỆN column → commendation, section rows →
summary, otherwise registration).

Sections: section rows (I TẬP THỂ / II CÁ NHÂN) set each entry's section; before any, the form's default
section (the registration form has none: its entries are "collective" unless a unit adds a section row,
because the plan asks each collective to register and an individual registering alone is the exception
staff can correct in review).

Period: forms carry no period (None): the plan asks for them once in the year. Reports carry
"<campaign>-Q1" | "-H1" | "-Q3" | "-Y".
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import PurePath

from pipeline.forms import kinds as K
from pipeline.forms import legacy_fonts
from pipeline.forms.body import read_body
from pipeline.forms.definitions import FormDef
from pipeline.forms.layout import TableReading, find_header, unit_from_cells
from pipeline.forms.readers import Document, read_docx, read_odt, read_pdf_text, read_spreadsheet
from pipeline.model import DocumentReading, Finding, Unit
from pipeline.forms.rules import Rules
from pipeline.textnorm import fold, fold_compact

log = logging.getLogger(__name__)

SPREADSHEETS = ("xlsx", "xlsm", "xls", "ods", "xlsb")
TITLE_PARAGRAPHS = 25
TITLE_LINE_AFTER = 80  # a line longer than this after the title is body text, not a subtitle
_TITLE_HEADS = ("danh sach", "bao cao", "bieu dang ky", "bieu tong hop")
_UNIT_PREFIXES = ("congdoancoso", "congdoan", "cdcs", "cd")

Campaigns = tuple[tuple[int, tuple[str, ...]], ...]  # ((year, form ids), ...) ascending


@dataclass(frozen=True)
class Request:
    fmt: str
    filename: str
    data: bytes
    subject: str
    unit: Unit | None
    year: int  # the campaign open when the mail arrived
    campaigns: Campaigns = ()  # the candidates; () = ((year, every loaded form),)


@dataclass(frozen=True)
class Attribution:
    year: int  # the campaign the document belongs to
    forms: tuple[str, ...]  # that campaign's forms
    named: int | None  # a year the document names that is no candidate's (the warning year-mismatch)


def candidates(year: int, campaigns: Campaigns, rules: Rules) -> Campaigns:
    return campaigns or ((year, tuple(rules.forms)),)


def attribute(named: int | None, year: int, campaigns: Campaigns, rules: Rules) -> Attribution:
    """The campaign of a document that names ``named`` (None: no year), arriving during ``year``."""
    by_year = dict(candidates(year, campaigns, rules))
    if named is not None and named in by_year:
        return Attribution(named, by_year[named], None)
    return Attribution(year, by_year.get(year, tuple(rules.forms)), named)


def attribute_by_name(filename: str, subject: str, year: int, campaigns: Campaigns, rules: Rules) -> Attribution:
    """For a file that is not read (an image, a broken file): the year its name, else the subject, names."""
    return attribute(K.named_year(_stem(filename)) or K.named_year(subject), year, campaigns, rules)


def mismatch(att: Attribution, rules: Rules, form: FormDef | None = None) -> list[Finding]:
    f = rules.finding("year-mismatch", found=att.named, expected=att.year, form=form) if att.named else None
    return [f] if f else []


def _every(campaigns: Campaigns) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for _, forms in campaigns for f in forms))


def is_report(kind: str | None, rules: Rules) -> bool:
    form = rules.forms.get(kind or "")
    return form is not None and form.is_report


def state_of(kind: str, findings: list[Finding], period: str | None, fmt: str | None, *, report: bool) -> str:
    if any(f.severity == "error" for f in findings):
        return "rejected"
    if report:
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
        elif req.fmt == "odt":
            doc = read_odt(req.data)
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


@dataclass(frozen=True)
class Title:
    text: str | None = None
    kind: str | None = None
    year: int | None = None  # the year the title names


def _title_from_lines(lines: list[str], rules: Rules, forms: tuple[str, ...]) -> Title:
    """The title among the first lines of a text: the line naming one of ``forms`` and the one after it."""
    head = lines[:TITLE_PARAGRAPHS]
    hits = [(i, k) for i, line in enumerate(head) if (k := K.detect_kind(line, rules, forms))]
    if not hits:
        return Title()
    # "Mẫu M2" names the form but the title proper is the line below it.
    i, kind = next(((i, k) for i, k in hits if not fold(head[i]).startswith("mau")), hits[0])
    parts = [head[i]]
    after = i + 1
    if len(head[i]) <= 20 and i + 1 < len(head):
        parts.append(head[i + 1])  # "BÁO CÁO" / "Kết quả thực hiện quý I năm 2022"
        after += 1
    if i > 0 and fold(head[i - 1]) in _TITLE_HEADS:
        parts.insert(0, head[i - 1])  # "DANH SÁCH" / "Đề xuất khen thưởng ..."
    text = " ".join(parts)
    year = K.named_year(text)
    if year is None and after < len(head) and len(head[after]) <= TITLE_LINE_AFTER:
        year = K.named_year(head[after])  # 'BIỂU ĐĂNG KÝ MÔ HÌNH "DÂN VẬN KHÉO"' / "Năm 2023"
    return Title(text, kind, year)


def _title(doc: Document, tables: list[TableReading], rules: Rules, forms: tuple[str, ...]) -> Title:
    """The document's title: in its paragraphs, else above the header of a table (one with a header first)."""
    title = _title_from_lines(doc.paragraphs, rules, forms)
    if title.kind is not None:
        return title
    found = any(t.header for t in tables)
    for t in tables:
        if t.title_lines:
            got = _title_from_lines(t.title_lines, rules, forms)
            if got.kind and (t.header or not found):
                return got
    return title


def _report(req: Request, rules: Rules, kind: str, title: str | None, fmt: str, att: Attribution,
            findings: list[Finding]) -> DocumentReading:
    form = rules.forms[kind]
    findings = mismatch(att, rules, form) + findings
    period = None
    for text in (title, _stem(req.filename), req.subject):
        suffix = K.detect_period(text or "")[0]
        if suffix:
            period = f"{att.year}-{suffix}"
            break
    if period is None:
        f = rules.finding("period-not-found", form=form)
        if f:
            findings.append(f)
    return DocumentReading(kind=kind, period=period, state=state_of(kind, findings, period, fmt, report=True),
                           findings=tuple(findings), format=fmt, title=title, campaign=att.year)


def _named(title: Title, req: Request) -> int | None:
    return title.year or K.named_year(_stem(req.filename)) or K.named_year(req.subject)


def _pdf(req: Request, rules: Rules) -> DocumentReading:
    lines = read_pdf_text(req.data)
    cands = candidates(req.year, req.campaigns, rules)
    att = attribute(_named(_title_from_lines(lines, rules, _every(cands)), req), req.year, cands, rules)
    title = _title_from_lines(lines, rules, att.forms)
    kind = (title.kind or K.detect_kind(_stem(req.filename), rules, att.forms)
            or K.detect_kind(req.subject, rules, att.forms))
    if is_report(kind, rules):
        assert kind is not None
        return _report(req, rules, kind, title.text, "pdf", att, [])
    findings = mismatch(att, rules, rules.forms.get(kind or ""))
    f = rules.finding("needs-review", detail=".pdf")
    if f:
        findings.append(f)
    return DocumentReading(kind=kind or "unknown", period=None, state="needs_review", findings=tuple(findings),
                           format="pdf", title=title.text, campaign=att.year)


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


def _by_shape(found: list[TableReading], rules: Rules, forms: tuple[str, ...]) -> str | None:
    """The first table form (in recognition order) whose shape the tables have."""
    for kind, _ in rules.recognition(forms):
        form = rules.forms[kind]
        if form.is_report or not all(k in found[0].seen for k in form.shape_columns):
            continue
        if form.shape_sections and not _has_sections(found, rules, form):
            continue
        return kind
    return None


def _has_sections(found: list[TableReading], rules: Rules, form: FormDef) -> bool:
    for t in found:
        t.keep_rows()  # read again below, with the form chosen
        probe = TableReading(t.grid, t.header, pending=list(t.pending), rest=t.rest)
        read_body(probe, rules, form)
        if probe.sections_seen:
            return True
    return False


def interpret(doc: Document, req: Request, rules: Rules) -> DocumentReading:
    """Read a document; text in an old font encoding (TCVN3, VNI) is read as Unicode, with a warning."""
    doc, legacy = legacy_fonts.prepare(doc, req.fmt, req.data)
    return legacy_fonts.noted(_interpret(doc, req, rules), legacy, rules)


def _interpret(doc: Document, req: Request, rules: Rules) -> DocumentReading:
    fmt = req.fmt
    cands = candidates(req.year, req.campaigns, rules)
    every = _every(cands)
    unit_seen, unit_line = False, None
    for p in doc.paragraphs[:TITLE_PARAGRAPHS]:
        unit_seen, unit_line = unit_from_cells([p])
        if unit_seen:
            break

    # The title, found with every candidate's forms, names the year; the year names the campaign.
    tables: list[TableReading] = []
    first = _title_from_lines(doc.paragraphs, rules, every)
    if not is_report(first.kind, rules):
        tables = [find_header(g, rules.vocabulary(every)) for g in doc.grids]
    att = attribute(_named(_title(doc, tables, rules, every), req), req.year, cands, rules)
    title = _title(doc, tables, rules, att.forms)
    if is_report(title.kind, rules):
        assert title.kind is not None
        return _report(req, rules, title.kind, title.text, fmt, att, [])
    if not tables and doc.grids:
        tables = [find_header(g, rules.vocabulary(every)) for g in doc.grids]
    found = [t for t in tables if t.header]
    for t in tables:
        if not unit_seen and t.unit_seen:
            unit_seen, unit_line = True, t.unit_line

    kind = (title.kind or K.detect_kind(_stem(req.filename), rules, att.forms)
            or K.detect_kind(req.subject, rules, att.forms))
    if found and (kind is None or (is_report(kind, rules) and title.kind is None)):
        kind = _by_shape(found, rules, att.forms) or kind
    text = title.text
    if kind is not None and is_report(kind, rules):
        if not text and doc.grids and not doc.paragraphs:
            text = " ".join(tables[0].title_lines[:3]) if tables else None
        return _report(req, rules, kind, text, fmt, att, [])
    if kind is None:
        findings = mismatch(att, rules)
        f = rules.finding("kind-unknown")
        if f:
            findings.append(f)
        return DocumentReading(kind="unknown", period=None, state="needs_review", findings=tuple(findings),
                               unit_line=unit_line, format=fmt, title=text, campaign=att.year)

    # A form.
    form = rules.forms[kind]
    raw: list[Finding | None] = list(mismatch(att, rules, form))
    entries = []
    if not found:
        best = max(tables, key=lambda t: t.score, default=None)
        missing = best.missing(form) if best else [*form.required_columns, *form.required_categories]
        where = f" trong {best.grid_name}" if best else ""
        raw.append(rules.finding("header-not-found", form=form, where=where,
                                 missing=", ".join(form.label(k) for k in missing)))
    for t in found:
        assert t.header is not None
        if any(k not in t.header.columns for k in form.required_columns):
            raw.append(rules.finding("header-not-found", form=form, where=f" trong {t.grid_name}",
                                     missing=", ".join(form.label(k) for k in t.missing(form))))
            continue
        missing_cats = [k for k in form.required_categories if k not in t.header.columns]
        if missing_cats:
            raw.append(rules.finding("missing-column", form=form, where=t.grid_name,
                                     missing=", ".join(form.label(k) for k in missing_cats)))
        read_body(t, rules, form)
        raw.extend(t.findings)
        entries.extend(t.entries)
    if found and not entries:
        raw.append(rules.finding("no-entries", form=form, where=f" ({found[0].grid_name})"))
    if req.unit is not None:
        if unit_line and not unit_matches(unit_line, req.unit.name, rules):
            raw.append(rules.finding("unit-mismatch", form=form, found=unit_line, expected=req.unit.name))
    if not unit_line:
        raw.append(rules.finding("unit-missing", form=form))
    findings = _cap([f for f in raw if f is not None], rules)
    return DocumentReading(kind=kind, period=None, state=state_of(kind, findings, None, fmt, report=False),
                           entries=tuple(entries), findings=tuple(findings), unit_line=unit_line,
                           format=fmt, title=text, campaign=att.year)


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


__all__ = ["Request", "Attribution", "attribute", "attribute_by_name", "parse", "state_of", "fail", "unit_matches"]
