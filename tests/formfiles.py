"""Test files made the way units (and attackers) make them: xls, ods, xlsm, encrypted, broken, bombs.

The plan's forms themselves come from intake_demo.samples; this module adds the other
office formats and the hostile files. Big files are generated at test time, never committed.
"""
from __future__ import annotations

import io
import re
import zipfile
from typing import Any, Sequence

from intake_demo import samples
from pipeline.forms.readers import col_letter

REG_HEADER = ["TT", "Tên tập thể, cá nhân", "Tên mô hình", *samples.REG_CATEGORIES, "Ghi chú"]


def rows_of(
    unit: str, entries: Sequence[tuple[str, str, str]], cats: Sequence[str] = samples.REG_CATEGORIES
) -> list[list[Any]]:
    """The registration form as a plain list of rows (title, two-row header, entries, footer)."""
    from pipeline.model import CATEGORIES

    width = 3 + len(cats) + 1
    rows: list[list[Any]] = [
        [f"ĐƠN VỊ: {unit}"] + [None] * (width - 1),
        [None] * width,
        ["BIỂU ĐĂNG KÝ"] + [None] * (width - 1),
        ['Mô hình "Dân vận khéo" năm 2022'] + [None] * (width - 1),
        ["TT", "Tên tập thể, cá nhân", "Tên mô hình", "PHÂN LOẠI MÔ HÌNH"] + [None] * (len(cats) - 1) + ["Ghi chú"],
        [None, None, None, *cats, None],
    ]
    for i, (name, model, cat) in enumerate(entries, start=1):
        row: list[Any] = [i, name, model] + [None] * (len(cats) + 1)
        row[3 + CATEGORIES.index(cat)] = 1
        rows.append(row)
    rows.append([None] * width)
    rows.append([samples.NOTE] + [None] * (width - 1))
    return rows


def xls_bytes(rows: list[list[Any]], merges: Sequence[tuple[int, int, int, int]] = ()) -> bytes:
    """Legacy .xls (BIFF8) via xlwt. merges: (r1, r2, c1, c2), 0-based inclusive."""
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Sheet1")
    merged_cells = {(r, c) for r1, r2, c1, c2 in merges for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)}
    for r1, r2, c1, c2 in merges:
        ws.write_merge(r1, r2, c1, c2, rows[r1][c1])
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if v is not None and (r, c) not in merged_cells:
                ws.write(r, c, v)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def registration_xls(unit: str, entries: Sequence[tuple[str, str, str]]) -> bytes:
    n = len(samples.REG_CATEGORIES)
    merges = [(4, 5, 0, 0), (4, 5, 1, 1), (4, 5, 2, 2), (4, 4, 3, 2 + n), (4, 5, 3 + n, 3 + n)]
    return xls_bytes(rows_of(unit, entries), merges)


def ods_bytes(rows: list[list[Any]], spans: dict[tuple[int, int], int] | None = None) -> bytes:
    """OpenDocument spreadsheet via odfpy. spans: (row, col) → columns spanned."""
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import CoveredTableCell, Table, TableCell, TableRow
    from odf.text import P

    spans = spans or {}
    doc = OpenDocumentSpreadsheet()
    table = Table(name="Trang tính1")
    for r, row in enumerate(rows):
        tr = TableRow()
        c = 0
        while c < len(row):
            v = row[c]
            span = spans.get((r, c), 1)
            attrs: dict[str, Any] = {}
            if span > 1:
                attrs["numbercolumnsspanned"] = span
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                cell = TableCell(valuetype="float", value=v, **attrs)
                cell.addElement(P(text=str(v)))
            elif v is None:
                cell = TableCell(**attrs)
            else:
                cell = TableCell(valuetype="string", **attrs)
                cell.addElement(P(text=str(v)))
            tr.addElement(cell)
            for _ in range(span - 1):
                tr.addElement(CoveredTableCell())
            c += span
        table.addElement(tr)
    doc.spreadsheet.addElement(table)
    buf = io.BytesIO()
    doc.write(buf)
    return buf.getvalue()


def registration_ods(unit: str, entries: Sequence[tuple[str, str, str]]) -> bytes:
    return ods_bytes(rows_of(unit, entries), {(4, 3): len(samples.REG_CATEGORIES)})


def with_macro(xlsx: bytes) -> bytes:
    """The same workbook saved as .xlsm: a vbaProject.bin part (never run, only noticed)."""
    src = zipfile.ZipFile(io.BytesIO(xlsx))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "[Content_Types].xml":
                data = data.replace(
                    b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                    b"application/vnd.ms-excel.sheet.macroEnabled.main+xml",
                )
            out.writestr(info, data)
        out.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    return buf.getvalue()


def encrypted(xlsx: bytes, password: str = "123456") -> bytes:
    import msoffcrypto
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(xlsx)).encrypt(password, out)
    assert msoffcrypto  # imported for its side effects on older versions
    return out.getvalue()


def corrupt_zip(xlsx: bytes) -> bytes:
    """A download cut short: the zip's central directory is gone."""
    return xlsx[: len(xlsx) // 2]


def zip_bomb(unpacked_mb: int = 60) -> bytes:
    """An .xlsx whose sheet unpacks to tens of MB of nothing at a ratio of ~1000:1."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", _CT)
        z.writestr("xl/workbook.xml", _WB)
        z.writestr("xl/_rels/workbook.xml.rels", _WB_RELS)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/worksheets/sheet1.xml", b"<worksheet>" + b" " * (unpacked_mb * 2**20) + b"</worksheet>")
    return buf.getvalue()


def far_cell_sheet(keep_dimension: bool = True) -> bytes:
    """One cell at A1 and one at XFD1048576: makes calamine try to allocate 512 GiB (calamine#693)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws["A1"] = "ĐƠN VỊ: Công đoàn X"
    ws["XFD1048576"] = 1
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    if keep_dimension:
        return data
    return rewrite_part(data, "xl/worksheets/sheet1.xml", lambda x: re.sub(rb"<dimension[^>]*/>", b"", x))


def rewrite_part(package: bytes, name: str, fn: Any) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(package))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            out.writestr(info.filename, fn(data) if info.filename == name else data)
    return buf.getvalue()


# ---------------------------------------------------------------- a fast, minimal xlsx writer
_CT = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
_WB = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WB_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fast_xlsx(rows: list[list[Any]]) -> bytes:
    """Rows → a valid .xlsx with inline strings; ~20× faster than openpyxl for big sheets."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    ]
    cols = [col_letter(i) for i in range(max((len(r) for r in rows), default=0))]
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, v in enumerate(row):
            if v is None:
                continue
            ref = f"{cols[c]}{r}"
            if isinstance(v, (int, float)):
                cells.append(f'<c r="{ref}"><v>{v}</v></c>')
            else:
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{_esc(str(v))}</t></is></c>')
        parts.append(f'<row r="{r}">{"".join(cells)}</row>')
    parts.append("</sheetData></worksheet>")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", _CT)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WB)
        z.writestr("xl/_rels/workbook.xml.rels", _WB_RELS)
        z.writestr("xl/worksheets/sheet1.xml", "".join(parts))
    return buf.getvalue()


def big_registration(n_rows: int, unit: str = "Công đoàn Công ty Cổ phần May Đức Giang") -> bytes:
    from pipeline.model import CATEGORIES

    cats = CATEGORIES
    entries = [(f"Tổ sản xuất số {i}", f"Mô hình tiết kiệm số {i}", cats[i % 7]) for i in range(1, n_rows + 1)]
    return fast_xlsx(rows_of(unit, entries))


def text_pdf(lines: Sequence[str]) -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (ASCII; Helvetica, no embedded font)."""
    content = "BT /F1 14 Tf 72 760 Td " + " ".join(
        f"({ln.replace('(', '[').replace(')', ']')}) Tj 0 -20 Td" for ln in lines
    ) + " ET"
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{o}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


# -- a blank form we made, filled in as a unit does ----------------------------------------------------


def blank_columns(ws: Any) -> tuple[int, dict[str, int]]:
    """The header row of a blank form and the column of each label printed in it or in the row under it,
    found by its words as a person does."""
    header = next(c.row for row in ws.iter_rows(max_row=20) for c in row if c.value == "Tên tập thể, cá nhân")
    cols: dict[str, int] = {}
    for c in range(1, ws.max_column + 1):
        for label in (ws.cell(header, c).value, ws.cell(header + 1, c).value):
            if isinstance(label, str):
                cols.setdefault(label, c)
    return header, cols


def fill_blank(blank: bytes, rows: Sequence[tuple[Any, ...]], *, unit_name: str | None = None,
               extra: Sequence[str] = ()) -> tuple[bytes, int, dict[str, int]]:
    """A blank form filled as in Excel: (name, model, category label, *values of the ``extra`` columns) per row,
    the unit's name after ĐƠN VỊ when given."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(blank))
    ws = wb.active
    if unit_name is not None:
        unit_row = next(c.row for row in ws.iter_rows(max_row=5) for c in row if c.value == "ĐƠN VỊ:")
        ws.cell(unit_row, 2).value = unit_name
    header, cols = blank_columns(ws)
    for i, (name, model, category, *values) in enumerate(rows):
        r = header + 2 + i
        ws.cell(r, cols["TT"]).value = i + 1
        ws.cell(r, cols["Tên tập thể, cá nhân"]).value = name
        ws.cell(r, cols["Tên mô hình"]).value = model
        ws.cell(r, cols[category]).value = 1
        for label, value in zip(extra, values):
            ws.cell(r, cols[label]).value = value
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue(), header, cols

