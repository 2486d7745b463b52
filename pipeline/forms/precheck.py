"""Cheap look at a file's bytes before any reader touches it (about a millisecond for a form).

Decides the format from magic bytes and the zip directory (never from the name alone), and
refuses what no reader should open: encrypted packages, zip bombs, absurd sheet dimensions,
huge shared-string tables. What passes still goes to the isolated worker, because directory
sizes can lie; this only turns the common cases into a fast, precise finding.
"""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DIM = re.compile(rb'<(?:\w+:)?dimension\s+ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')
_ODS_MIME = "application/vnd.oasis.opendocument.spreadsheet"


@dataclass(frozen=True)
class Verdict:
    format: str | None  # xlsx xlsm xls ods docx pdf jpg png doc odt ... or None when unknown
    problem: str | None = None  # rule type: file-corrupt | file-encrypted | file-too-large | file-bomb
    detail: str = ""


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


def _ext(filename: str) -> str:
    name = filename.lower().rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1] if "." in name else ""


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def check(filename: str, data: bytes, limits: dict[str, int]) -> Verdict:
    ext = _ext(filename)
    if len(data) > limits["max_file_bytes"]:
        return Verdict(ext or None, "file-too-large", f"tệp {_mb(len(data))}, tối đa {_mb(limits['max_file_bytes'])}")
    head = data[:8]
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _check_zip(ext, data, limits)
    if head == OLE_MAGIC:
        # An encrypted .xlsx/.docx is an OLE file holding an "EncryptedPackage" stream.
        if "EncryptedPackage".encode("utf-16-le") in data:
            return Verdict(ext if ext in ("xlsx", "xlsm", "docx") else "xlsx", "file-encrypted")
        if "Workbook".encode("utf-16-le") in data or "Book".encode("utf-16-le") in data:
            return Verdict("xls")
        if "WordDocument".encode("utf-16-le") in data:
            return Verdict("doc")
        return Verdict(ext or "ole")
    if data.startswith(b"%PDF-"):
        return Verdict("pdf")
    if data.startswith(b"\xff\xd8\xff"):
        return Verdict("jpg")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Verdict("png")
    if ext in ("xlsx", "xlsm", "xls", "ods", "docx", "pdf"):
        if not data:
            return Verdict(ext, "file-corrupt", "tệp rỗng")
        return Verdict(ext, "file-corrupt", "nội dung không đúng định dạng ." + ext)
    return Verdict(ext or None)


def _check_zip(ext: str, data: bytes, limits: dict[str, int]) -> Verdict:
    guess = ext if ext in ("xlsx", "xlsm", "docx", "ods") else "zip"
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        return Verdict(guess, "file-corrupt", f"tệp nén hỏng: {exc}")
    if len(infos) > limits["max_zip_members"]:
        return Verdict(guess, "file-bomb", f"{len(infos)} phần trong tệp nén")
    names = {i.filename for i in infos}
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            return Verdict(guess, "file-encrypted")
        total += info.file_size
        if info.file_size > limits["max_part_bytes"]:
            return Verdict(guess, "file-bomb", f"phần {info.filename} giải nén ra {_mb(info.file_size)}")
        if info.file_size > limits["ratio_min_bytes"]:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits["max_ratio"]:
                return Verdict(guess, "file-bomb", f"phần {info.filename} nén {ratio:.0f} lần")
    if total > limits["max_uncompressed_bytes"]:
        return Verdict(guess, "file-bomb", f"giải nén ra {_mb(total)}")

    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        fmt = "xlsm" if ("xl/vbaProject.bin" in names or ext == "xlsm") else "xlsx"
        if "xl/workbook.bin" in names:
            fmt = "xlsb"
        for info in infos:
            name = info.filename
            if name == "xl/sharedStrings.xml" and info.file_size > limits["max_shared_strings_bytes"]:
                return Verdict(fmt, "file-too-large", f"bảng chuỗi {_mb(info.file_size)}")
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                problem = _check_dimension(zf, info, limits)
                if problem:
                    return Verdict(fmt, "file-too-large", problem)
        return Verdict(fmt)
    if "word/document.xml" in names:
        return Verdict("docx")
    if "mimetype" in names:
        try:
            mime = zf.read("mimetype")[:100].decode("ascii", "replace").strip()
        except Exception as exc:  # noqa: BLE001 - any failure here means a broken package
            return Verdict(guess, "file-corrupt", str(exc))
        if mime == _ODS_MIME:
            return Verdict("ods")
        if mime.endswith("opendocument.text"):
            return Verdict("odt")
        return Verdict(guess)
    if guess in ("xlsx", "xlsm", "docx", "ods"):
        return Verdict(guess, "file-corrupt", "thiếu phần chính của tài liệu")
    return Verdict("zip")


def _check_dimension(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: dict[str, int]) -> str | None:
    """The problem with the sheet's <dimension> (near its start: Excel writes it right after the
    <worksheet> tag), if any."""
    try:
        with zf.open(info) as fh:
            head = fh.read(4096)
    except Exception:  # noqa: BLE001 - the worker will report the corruption precisely
        return None
    return _dimension_problem(head, limits)


def _dimension_problem(head: bytes, limits: dict[str, int]) -> str | None:
    m = _DIM.search(head)
    if not m or not m.group(3):
        return None
    rows = int(m.group(4)) - int(m.group(2)) + 1
    cols = _col_number(m.group(3)) - _col_number(m.group(1)) + 1
    if rows > limits["max_rows"] or rows * cols > limits["max_sheet_cells"]:
        ref = m.group(0).split(b'"')[1].decode("ascii")
        return f"vùng dữ liệu {ref}: {rows:,} dòng × {cols:,} cột".replace(",", ".")
    return None
