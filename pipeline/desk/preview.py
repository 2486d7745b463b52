"""A mail's attachments as staff open them on the desk: found in the archived message, and judged by their
bytes (never by the name or the type the sender declared) for how they may be shown.

    image  JPEG, PNG, GIF or WebP of a sane size: shown on the page (<img> from the desk itself)
    pdf    a PDF: opened in the browser's own viewer (served inline as application/pdf)
    table  a spreadsheet (xlsx, xlsm, xlsb, xls, ods) or a Word file (docx): its cells as an HTML table, read
           in a child process (pipeline.desk.cells)
    file   anything else, HTML and SVG included (a page or a drawing from our own origin could run script):
           download only

Every attachment can also be downloaded as it came, under its own name (``content_disposition``: RFC 6266
with the RFC 5987 ``filename*`` for Vietnamese names). The bytes come from the archived raw message (the
ledger's documents rows name their part and sha256), read with the same MIME reader as the intake.
"""
from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from werkzeug.http import dump_options_header

from pipeline.desk.cells import TABLE_FORMATS
from pipeline.mail import mime

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context

IMAGE_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
# A browser decodes a whole image to show it: a phone's 50-megapixel photo is fine, a 60000×60000 PNG of a
# few kilobytes (a "pixel flood") would take the staff's browser down with it.
MAX_IMAGE_PIXELS = 100_000_000
MAX_IMAGE_SIDE = 20_000
_ACTIVE = ("<html", "<!doctype html", "<svg", "<?xml", "<script", "<body", "<head", "<iframe")


@dataclass(frozen=True)
class Attachment:
    """One attachment of an archived mail, with its bytes."""

    message_pk: int
    part: str
    filename: str
    declared_type: str  # what the sender's mail said: shown, never trusted
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class View:
    """How an attachment may be shown: ``how`` is image | pdf | table | file; ``note`` says why a file is
    download only (Vietnamese)."""

    how: str
    fmt: str | None
    content_type: str  # what inline bytes are served as (image/pdf only)
    note: str | None = None
    pixels: tuple[int, int] | None = None  # an image's width and height


def attachments(ctx: Context, message_pk: int) -> list[Attachment]:
    """Every attachment of an archived message, in the mail's order; [] when the message or its archived
    copy is gone or unreadable."""
    row = ctx.store.message(message_pk)
    if row is None:
        return []
    try:
        raw = ctx.archive.get(row.sha256)
        parsed = mime.parse_message(raw, own_addresses=ctx.cfg.own_addresses,
                                    trusted_authserv_ids=ctx.cfg.mailbox.trusted_authserv_ids)
    except Exception:  # noqa: BLE001 - an unreadable archive copy has nothing to show; the .eml link stays
        return []
    return [Attachment(message_pk, a.part, a.filename, a.content_type, a.data, a.sha256) for a in parsed.attachments]


def find(ctx: Context, message_pk: int, part: str, sha256: str | None = None) -> Attachment | None:
    """The attachment at ``part`` of a message; with ``sha256`` (a document's), the one with those bytes,
    whatever its part (a newer MIME reader may number parts differently)."""
    found = attachments(ctx, message_pk)
    if sha256:
        same = [a for a in found if a.sha256 == sha256]
        return next((a for a in same if a.part == part), same[0] if same else None)
    return next((a for a in found if a.part == part), None)


# ------------------------------------------------------------------------------------ judging the bytes

def view_of(att: Attachment, limits: dict[str, int]) -> View:
    """How ``att`` may be shown, from its bytes (``limits``: the rules' reading limits)."""
    from pipeline.forms import precheck

    data, max_bytes = att.data, limits["max_file_bytes"]
    fmt = _image_format(data)
    if fmt is not None:
        pixels = image_size(data, fmt)
        if pixels is None:
            return View("file", fmt, "", "Không đọc được kích thước ảnh nên không hiện trên trang; hãy tải về để xem.")
        w, h = pixels
        if w * h > MAX_IMAGE_PIXELS or max(w, h) > MAX_IMAGE_SIDE or len(data) > max_bytes:
            return View("file", fmt, "", f"Ảnh quá lớn để hiện trên trang ({w:,} × {h:,} điểm ảnh); hãy tải về "
                                         "để xem.".replace(",", "."), pixels)
        return View("image", fmt, IMAGE_TYPES[fmt], None, pixels)
    if data.startswith(b"%PDF-"):
        if len(data) > max_bytes:
            return View("file", "pdf", "", "Tệp PDF quá lớn để mở trên trang; hãy tải về để xem.")
        return View("pdf", "pdf", "application/pdf")
    verdict = precheck.check(att.filename, data, limits)
    if verdict.format in TABLE_FORMATS:  # a refused one too: its preview says why (pipeline.desk.cells)
        return View("table", verdict.format, "")
    if _active(att, data):
        return View("file", None, "", "Tệp trang web (HTML) hoặc hình vẽ SVG có thể chứa mã chạy được, nên chỉ "
                                      "cho tải về, không mở trên bàn làm việc.")
    return View("file", verdict.format, "", "Loại tệp này không xem được trên trang; hãy tải về để mở bằng phần "
                                            "mềm trên máy.")


def _active(att: Attachment, data: bytes) -> bool:
    """HTML or SVG (or XML, which may be either), by name, declared type or content."""
    name = att.filename.lower()
    declared = att.declared_type.lower().split(";")[0].strip()
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return (name.endswith((".html", ".htm", ".xhtml", ".svg", ".svgz", ".xml", ".mht", ".mhtml"))
            or "html" in declared or "svg" in declared or declared in ("text/xml", "application/xml")
            or any(head.startswith(m.encode()) for m in _ACTIVE))


def _image_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from the image's header, without decoding it; None when the header is not readable.

    Hand-written because no image library is a dependency of the intake and the desk needs only the size
    of the four formats it shows."""
    try:
        if fmt == "png":
            if data[12:16] != b"IHDR":
                return None
            return struct.unpack(">II", data[16:24])  # type: ignore[return-value]
        if fmt == "gif":
            return struct.unpack("<HH", data[6:10])  # type: ignore[return-value]
        if fmt == "webp":
            return _webp_size(data)
        return _jpeg_size(data)
    except struct.error:
        return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


# ------------------------------------------------------------------------------------ serving

def content_disposition(kind: str, filename: str) -> str:
    """``attachment`` or ``inline`` with the file's own name: ``filename*`` (RFC 5987, UTF-8) for browsers,
    and an ASCII ``filename`` for the others ("Biểu đăng ký.xlsx" → "Bieu dang ky.xlsx")."""
    name = filename.replace("\r", " ").replace("\n", " ") or "tep"
    simple = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    simple = simple.encode("ascii", "ignore").decode("ascii").strip() or "tep"
    return dump_options_header(kind, {"filename": simple, "filename*": "UTF-8''" + quote(name, safe="!#$&+^`|~")})


def size_label(n: int) -> str:
    if n < 1024:
        return f"{n} byte"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB".replace(".", ",")


def describe(view: View) -> str:
    """What kind of file it is, for people."""
    names = {"jpg": "Ảnh JPEG", "png": "Ảnh PNG", "gif": "Ảnh GIF", "webp": "Ảnh WebP", "pdf": "Tệp PDF",
             "xlsx": "Bảng tính Excel", "xlsm": "Bảng tính Excel có macro", "xls": "Bảng tính Excel 97-2003",
             "ods": "Bảng tính OpenDocument", "docx": "Văn bản Word", "doc": "Văn bản Word 97-2003",
             "odt": "Văn bản OpenDocument", "zip": "Tệp nén ZIP"}
    return names.get(view.fmt or "", "Tệp")

