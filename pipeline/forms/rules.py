"""Validation rules, form definitions and form vocabulary, loaded from ``rules/`` as data.

Pure: ``load_rules(dir)`` reads the YAML once into a frozen, picklable ``Rules`` (it goes with every document
to the reading process); the form readers ask ``rules.finding(type, ...)`` for a Finding, so codes,
severities and Vietnamese messages are all data, and read each form by its definition
(``rules.forms[id]``, from ``rules/forms/<id>.yaml``, see definitions.py). An unknown rule type or key, a bad
severity or a placeholder the check does not supply fails at load with ConfigError naming the file and the
rule.

Lookups for what people see: ``kind_label(kind)``, ``forms[id].category_labels()``, ``forms[id].columns``
(``extra_columns``: those kept in ``Entry.extra``), ``blank_forms(ids)``.
"""
from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.forms.definitions import FORM_CHECKS, FormDef, Words, load_forms
from pipeline.model import KIND_LABELS, Finding
from pipeline.textnorm import fold, fold_compact

SEVERITIES = ("error", "warning")
_FORM_CHECKS = frozenset(FORM_CHECKS)

# type → placeholders the check supplies. The message may use any subset.
_COMMON = {"location", "row", "column", "where", "detail"}
RULE_TYPES: dict[str, set[str]] = {
    "no-category": {"name", "model"},
    "multiple-categories": {"name", "model", "found"},
    "empty-name": {"model"},
    "empty-model": {"name"},
    "empty-required": {"name", "model"},
    "bad-mark": {"value", "name", "model"},
    "bad-integer": {"value", "name", "model", "min", "max", "expected"},
    "bad-date": {"value", "name", "model"},
    "header-not-found": {"missing"},
    "missing-column": {"missing"},
    "duplicate-entry": {"first_row", "name", "model"},
    "no-entries": set(),
    "unit-mismatch": {"found", "expected"},
    "unit-missing": set(),
    "year-mismatch": {"found", "expected"},
    "period-not-found": set(),
    "kind-unknown": set(),
    "needs-review": set(),
    "unsupported-format": set(),
    "file-corrupt": set(),
    "file-encrypted": set(),
    "file-too-large": set(),
    "file-bomb": set(),
    "file-timeout": set(),
    "too-many-findings": {"count", "code"},
    "hidden-rows": {"count"},
    "formula-no-value": set(),
    "formula-no-value-other": {"count"},
    "legacy-encoding": {"encoding", "font"},
}
_RULE_KEYS = {"type", "code", "severity", "message", "enabled"}
_LIMIT_DEFAULTS: dict[str, int] = {
    "max_file_bytes": 25 * 2**20,
    "max_uncompressed_bytes": 300 * 2**20,
    "max_part_bytes": 200 * 2**20,
    "max_ratio": 150,
    "ratio_min_bytes": 10 * 2**20,
    "max_shared_strings_bytes": 64 * 2**20,
    "max_zip_members": 5000,
    "max_sheet_cells": 20_000_000,
    "max_rows": 200_000,
    "worker_memory_bytes": 2**30,
    "worker_timeout_seconds": 20,
    "worker_recycle_rss_bytes": 256 * 2**20,
    "max_findings_per_code": 30,
}


@dataclass(frozen=True)
class Rule:
    type: str
    code: str
    severity: str
    message: str
    enabled: bool = True


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class Vocabulary:
    """The header words of a set of forms (those a document may be): what the layout looks for."""

    key: str  # what match_column caches by
    columns: dict[str, frozenset[str]]  # column key → compact folded words
    needed: tuple[frozenset[str], ...]  # each form's required columns: a row holding all of one is a header
    identity: frozenset[str]  # the columns some form requires (name, model): never in a second header row
    scored: frozenset[str]  # required columns and categories: how header-like a row is


_CELL_REF = re.compile(r"^(?:'((?:[^']|'')+)'|([^!]+))!([A-Z]{1,3}[0-9]+)$")


def cell_label(location: str | None) -> str:
    """A cell as people name it: "Sheet1!D9" → "D9, trang Sheet1" ("'Biểu đăng ký'!I9" → "I9, trang Biểu đăng
    ký"); a Word table's "Bảng 1, dòng 5" stays. The findings keep the reference itself (export, desk links)."""
    if not location:
        return ""
    m = _CELL_REF.match(location)
    if not m:
        return location
    sheet = m[1].replace("''", "'") if m[1] is not None else m[2]
    return f"{m[3]}, trang {sheet}"


@dataclass(frozen=True)
class Rules:
    """Everything the form readers need from ``rules/``; picklable, so it can go to the worker."""

    rules: dict[str, Rule]
    columns: dict[str, frozenset[str]]  # column key → compact folded header words (all forms)
    marks: frozenset[str]
    sections: dict[str, frozenset[str]]
    totals: tuple[str, ...]
    stops: tuple[str, ...]
    kinds: tuple[tuple[str, tuple[str, ...]], ...]  # (form id, compact folded phrases), in recognition order
    unit_labels: tuple[str, ...]
    limits: dict[str, int]
    digest: str = field(default="")
    unit_abbreviations: tuple[tuple[str, str], ...] = ()  # (folded abbreviation, folded expansion)
    forms: dict[str, FormDef] = field(default_factory=dict)  # id → definition (rules/forms/<id>.yaml)

    def finding(
        self,
        type_: str,
        *,
        location: str | None = None,
        row: int | None = None,
        column: str | None = None,
        form: FormDef | None = None,
        **params: Any,
    ) -> Finding | None:
        """The Finding for a failed check, or None when staff disabled the rule (or, with ``form``, left the
        check out of the form's ``checks``)."""
        rule = self.rules.get(type_)
        if rule is None or not rule.enabled:
            return None
        if form is not None and type_ in _FORM_CHECKS and type_ not in form.checks:
            return None
        values = _Blank(params)
        values.update(location=cell_label(location), row=row if row is not None else "", column=column or "")
        return Finding(
            code=rule.code,
            severity=rule.severity,
            message=rule.message.format_map(values),
            location=location,
            row=row,
            column=column,
        )

    # -- lookups ------------------------------------------------------------------------------------------

    def kind_label(self, kind: str | None) -> str:
        """The name people see for a document kind (a form id, or "unknown")."""
        form = self.forms.get(kind or "")
        if form is not None:
            return form.name
        return KIND_LABELS.get(kind or "unknown", kind or "")

    def category_labels(self, ids: tuple[str, ...] | None = None) -> dict[str, str]:
        """code → label of the categories of the forms ``ids`` (all when None), in the forms' order: the
        columns of a campaign's consolidated counts."""
        out: dict[str, str] = {}
        for form in (self.forms[i] for i in (ids if ids is not None else tuple(self.forms)) if i in self.forms):
            for cat in form.categories:
                out.setdefault(cat.code, cat.label)
        return out

    def recognition(self, ids: tuple[str, ...] | frozenset[str] | None = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(form id, phrases) of the forms ``ids`` (all when None), in recognition order."""
        if ids is None:
            return self.kinds
        return tuple((k, p) for k, p in self.kinds if k in ids)

    def blank_forms(self, ids: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """The forms of ``ids`` (all when None) that have a blank form, in their blank order."""
        chosen = [f for f in self.forms.values() if f.blank is not None and (ids is None or f.id in ids)]
        return tuple(f.id for f in sorted(chosen, key=lambda f: (f.blank.order, f.id)))  # type: ignore[union-attr]

    def vocabulary(self, ids: tuple[str, ...]) -> Vocabulary:
        """The header words of the table forms among ``ids``."""
        tables = [self.forms[i] for i in ids if i in self.forms and not self.forms[i].is_report]
        keys = sorted({k for f in tables for k in f.keys()})
        needed = tuple(dict.fromkeys(frozenset(f.required_columns) for f in tables if f.required_columns))
        identity = frozenset(k for n in needed for k in n)
        scored = identity | {c for f in tables for c in f.category_codes}
        return Vocabulary(key=f"{self.digest}:{','.join(keys)}", columns={k: self.columns[k] for k in keys},
                          needed=needed, identity=identity, scored=scored)


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc


def _strings(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ConfigError(f"{path}: {key}: expected a list of strings")
    return [str(v) for v in value]


def _load_validation(path: Path) -> dict[str, Rule]:
    doc = _read_yaml(path)
    if not isinstance(doc, dict) or set(doc) != {"rules"} or not isinstance(doc["rules"], list):
        raise ConfigError(f"{path}: expected a mapping with one key 'rules' holding a list")
    rules: dict[str, Rule] = {}
    for i, item in enumerate(doc["rules"]):
        where = f"{path}: rules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping")
        type_ = item.get("type")
        where = f"{where} (type {type_!r})"
        if type_ not in RULE_TYPES:
            raise ConfigError(f"{where}: unknown type; known types: {', '.join(sorted(RULE_TYPES))}")
        unknown = set(item) - _RULE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("code", "severity", "message"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ConfigError(f"{where}.{key}: required text")
        if item["severity"] not in SEVERITIES:
            raise ConfigError(f"{where}.severity: must be one of {', '.join(SEVERITIES)}")
        allowed = RULE_TYPES[type_] | _COMMON
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(item["message"]) if f}
        except ValueError as exc:
            raise ConfigError(f"{where}.message: bad placeholder syntax: {exc}") from exc
        bad = names - allowed
        if bad:
            raise ConfigError(f"{where}.message: unknown placeholder(s) {', '.join(sorted(bad))}")
        if type_ in rules:
            raise ConfigError(f"{where}: type defined twice")
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled: must be true or false")
        rules[type_] = Rule(type_, item["code"], item["severity"], item["message"], enabled)
    missing = set(RULE_TYPES) - set(rules)
    if missing:
        raise ConfigError(f"{path}: missing rule(s) for type(s) {', '.join(sorted(missing))}")
    return rules


def load_rules(rules_dir: Path) -> Rules:
    """Read validation.yaml, synonyms.yaml, reading.yaml and the form definitions forms/*.yaml."""
    rules_dir = Path(rules_dir)
    vpath, spath, rpath = (rules_dir / n for n in ("validation.yaml", "synonyms.yaml", "reading.yaml"))
    rules = _load_validation(vpath)
    forms, own_words = load_forms(rules_dir)
    columns = _vocabulary(spath, forms, own_words)
    syn = _read_yaml(spath)
    marks = frozenset(fold(s) for s in _strings(spath, "marks", syn.get("marks", [])))
    secs = syn.get("sections", {})
    if not isinstance(secs, dict) or set(secs) - {"collective", "individual"}:
        raise ConfigError(f"{spath}: sections: expected keys collective and individual")
    sections = {k: frozenset(fold_compact(s) for s in _strings(spath, f"sections.{k}", v)) for k, v in secs.items()}
    totals = tuple(fold_compact(s) for s in _strings(spath, "totals", syn.get("totals", [])))
    stops = tuple(fold_compact(s) for s in _strings(spath, "stops", syn.get("stops", [])))

    reading = _read_yaml(rpath)
    if not isinstance(reading, dict):
        raise ConfigError(f"{rpath}: expected a mapping")
    unknown = set(reading) - {"unit_labels", "unit_abbreviations", "limits"}
    if unknown:
        raise ConfigError(f"{rpath}: unknown key(s) {', '.join(sorted(unknown))}")
    unit_labels = tuple(fold(s) for s in _strings(rpath, "unit_labels", reading.get("unit_labels", ["đơn vị"])))
    abbr = reading.get("unit_abbreviations", {}) or {}
    if not isinstance(abbr, dict) or not all(isinstance(v, str) for v in abbr.values()):
        raise ConfigError(f"{rpath}: unit_abbreviations: expected a mapping of text to text")
    unit_abbreviations = tuple(sorted(((fold(str(k)), fold(v)) for k, v in abbr.items()),
                                      key=lambda kv: -len(kv[0])))
    limits = dict(_LIMIT_DEFAULTS)
    lim = reading.get("limits", {}) or {}
    if not isinstance(lim, dict):
        raise ConfigError(f"{rpath}: limits: expected a mapping")
    for k, v in lim.items():
        if k not in _LIMIT_DEFAULTS:
            raise ConfigError(f"{rpath}: limits.{k}: unknown limit")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{rpath}: limits.{k}: expected a positive number")
        limits[k] = int(v)

    h = hashlib.sha256()
    for p in (vpath, spath, rpath, *(Path(f.source) for f in forms.values())):
        h.update(p.read_bytes())
    return Rules(
        rules=rules,
        columns=columns,
        marks=marks,
        sections=sections,
        totals=totals,
        stops=stops,
        kinds=tuple((f.id, f.phrases) for f in sorted(forms.values(), key=lambda f: (f.order, f.id))),
        unit_labels=unit_labels,
        limits=limits,
        unit_abbreviations=unit_abbreviations,
        digest=h.hexdigest()[:16],
        forms=forms,
    )


def _vocabulary(spath: Path, forms: dict[str, FormDef], own: dict[str, Words]) -> dict[str, frozenset[str]]:
    """Column key → folded header words: synonyms.yaml's shared words, each form's label and own words.
    A word may name one column only, else a header cell would depend on the order of the files."""
    syn = _read_yaml(spath)
    if not isinstance(syn, dict):
        raise ConfigError(f"{spath}: expected a mapping")
    unknown = set(syn) - {"columns", "marks", "sections", "totals", "stops"}
    if unknown:
        raise ConfigError(f"{spath}: unknown key(s) {', '.join(sorted(unknown))}")
    cols = syn.get("columns")
    if not isinstance(cols, dict):
        raise ConfigError(f"{spath}: columns: expected a mapping")
    known = {k for f in forms.values() for k in f.keys()}
    bad = set(cols) - known
    if bad:
        raise ConfigError(f"{spath}: columns: unknown column key(s) {', '.join(sorted(bad))} (not a column or category "
                          f"of any form in rules/forms/)")
    words: dict[str, set[str]] = {k: set() for k in sorted(known)}
    owner: dict[str, tuple[str, str]] = {}  # folded word → (key, where it was written)

    def add(key: str, texts: list[str], where: str) -> None:
        for text in texts:
            w = fold_compact(text)
            if not w:
                continue
            first = owner.setdefault(w, (key, where))
            if first[0] != key:
                raise ConfigError(f"{where}: «{text}» đã là tên của cột {first[0]} ({first[1]}) / already names "
                                  f"another column")
            words[key].add(w)

    for key, texts in cols.items():
        add(key, _strings(spath, f"columns.{key}", texts), f"{spath}: columns.{key}")
    for form_id, by_key in own.items():
        for key, (dotted, texts) in by_key.items():
            add(key, texts, f"{forms[form_id].source}: {dotted}")
    return {k: frozenset(v) for k, v in words.items()}


_DEFAULT: Rules | None = None


def default_rules() -> Rules:
    """The rules shipped in the repository's ``rules/`` directory, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_rules(Path(__file__).resolve().parents[2] / "rules")
    return _DEFAULT
