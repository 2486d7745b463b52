"""Cheap look at a file's bytes before any reader touches it (about a millisecond for a form).

Decides the format from magic bytes, the zip directory and the OLE root storage (never from the name
alone), and refuses what no reader should open: encrypted packages, zip bombs, absurd sheet dimensions,
huge shared-string tables, zip members that fail their CRC-32 check. What passes still goes to the
isolated worker, because directory sizes can lie; this only turns the common cases into a fast, precise
finding.

Why the CRC check is here and not in the reading process: calamine and lxml read what the zip holds
without checking it, so a damaged member is read as if sound. Checking means decompressing every member,
which is bounded here as well as in the child: zipfile stops each member at the size its directory
declares (and checks the CRC there), the declared sizes have just been held to the file's limits, and
the loop holds one 1 MB chunk at a time. So the worst case costs what the reader would spend anyway,
and a corrupt file gets its finding without starting a read.
"""
from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DIM = re.compile(rb'<(?:\w+:)?dimension\s+ref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')
_ODS_MIME = "application/vnd.oasis.opendocument.spreadsheet"


@dataclass(frozen=True)
class Verdict:
    format: str | None  # xlsx xlsm xls ods docx doc odt rtf pdf jpg png ... or None when unknown
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
        return _check_ole(ext, data)
    if data.startswith(b"{\\rtf"):
        return Verdict("rtf")
    if data.startswith(b"%PDF-"):
        return Verdict("pdf")
    if data.startswith(b"\xff\xd8\xff"):
        return Verdict("jpg")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Verdict("png")
    if not data and ext in ("xlsx", "xlsm", "xls", "ods", "docx", "odt", "doc", "rtf", "pdf"):
        return Verdict(ext, "file-corrupt", "tệp rỗng")
    if ext in ("xlsx", "xlsm", "xls", "ods", "docx", "odt", "pdf"):
        return Verdict(ext, "file-corrupt", "nội dung không đúng định dạng ." + ext)
    # A .doc that is no Word 97 file is often a web page or text saved under that name by some program:
    # LibreOffice, which the conversion uses, reads those too.
    return Verdict(ext or None)


def _ole_root(data: bytes) -> tuple[Any, set[str]] | None:
    """The compound file and the names (lower-cased) of the streams and storages at its root, or None when
    its directory cannot be read. xlrd (a dependency, for .xls) reads the compound file."""
    from xlrd.compdoc import CompDoc

    try:
        doc = CompDoc(data, logfile=io.StringIO())
        return doc, {doc.dirlist[i].name.lower() for i in doc.dirlist[0].children}
    except Exception:  # noqa: BLE001 - any failure means a directory we cannot trust
        return None


def _check_ole(ext: str, data: bytes) -> Verdict:
    """Word 97-2003 has a WordDocument stream at its root, Excel 97-2003 a Workbook (Book: Excel 5); an
    encrypted .xlsx/.docx is an OLE file holding an EncryptedPackage. Only the root counts: a .doc with an
    Excel table embedded holds a Workbook stream inside a sub-storage, and is still a .doc."""
    found = _ole_root(data)
    if found is None:  # a damaged directory: the bytes may still say what the file was meant to be
        if "EncryptedPackage".encode("utf-16-le") in data:
            return Verdict(ext if ext in ("xlsx", "xlsm", "docx") else "xlsx", "file-encrypted")
        if "Workbook".encode("utf-16-le") in data or "Book".encode("utf-16-le") in data:
            return Verdict("xls")
        if "WordDocument".encode("utf-16-le") in data:
            return Verdict("doc")
        return Verdict(ext or "ole")
    doc, root = found
    if "encryptedpackage" in root:
        return Verdict(ext if ext in ("xlsx", "xlsm", "docx") else "xlsx", "file-encrypted")
    if "workbook" in root or "book" in root:
        return Verdict("xls")
    if "worddocument" in root:
        return Verdict("doc", "file-encrypted") if _word_encrypted(doc) else Verdict("doc")
    return Verdict(ext or "ole")


def _word_encrypted(doc: Any) -> bool:
    """Whether a .doc is password protected: fEncrypted (0x0100) in the flags word at offset 0x0A of the File
    Information Block, which starts the WordDocument stream ([MS-DOC] 2.5.2)."""
    try:
        fib = doc.get_named_stream("WordDocument")
    except Exception:  # noqa: BLE001 - unreadable: the conversion will say what it makes of it
        return False
    return fib is not None and len(fib) > 0x0B and bool(fib[0x0B] & 0x01)


def _check_zip(ext: str, data: bytes, limits: dict[str, int]) -> Verdict:
    guess = ext if ext in ("xlsx", "xlsm", "docx", "ods", "odt") else "zip"
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
    damaged = _damaged_member(zf, infos)
    if damaged:
        return Verdict(guess, "file-corrupt", damaged)

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
    if guess in ("xlsx", "xlsm", "docx", "ods", "odt"):
        return Verdict(guess, "file-corrupt", "thiếu phần chính của tài liệu")
    return Verdict("zip")


def _damaged_member(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> str | None:
    """The first member that does not decompress to its CRC-32, said for the finding; None when all do.

    zipfile ends each member at its declared size and compares the CRC there (BadZipFile "Bad CRC-32"); a
    member cut short or with garbled deflate data fails before. A compression method zipfile does not know
    is left to the reader."""
    for info in infos:
        if info.is_dir():
            continue
        try:
            with zf.open(info) as fh:
                while fh.read(1 << 20):
                    pass
        except NotImplementedError:
            continue
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            if "CRC" in str(exc):
                return f"phần {info.filename[:80]} sai mã kiểm tra CRC-32"
            return f"phần {info.filename[:80]} không giải nén được"
    return None


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
