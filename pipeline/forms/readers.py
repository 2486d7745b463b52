"""Readers: bytes of one format in, grids of cells out. Run inside the isolated worker.

A Grid is what a person sees: a sheet or a Word (or Writer) table, rows numbered as the unit sees them
(Excel row number, Word table row), cells in their printed columns, merged cells resolved the way
the eye reads them (a vertically merged cell belongs to every row it spans; a horizontal span only
to its first column, so a merged title never marks a category). Hidden rows are left out (their
numbers kept in ``Grid.hidden`` when they hold something) and hidden columns read as empty: a person
does not see them, and a unit that re-uses last year's file hides last year's rows.

    read_spreadsheet  xlsx xlsm xls ods xlsb (calamine; hidden rows and formulas: sheetinfo.py)
    read_docx         Word 2007+ (the w:tbl walk)
    read_odt          OpenDocument text, LibreOffice Writer's own format (odfpy)
    read_pdf_text     the text of a PDF's first pages
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from pipeline.forms.sheetinfo import SheetInfo

Cell = Any  # str | int | float | bool | date | None


@dataclass
class Grid:
    name: str  # sheet name, or "Bảng 1"
    rows: Iterator[tuple[int, list[Cell]]]  # (row number as shown, cells from column A / grid col 1)
    locate: Callable[[int, int], str]  # (row number, column index) → "Sheet1!F9" / "Bảng 1, dòng 5"
    vmerges: dict[tuple[int, int], int] = field(default_factory=dict)  # (row, col) top-left → last row
    hidden: list[int] = field(default_factory=list)  # hidden rows holding something, left out (filled as rows are read)
    no_value: set[tuple[int, int]] = field(default_factory=set)  # (row, col) of formulas with no stored result


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

    from pipeline.forms.sheetinfo import sheet_info

    wb = pc.CalamineWorkbook.from_filelike(io.BytesIO(data))
    infos = sheet_info(data)
    grids = []
    for index, meta in enumerate(wb.sheets_metadata):
        if str(getattr(meta, "typ", "")).lower().endswith(("chartsheet", "vba", "macro")):
            continue
        sheet = wb.get_sheet_by_index(index)
        grids.append(_calamine_grid(sheet, infos.get(sheet.name)))
    return Document(grids, [])


def _calamine_grid(sheet: Any, info: SheetInfo | None = None) -> Grid:
    ref = _sheet_ref(sheet.name)
    start = sheet.start or (0, 0)
    r0, c0 = start
    hidden_rows = info.hidden_rows if info is not None else None
    hidden_cols = list(info.hidden_cols.below(c0 + sheet.width)) if info is not None else []
    hidden: list[int] = []
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
            if c0:
                row = pad + row  # iter_rows gives a new list per row: no copy needed otherwise
            if hidden_rows and i in hidden_rows:
                if any(v is not None and v != "" for v in row):
                    hidden.append(i)
                continue
            for c in hidden_cols:
                if c < len(row):
                    row[c] = ""
            yield i, row

    def locate(row: int, col: int) -> str:
        return f"{ref}!{col_letter(col)}{row}"

    no_value: set[tuple[int, int]] = set()
    if info is not None and info.no_value:
        left_out = set(hidden_cols)
        no_value = {(r, c) for r, c in info.no_value if c not in left_out and not (hidden_rows and r in hidden_rows)}
    return Grid(sheet.name, rows(), locate, vmerges, hidden, no_value)


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


# ---------------------------------------------------------------- OpenDocument text (odfpy)
def read_odt(data: bytes) -> Document:
    """Paragraphs outside tables and each top-level table of an .odt, as read_docx gives them for .docx."""
    from odf.namespaces import TABLENS, TEXTNS
    from odf.opendocument import load

    odt = load(io.BytesIO(data))
    paragraphs: list[str] = []
    grids: list[Grid] = []

    def walk(el: Any) -> None:
        for child in el.childNodes:
            if child.nodeType != child.ELEMENT_NODE:
                continue
            if child.qname in ((TEXTNS, "p"), (TEXTNS, "h")):
                text = _odf_text(child)
                if text:
                    paragraphs.append(text)
            elif child.qname == (TABLENS, "table"):
                grids.append(_odt_grid(child, len(grids) + 1))
            else:  # sections, lists, frames: their paragraphs and tables read in order
                walk(child)

    walk(odt.text)
    return Document(grids, paragraphs)


_ODF_SKIP = frozenset({"note", "annotation", "tracked-changes", "bookmark-ref"})  # footnotes, comments: not the line


def _odf_text(el: Any) -> str:
    """A paragraph's text as printed: text:s is spaces, tab and line-break are white space; footnotes and
    comments are left out."""
    from odf.namespaces import TEXTNS

    parts: list[str] = []

    def walk(node: Any) -> None:
        for child in node.childNodes:
            if child.nodeType == child.TEXT_NODE:
                parts.append(child.data)
            elif child.nodeType != child.ELEMENT_NODE or child.qname[1] in _ODF_SKIP:
                continue
            elif child.qname == (TEXTNS, "s"):
                parts.append(" " * _int_attr(child, TEXTNS, "c"))
            elif child.qname in ((TEXTNS, "tab"), (TEXTNS, "line-break")):
                parts.append(" " if child.qname[1] == "tab" else "\n")
            else:
                walk(child)

    walk(el)
    return "".join(parts).strip()


def _odt_rows(table: Any) -> Iterator[Any]:
    """The rows of a table in order, through header rows and row groups, not into tables nested in cells."""
    from odf.namespaces import TABLENS

    for child in table.childNodes:
        if child.nodeType != child.ELEMENT_NODE:
            continue
        if child.qname == (TABLENS, "table-row"):
            yield child
        elif child.qname in ((TABLENS, "table-header-rows"), (TABLENS, "table-rows"), (TABLENS, "table-row-group")):
            yield from _odt_rows(child)


def _odt_cell_text(cell: Any) -> str:
    from odf.namespaces import TEXTNS

    parts: list[str] = []

    def walk(el: Any) -> None:
        for child in el.childNodes:
            if child.nodeType != child.ELEMENT_NODE:
                continue
            if child.qname in ((TEXTNS, "p"), (TEXTNS, "h")):
                parts.append(_odf_text(child))
            else:
                walk(child)

    walk(cell)
    return "\n".join(parts).strip()


def _odt_grid(table: Any, number: int) -> Grid:
    """Like _docx_grid: a cell spanning rows (table:number-rows-spanned) gives its text to the covered cells
    below it; one spanning columns only to its first column."""
    from odf.namespaces import TABLENS

    name = f"Bảng {number}"
    table_rows: list[tuple[int, list[Cell]]] = []
    above: dict[int, tuple[str, int]] = {}  # column → (text, last row) of a cell spanning rows
    for rno, tr in enumerate(_odt_rows(table), start=1):
        cells: list[Cell] = []
        for tc in tr.childNodes:
            if tc.nodeType != tc.ELEMENT_NODE:
                continue
            repeat = _int_attr(tc, TABLENS, "number-columns-repeated")
            for _ in range(min(repeat, 1024)):
                col = len(cells)
                if tc.qname == (TABLENS, "covered-table-cell"):
                    text, last = above.get(col, (None, 0))
                    cells.append(text if rno <= last else None)
                elif tc.qname == (TABLENS, "table-cell"):
                    text = _odt_cell_text(tc)
                    span = _int_attr(tc, TABLENS, "number-rows-spanned")
                    if span > 1:
                        above[col] = (text, rno + span - 1)
                    else:
                        above.pop(col, None)
                    cells.append(text)
        table_rows.append((rno, cells))

    def locate(row: int, col: int) -> str:
        return f"{name}, dòng {row}"

    return Grid(name, iter(table_rows), locate, {})


def _int_attr(el: Any, ns: str, attr: str) -> int:
    try:
        return max(1, int(el.attributes.get((ns, attr), 1)))
    except (TypeError, ValueError):
        return 1


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
