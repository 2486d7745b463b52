"""Realistic filled forms, as bytes, laid out like the plan's printed forms.

Used by the demo and by tests across the project. The layout follows the forms at the end of the
2022 plan: the ĐƠN VỊ line, the date line, title rows, a two-row header with PHÂN LOẠI MÔ HÌNH
merged over the category columns, the plan's own typos ("Chính trang", "VHXII", "VHXXH"), the
"Lưu ý" line and the signature block. Every builder's output reads back through
``pipeline.forms.read_document`` as accepted with the given entries.
"""
from __future__ import annotations

import io
import unicodedata
from typing import Any, Sequence

from pipeline.model import CATEGORIES

# Header words exactly as each form prints them in the plan.
REG_CATEGORIES = ["GPMB", "Kinh tế", "Chính trang đô thị", "BVMT", "VHXII", "ANQP", "Lĩnh vực khác"]
M2_CATEGORIES = ["GPMB", "Kinh tế", "Chính trang đô thị", "BVMT", "VHXH", "ANQP"]
KT_CATEGORIES = ["GPMB", "Kinh tế", "Chính trang đô thị", "BVMT", "VHXXH", "ANQP"]
NOTE = "Lưu ý: Đánh số (1) vào ô tương ứng trong mục phân loại mô hình"
VARIANTS = ("plain", "marks", "no-title", "offset", "nfd", "reordered", "single-header")
_MARKS = [1, "x", "X", "✓", "v", "1", 1.0]

Row = tuple[str, str, str]


def _cat_index(code: str, n: int) -> int:
    i = CATEGORIES.index(code)
    if i >= n:
        raise ValueError(f"category {code!r} has no column on this form")
    return i


def _xlsx(build: Any) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    build(ws)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _style_header(ws: Any, top: int, left: int, width: int) -> None:
    from openpyxl.styles import Alignment, Border, Font, Side

    thin = Side(style="thin")
    for r in (top, top + 1):
        for c in range(left, left + width):
            cell = ws.cell(r, c)
            cell.font = Font(bold=True, name="Times New Roman")
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
            cell.border = Border(left=thin, right=thin, top=thin, bottom=thin)


def _table(
    ws: Any,
    *,
    top: int,
    left: int,
    cats: Sequence[str],
    last: str,
    sections: Sequence[tuple[str | None, str | None, Sequence[tuple[Any, ...]]]],
    variant: str = "plain",
) -> int:
    """Write header and rows; return the next free row."""
    order = list(range(len(cats)))
    if variant == "reordered":
        order = order[::-1]
    width = 3 + len(cats) + 1
    L = left
    if variant == "single-header":
        heads = ["TT", "Tên tập thể, cá nhân", "Tên mô hình", *[cats[i] for i in order], last]
        for j, h in enumerate(heads):
            ws.cell(top, L + j, h)
        r = top + 1
    else:
        ws.cell(top, L, "TT")
        ws.cell(top, L + 1, "Tên tập thể, cá nhân")
        ws.cell(top, L + 2, "Tên mô hình")
        ws.cell(top, L + 3, "PHÂN LOẠI MÔ HÌNH")
        ws.cell(top, L + 3 + len(cats), last)
        for j, i in enumerate(order):
            ws.cell(top + 1, L + 3 + j, cats[i])
        for c in (L, L + 1, L + 2, L + 3 + len(cats)):
            ws.merge_cells(start_row=top, start_column=c, end_row=top + 1, end_column=c)
        ws.merge_cells(start_row=top, start_column=L + 3, end_row=top, end_column=L + 2 + len(cats))
        _style_header(ws, top, L, width)
        r = top + 2
    if variant == "nfd":
        for row in ws.iter_rows(min_row=top, max_row=r - 1):
            for cell in row:
                if isinstance(cell.value, str):
                    cell.value = unicodedata.normalize("NFD", cell.value)
    n = 0
    for roman, label, rows in sections:
        if roman:
            ws.cell(r, L, roman)
            ws.cell(r, L + 1, label)
            r += 1
        for k, item in enumerate(rows):
            name, model, cat = item[0], item[1], item[2]
            extra = item[3] if len(item) > 3 else None
            n += 1
            ws.cell(r, L, n)
            ws.cell(r, L + 1, name)
            ws.cell(r, L + 2, model)
            idx = _cat_index(cat, len(cats))
            mark = _MARKS[(n - 1) % len(_MARKS)] if variant == "marks" else 1
            ws.cell(r, L + 3 + order.index(idx), mark)
            if extra:
                ws.cell(r, L + 3 + len(cats), extra)
            r += 1
    return r


def _footer(ws: Any, r: int, left: int, sign_col: int, signer: str, sign_note: str) -> None:
    r += 1
    ws.cell(r, left, NOTE)
    r += 2
    ws.cell(r, sign_col, signer)
    ws.cell(r + 1, sign_col, sign_note)
    ws.cell(r + 5, sign_col, "Nguyễn Thị Hoa")


def registration_xlsx(
    unit_name: str, entries: list[tuple[str, str, str]], *, year: int = 2022, variant: str = "plain"
) -> bytes:
    """BIỂU ĐĂNG KÝ mô hình "Dân vận khéo", as a unit fills it in Excel.

    Variants: plain, marks (1, x, X, ✓, v, "1", 1.0), no-title, offset (table from B10),
    nfd (header in decomposed Unicode), reordered (category columns reversed), single-header.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")

    def build(ws: Any) -> None:
        left, top = (2, 10) if variant == "offset" else (1, 6)
        ws.cell(top - 5, left, f"ĐƠN VỊ: {unit_name}")
        ws.cell(top - 5, left + 7, f"Long Biên, ngày 15 tháng 02 năm {year}")
        if variant != "no-title":
            ws.cell(top - 3, left, "BIỂU ĐĂNG KÝ")
            ws.cell(top - 2, left, f'Mô hình "Dân vận khéo" năm {year}')
            ws.merge_cells(start_row=top - 3, start_column=left, end_row=top - 3, end_column=left + 10)
            ws.merge_cells(start_row=top - 2, start_column=left, end_row=top - 2, end_column=left + 10)
        r = _table(ws, top=top, left=left, cats=REG_CATEGORIES, last="Ghi chú",
                   sections=[(None, None, entries)], variant=variant)
        _footer(ws, r, left, left + 7, "ĐẠI DIỆN TẬP THỂ/CÁ NHÂN ĐĂNG KÝ MÔ HÌNH", "(Ký, ghi rõ họ tên)")
        ws.column_dimensions["B"].width = 30
        ws.column_dimensions["C"].width = 40

    return _xlsx(build)


def summary_xlsx(
    unit_name: str, collective: list[tuple[str, str, str]], individual: list[tuple[str, str, str]],
    *, year: int = 2022,
) -> bytes:
    """Mẫu M2, BIỂU TỔNG HỢP: the unit's registrations, sections I TẬP THỂ / II CÁ NHÂN."""

    def build(ws: Any) -> None:
        ws.cell(1, 1, "Mẫu M2")
        ws.cell(1, 7, f"..... ngày 18 tháng 02 năm {year}")
        ws.cell(2, 1, f"ĐƠN VỊ: {unit_name}")
        ws.cell(4, 1, "BIỂU TỔNG HỢP")
        ws.cell(5, 1, f'Đăng ký mô hình thực hiện phong trào thi đua "Dân vận khéo" năm {year}')
        r = _table(ws, top=7, left=1, cats=M2_CATEGORIES, last="Ghi chú",
                   sections=[("I", "TẬP THỂ", collective), ("II", "CÁ NHÂN", individual)])
        _footer(ws, r, 1, 7, "THỦ TRƯỞNG ĐƠN VỊ", "(Ký, đóng dấu)")

    return _xlsx(build)


def commendation_xlsx(
    unit_name: str,
    collective: list[tuple[str, str, str, str]],
    individual: list[tuple[str, str, str, str]],
    *,
    year: int = 2022,
) -> bytes:
    """DANH SÁCH đề xuất khen thưởng, with KẾT QUẢ THỰC HIỆN."""

    def build(ws: Any) -> None:
        ws.cell(1, 1, f"ĐƠN VỊ: {unit_name}")
        ws.cell(3, 1, "DANH SÁCH")
        ws.cell(4, 1, f'Đề xuất khen thưởng phong trào thi đua "Dân vận khéo" năm {year}')
        r = _table(ws, top=6, left=1, cats=KT_CATEGORIES, last="KẾT QUẢ THỰC HIỆN",
                   sections=[("I", "TẬP THỂ", collective), ("II", "CÁ NHÂN", individual)])
        _footer(ws, r, 1, 7, "THỦ TRƯỞNG ĐƠN VỊ", "(Ký, đóng dấu)")

    return _xlsx(build)


# ---------------------------------------------------------------- Word
def _docx_bytes(doc: Any) -> bytes:
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _docx_form(
    doc: Any, cats: Sequence[str], last: str, sections: Sequence[tuple[str | None, str | None, Sequence[tuple[Any, ...]]]]
) -> None:
    nrows = 2 + sum((1 if roman else 0) + len(rows) for roman, _, rows in sections)
    ncols = 3 + len(cats) + 1
    table = doc.add_table(rows=nrows, cols=ncols)
    table.style = "Table Grid"
    hdr = ["TT", "Tên tập thể, cá nhân", "Tên mô hình"]
    for j, h in enumerate(hdr):
        table.cell(0, j).text = h
        table.cell(0, j).merge(table.cell(1, j))
    group = table.cell(0, 3).merge(table.cell(0, 2 + len(cats)))
    group.text = "PHÂN LOẠI MÔ HÌNH"
    for j, c in enumerate(cats):
        table.cell(1, 3 + j).text = c
    table.cell(0, ncols - 1).text = last
    table.cell(0, ncols - 1).merge(table.cell(1, ncols - 1))
    r, n = 2, 0
    for roman, label, rows in sections:
        if roman:
            table.cell(r, 0).text = roman
            table.cell(r, 1).text = label or ""
            r += 1
        for item in rows:
            n += 1
            table.cell(r, 0).text = str(n)
            table.cell(r, 1).text = item[0]
            table.cell(r, 2).text = item[1]
            table.cell(r, 3 + _cat_index(item[2], len(cats))).text = "1"
            if len(item) > 3 and item[3]:
                table.cell(r, ncols - 1).text = item[3]
            r += 1


def registration_docx(
    unit_name: str, entries: list[tuple[str, str, str]], *, year: int = 2022
) -> bytes:
    """BIỂU ĐĂNG KÝ as a Word table (merged header: gridSpan and vMerge)."""
    from docx import Document

    doc = Document()
    doc.add_paragraph(f"ĐƠN VỊ: {unit_name}")
    doc.add_paragraph(f"Long Biên, ngày 15 tháng 02 năm {year}")
    doc.add_paragraph("BIỂU ĐĂNG KÝ")
    doc.add_paragraph(f'Mô hình "Dân vận khéo" năm {year}')
    _docx_form(doc, REG_CATEGORIES, "Ghi chú", [(None, None, entries)])
    doc.add_paragraph(NOTE)
    doc.add_paragraph("ĐẠI DIỆN TẬP THỂ/CÁ NHÂN ĐĂNG KÝ MÔ HÌNH")
    doc.add_paragraph("(Ký, ghi rõ họ tên)")
    return _docx_bytes(doc)


def summary_docx(
    unit_name: str, collective: list[tuple[str, str, str]], individual: list[tuple[str, str, str]],
    *, year: int = 2022,
) -> bytes:
    from docx import Document

    doc = Document()
    doc.add_paragraph("Mẫu M2")
    doc.add_paragraph(f"ĐƠN VỊ: {unit_name}")
    doc.add_paragraph("BIỂU TỔNG HỢP")
    doc.add_paragraph(f'Đăng ký mô hình thực hiện phong trào thi đua "Dân vận khéo" năm {year}')
    _docx_form(doc, M2_CATEGORIES, "Ghi chú", [("I", "TẬP THỂ", collective), ("II", "CÁ NHÂN", individual)])
    doc.add_paragraph(NOTE)
    doc.add_paragraph("THỦ TRƯỞNG ĐƠN VỊ")
    doc.add_paragraph("(Ký, đóng dấu)")
    return _docx_bytes(doc)


def commendation_docx(
    unit_name: str,
    collective: list[tuple[str, str, str, str]],
    individual: list[tuple[str, str, str, str]],
    *,
    year: int = 2022,
) -> bytes:
    from docx import Document

    doc = Document()
    doc.add_paragraph(f"ĐƠN VỊ: {unit_name}")
    doc.add_paragraph("DANH SÁCH")
    doc.add_paragraph(f'Đề xuất khen thưởng phong trào thi đua "Dân vận khéo" năm {year}')
    _docx_form(doc, KT_CATEGORIES, "KẾT QUẢ THỰC HIỆN",
               [("I", "TẬP THỂ", collective), ("II", "CÁ NHÂN", individual)])
    doc.add_paragraph(NOTE)
    doc.add_paragraph("THỦ TRƯỞNG ĐƠN VỊ")
    return _docx_bytes(doc)


def report_docx(unit_name: str, title: str = "BÁO CÁO Kết quả thực hiện quý I năm 2022") -> bytes:
    """A free-form report with the usual administrative heading."""
    from docx import Document

    doc = Document()
    doc.add_paragraph("LĐLĐ QUẬN LONG BIÊN")
    doc.add_paragraph(unit_name.upper())
    doc.add_paragraph("Số: 05/BC-CĐCS")
    doc.add_paragraph("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM")
    doc.add_paragraph("Độc lập - Tự do - Hạnh phúc")
    doc.add_paragraph("Long Biên, ngày 10 tháng 03 năm 2022")
    words = title.split(" ", 2)
    if len(words) == 3 and words[0].upper() == "BÁO" and words[1].upper() == "CÁO":
        doc.add_paragraph("BÁO CÁO")
        doc.add_paragraph(words[2])
    else:
        doc.add_paragraph(title)
    doc.add_paragraph(
        "Thực hiện Kế hoạch của Ban Thường vụ LĐLĐ quận Long Biên về thực hiện chủ đề công tác năm 2022 "
        "trong CNVCLĐ, Ban Chấp hành công đoàn cơ sở báo cáo kết quả như sau:"
    )
    doc.add_paragraph("I. KẾT QUẢ THỰC HIỆN")
    doc.add_paragraph("1. Công tác tuyên truyền: tổ chức 02 buổi tuyên truyền cho 100% đoàn viên.")
    doc.add_paragraph("2. Phong trào thi đua \"Dân vận khéo\": đăng ký 02 mô hình.")
    doc.add_paragraph("II. PHƯƠNG HƯỚNG NHIỆM VỤ THỜI GIAN TỚI")
    doc.add_paragraph("TM. BAN CHẤP HÀNH")
    doc.add_paragraph("CHỦ TỊCH")
    return _docx_bytes(doc)


__all__ = [
    "registration_xlsx",
    "summary_xlsx",
    "commendation_xlsx",
    "registration_docx",
    "summary_docx",
    "commendation_docx",
    "report_docx",
    "VARIANTS",
]


def without_mark(xlsx: bytes, name: str | None = None) -> bytes:
    """The same workbook with category marks cleared, as a hurried chair sends it.

    ``name``: only the row holding this text; None: every row.
    """
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(xlsx))
    for row in wb.active.iter_rows():
        if name is None or any(c.value == name for c in row):
            for c in row:
                if c.value in (1, "1", "x", "X"):
                    c.value = None
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
