"""Cheap look at a file's bytes before any reader touches it (well under a millisecond for a form).

Decides the format from magic bytes and the zip directory (never from the name alone), and
refuses what no reader should open: encrypted packages, zip bombs, absurd sheet dimensions,
huge shared-string tables. What passes still goes to the isolated worker, because directory
sizes can lie; this only turns the common cases into a fast, precise finding.
"""
from __future__ import annotations

import io
import os
import re
import struct
import sys
import zipfile
import zlib
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
    zf: zipfile.ZipFile | None = None
    parts = _quick_directory(data) if _QUICK else None
    if parts is None:
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            infos = zf.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
            return Verdict(guess, "file-corrupt", f"tệp nén hỏng: {exc}")
        parts = [(i.filename, i.flag_bits, i.file_size, i.compress_size, 0, 0, 0) for i in infos]
    if len(parts) > limits["max_zip_members"]:
        return Verdict(guess, "file-bomb", f"{len(parts)} phần trong tệp nén")
    names = {p[0] for p in parts}
    total = 0
    max_part, ratio_min, max_ratio = limits["max_part_bytes"], limits["ratio_min_bytes"], limits["max_ratio"]
    for name, flag_bits, file_size, compress_size, *_ in parts:
        if flag_bits & 0x1:
            return Verdict(guess, "file-encrypted")
        total += file_size
        if file_size > max_part:
            return Verdict(guess, "file-bomb", f"phần {name} giải nén ra {_mb(file_size)}")
        if file_size > ratio_min:
            ratio = file_size / max(compress_size, 1)
            if ratio > max_ratio:
                return Verdict(guess, "file-bomb", f"phần {name} nén {ratio:.0f} lần")
    if total > limits["max_uncompressed_bytes"]:
        return Verdict(guess, "file-bomb", f"giải nén ra {_mb(total)}")

    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        fmt = "xlsm" if ("xl/vbaProject.bin" in names or ext == "xlsm") else "xlsx"
        if "xl/workbook.bin" in names:
            fmt = "xlsb"
        for index, part in enumerate(parts):
            name, file_size = part[0], part[2]
            if name == "xl/sharedStrings.xml" and file_size > limits["max_shared_strings_bytes"]:
                return Verdict(fmt, "file-too-large", f"bảng chuỗi {_mb(file_size)}")
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                if zf is None and _quick_dimension_fine(data, part, limits):
                    continue
                head = _quick_head(data, part) if zf is None else None
                if head is None:  # read by zipfile, as it always was
                    zf = zf or zipfile.ZipFile(io.BytesIO(data))
                    problem = _check_dimension(zf, zf.filelist[index], limits)
                else:
                    problem = _dimension_problem(head, limits)
                if problem:
                    return Verdict(fmt, "file-too-large", problem)
        return Verdict(fmt)
    if "word/document.xml" in names:
        return Verdict("docx")
    if "mimetype" in names:
        try:
            zf = zf or zipfile.ZipFile(io.BytesIO(data))
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
    try:
        with zf.open(info) as fh:
            head = fh.read(_HEAD)
    except Exception:  # noqa: BLE001 - the worker will report the corruption precisely
        return None
    return _dimension_problem(head, limits)


def _dimension_problem(head: bytes, limits: dict[str, int], m: re.Match[bytes] | None = None) -> str | None:
    m = m or _DIM.search(head)
    if not m or not m.group(3):
        return None
    rows = int(m.group(4)) - int(m.group(2)) + 1
    cols = _col_number(m.group(3)) - _col_number(m.group(1)) + 1
    if rows > limits["max_rows"] or rows * cols > limits["max_sheet_cells"]:
        ref = m.group(0).split(b'"')[1].decode("ascii")
        return f"vùng dữ liệu {ref}: {rows:,} dòng × {cols:,} cột".replace(",", ".")
    return None


# ---------------------------------------------------------------- the zip directory without zipfile
# zipfile.ZipFile over the bytes builds a ZipInfo per part (cp437 codec, date tuple, extra fields) and
# zf.open builds a shared file, a ZipExtFile and its buffers: ~45 us of the parent's ~50 us per form.
# The quick reading below does the same with struct over the bytes, for the packages office programs
# write: the end record last in the file with no comment, no zip64, no data before the zip, every
# directory entry whole. Anything else (and anything that would make zipfile raise) returns None and
# zipfile reads it exactly as before, so refusals and their details are zipfile's own. It mirrors
# CPython 3.11's zipfile (_EndRecData, _RealGetContents, ZipFile.open, ZipExtFile.read); on another
# zipfile (3.12+ check overlapping parts, for one) it is not used. tests/test_forms_speed.py compares
# the two readings over many broken and unusual packages.
_QUICK = (sys.version_info[:2] == (3, 11) and os.sep == "/" and not hasattr(zipfile.ZipInfo, "_end_offset")
          and zipfile.ZipExtFile.MIN_READ_SIZE == 4096)
_HEAD = 4096  # how much of a sheet precheck reads, looking for its <dimension>
_PREFIX = 1024  # Excel's <worksheet> start tag alone takes ~600 bytes (namespaces); <dimension> follows soon after
_END = struct.Struct("<4s4H2LH")  # zipfile.structEndArchive
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # zipfile.structCentralDir
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader
_HH = struct.Struct("<HH")
Part = tuple  # (filename, flag_bits, file_size, compress_size, compress_type, header_offset, CRC)


def _quick_directory(data: bytes) -> list[Part] | None:
    """The parts zipfile would list, in its order, or None to leave the package to zipfile."""
    size = len(data)
    if size < 42 or data[size - 22:size - 18] != b"PK\x05\x06" or data[size - 2:] != b"\0\0":
        return None  # too short to be sure of, an archive comment, or no end record where expected
    if data[size - 42:size - 38] == b"PK\x06\x07":
        return None  # a zip64 locator
    size_cd, offset_cd = _END.unpack_from(data, size - 22)[5:7]
    if offset_cd + size_cd != size - 22:
        return None  # data before the zip ("concat") or a directory that does not end at the end record
    parts: list[Part] = []
    pos, end_cd = offset_cd, size - 22
    unpack = _CENTRAL.unpack_from
    while pos < end_cd:
        if pos + 46 > end_cd:
            return None
        (sig, _cv, _cs, extract_version, _r, flags, ctype, _t, _d, crc, csize, fsize,
         n_name, n_extra, n_comment, _v, _ia, _ea, offset) = unpack(data, pos)
        start = pos + 46
        nxt = start + n_name + n_extra + n_comment
        if sig != b"PK\x01\x02" or nxt > end_cd or extract_version > 63:
            return None
        raw = data[start:start + n_name]
        if raw.isascii():
            name = raw.decode("ascii")  # the same text in cp437 and utf-8
        elif flags & 0x800:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
        else:
            name = raw.decode("cp437")
        if "\0" in name:
            return None  # zipfile cuts the name there
        if n_extra:
            extra = data[start + n_name:start + n_name + n_extra]
            while len(extra) >= 4:
                tp, ln = _HH.unpack_from(extra)
                if ln + 4 > len(extra) or tp == 0x0001:
                    return None  # broken, or zip64 sizes
                extra = extra[ln + 4:]
        parts.append((name, flags, fsize, csize, ctype, offset, crc))
        pos = nxt
    return parts


def _quick_dimension_fine(data: bytes, part: Part, limits: dict[str, int]) -> bool:
    """True when the sheet's first bytes already hold a <dimension> within the limits: then the answer
    is "no problem" whatever the rest of the 4096-byte head holds or whether reading it fails.

    Why that is exact: the regex's leftmost match in a prefix of the head is its leftmost match in the
    head (a match cannot hold a "<" after its first character, and every repeated class in it stops at
    the closing quote), and _check_dimension answers None both for such a match and for a read that
    fails; only a match that is a problem needs the whole head read without error, as zipfile does."""
    _name, flags, fsize, csize, ctype, offset, _crc = part
    if flags & 0x61 or offset + 30 > len(data):
        return False
    n_name, n_extra = _HH.unpack_from(data, offset + 26)
    start = offset + 30 + n_name + n_extra
    try:
        if ctype == 8:
            prefix = zlib.decompressobj(-15).decompress(data[start:start + min(csize, _HEAD)], _PREFIX)[:fsize]
        elif ctype == 0:
            prefix = data[start:start + min(csize, _PREFIX, fsize)]
        else:
            return False
    except zlib.error:
        return False
    m = _DIM.search(prefix)
    return m is not None and _dimension_problem(prefix, limits, m) is None


def _quick_head(data: bytes, part: Part) -> bytes | None:
    """``zf.open(info).read(4096)``, or None when zipfile must read it (it would raise, or it is unusual)."""
    name, flags, fsize, csize, ctype, offset, crc = part
    if flags & 0x61 or ctype not in (0, 8) or offset + 30 > len(data):
        return None  # encrypted, patched, strong encryption, another method, truncated header
    sig, _v, _s, local_flags, *_x, n_name, n_extra = _LOCAL.unpack_from(data, offset)
    start = offset + 30 + n_name + n_extra
    if sig != b"PK\x03\x04" or start > len(data):
        return None
    raw = data[offset + 30:offset + 30 + n_name]
    try:
        local_name = raw.decode("utf-8" if local_flags & 0x800 else "cp437")
    except UnicodeDecodeError:
        return None
    if local_name != name:
        return None
    # ZipExtFile.read(4096), step by step.
    try:
        decomp = zlib.decompressobj(-15) if ctype == 8 else None
        compress_left, left, pos, running, eof = csize, fsize, start, 0, False
        n, buf = _HEAD, b""
        while n > 0 and not eof:
            if decomp is not None:
                chunk = decomp.unconsumed_tail
                want = n - len(chunk)
            else:
                chunk, want = b"", n
            if want > 0 and compress_left > 0:  # _read2
                k = min(max(want, 4096), compress_left)
                raw = data[pos:pos + k]
                pos += len(raw)
                compress_left -= len(raw)
                if not raw:
                    return None  # EOFError in zipfile
                chunk += raw
            if decomp is None:
                eof = compress_left <= 0
            else:
                chunk = decomp.decompress(chunk, max(n, 4096))
                eof = decomp.eof or (compress_left <= 0 and not decomp.unconsumed_tail)
                if eof:
                    chunk += decomp.flush()
            chunk = chunk[:left]
            left -= len(chunk)
            if left <= 0:
                eof = True
            running = zlib.crc32(chunk, running)
            if eof and running != crc:
                return None  # BadZipFile (Bad CRC-32) in zipfile
            if n < len(chunk):
                return buf + chunk[:n]
            buf += chunk
            n -= len(chunk)
        return buf
    except zlib.error:
        return None
