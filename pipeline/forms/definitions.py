"""Form definitions: ``rules/forms/<id>.yaml``, one per form or report, checked with pydantic at load.

A definition says everything the reader and the blank-form builder need: the name shown to people, the
phrases that recognise it (and its place in the recognition order), table or report, its columns (printed
label, header words, required, type), its category columns and codes, sections, the checks of
rules/validation.yaml that apply, and the blank form's layout. The id (the file name) is the document kind
recorded and the name a campaign lists the form by.

``report_as`` says what the consolidated report (plan/reports.py) makes of a table form's entries:
``registration`` (a unit's registered models), ``summary`` (a unit's own list of its registrations, Mẫu M2:
when a unit has one it replaces its registrations, else every model would count twice), ``commendation``
(the list proposed for commendation) or ``none``. The shipped forms get it from their id; any other table
form must say it, so that adding a form never silently leaves it out of the report.

Column keys ``name``, ``model``, ``result`` and ``note`` are the entry's own fields; ``tt`` (the row number)
and ``group`` (the merged header over the category columns) are layout; any other key is an extra column
whose value goes to ``Entry.extra``. A key means the same column in every form, so the header words of
rules/synonyms.yaml (``columns``) apply to every form that has that key.

Every mistake is a ConfigError ``<file>: <dotted.key>: <what is wrong>``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, model_validator

from pipeline.errors import ConfigError
from pipeline.schema import Problem, Text, int_in, number_in, read_mapping, validate
from pipeline.textnorm import fold_compact

FOLDER = "forms"
ENTRY_FIELDS = ("name", "model", "result", "note")  # columns that are Entry fields; others go to Entry.extra
LAYOUT_KEYS = ("tt", "group")
SECTIONS = ("collective", "individual")
REPORT_ROLES = ("registration", "summary", "commendation", "none")
# The report role of the shipped forms, by id: their definitions may leave `report_as` out.
_REPORT_AS_BY_ID = {"registration": "registration", "summary": "summary", "commendation": "commendation",
                    "report": "none"}
EMPTY_RULES = ("empty-name", "empty-model", "empty-required")
# The checks of rules/validation.yaml a definition may list under `checks` (the others concern the file).
FORM_CHECKS = (
    "no-category", "multiple-categories", "bad-mark", "empty-name", "empty-model", "empty-required",
    "bad-integer", "bad-date", "header-not-found", "missing-column", "duplicate-entry", "no-entries",
    "unit-mismatch", "unit-missing", "year-mismatch", "period-not-found",
    "legacy-encoding",
)
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


# --------------------------------------------------------------------------- what the code uses


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # as printed on the blank form and named in messages
    required: bool = False
    if_blank: str = "empty-required"  # the rule reported for a required cell left blank
    type: str = "text"  # text | integer | date
    min: int | None = None
    max: int | None = None
    width: float | None = None  # on the blank form, in characters
    printed: bool = True  # on the blank form (a unit that adds the column is still read)

    @property
    def extra(self) -> bool:
        return self.key not in ENTRY_FIELDS and self.key not in LAYOUT_KEYS


@dataclass(frozen=True)
class Category:
    code: str
    label: str
    required: bool = True  # the header must have it (else the warning missing-column)
    printed: bool = True  # on the blank form (a unit that adds the column is still read)
    width: float | None = None


@dataclass(frozen=True)
class Blank:
    order: int
    sheet: str
    file_name: str  # with {year}, without .xlsx
    description: str  # with {year}: the workbook's title property
    title: tuple[str, ...]  # with {year}
    form_number: str | None  # "Mẫu M2"
    note: str | None
    signer: str
    signer_note: str
    rows: int


@dataclass(frozen=True)
class FormDef:
    """One form or report, as ``rules/forms/<id>.yaml`` defines it."""

    id: str
    name: str
    short_name: str
    type: str  # "table" | "report"
    order: int
    phrases: tuple[str, ...]  # compact folded
    shape_columns: tuple[str, ...] = ()
    shape_sections: bool = False
    columns: tuple[Column, ...] = ()
    categories: tuple[Category, ...] = ()
    sections: bool = False  # printed on the blank form
    default_section: str = "collective"
    checks: frozenset[str] = frozenset(FORM_CHECKS)
    blank: Blank | None = None
    source: str = ""
    report_as: str = "none"  # one of REPORT_ROLES: how the consolidated report counts the form's entries

    @property
    def is_report(self) -> bool:
        return self.type == "report"

    @property
    def category_codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.categories)

    @property
    def required_categories(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.categories if c.required)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.columns if c.required)

    @property
    def extra_columns(self) -> tuple[Column, ...]:
        """The form's other columns, in order: their values go to ``Entry.extra``."""
        return tuple(c for c in self.columns if c.extra)

    def column(self, key: str) -> Column | None:
        return next((c for c in self.columns if c.key == key), None)

    def category_labels(self) -> dict[str, str]:
        """code → label, in the form's order (the unprinted ones too)."""
        return {c.code: c.label for c in self.categories}

    def label(self, key: str) -> str:
        """How a column or a category is named to people."""
        col = self.column(key)
        if col is not None:
            return col.label
        return self.category_labels().get(key, key)

    def keys(self) -> tuple[str, ...]:
        """Every header key of the form: its columns and its category codes."""
        return (*(c.key for c in self.columns), *self.category_codes)


# --------------------------------------------------------------------------- the file's schema


def _matches(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{what} không hợp lệ / bad {what}: {value!r} (a-z, 0-9, _)")
        return value
    return AfterValidator(check)


def _not_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if not value:
        raise ValueError("không được để trống / must not be empty")
    return value


def _check_type(value: str) -> str:
    if value not in FORM_CHECKS:
        raise ValueError(f"không có kiểm tra {value!r} / unknown check (one of {', '.join(FORM_CHECKS)})")
    return value


def _year_only(value: str) -> str:
    try:
        value.format(year=2022)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"chỉ dùng được {{year}} / only {{year}} may be written in braces: {value!r}") from exc
    return value


_Str = Annotated[str, Strict()]
_Key = Annotated[_Str, _matches(_KEY, "key")]
_Words = tuple[Text, ...]
_YearText = Annotated[Text, AfterValidator(_year_only)]
_Width = number_in(1, 100)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Column(_Model):
    key: _Key
    label: Text
    synonyms: _Words = ()
    required: Annotated[bool, Strict()] = False
    if_blank: Literal["empty-name", "empty-model", "empty-required"] | None = None
    type: Literal["text", "integer", "date"] = "text"
    min: Annotated[int, Strict()] | None = None
    max: Annotated[int, Strict()] | None = None
    width: _Width | None = None
    printed: Annotated[bool, Strict()] = True

    @model_validator(mode="after")
    def _consistent(self) -> _Column:
        for bound in ("min", "max"):
            if getattr(self, bound) is not None and self.type != "integer":
                raise Problem(bound, "chỉ dùng cho cột type: integer / only for an integer column")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise Problem("max", f"nhỏ hơn min ({self.min}) / less than min")
        if self.if_blank is not None and not self.required:
            raise Problem("if_blank", "chỉ dùng với required: true / only for a required column")
        return self


class _Category(_Model):
    code: _Key
    label: Text
    synonyms: _Words = ()
    required: Annotated[bool, Strict()] = True
    printed: Annotated[bool, Strict()] = True
    width: _Width | None = None


class _Shape(_Model):
    columns: tuple[_Key, ...] = ()
    sections: Annotated[bool, Strict()] = False


class _Recognise(_Model):
    order: int_in(0, 1000)
    phrases: Annotated[_Words, AfterValidator(_not_empty)]
    shape: _Shape | None = None


class _Signature(_Model):
    title: Text
    note: Text


class _BlankForm(_Model):
    order: int_in(0, 1000)
    sheet: Annotated[Text, AfterValidator(lambda v: _sheet_name(v))]
    file_name: _YearText
    description: _YearText
    title: Annotated[tuple[_YearText, ...], AfterValidator(_not_empty)]
    form_number: Text | None = None
    note: Text | None = None
    signature: _Signature
    rows: int_in(1, 500) = 20


def _sheet_name(value: str) -> str:
    # Excel refuses these in a sheet name (and more than 31 characters).
    if len(value) > 31 or _SHEET_BAD.search(value):
        raise ValueError(f"tên trang tính không hợp lệ / bad sheet name {value!r} "
                         "(≤ 31 ký tự, không có [ ] : * ? / \\)")
    return value


class _FormFile(_Model):
    id: Annotated[_Str, _matches(_ID, "id")]
    name: Text
    short_name: Text | None = None
    type: Literal["table", "report"]
    recognise: _Recognise
    columns: tuple[_Column, ...] = ()
    categories: tuple[_Category, ...] = ()
    sections: Annotated[bool, Strict()] = False
    default_section: Literal["collective", "individual"] = "collective"
    checks: tuple[Annotated[_Str, AfterValidator(_check_type)], ...] | None = None
    blank: _BlankForm | None = None
    report_as: Literal["registration", "summary", "commendation", "none"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _FormFile:
        if self.type == "report":
            if self.report_as not in (None, "none"):
                raise Problem("report_as", "một báo cáo không có bảng để tổng hợp / a report has no entries: "
                                           "only none")
            for key in ("columns", "categories", "blank"):
                if getattr(self, key):
                    raise Problem(key, "một báo cáo không có bảng / a report has no table")
            if self.sections or (self.recognise.shape is not None):
                raise Problem("sections" if self.sections else "recognise.shape",
                              "một báo cáo không có bảng / a report has no table")
            return self
        _unique([c.key for c in self.columns], "columns", "key")
        _unique([c.code for c in self.categories], "categories", "code")
        keys = [c.key for c in self.columns]
        missing = [k for k in ("name", "model") if k not in keys]
        if missing:
            raise Problem("columns", f"thiếu cột {', '.join(missing)} / a table form needs the columns name and model")
        clash = [c.code for c in self.categories if c.code in keys]
        if clash:
            i = [c.code for c in self.categories].index(clash[0])
            raise Problem(f"categories[{i}].code", f"{clash[0]!r} đã là khoá một cột / already a column key")
        if bool(self.categories) != ("group" in keys):
            raise Problem("columns", "cột group (tiêu đề chung của các cột phân loại) đi cùng categories / "
                                     "the column group and the categories go together")
        if self.report_as is None and self.id not in _REPORT_AS_BY_ID:
            raise Problem("report_as", "bắt buộc: báo cáo tổng hợp tính các dòng của biểu này là gì "
                                       "(registration | summary | commendation | none) / required for a new table form")
        if self.recognise.shape is not None:
            for i, k in enumerate(self.recognise.shape.columns):
                if k not in keys and k not in (c.code for c in self.categories):
                    raise Problem(f"recognise.shape.columns[{i}]", f"{k!r} không phải cột của biểu / not a column")
        return self


def _unique(values: list[str], where: str, field: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise Problem(f"{where}[{i}].{field}", f"trùng {v!r} / duplicate")
        seen.add(v)


# --------------------------------------------------------------------------- loading


def _form(f: _FormFile, path: Path) -> FormDef:
    blank = None
    if f.blank is not None:
        b = f.blank
        blank = Blank(order=b.order, sheet=b.sheet, file_name=b.file_name, description=b.description,
                      title=b.title, form_number=b.form_number, note=b.note, signer=b.signature.title,
                      signer_note=b.signature.note, rows=b.rows)
    shape = f.recognise.shape
    return FormDef(
        id=f.id, name=f.name, short_name=f.short_name or f.name, type=f.type, order=f.recognise.order,
        phrases=tuple(dict.fromkeys(p for p in (fold_compact(s) for s in f.recognise.phrases) if p)),
        shape_columns=shape.columns if shape else (), shape_sections=bool(shape and shape.sections),
        columns=tuple(Column(key=c.key, label=c.label, required=c.required,
                             if_blank=c.if_blank or _default_if_blank(c.key), type=c.type, min=c.min, max=c.max,
                             width=c.width, printed=c.printed) for c in f.columns),
        categories=tuple(Category(code=c.code, label=c.label, required=c.required, printed=c.printed, width=c.width)
                         for c in f.categories),
        sections=f.sections, default_section=f.default_section,
        checks=frozenset(f.checks) if f.checks is not None else frozenset(FORM_CHECKS),
        blank=blank, source=str(path), report_as=f.report_as or _REPORT_AS_BY_ID.get(f.id, "none"),
    )


def _default_if_blank(key: str) -> str:
    return {"name": "empty-name", "model": "empty-model"}.get(key, "empty-required")


Words = dict[str, tuple[str, list[str]]]  # column key or category code → (its dotted key, [label, synonyms...])


def load_forms(rules_dir: Path) -> tuple[dict[str, FormDef], dict[str, Words]]:
    """The definitions of ``rules_dir/forms/*.yaml`` by id (in file-name order), and each form's own header
    words by form id."""
    folder = Path(rules_dir) / FOLDER
    if not folder.is_dir():
        raise ConfigError(f"{folder}: thư mục định nghĩa biểu mẫu không tồn tại / no form definitions folder")
    forms: dict[str, FormDef] = {}
    words: dict[str, Words] = {}
    for path in sorted(folder.glob("*.y*ml")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        f = validate(_FormFile, read_mapping(path), path)
        if f.id != path.stem:
            raise ConfigError(f"{path}: id: {f.id!r} phải trùng tên tệp ({path.stem!r}) / must match the file name")
        forms[f.id] = _form(f, path)
        own: Words = {c.key: (f"columns[{i}]", [c.label, *c.synonyms]) for i, c in enumerate(f.columns)}
        own.update({c.code: (f"categories[{i}]", [c.label, *c.synonyms]) for i, c in enumerate(f.categories)})
        words[f.id] = own
    if not forms:
        raise ConfigError(f"{folder}: chưa có định nghĩa biểu mẫu nào (<id>.yaml) / no form definitions")
    return forms, words


__all__ = ["FormDef", "Column", "Category", "Blank", "load_forms", "FORM_CHECKS", "ENTRY_FIELDS", "REPORT_ROLES"]
