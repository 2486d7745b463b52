"""Pure MIME reading: the raw bytes of one message in, a ParsedMail out.

Nothing here does I/O or reads the clock. Units write from Gmail, Outlook, Thunderbird, phones and
old webmail, and every one of them encodes headers and filenames a little differently, so every
header and every part is read on its own and a failure in one never loses the others. Only a
message that yields nothing at all (no headers) raises MessageParseError.

Header values are read from the raw header text (``Message.raw_items``) and decoded here rather
than through the email package's header objects, because those raise on the broken headers real
clients send (encoded words inside quotes, raw 8-bit bytes, unknown charsets).
"""
from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import email.utils
import functools
import hashlib
import mimetypes
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator
from email.message import Message

from pipeline import mimesplit, textnorm
from pipeline.errors import MessageParseError
from pipeline.model import Attachment, ParsedMail

__all__ = [
    "parse_message",
    "sanitise_filename",
    "decode_header_text",
    "is_own_address",
    "extension_for",
]

MAX_FILENAME_CHARS = 150
MAX_FILENAME_BYTES = 240  # ext4 and most file systems stop at 255 bytes; Vietnamese takes 2-3 per letter
# An embedded (inline, Content-ID) image this large is a photo pasted into the body or sent by
# iPhone Mail, which marks every photo inline with a Content-ID; signature logos are a few KB.
INLINE_PHOTO_MIN_BYTES = 100_000

# --------------------------------------------------------------------------------------------
# Header text
# --------------------------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*?)\?=")
_EW_GAP = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?]*?\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?[^?]*?\?=)")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SURROGATE = re.compile("[\udc80-\udcff]")


def _codec(charset: str) -> str | None:
    name = charset.strip().strip('"').split("*", 1)[0].lower()  # RFC 2231 language suffix
    aliases = {"utf8": "utf-8", "unicode-1-1-utf-7": "utf-7", "x-user-defined": "latin-1",
               "ansi_x3.4-1968": "ascii", "windows-874": "cp874", "ks_c_5601-1987": "euc-kr"}
    name = aliases.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Bytes in a declared (maybe wrong, maybe unknown) charset → text, never raising."""
    codec = _codec(charset) if charset else None
    if codec:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if codec:
        try:
            return data.decode(codec, errors="replace")
        except (LookupError, ValueError):
            pass
    # cp1252 covers the Western clients; bytes it cannot map fall through to latin-1.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _unescape_8bit(text: str) -> str:
    """Header text from BytesParser keeps raw 8-bit bytes as surrogates: decode them (UTF-8 first)."""
    if not _SURROGATE.search(text):
        return text
    return _decode_bytes(text.encode("utf-8", errors="surrogateescape"))


def _lenient_b64(text: str) -> bytes:
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4 + (4 if len(cleaned) % 4 > 1 else 0)]
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _q_decode(text: str) -> bytes:
    text = text.replace("_", " ")
    raw = text.encode("latin-1", errors="replace")
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


def decode_header_text(value: str | None) -> str:
    """Decode RFC 2047 encoded words (also inside quotes), raw UTF-8 and folding. Never raises."""
    if not value:
        return ""
    text = _FOLD.sub("", value).replace("\r", "").replace("\n", " ")
    text = _unescape_8bit(text)
    if "=?" not in text:
        return text
    text = _EW_GAP.sub(r"\1", text)  # whitespace between adjacent encoded words is not text

    # Adjacent words in one charset are joined before decoding: clients split multi-byte letters
    # across words (Outlook does, with Vietnamese names).
    out: list[str] = []
    pending: list[bytes] = []
    pending_cs: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_cs
        if pending:
            out.append(_decode_bytes(b"".join(pending), pending_cs))
        pending, pending_cs = [], None

    for m in _ENCODED_WORD.finditer(text):
        if m.start() > pos:
            flush()
            out.append(text[pos : m.start()])
        charset, enc, payload = m.group(1), m.group(2).upper(), m.group(3)
        data = _lenient_b64(payload) if enc == "B" else _q_decode(payload)
        if pending and charset.lower() != (pending_cs or "").lower():
            flush()
        pending.append(data)
        pending_cs = charset
        pos = m.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def _header_table(msg: Message) -> dict[str, list[str]]:
    """Every header of ``msg`` by lower-case name, unfolded and stripped, read once per part and kept on it
    (the parts are never changed after parsing; this module asks for the same headers many times)."""
    table = msg.__dict__.get("_intake_headers")
    if table is not None:
        return table
    table = {}
    try:
        for key, value in msg.raw_items():
            text = str(value)
            if "\n" in text or "\r" in text:
                text = _FOLD.sub("", text).replace("\r", "").replace("\n", " ")
            table.setdefault(key.lower(), []).append(text.strip())
    except Exception:  # noqa: BLE001 - a broken header block must not lose the message
        pass
    msg.__dict__["_intake_headers"] = table
    return table


def _raw_headers(msg: Message, name: str) -> list[str]:
    return list(_header_table(msg).get(name.lower(), ()))


def _first(msg: Message, name: str) -> str | None:
    values = _header_table(msg).get(name.lower())
    return values[0] if values else None


# --------------------------------------------------------------------------------------------
# Parameters (Content-Type / Content-Disposition)
# --------------------------------------------------------------------------------------------


_PARAM_PIECE = re.compile(r'(?:[^;"]+|"(?:[^"\\]|\\.|\\\Z)*(?:"|\Z))*', re.DOTALL)


def _split_params(value: str) -> tuple[str, list[tuple[str, str]]]:
    """Split ``main; a=b; c="d;e"`` respecting quotes. Values are unquoted. Never raises."""
    if '"' not in value:
        return _params_of(value.split(";"))  # nothing quoted: every ';' separates
    # Outside quotes every character but ';' and '"' is plain; inside, a backslash keeps the next
    # character (both are kept) and an unterminated quote runs to the end.
    pieces: list[str] = []
    pos, end = 0, len(value)
    while True:
        m = _PARAM_PIECE.match(value, pos)
        pieces.append(m.group())
        pos = m.end()
        if pos >= end:
            break
        pos += 1  # the ';'
    return _params_of(pieces)


def _params_of(pieces: list[str]) -> tuple[str, list[tuple[str, str]]]:
    main = pieces[0].strip().lower()
    params: list[tuple[str, str]] = []
    for piece in pieces[1:]:
        if "=" not in piece:
            continue
        key, _, val = piece.partition("=")
        val = val.strip()
        if len(val) >= 2 and val[0] == '"' and val.endswith('"'):
            # Only \" and \\ are unescaped: Netscape and Outlook write C:\TEMP\x.png unescaped.
            val = re.sub(r'\\(["\\])', r"\1", val[1:-1])
        elif val.startswith('"'):
            val = val[1:]  # unterminated quote: take what is there
        params.append((key.strip().lower(), val))
    return main, params


@functools.lru_cache(maxsize=16)
def _section_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(name)}\*(?:(\d+)(\*)?|)$")


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    """One parameter, RFC 2231 (charset, continuations) first, then the plain form."""
    sections: dict[int, tuple[bool, str]] = {}
    match = _section_pattern(name).match
    for key, val in params:
        if not key.startswith(name):
            continue
        m = match(key)
        if not m:
            continue
        if m.group(1) is None:  # name*=charset'lang'text
            sections.setdefault(0, (True, val))
        else:
            sections.setdefault(int(m.group(1)), (bool(m.group(2)), val))
    if sections:
        charset: str | None = None
        chunks: list[bytes] = []
        for index in sorted(sections):
            encoded, val = sections[index]
            if index == sorted(sections)[0] and encoded and val.count("'") >= 2:
                charset, _lang, val = val.split("'", 2)
            if encoded:
                chunks.append(urllib.parse.unquote_to_bytes(val))
            else:
                chunks.append(val.encode("utf-8", errors="surrogateescape"))
        text = _decode_bytes(b"".join(chunks), charset or None)
        # Some clients put RFC 2047 words inside an RFC 2231 value too.
        return decode_header_text(text)
    for key, val in params:
        if key == name:
            return decode_header_text(val)
    return None


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
# Addresses
# --------------------------------------------------------------------------------------------

_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+[A-Za-z0-9]")


def _parse_from(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    text = _unescape_8bit(_FOLD.sub("", value))
    pairs: list[tuple[str, str]] = []
    try:
        pairs = email.utils.getaddresses([text])
    except Exception:  # noqa: BLE001
        pairs = []
    for name, addr in pairs:
        if addr and _ADDR.fullmatch(addr.strip()):
            display = decode_header_text(name).strip().strip('"').strip() or None
            return addr.strip().lower(), unicodedata.normalize("NFC", display) if display else None
    m = _ADDR.search(text)
    if m:
        display = decode_header_text(text[: m.start()]).strip(' "<\t') or None
        return m.group(0).lower(), display
    return None, decode_header_text(text).strip() or None


def is_own_address(addr: str | None, own_addresses: Iterable[str]) -> bool:
    """True when ``addr`` is one of the district's own addresses (the caller ignores such mail)."""
    if not addr:
        return False
    return addr.strip().lower() in {a.strip().lower() for a in own_addresses}


def _msgids(value: str | None) -> list[str]:
    if not value:
        return []
    return re.findall(r"<[^<>\s]+>", value)


# --------------------------------------------------------------------------------------------
# Kind of mail: auto-reply, bounce, normal
# --------------------------------------------------------------------------------------------

_AUTO_SUBJECTS = tuple(
    textnorm.fold(s)
    for s in (
        "Trả lời tự động", "Tự động trả lời", "Thư trả lời tự động", "Automatic reply",
        "Auto:", "Auto reply", "Auto-reply", "Autoreply", "Out of Office", "Out of the office",
        "Abwesenheitsnotiz", "Réponse automatique",
    )
)


def _auto_reply_reason(msg: Message, subject: str) -> str | None:
    auto = _first(msg, "Auto-Submitted")
    if auto is not None and auto.strip().lower().split(";")[0].strip() not in ("no", ""):
        return f"Thư trả lời tự động (Auto-Submitted: {auto.strip()})"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if _first(msg, name) is not None:
            return f"Thư trả lời tự động (có tiêu đề {name})"
    precedence = (_first(msg, "Precedence") or "").strip().lower()
    if precedence == "auto_reply":
        return "Thư trả lời tự động (Precedence: auto_reply)"
    folded = textnorm.fold(subject)
    for prefix in _AUTO_SUBJECTS:
        if folded.startswith(prefix):
            return f"Thư trả lời tự động (tiêu đề bắt đầu bằng «{subject[: len(prefix) + 2].strip()}»)"
    return None


def _walk(msg: Message) -> Iterator[Message]:
    try:
        yield from msg.walk()
    except Exception:  # noqa: BLE001
        return


def _dsn_fields(part: Message) -> list[dict[str, str]]:
    """The field groups of a message/delivery-status part, as lower-case name → value."""
    groups: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, Message):
                groups.append({k.lower(): _unescape_8bit(str(v)) for k, v in block.raw_items()})
        if groups:
            return groups
    text = payload if isinstance(payload, str) else ""
    if not isinstance(payload, str):
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else ""
    for block in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        for line in _FOLD.sub("", block).splitlines():
            key, sep, val = line.partition(":")
            if sep:
                fields[key.strip().lower()] = val.strip()
        if fields:
            groups.append(fields)
    return groups


def _bounce_info(msg: Message, from_addr: str | None) -> tuple[str | None, tuple[str, ...], str | None]:
    ctype = (_first(msg, "Content-Type") or "").lower()
    main, params = _split_params(ctype)
    report_type = (_param(params, "report-type") or "").lower()
    is_report = main == "multipart/report" and report_type == "delivery-status"
    dsn_parts = [p for p in _walk(msg) if _content_type(p) == "message/delivery-status"]
    local = (from_addr or "").split("@")[0]
    from_daemon = local in ("mailer-daemon", "postmaster")
    if not is_report and not (from_daemon and dsn_parts):
        return None, (), None

    recipients: list[str] = []
    for part in dsn_parts:
        for fields in _dsn_fields(part):
            action = fields.get("action", "").lower()
            recipient = fields.get("final-recipient") or fields.get("original-recipient")
            if recipient and action.startswith("failed"):
                addr = recipient.split(";", 1)[-1].strip().strip("<>").lower()
                if addr and addr not in recipients:
                    recipients.append(addr)

    original_id: str | None = None
    for part in _walk(msg):
        ct = _content_type(part)
        try:
            if ct == "message/rfc822":
                inner = part.get_payload()
                inner_msg = inner[0] if isinstance(inner, list) and inner else None
                if isinstance(inner_msg, Message):
                    ids = _msgids(_first(inner_msg, "Message-ID"))
                    original_id = ids[0] if ids else original_id
            elif ct == "text/rfc822-headers":
                raw = part.get_payload(decode=True) or b""
                headers = email.message_from_bytes(raw, policy=email.policy.compat32)
                ids = _msgids(_first(headers, "Message-ID"))
                original_id = ids[0] if ids else original_id
        except Exception:  # noqa: BLE001
            continue
        if original_id:
            break
    reason = "Thư báo không gửi được (delivery-status)"
    if recipients:
        reason += " tới " + ", ".join(recipients)
    return reason, tuple(recipients), original_id


# --------------------------------------------------------------------------------------------
# Authentication-Results
# --------------------------------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\([^()]*\)", " ", text)
    return text


def _auth_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """(authserv-id, [(method, result, {property: value})]) of one Authentication-Results header."""
    text = _strip_comments(_unescape_8bit(value))
    pieces = [p.strip() for p in text.split(";")]
    authserv = pieces[0].split()[0].lower() if pieces and pieces[0].split() else ""
    results: list[tuple[str, str, dict[str, str]]] = []
    for piece in pieces[1:]:
        tokens = piece.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props: dict[str, str] = {}
        for tok in tokens[1:]:
            key, sep, val = tok.partition("=")
            if sep:
                props[key.lower()] = val.strip('"').lower()
        results.append((method.lower().split("/")[0], result.lower(), props))
    return authserv, results


def _aligned(domain: str, from_domain: str) -> bool:
    domain = domain.lstrip("@").split("@")[-1]
    return bool(domain) and (from_domain == domain or from_domain.endswith("." + domain))


def _auth_failure(msg: Message, from_addr: str | None, trusted: Iterable[str]) -> str | None:
    headers = _raw_headers(msg, "Authentication-Results")
    if not headers:
        return None
    trusted_ids = {t.strip().lower() for t in trusted if t.strip()}
    parsed = [_auth_results(h) for h in headers]
    considered = [r for a, r in parsed if a in trusted_ids] if trusted_ids else [parsed[0][1]]
    results = [item for group in considered for item in group]
    from_domain = (from_addr or "").rpartition("@")[2]

    def describe(method: str, result: str, props: dict[str, str], keys: tuple[str, ...]) -> str:
        for key in keys:
            if props.get(key):
                return f"{method}={result} ({key}={props[key]})"
        return f"{method}={result}" + (f" (header.from={from_domain})" if from_domain else "")

    for method, result, props in results:
        if method == "dmarc" and result == "fail":
            return describe(method, result, props, ("header.from",))
    dmarc_pass = any(m == "dmarc" and r == "pass" for m, r, _ in results)
    for method, result, props in results:
        if method == "spf" and result == "fail":
            return describe(method, result, props, ("smtp.mailfrom", "smtp.helo"))
    dkim_pass = any(
        m == "dkim" and r == "pass" and _aligned(p.get("header.d") or p.get("header.i", ""), from_domain)
        for m, r, p in results
    )
    if not dkim_pass and not dmarc_pass:
        for method, result, props in results:
            if method == "dkim" and result == "fail":
                return describe(method, result, props, ("header.d", "header.i"))
    return None


# --------------------------------------------------------------------------------------------
# Attachments
# --------------------------------------------------------------------------------------------

_UU_BEGIN = re.compile(rb"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]+?)[ \t]*\r?$", re.MULTILINE)
_SIGNATURE_TYPES = {"application/pgp-signature", "application/pkcs7-signature",
                    "application/x-pkcs7-signature"}
_BODY_CONTAINERS = {"message/delivery-status", "text/rfc822-headers",
                    "message/disposition-notification", "message/feedback-report"}


def _uudecode(block: bytes) -> bytes:
    out = bytearray()
    for line in block.splitlines():
        line = line.rstrip(b"\r")
        if not line or line in (b"`", b" "):
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Some encoders drop trailing spaces: pad to the declared length and retry.
            try:
                nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
                out += binascii.a2b_uu(line[:nbytes].ljust(nbytes))
            except (binascii.Error, IndexError):
                continue
    return bytes(out)


def _uu_files(data: bytes) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    for m in _UU_BEGIN.finditer(data):
        rest = data[m.end():]
        end = re.search(rb"^end[ \t]*\r?$", rest, re.MULTILINE)
        body = rest[: end.start()] if end else rest
        files.append((m.group(1).decode("utf-8", errors="replace").strip(), _uudecode(body)))
    return files


_TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"
_TNEF_ATTACH_REND = 0x00069002  # starts a new attachment
_TNEF_ATTACH_TITLE = 0x00018010  # its (short) file name
_TNEF_ATTACH_DATA = 0x0006800F


def _tnef_files(data: bytes) -> list[tuple[str, bytes]]:
    """The files inside a winmail.dat (Outlook's TNEF): title and data attributes only.

    The long file name lives in MAPI properties that this reader does not decode; the short
    title is usually the same name for Latin names."""
    if not data.startswith(_TNEF_SIGNATURE):
        return []
    files: list[list[object]] = []
    pos = 6
    while pos + 9 <= len(data):
        level = data[pos]
        attr = int.from_bytes(data[pos + 1 : pos + 5], "little")
        length = int.from_bytes(data[pos + 5 : pos + 9], "little")
        value = data[pos + 9 : pos + 9 + length]
        pos += 9 + length + 2
        if level != 2 or len(value) != length:
            continue
        if attr == _TNEF_ATTACH_REND or not files:
            files.append(["", b""])
        if attr == _TNEF_ATTACH_TITLE:
            files[-1][0] = value.split(b"\x00", 1)[0].decode("cp1252", errors="replace")
        elif attr == _TNEF_ATTACH_DATA:
            files[-1][1] = value
    return [(str(name), bytes(body)) for name, body in files if body]  # type: ignore[call-overload]


def _payload_bytes(part: Message, defects: list[str], path: str) -> bytes:
    cte = (_first(part, "Content-Transfer-Encoding") or "").strip().lower()
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
                return _lenient_b64(text)
        if cte == "quoted-printable":
            return binascii.a2b_qp(raw_bytes)
        if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
            files = _uu_files(raw_bytes)
            return files[0][1] if files else _uudecode(raw_bytes)
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else raw_bytes
    except Exception:  # noqa: BLE001
        defects.append(f"{path}: không giải mã được nội dung, giữ nguyên bản gốc")
        return raw_bytes


def _filename(part: Message) -> str | None:
    for header, key in (("Content-Disposition", "filename"), ("Content-Type", "name")):
        value = _first(part, header)
        if not value:
            continue
        _main, params = _split_params(value)
        name = _param(params, key)
        if name and name.strip():
            return unicodedata.normalize("NFC", name.strip())
    return None


def _content_type(part: Message) -> str:
    known = part.__dict__.get("_intake_ctype")
    if known is not None:
        return known
    try:
        ctype = part.get_content_type()
    except Exception:  # noqa: BLE001
        ctype = "application/octet-stream"
    part.__dict__["_intake_ctype"] = ctype
    return ctype


class _Collector:
    def __init__(self) -> None:
        self.attachments: list[Attachment] = []
        self.skipped: list[str] = []
        self.defects: list[str] = []

    def add(self, original: str | None, content_type: str, data: bytes, path: str) -> None:
        fallback = f"attachment-{path.replace('.', '-').replace('#', '-')}{extension_for(content_type)}"
        name = sanitise_filename(original or "", fallback)
        self.attachments.append(
            Attachment(
                filename=name,
                content_type=content_type,
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
        ctype = _content_type(part)
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
        disposition = _split_params(_first(part, "Content-Disposition") or "")[0]
        original = _filename(part)
        has_cid = _first(part, "Content-ID") is not None

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
            for n, (uu_name, uu_data) in enumerate(_uu_files(data), start=1):
                guessed = mimetypes.guess_type(uu_name)[0] or "application/octet-stream"
                self.add(uu_name, guessed, uu_data, f"{leaf_path}#uu{n}")
            return
        if maintype != "text" and data.lstrip()[:6] == b"begin " and _UU_BEGIN.match(data.lstrip()):
            files = _uu_files(data)
            if files:
                data = files[0][1]
        self.add(original, ctype, data, leaf_path)
        if ctype in ("application/ms-tnef", "application/vnd.ms-tnef") or (original or "").lower() == "winmail.dat":
            # winmail.dat itself stays (a human may need it); the files inside are offered as well.
            for n, (tnef_name, tnef_data) in enumerate(_tnef_files(data), start=1):
                guessed = mimetypes.guess_type(tnef_name)[0] or "application/octet-stream"
                self.add(tnef_name or None, guessed, tnef_data, f"{leaf_path}#tnef{n}")

    def walk_message(self, msg: Message, path: str) -> None:
        """A whole message at ``path``: its body part is ``path.1`` (IMAP numbering)."""
        if msg.is_multipart():
            related = _content_type(msg) == "multipart/related"
            for i, child in enumerate(self._children(msg), start=1):
                self.walk(child, f"{path}.{i}" if path else str(i), related)
        else:
            self.walk(msg, f"{path}.1" if path else "", False)


# --------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------


# RFC 2045 tokens; parameter names without RFC 2231's '*'; quoted values without escapes or quotes.
_TOKEN = r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+"
_PNAME = r"[!#$%&'+\-.^_`{|}~0-9A-Za-z]+"
_QUOTED = r'"[^"\\\x00-\x1f\x7f-\U0010ffff]*"'
_LINESEP = re.compile(r"[\r\n]")
_SIMPLE = {
    "content-type": re.compile(rf"[ \t]*{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_PNAME}=(?:{_TOKEN}|{_QUOTED}))*[ \t]*;?[ \t]*"),
    "content-transfer-encoding": re.compile(rf"[ \t]*{_TOKEN}[ \t]*"),
}
# policy.default decodes an encoded word inside a quoted value: for the two parameters the email package
# reads itself, such a value takes the slow path (a file name with one does not matter to the package).
_ENCODED_READ_PARAM = re.compile(r'(?i)(?:boundary|charset)[ \t]*=[ \t]*"[^"]*=\?')


class _FastPolicy(type(email.policy.compat32)):  # type: ignore[misc]
    """Parse with compat32 (headers stay plain strings: nothing is parsed until asked) but read the two
    headers the email package itself relies on exactly as ``policy.default`` reads them.

    The parser and ``get_content_type``/``get_boundary``/``get_payload(decode=True)`` read only
    Content-Type and Content-Transfer-Encoding; every header this module needs it reads from
    ``raw_items`` and decodes itself (see above). ``policy.default`` parses a header into an object
    each time it is read, which cost ~5x the whole parse of a small message with an attachment. A
    well-formed value (tokens, plain quoted strings) reads the same under both policies and stays a
    string; anything else (a boundary folded inside quotes or left unquoted with '=' in it, comments,
    encoded words, 8-bit bytes) goes through ``policy.default``'s own header parser, so a malformed
    mail is split into parts exactly as before.
    """

    def header_fetch_parse(self, name: str, value: str):  # type: ignore[no-untyped-def]
        simple = _SIMPLE.get(name.lower())
        if simple is None or not isinstance(value, str):
            return super().header_fetch_parse(name, value)
        unfolded = _LINESEP.sub("", value)  # as policy.default unfolds (only CR and LF)
        if simple.fullmatch(unfolded) and not ("=?" in unfolded and _ENCODED_READ_PARAM.search(unfolded)):
            return unfolded
        return email.policy.default.header_fetch_parse(name, value)


_POLICY = _FastPolicy()


def _parse(raw: bytes) -> Message:
    try:
        # The same tree as FeedParser with _POLICY, without its line-by-line loop over bodies (mimesplit).
        return mimesplit.split(raw.decode("ascii", "surrogateescape"), _POLICY)
    except Exception:  # noqa: BLE001 - mimesplit.Unusual, or anything else: FeedParser decides
        pass
    try:
        return email.message_from_bytes(raw, policy=_POLICY)
    except Exception:  # noqa: BLE001
        return email.message_from_bytes(raw, policy=email.policy.default)


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

    from_addr, from_name = safe(lambda: _parse_from(_first(msg, "From")), (None, None), "From")
    subject = safe(
        lambda: unicodedata.normalize("NFC", re.sub(r"\s+", " ", decode_header_text(_first(msg, "Subject"))).strip()),
        "",
        "Subject",
    )
    message_id = safe(
        lambda: (_msgids(_first(msg, "Message-ID")) or [(_first(msg, "Message-ID") or "").strip() or None])[0],
        None,
        "Message-ID",
    )
    references: list[str] = []
    for name in ("In-Reply-To", "References"):
        for value in _raw_headers(msg, name):
            for ref in _msgids(value):
                if ref not in references:
                    references.append(ref)

    bounce_reason, bounced, bounced_id = safe(lambda: _bounce_info(msg, from_addr), (None, (), None), "bounce")
    if bounce_reason:
        kind, kind_reason = "bounce", bounce_reason
    else:
        auto = safe(lambda: _auto_reply_reason(msg, subject), None, "auto-reply")
        kind, kind_reason = ("auto_reply", auto) if auto else ("normal", None)

    auth_failure = safe(lambda: _auth_failure(msg, from_addr, list(trusted_authserv_ids)), None, "Authentication-Results")

    collector = _Collector()
    collector.walk_message(msg, "")

    for part in _walk(msg):
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
        auth_failure=auth_failure,
        attachments=tuple(collector.attachments),
        skipped_parts=tuple(collector.skipped),
        defects=tuple(dict.fromkeys(defects)),
        bounced_recipients=bounced,
        bounced_message_id=bounced_id,
    )
