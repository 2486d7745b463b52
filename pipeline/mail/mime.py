"""Reading one raw message: bytes in, a ParsedMail out (sender, subject, kind, attachments, defects).

Nothing here does I/O or reads the clock. Units write from Gmail, Outlook, Thunderbird, phones and
old webmail, and every one of them encodes headers and filenames a little differently, so every
header and every part is read on its own and a failure in one never loses the others. Only a
message that yields nothing at all (no headers) raises MessageParseError.

The email package splits the message into parts; header text is decoded in ``mime_headers`` (why
not by the email package is said there), the kind of mail is told by ``mime_classify``; this module
collects the attachments (also uuencoded ones and the files inside Outlook's winmail.dat) and gives
them names that are safe on disk.
"""
from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import mimetypes
import re
import unicodedata
from collections.abc import Iterable
from email.message import Message

from pipeline.errors import MessageParseError
from pipeline.mail.classify import auth_failure, auto_reply_reason, bounce_info
from pipeline.mail.headers import (
    content_type,
    decode_header_text,
    first_header,
    header_message_id,
    is_own_address,
    lenient_b64,
    message_ids,
    param,
    parse_from,
    raw_headers,
    split_params,
    walk_parts,
)
from pipeline.mail.legacy import UU_BEGIN, tnef_files, uu_files, uudecode
from pipeline.model import Attachment, ParsedMail

__all__ = [
    "parse_message",
    "sanitise_filename",
    "decode_header_text",
    "is_own_address",
    "extension_for",
    "header_message_id",
]

MAX_FILENAME_CHARS = 150
MAX_FILENAME_BYTES = 240  # ext4 and most file systems stop at 255 bytes; Vietnamese takes 2-3 per letter
# An embedded (inline, Content-ID) image this large is a photo pasted into the body or sent by
# iPhone Mail, which marks every photo inline with a Content-ID; signature logos are a few KB.
INLINE_PHOTO_MIN_BYTES = 100_000

# --------------------------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------------------------

_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_UNSAFE = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_EXTENSIONS = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/msword": ".doc",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/x-zip-compressed": ".zip",
    "application/vnd.rar": ".rar",
    "application/x-rar-compressed": ".rar",
    "application/ms-tnef": ".dat",
    "application/vnd.ms-tnef": ".dat",
    "application/octet-stream": ".bin",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/webp": ".webp",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/csv": ".csv",
    "text/rtf": ".rtf",
    "application/rtf": ".rtf",
    "message/rfc822": ".eml",
}


def extension_for(content_type: str) -> str:
    """A file extension (with the dot) for a content type; ".bin" when unknown."""
    ct = content_type.lower().strip()
    if ct in _EXTENSIONS:
        return _EXTENSIONS[ct]
    guessed = mimetypes.guess_extension(ct, strict=False)
    return guessed or ".bin"


def _split_ext(name: str) -> tuple[str, str]:
    m = re.match(r"^(.*?)(\.[A-Za-z0-9]{1,10})$", name)
    if m and m.group(1):
        return m.group(1), m.group(2)
    return name, ""


def _fit(stem: str, ext: str) -> str:
    while stem and (
        len(stem) + len(ext) > MAX_FILENAME_CHARS
        or len((stem + ext).encode("utf-8")) > MAX_FILENAME_BYTES
    ):
        stem = stem[:-1]
    return stem.rstrip(" .") + ext


def sanitise_filename(name: str, fallback: str = "attachment") -> str:
    """A name safe for any disk and for display: no directories, no ``..``, no control characters,
    no leading dots, no Windows reserved names, at most ~150 characters with the extension kept.
    Returns ``fallback`` (itself sanitised) when nothing usable is left."""
    text = unicodedata.normalize("NFC", name or "")
    # Control and format characters (this includes the right-to-left override used to disguise
    # "gpj.exe" as "exe.jpg").
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    text = re.split(r"[/\\]", text)[-1] if text else text
    text = _UNSAFE.sub("_", text)
    while ".." in text:
        text = text.replace("..", ".")
    text = re.sub(r"\s+", " ", text).strip()
    text = text.lstrip(". ").rstrip(". ")
    stem, ext = _split_ext(text)
    if not stem.strip(" ._"):
        if fallback == name:
            return "attachment"
        return sanitise_filename(fallback, "attachment") + (ext if not _split_ext(fallback)[1] else "")
    if stem.split(".")[0].strip().lower() in _RESERVED:
        stem = "_" + stem
    return _fit(stem, ext)


# --------------------------------------------------------------------------------------------
# Attachments
# --------------------------------------------------------------------------------------------

_SIGNATURE_TYPES = {"application/pgp-signature", "application/pkcs7-signature",
                    "application/x-pkcs7-signature"}
_BODY_CONTAINERS = {"message/delivery-status", "text/rfc822-headers",
                    "message/disposition-notification", "message/feedback-report"}


def _payload_bytes(part: Message, defects: list[str], path: str) -> bytes:
    """The decoded bytes of a leaf part. Decoded here rather than by ``get_payload(decode=True)`` so that
    broken base64 yields what can be read (and says so) and the uuencode encodings are understood."""
    cte = (first_header(part, "Content-Transfer-Encoding") or "").strip().lower()
    try:
        raw = part.get_payload(decode=False)
    except Exception:  # noqa: BLE001
        raw = ""
    if isinstance(raw, list):
        return b""
    text = raw if isinstance(raw, str) else ""
    raw_bytes = text.encode("utf-8", errors="surrogateescape") if text else b""
    try:
        if cte == "base64":
            try:
                return base64.b64decode(raw_bytes, validate=False)
            except (binascii.Error, ValueError):
                defects.append(f"{path}: base64 lỗi, đã giải mã phần đọc được")
                return lenient_b64(text)
        if cte == "quoted-printable":
            return binascii.a2b_qp(raw_bytes)
        if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
            files = uu_files(raw_bytes)
            return files[0][1] if files else uudecode(raw_bytes)
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else raw_bytes
    except Exception:  # noqa: BLE001
        defects.append(f"{path}: không giải mã được nội dung, giữ nguyên bản gốc")
        return raw_bytes


def _filename(part: Message) -> str | None:
    """The name the sender gave the part (Content-Disposition filename, else Content-Type name), NFC."""
    for header, key in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        value = first_header(part, header)
        if not value:
            continue
        _main, params = split_params(value)
        name = param(params, key)
        if name and name.strip():
            return unicodedata.normalize("NFC", name.strip())
    return None


class _Collector:
    """Walks the parts in IMAP numbering ("2", "3.2", "1#uu1") and sorts each leaf: an attachment, the
    body, or a part skipped with a note (signatures, small embedded images)."""

    def __init__(self) -> None:
        self.attachments: list[Attachment] = []
        self.skipped: list[str] = []
        self.defects: list[str] = []

    def add(self, original: str | None, ctype: str, data: bytes, path: str) -> None:
        fallback = f"attachment-{path.replace('.', '-').replace('#', '-')}{extension_for(ctype)}"
        name = sanitise_filename(original or "", fallback)
        self.attachments.append(
            Attachment(
                filename=name,
                content_type=ctype,
                data=data,
                sha256=hashlib.sha256(data).hexdigest(),
                original_filename=original,
                part=path,
            )
        )

    def walk(self, part: Message, path: str, in_related: bool) -> None:
        try:
            self._walk(part, path, in_related)
        except Exception as exc:  # noqa: BLE001 - one bad part never loses the rest
            self.defects.append(f"{path}: không đọc được phần này ({type(exc).__name__})")

    def _children(self, part: Message) -> list[Message]:
        payload = part.get_payload()
        return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []

    def _walk(self, part: Message, path: str, in_related: bool) -> None:
        ctype = content_type(part)
        maintype = ctype.split("/")[0]
        if part.is_multipart() and ctype != "message/rfc822" and maintype != "message":
            related = in_related or ctype == "multipart/related"
            for i, child in enumerate(self._children(part), start=1):
                self.walk(child, f"{path}.{i}" if path else str(i), related)
            return
        if ctype == "message/rfc822" or (maintype == "message" and part.is_multipart()):
            inner = self._children(part)
            if inner:
                self.walk_message(inner[0], path)
            return
        if ctype in _BODY_CONTAINERS or maintype == "multipart" or maintype == "message":
            return  # a multipart without a boundary, a report part: body, not a document

        leaf_path = path or "1"
        disposition = split_params(first_header(part, "Content-Disposition") or "")[0]
        original = _filename(part)
        has_cid = first_header(part, "Content-ID") is not None

        if ctype in _SIGNATURE_TYPES and disposition != "attachment":
            self.skipped.append(f"{leaf_path}: chữ ký số {ctype}")
            return
        embedded = maintype == "image" and disposition != "attachment" and (
            (has_cid and disposition in ("inline", "")) or in_related
        )
        data = _payload_bytes(part, self.defects, leaf_path)
        if embedded and len(data) < INLINE_PHOTO_MIN_BYTES:
            self.skipped.append(f"{leaf_path}: ảnh nhúng {ctype} {original or ''}".rstrip())
            return
        if maintype == "text" and disposition != "attachment" and not original:
            # A body part. Old clients (Outlook Express, Eudora) put uuencoded files inside it.
            for n, (uu_name, uu_data) in enumerate(uu_files(data), start=1):
                guessed = mimetypes.guess_type(uu_name)[0] or "application/octet-stream"
                self.add(uu_name, guessed, uu_data, f"{leaf_path}#uu{n}")
            return
        if maintype != "text" and data.lstrip()[:6] == b"begin " and UU_BEGIN.match(data.lstrip()):
            files = uu_files(data)
            if files:
                data = files[0][1]
        self.add(original, ctype, data, leaf_path)
        if ctype in ("application/ms-tnef", "application/vnd.ms-tnef") or (original or "").lower() == "winmail.dat":
            # winmail.dat itself stays (a human may need it); the files inside are offered as well.
            for n, (tnef_name, tnef_data) in enumerate(tnef_files(data), start=1):
                guessed = mimetypes.guess_type(tnef_name)[0] or "application/octet-stream"
                self.add(tnef_name or None, guessed, tnef_data, f"{leaf_path}#tnef{n}")

    def walk_message(self, msg: Message, path: str) -> None:
        """A whole message at ``path``: its body part is ``path.1`` (IMAP numbering)."""
        if msg.is_multipart():
            related = content_type(msg) == "multipart/related"
            for i, child in enumerate(self._children(msg), start=1):
                self.walk(child, f"{path}.{i}" if path else str(i), related)
        else:
            self.walk(msg, f"{path}.1" if path else "", False)


# --------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------


def _parse(raw: bytes) -> Message:
    # policy.default, not compat32: it reads the boundary as RFC 2045 means it where clients get it wrong
    # (folded inside its quotes as in the peer sample m0021, a comment after it, a stray quote), and
    # compat32 loses every attachment of such mail. Its header parser has raised on odd headers in some
    # Python releases; compat32 then still gives the parts.
    try:
        return email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # noqa: BLE001
        return email.message_from_bytes(raw, policy=email.policy.compat32)


def parse_message(
    raw: bytes,
    *,
    own_addresses: Iterable[str] = (),
    trusted_authserv_ids: Iterable[str] = (),
) -> ParsedMail:
    """Read one raw message. Raises MessageParseError only when nothing at all can be made of it.

    ``own_addresses`` does not change the kind (see :func:`is_own_address`); it is accepted so that
    callers pass their configuration in one place.
    """
    del own_addresses  # the caller decides what to do with the district's own mail
    if not raw or not raw.strip():
        raise MessageParseError("thư rỗng: không có tiêu đề cũng không có nội dung")
    try:
        msg = _parse(raw)
    except Exception as exc:  # noqa: BLE001
        raise MessageParseError(f"không đọc được thư: {exc}") from exc
    try:
        keys = list(msg.keys())
    except Exception:  # noqa: BLE001
        keys = []
    if not keys:
        raise MessageParseError("không đọc được thư: không có dòng tiêu đề nào (header)")

    defects: list[str] = []

    def safe(fn, default, label):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            defects.append(f"{label}: {type(exc).__name__}")
            return default

    from_addr, from_name = safe(lambda: parse_from(first_header(msg, "From")), (None, None), "From")
    subject = safe(
        lambda: unicodedata.normalize("NFC", re.sub(r"\s+", " ", decode_header_text(first_header(msg, "Subject"))).strip()),
        "",
        "Subject",
    )

    def read_message_id() -> str | None:
        value = first_header(msg, "Message-ID")
        ids = message_ids(value)
        return ids[0] if ids else (value or "").strip() or None  # a bare id without <> is kept as it is

    message_id = safe(read_message_id, None, "Message-ID")
    references: list[str] = []
    for name in ("In-Reply-To", "References"):
        for value in raw_headers(msg, name):
            for ref in message_ids(value):
                if ref not in references:
                    references.append(ref)

    bounce_reason, bounced, bounced_id = safe(lambda: bounce_info(msg, from_addr), (None, (), None), "bounce")
    if bounce_reason:
        kind, kind_reason = "bounce", bounce_reason
    else:
        auto = safe(lambda: auto_reply_reason(msg, subject), None, "auto-reply")
        kind, kind_reason = ("auto_reply", auto) if auto else ("normal", None)

    failed_auth = safe(lambda: auth_failure(msg, from_addr, list(trusted_authserv_ids)), None, "Authentication-Results")

    collector = _Collector()
    collector.walk_message(msg, "")

    for part in walk_parts(msg):
        for defect in getattr(part, "defects", []) or []:
            text = type(defect).__name__
            detail = str(defect)
            defects.append(f"{text}: {detail}" if detail and detail != text else text)
    defects.extend(collector.defects)

    return ParsedMail(
        message_id=message_id,
        from_addr=from_addr,
        from_name=from_name,
        subject=subject,
        references=tuple(references),
        kind=kind,
        kind_reason=kind_reason,
        auth_failure=failed_auth,
        attachments=tuple(collector.attachments),
        skipped_parts=tuple(collector.skipped),
        defects=tuple(dict.fromkeys(defects)),
        bounced_recipients=bounced,
        bounced_message_id=bounced_id,
    )
