"""Office files made by office software, at test time: LibreOffice headless saves the project's sample forms
(intake_demo.samples) as Word 97-2003 .doc, .odt, .rtf, .ods, .xls and .xlsx, so the flags and structures the
readers meet (hidden rows, covered cells, stored formula results) are written by a real office suite, not by
this project. Also the files some tools write: hidden rows set with openpyxl, formulas without a stored result,
zip members that fail their CRC check.

LibreOffice is a test requirement (scripts/install-system-deps.sh installs it): a test that needs it fails,
with the reason, where it is missing; none is skipped.
"""
from __future__ import annotations

import atexit
import hashlib
import io
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from intake_demo import samples

# LibreOffice's export filters, by the extension of the file they write.
FILTERS = {"doc": "doc:MS Word 97", "odt": "odt:writer8", "rtf": "rtf:Rich Text Format",
           "docx": "docx:MS Word 2007 XML", "xls": "xls:MS Excel 97", "ods": "ods:calc8",
           "xlsx": "xlsx:Calc MS Excel 2007 XML"}
_PROFILE = tempfile.mkdtemp(prefix="intake-test-lo-")  # this test process's own LibreOffice profile
atexit.register(shutil.rmtree, _PROFILE, True)
_CACHE: dict[tuple[str, str], bytes] = {}


def soffice() -> str:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    if exe is None:
        pytest.fail("LibreOffice (soffice) is not installed: these tests make their files with it and the intake "
                    "reads .doc/.rtf through it. Install it with `sudo bash scripts/install-system-deps.sh` "
                    "(Debian: libreoffice-writer-nogui, libreoffice-calc-nogui).", pytrace=False)
    return exe


def convert(data: bytes, source_ext: str, target_ext: str) -> bytes:
    """``data`` (a .source_ext file) as LibreOffice saves it in ``target_ext``."""
    key = (hashlib.sha256(data).hexdigest() + source_ext, target_ext)
    if key in _CACHE:
        return _CACHE[key]
    exe = soffice()
    with tempfile.TemporaryDirectory(prefix="intake-test-convert-") as work:
        src = Path(work) / f"form.{source_ext}"
        src.write_bytes(data)
        out = Path(work) / "out"
        run = subprocess.run([exe, f"-env:UserInstallation={Path(_PROFILE).as_uri()}", "--headless", "--norestore",
                              "--convert-to", FILTERS[target_ext], "--outdir", str(out), str(src)],
                             capture_output=True, timeout=120)
        result = out / f"form.{target_ext}"
        assert result.is_file(), f"LibreOffice did not write .{target_ext}: {run.stdout!r} {run.stderr!r}"
        _CACHE[key] = result.read_bytes()
    return _CACHE[key]


# ---------------------------------------------------------------- spreadsheets with hidden rows and columns
TOP = 8  # samples.registration_xlsx: header on rows 6-7, entries from row 8; columns A TT, B name, C model,
# D-J the categories (GPMB ... Lĩnh vực khác), K Ghi chú.


def _edit(xlsx: bytes, fn: Callable[[Any], None]) -> bytes:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(xlsx))
    fn(wb.active)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def with_hidden_rows(unit: str, last_year: Sequence[tuple[str, str, str]],
                     this_year: Sequence[tuple[str, str, str]]) -> bytes:
    """Last year's file re-used: last year's rows first, hidden (openpyxl: row_dimensions[r].hidden), this
    year's below them."""
    data = samples.registration_xlsx(unit, [*last_year, *this_year])

    def hide(ws: Any) -> None:
        for r in range(TOP, TOP + len(last_year)):
            ws.row_dimensions[r].hidden = True

    return _edit(data, hide)


def with_hidden_column(unit: str, entries: Sequence[tuple[str, str, str]], stray_row: int) -> bytes:
    """Column J (Lĩnh vực khác) hidden, holding a stray mark on entry ``stray_row`` (0-based) that a person
    does not see."""
    data = samples.registration_xlsx(unit, list(entries))

    def hide(ws: Any) -> None:
        ws.column_dimensions["J"].hidden = True
        ws.cell(TOP + stray_row, 10, 1)

    return _edit(data, hide)


# ---------------------------------------------------------------- formulas without a stored result
def with_formulas(unit: str, entries: Sequence[tuple[str, str, str]], *, name_row: int | None = None) -> bytes:
    """The TT column as formulas (=ROW()-7), and, with ``name_row``, that entry's name as a formula: openpyxl
    writes formulas with an empty <v>, as tools that leave the computing to Excel do."""
    data = samples.registration_xlsx(unit, list(entries))

    def formulas(ws: Any) -> None:
        for k in range(len(entries)):
            ws.cell(TOP + k, 1, f"=ROW()-{TOP - 1}")
        if name_row is not None:
            name = entries[name_row][0]
            ws.cell(TOP + name_row, 2, f'="{name}"')

    return _edit(data, formulas)


def without_v(xlsx: bytes) -> bytes:
    """The same workbook with every formula cell's <v> element removed (no value at all, not an empty one)."""
    return rewrite(xlsx, "xl/worksheets/sheet1.xml",
                   lambda xml: re.sub(rb"(</f>|<f[^>]*/>)<v>[^<]*</v>|(</f>|<f[^>]*/>)<v\s*/>", rb"\1\2", xml))


def rewrite(package: bytes, name: str, fn: Callable[[bytes], bytes], *,
            stored: Sequence[str] = ()) -> bytes:
    """A zip package with member ``name`` rewritten by ``fn``; members in ``stored`` are written uncompressed."""
    src = zipfile.ZipFile(io.BytesIO(package))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == name:
                body = fn(body)
            method = zipfile.ZIP_STORED if info.filename in stored else zipfile.ZIP_DEFLATED
            dst.writestr(info.filename, body, compress_type=method)
    return buf.getvalue()


# ---------------------------------------------------------------- zip members that fail their CRC
def _data_offset(package: bytes, name: str) -> tuple[int, int]:
    """(offset, length) of member ``name``'s data in the package, from its local header."""
    info = zipfile.ZipFile(io.BytesIO(package)).getinfo(name)
    head = info.header_offset
    name_len = int.from_bytes(package[head + 26:head + 28], "little")
    extra_len = int.from_bytes(package[head + 28:head + 30], "little")
    return head + 30 + name_len + extra_len, info.compress_size


def crc_broken_stored(xlsx: bytes, name: str = "xl/worksheets/sheet1.xml", old: bytes = b"", new: bytes = b"") -> bytes:
    """Member ``name`` stored uncompressed, then ``old`` changed to ``new`` (same length) inside its data, the
    directory and CRC left as they were: every reader that does not check the CRC reads ``new``."""
    assert len(old) == len(new) and old
    package = rewrite(xlsx, name, lambda b: b, stored=(name,))
    start, length = _data_offset(package, name)
    data = package[start:start + length]
    assert data.count(old) >= 1, f"{old!r} not in {name}"
    out = bytearray(package)
    at = start + data.index(old)
    out[at:at + len(old)] = new
    return bytes(out)


def crc_broken_deflated(xlsx: bytes, name: str = "xl/worksheets/sheet1.xml") -> bytes:
    """A byte flipped in the middle of a deflated member's data, the directory kept."""
    start, length = _data_offset(xlsx, name)
    out = bytearray(xlsx)
    out[start + length // 2] ^= 0x55
    return bytes(out)


# ---------------------------------------------------------------- files that cannot be read
def marked_encrypted(doc: bytes) -> bytes:
    """A .doc made by LibreOffice with fEncrypted set in its File Information Block, as Word marks a document
    saved with a password ([MS-DOC] 2.5.2: bit 0x0100 of the flags word at offset 0x0A of WordDocument)."""
    from xlrd.compdoc import CompDoc

    cd = CompDoc(doc, logfile=io.StringIO())
    [node] = [cd.dirlist[i] for i in cd.dirlist[0].children if cd.dirlist[i].name == "WordDocument"]
    assert node.tot_size >= cd.min_size_std_stream  # in regular sectors, not the mini stream
    offset = (node.first_SID + 1) * cd.sec_size  # sector n starts after the header, itself one sector long
    out = bytearray(doc)
    assert out[offset:offset + 2] == b"\xec\xa5"  # wIdent of Word 97 and later
    out[offset + 0x0B] |= 0x01
    return bytes(out)


def text_free_pdf() -> bytes:
    """A one-page PDF with no text layer (a scan's page without OCR)."""
    content = "0 0 1 rg 72 72 200 100 re f"
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()
