"""Validation rules and form vocabulary, loaded from ``rules/*.yaml`` as data.

Pure: ``load_rules(dir)`` reads the YAML once into a frozen, picklable ``Rules``; the form readers
ask ``rules.finding(type, ...)`` for a Finding, so codes, severities and Vietnamese messages are
all data. An unknown rule type or key, a bad severity or a placeholder the check does not supply
fails at load with ConfigError naming the file and the rule.
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.model import CATEGORIES, Finding
from pipeline.textnorm import fold, fold_compact

SEVERITIES = ("error", "warning")

# type → placeholders the check supplies. The message may use any subset.
_COMMON = {"location", "row", "column", "where", "detail"}
RULE_TYPES: dict[str, set[str]] = {
    "no-category": {"name", "model"},
    "multiple-categories": {"name", "model", "found"},
    "empty-name": {"model"},
    "empty-model": {"name"},
    "bad-mark": {"value", "name", "model"},
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
}
_RULE_KEYS = {"type", "code", "severity", "message", "enabled"}
_COLUMN_KEYS = {"tt", "name", "model", "group", "note", "result", *CATEGORIES}
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
class Rules:
    """Everything the form readers need from ``rules/``; picklable, so it can go to the worker."""

    rules: dict[str, Rule]
    columns: dict[str, frozenset[str]]  # column key → compact folded synonyms
    marks: frozenset[str]
    sections: dict[str, frozenset[str]]
    totals: tuple[str, ...]
    stops: tuple[str, ...]
    kinds: tuple[tuple[str, tuple[str, ...]], ...]  # (kind, compact folded phrases), in order
    unit_labels: tuple[str, ...]
    limits: dict[str, int]
    digest: str = field(default="")
    unit_abbreviations: tuple[tuple[str, str], ...] = ()  # (folded abbreviation, folded expansion)

    def finding(
        self,
        type_: str,
        *,
        location: str | None = None,
        row: int | None = None,
        column: str | None = None,
        **params: Any,
    ) -> Finding | None:
        """The Finding for a failed check, or None when staff disabled the rule."""
        rule = self.rules.get(type_)
        if rule is None or not rule.enabled:
            return None
        values = _Blank(params)
        values.update(location=location or "", row=row if row is not None else "", column=column or "")
        return Finding(
            code=rule.code,
            severity=rule.severity,
            message=rule.message.format_map(values),
            location=location,
            row=row,
            column=column,
        )


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
    """Read validation.yaml, synonyms.yaml and forms.yaml from ``rules_dir``."""
    rules_dir = Path(rules_dir)
    vpath, spath, fpath = (rules_dir / n for n in ("validation.yaml", "synonyms.yaml", "forms.yaml"))
    rules = _load_validation(vpath)

    syn = _read_yaml(spath)
    if not isinstance(syn, dict):
        raise ConfigError(f"{spath}: expected a mapping")
    unknown = set(syn) - {"columns", "marks", "sections", "totals", "stops"}
    if unknown:
        raise ConfigError(f"{spath}: unknown key(s) {', '.join(sorted(unknown))}")
    cols = syn.get("columns")
    if not isinstance(cols, dict):
        raise ConfigError(f"{spath}: columns: expected a mapping")
    bad = set(cols) - _COLUMN_KEYS
    if bad:
        raise ConfigError(f"{spath}: columns: unknown column key(s) {', '.join(sorted(bad))}")
    missing_cols = {"name", "model", *CATEGORIES} - set(cols)
    if missing_cols:
        raise ConfigError(f"{spath}: columns: missing {', '.join(sorted(missing_cols))}")
    columns = {
        k: frozenset(fold_compact(s) for s in _strings(spath, f"columns.{k}", v)) for k, v in cols.items()
    }
    marks = frozenset(fold(s) for s in _strings(spath, "marks", syn.get("marks", [])))
    secs = syn.get("sections", {})
    if not isinstance(secs, dict) or set(secs) - {"collective", "individual"}:
        raise ConfigError(f"{spath}: sections: expected keys collective and individual")
    sections = {k: frozenset(fold_compact(s) for s in _strings(spath, f"sections.{k}", v)) for k, v in secs.items()}
    totals = tuple(fold_compact(s) for s in _strings(spath, "totals", syn.get("totals", [])))
    stops = tuple(fold_compact(s) for s in _strings(spath, "stops", syn.get("stops", [])))

    forms = _read_yaml(fpath)
    if not isinstance(forms, dict):
        raise ConfigError(f"{fpath}: expected a mapping")
    unknown = set(forms) - {"kinds", "unit_labels", "unit_abbreviations", "limits"}
    if unknown:
        raise ConfigError(f"{fpath}: unknown key(s) {', '.join(sorted(unknown))}")
    kinds_raw = forms.get("kinds", {})
    if not isinstance(kinds_raw, dict):
        raise ConfigError(f"{fpath}: kinds: expected a mapping")
    bad = set(kinds_raw) - {"registration", "summary", "commendation", "report"}
    if bad:
        raise ConfigError(f"{fpath}: kinds: unknown kind(s) {', '.join(sorted(bad))}")
    kinds = tuple(
        (k, tuple(fold_compact(s) for s in _strings(fpath, f"kinds.{k}", v))) for k, v in kinds_raw.items()
    )
    unit_labels = tuple(fold(s) for s in _strings(fpath, "unit_labels", forms.get("unit_labels", ["đơn vị"])))
    abbr = forms.get("unit_abbreviations", {}) or {}
    if not isinstance(abbr, dict) or not all(isinstance(v, str) for v in abbr.values()):
        raise ConfigError(f"{fpath}: unit_abbreviations: expected a mapping of text to text")
    unit_abbreviations = tuple(sorted(((fold(str(k)), fold(v)) for k, v in abbr.items()),
                                      key=lambda kv: -len(kv[0])))
    limits = dict(_LIMIT_DEFAULTS)
    lim = forms.get("limits", {}) or {}
    if not isinstance(lim, dict):
        raise ConfigError(f"{fpath}: limits: expected a mapping")
    for k, v in lim.items():
        if k not in _LIMIT_DEFAULTS:
            raise ConfigError(f"{fpath}: limits.{k}: unknown limit")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{fpath}: limits.{k}: expected a positive number")
        limits[k] = int(v)

    h = hashlib.sha256()
    for p in (vpath, spath, fpath):
        h.update(p.read_bytes())
    return Rules(
        rules=rules,
        columns=columns,
        marks=marks,
        sections=sections,
        totals=totals,
        stops=stops,
        kinds=kinds,
        unit_labels=unit_labels,
        limits=limits,
        unit_abbreviations=unit_abbreviations,
        digest=h.hexdigest()[:16],
    )


_DEFAULT: Rules | None = None


def default_rules() -> Rules:
    """The rules shipped in the repository's ``rules/`` directory, loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_rules(Path(__file__).resolve().parents[2] / "rules")
    return _DEFAULT
