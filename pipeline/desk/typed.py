"""The rows staff type in from a photo or a scan of a table form, so that it counts like a read form.

The fields are those of the document's form definition (``rules.forms[kind]``): the name and the model,
one of its categories, the section (tập thể / cá nhân: the form's default unless staff choose the other, as
a unit may add section rows to any form), and its required extra columns. What staff typed is checked here
and becomes ``Entry`` values, recorded with the accept (or, for a document accepted earlier without them,
with an action of their own; pipeline.ledger.review).

On the page a row is a group of fields named ``r<i>.name``, ``r<i>.model``, ``r<i>.category``,
``r<i>.section`` and ``r<i>.x.<column key>``; ``rows`` says how many groups the page had. A row left wholly
blank is not a row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping

from pipeline.forms.definitions import SECTIONS, Column, FormDef
from pipeline.model import Entry

MAX_ROWS = 200
MAX_CHARS = 500
DEFAULT_ROWS = 5
SECTION_LABELS = {"collective": "Tập thể", "individual": "Cá nhân"}
_DATE = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$")


@dataclass(frozen=True)
class Layout:
    """The fields of one table form, as the page lays them out."""

    kind: str
    form_name: str
    name_label: str
    model_label: str
    categories: tuple[tuple[str, str], ...]  # (code, label)
    default_section: str  # a row's section unless staff choose the other (any form may have both)
    extras: tuple[Column, ...]  # the required extra columns


@dataclass
class TypedRow:
    """One row as typed (and shown back when something has to be fixed)."""

    number: int
    name: str = ""
    model: str = ""
    category: str = ""
    section: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def blank(self) -> bool:
        return not (self.name or self.model or self.category or any(self.extra.values()))


def layout(form: FormDef | None) -> Layout | None:
    """The fields to type for ``form``; None for a report (free text, no rows) or no form."""
    if form is None or form.is_report:
        return None
    return Layout(kind=form.id, form_name=form.name, name_label=form.label("name"), model_label=form.label("model"),
                  categories=tuple(form.category_labels().items()), default_section=form.default_section,
                  extras=tuple(c for c in form.extra_columns if c.required))


def row_count(values: Mapping[str, str], more: int = 0) -> int:
    try:
        n = int(values.get("rows", "") or DEFAULT_ROWS)
    except ValueError:
        n = DEFAULT_ROWS
    return max(1, min(MAX_ROWS, n + more))


def read_rows(values: Mapping[str, str], lay: Layout, count: int) -> list[TypedRow]:
    """The rows of the page's fields (every group, blank ones too)."""
    def get(key: str) -> str:
        return " ".join((values.get(key) or "").split())[:MAX_CHARS]

    return [TypedRow(number=i, name=get(f"r{i}.name"), model=get(f"r{i}.model"), category=get(f"r{i}.category"),
                     section=get(f"r{i}.section") or lay.default_section,
                     extra={c.key: get(f"r{i}.x.{c.key}") for c in lay.extras})
            for i in range(1, count + 1)]


def blank_rows(lay: Layout, count: int) -> list[TypedRow]:
    return [TypedRow(number=i, section=lay.default_section) for i in range(1, count + 1)]


def check(rows: list[TypedRow], lay: Layout, actor: str) -> tuple[tuple[Entry, ...], list[str]]:
    """The entries of the rows that are not blank, or what is wrong with them (Vietnamese, one per problem)."""
    problems: list[str] = []
    out: list[Entry] = []
    codes = dict(lay.categories)
    for r in (r for r in rows if not r.blank):
        where = f"Dòng {r.number}"
        if not r.name:
            problems.append(f"{where}: thiếu “{lay.name_label}”.")
        if not r.model:
            problems.append(f"{where}: thiếu “{lay.model_label}”.")
        if codes and r.category not in codes:
            problems.append(f"{where}: chưa chọn phân loại mô hình.")
        section = r.section if r.section in SECTIONS else lay.default_section
        for col in lay.extras:
            problem = _extra_problem(col, r.extra.get(col.key, ""))
            if problem:
                problems.append(f"{where}: “{col.label}” {problem}.")
        out.append(Entry(section=section, name=r.name, model=r.model,
                         categories=(r.category,) if r.category in codes else (), row=r.number,
                         location=f"cán bộ {actor} nhập, dòng {r.number}"[:120],
                         extra=tuple((c.key, r.extra[c.key]) for c in lay.extras if r.extra.get(c.key))))
    if not out and not problems:
        problems.append("Chưa nhập dòng nào: hãy gõ ít nhất một dòng (tên tập thể, cá nhân và tên mô hình).")
    return (tuple(out) if not problems else ()), problems


def _extra_problem(col: Column, text: str) -> str | None:
    if not text:
        return "còn trống" if col.required else None
    if col.type == "integer":
        try:
            n = int(text.replace(".", "").replace(" ", ""))
        except ValueError:
            return "phải là một số nguyên"
        if (col.min is not None and n < col.min) or (col.max is not None and n > col.max):
            low, high = ("…" if b is None else b for b in (col.min, col.max))
            return f"phải trong khoảng {low}–{high}"
    if col.type == "date":
        m = _DATE.match(text)
        try:
            if not m:
                raise ValueError(text)
            date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        except ValueError:
            return "phải là ngày dạng ngày/tháng/năm (ví dụ 15/02/2022)"
    return None


def as_fields(rows: list[TypedRow]) -> list[tuple[str, Any]]:
    """The rows as the page's fields again (name, value), to carry them through a confirmation."""
    out: list[tuple[str, Any]] = []
    for r in rows:
        if r.blank:
            continue
        out += [(f"r{r.number}.name", r.name), (f"r{r.number}.model", r.model),
                (f"r{r.number}.category", r.category), (f"r{r.number}.section", r.section)]
        out += [(f"r{r.number}.x.{k}", v) for k, v in r.extra.items()]
    return out
