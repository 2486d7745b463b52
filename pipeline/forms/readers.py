"""Readers: bytes of one format in, grids of cells out. Run inside the isolated worker.

A Grid is what a person sees: a sheet or a Word table, rows numbered as the unit sees them
(Excel row number, Word table row), cells in their printed columns, merged cells resolved the way
the eye reads them (a vertically merged cell belongs to every row it spans; a horizontal span only
to its first column, so a merged title never marks a category).
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

Cell = Any  # str | int | float | bool | date | None


@dataclass
class Grid:
    name: str  # sheet name, or "Bảng 1"
    rows: Iterator[tuple[int, list[Cell]]]  # (row number as shown, cells from column A / grid col 1)
    locate: Callable[[int, int], str]  # (row number, column index) → "Sheet1!F9" / "Bảng 1, dòng 5"
    vmerges: dict[tuple[int, int], int] = field(default_factory=dict)  # (row, col) top-left → last row


@dataclass
class Document:
    grids: list[Grid]
    paragraphs: list[str]  # text outside tables, in order (Word, PDF); empty for spreadsheets


def col_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    s = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        s = chr(65 + rem) + s
    return s


def _sheet_ref(name: str) -> str:
    if name.replace("_", "").isalnum():
        return name
    return "'" + name.replace("'", "''") + "'"


# ---------------------------------------------------------------- spreadsheets (calamine)
def read_spreadsheet(data: bytes) -> Document:
    import python_calamine as pc

    wb = pc.CalamineWorkbook.from_filelike(io.BytesIO(data))
    grids = []
    for index, meta in enumerate(wb.sheets_metadata):
        if str(getattr(meta, "typ", "")).lower().endswith(("chartsheet", "vba", "macro")):
            continue
        sheet = wb.get_sheet_by_index(index)
        grids.append(_calamine_grid(sheet))
    return Document(grids, [])


def _calamine_grid(sheet: Any) -> Grid:
    ref = _sheet_ref(sheet.name)
    start = sheet.start or (0, 0)
    r0, c0 = start
    vmerges: dict[tuple[int, int], int] = {}
    try:
        merged = sheet.merged_cell_ranges or []
    except Exception:  # noqa: BLE001 - xls/ods may not offer merges; reading goes on without them
        merged = []
    for (ra, ca), (rb, _cb) in merged:
        if rb > ra:
            vmerges[(ra + 1, ca)] = rb + 1

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        pad = [None] * c0
        for i, row in enumerate(sheet.iter_rows(), start=r0 + 1):
            yield i, (pad + row if c0 else row)  # iter_rows gives a new list per row: no copy needed

    def locate(row: int, col: int) -> str:
        return f"{ref}!{col_letter(col)}{row}"

    return Grid(sheet.name, rows(), locate, vmerges)


# ---------------------------------------------------------------- Word (walk w:tr / w:tc)
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _text(el: Any) -> str:
    parts: list[str] = []
    for node in el.iter(W + "t", W + "tab", W + "br", W + "p"):
        tag = node.tag
        if tag == W + "t":
            parts.append(node.text or "")
        elif tag == W + "tab":
            parts.append(" ")
        elif tag == W + "br":
            parts.append("\n")
        elif tag == W + "p" and parts:
            parts.append("\n")
    return "".join(parts).strip()


def _val(el: Any, path: str) -> str | None:
    found = el.find(path)
    if found is None:
        return None
    return found.get(W + "val", "")


def read_docx(data: bytes) -> Document:
    from lxml import etree

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        xml = zf.read("word/document.xml")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(xml, parser)
    body = root.find(W + "body")
    paragraphs: list[str] = []
    grids: list[Grid] = []
    if body is None:
        return Document(grids, paragraphs)
    for child in body.iter(W + "p", W + "tbl"):
        if child.tag == W + "p":
            # Paragraphs inside tables are read with their table.
            if any(a.tag == W + "tbl" for a in child.iterancestors()):
                continue
            text = _text(child)
            if text:
                paragraphs.append(text)
        elif not any(a.tag == W + "tbl" for a in child.iterancestors()):
            grids.append(_docx_grid(child, len(grids) + 1))
    return Document(grids, paragraphs)


def _docx_grid(tbl: Any, number: int) -> Grid:
    name = f"Bảng {number}"
    table_rows: list[tuple[int, list[Cell]]] = []
    above: dict[int, str] = {}  # grid column → text of the vMerge cell that started there
    vmerges: dict[tuple[int, int], int] = {}
    starts: dict[int, int] = {}  # grid column → row number where the open vMerge started
    for rno, tr in enumerate(tbl.findall(W + "tr"), start=1):
        cells: list[Cell] = []
        before = _val(tr, f"{W}trPr/{W}gridBefore")
        col = int(before) if before and before.isdigit() else 0
        cells.extend([None] * col)
        tcs = [el for el in tr if el.tag == W + "tc"]
        for sdt in tr.findall(f"{W}sdt/{W}sdtContent"):
            tcs.extend(el for el in sdt if el.tag == W + "tc")
        for tc in tcs:
            span_v = _val(tc, f"{W}tcPr/{W}gridSpan")
            span = int(span_v) if span_v and span_v.isdigit() else 1
            vm = _val(tc, f"{W}tcPr/{W}vMerge")
            if vm is not None and vm != "restart":
                text: str | None = above.get(col, "")
                if col in starts:
                    vmerges[(starts[col], col)] = rno
            else:
                text = _text(tc)
                if vm == "restart":
                    above[col] = text
                    starts[col] = rno
                else:
                    above.pop(col, None)
                    starts.pop(col, None)
            cells.append(text)
            cells.extend([None] * (span - 1))
            col += span
        table_rows.append((rno, cells))

    def locate(row: int, col: int) -> str:
        return f"{name}, dòng {row}"

    # vMerge continuation cells already carry the text; nothing more to fill.
    return Grid(name, iter(table_rows), locate, {})


# ---------------------------------------------------------------- PDF (text only)
def read_pdf_text(data: bytes, max_pages: int = 3) -> list[str]:
    try:
        import pypdf
    except ImportError:
        return []
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        raise PermissionError("encrypted pdf")
    lines: list[str] = []
    for page in reader.pages[:max_pages]:
        text = page.extract_text() or ""
        lines.extend(line.strip() for line in text.splitlines() if line.strip())
    return lines
