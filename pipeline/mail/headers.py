"""Reading header text the way units' mail clients actually write it: encoded words, parameters
(file names), addresses and message ids. Pure functions; nothing here raises on bad input.

Why by hand and not through the email package (``policy.default`` header objects, ``get_param``,
``get_filename``): compared over the peer samples and the clients' quirks, the library turns raw 8-bit
latin-1 subjects and file names into U+FFFD, as it does text and RFC 2231 names in charsets it does not
know; it gives up on a From with an unclosed quote; it prefers a plain ``filename=`` to the RFC 2231
``filename*=`` that follows it, strips the backslashes of Netscape/Outlook's unescaped
``"C:\\TEMP\\x.png"`` and cuts ``name=a"b.xls`` at the quote. Each of those would reach a unit's
receipt. So header values are taken from ``Message.raw_items`` (the text as it came, 8-bit bytes
kept as surrogates) and decoded here.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import email.utils
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

__all__ = [
    "decode_header_text",
    "decode_bytes",
    "lenient_b64",
    "unescape_8bit",
    "join_continuations",
    "unfold",
    "raw_headers",
    "first_header",
    "content_type",
    "walk_parts",
    "split_params",
    "param",
    "parse_from",
    "is_own_address",
    "message_ids",
    "header_message_id",
]

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


def decode_bytes(data: bytes, charset: str | None = None) -> str:
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


def unescape_8bit(text: str) -> str:
    """Header text from BytesParser keeps raw 8-bit bytes as surrogates: decode them (UTF-8 first)."""
    if not _SURROGATE.search(text):
        return text
    return decode_bytes(text.encode("utf-8", errors="surrogateescape"))


def join_continuations(text: str) -> str:
    """Header lines with their folded continuation lines joined (other line breaks kept)."""
    return _FOLD.sub("", text)


def unfold(text: str) -> str:
    """One header value on one line."""
    return join_continuations(text).replace("\r", "").replace("\n", " ")


def lenient_b64(text: str) -> bytes:
    """Base64 with stray characters and missing padding, as much as can be read."""
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
    text = unescape_8bit(unfold(value))
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
            out.append(decode_bytes(b"".join(pending), pending_cs))
        pending, pending_cs = [], None

    for m in _ENCODED_WORD.finditer(text):
        if m.start() > pos:
            flush()
            out.append(text[pos : m.start()])
        charset, enc, payload = m.group(1), m.group(2).upper(), m.group(3)
        data = lenient_b64(payload) if enc == "B" else _q_decode(payload)
        if pending and charset.lower() != (pending_cs or "").lower():
            flush()
        pending.append(data)
        pending_cs = charset
        pos = m.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def raw_headers(msg: Message, name: str) -> list[str]:
    """Every value of header ``name``, unfolded and stripped, undecoded."""
    lname = name.lower()
    try:
        return [unfold(str(value)).strip() for key, value in msg.raw_items() if key.lower() == lname]
    except Exception:  # noqa: BLE001 - a broken header block must not lose the message
        return []


def first_header(msg: Message, name: str) -> str | None:
    values = raw_headers(msg, name)
    return values[0] if values else None


def content_type(part: Message) -> str:
    """The part's content type as the email package decides it (defaults, bad values)."""
    try:
        return part.get_content_type()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def walk_parts(msg: Message) -> Iterator[Message]:
    try:
        yield from msg.walk()
    except Exception:  # noqa: BLE001
        return


# --------------------------------------------------------------------------------------------
# Parameters (Content-Type / Content-Disposition)
# --------------------------------------------------------------------------------------------


def split_params(value: str) -> tuple[str, list[tuple[str, str]]]:
    """Split ``main; a=b; c="d;e"`` respecting quotes: (lower-case main value, [(lower-case key, value)]).
    Values are unquoted. Never raises."""
    pieces: list[str] = []
    buf: list[str] = []
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            buf.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == ";" and not quoted:
            pieces.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    pieces.append("".join(buf))  # an unterminated quote runs to the end
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


def param(params: list[tuple[str, str]], name: str) -> str | None:
    """One parameter, RFC 2231 (charset, continuations) first, then the plain form."""
    sections: dict[int, tuple[bool, str]] = {}
    pattern = re.compile(rf"^{re.escape(name)}\*(?:(\d+)(\*)?|)$")
    for key, val in params:
        m = pattern.match(key)
        if not m:
            continue
        if m.group(1) is None:  # name*=charset'lang'text
            sections.setdefault(0, (True, val))
        else:
            sections.setdefault(int(m.group(1)), (bool(m.group(2)), val))
    if sections:
        charset: str | None = None
        chunks: list[bytes] = []
        first = min(sections)
        for index in sorted(sections):
            encoded, val = sections[index]
            if index == first and encoded and val.count("'") >= 2:
                charset, _lang, val = val.split("'", 2)
            if encoded:
                chunks.append(urllib.parse.unquote_to_bytes(val))
            else:
                chunks.append(val.encode("utf-8", errors="surrogateescape"))
        # All sections are decoded together, in the declared charset when it fits and by guessing
        # when it does not (clients label cp1258 or latin-1 names as utf-8 and the reverse).
        text = decode_bytes(b"".join(chunks), charset or None)
        # Some clients put RFC 2047 words inside an RFC 2231 value too.
        return decode_header_text(text)
    for key, val in params:
        if key == name:
            return decode_header_text(val)  # Outlook: RFC 2047 words inside the quotes
    return None


# --------------------------------------------------------------------------------------------
# Addresses and message ids
# --------------------------------------------------------------------------------------------

_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+[A-Za-z0-9]")


def parse_from(value: str | None) -> tuple[str | None, str | None]:
    """(lower-case address, display name) of a From value; the first usable address wins."""
    if not value:
        return None, None
    text = unescape_8bit(join_continuations(value))
    pairs: list[tuple[str, str]] = []
    try:
        pairs = email.utils.getaddresses([text])
    except Exception:  # noqa: BLE001
        pairs = []
    for name, addr in pairs:
        if addr and _ADDR.fullmatch(addr.strip()):
            display = decode_header_text(name).strip().strip('"').strip() or None
            return addr.strip().lower(), unicodedata.normalize("NFC", display) if display else None
    # getaddresses gives up on an unclosed quote and similar: take the first thing shaped like an address.
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


def message_ids(value: str | None) -> list[str]:
    """The ``<…>`` ids in a Message-ID, In-Reply-To or References value."""
    if not value:
        return []
    return re.findall(r"<[^<>\s]+>", value)


# Enough for any real header block; a message whose headers are larger is not worth reading further.
_HEADER_LIMIT = 256 * 1024


def header_message_id(raw: bytes) -> str:
    """The Message-ID header as recorded for dedup: the header block of the first 256 KiB read by
    ``BytesHeaderParser(policy=compat32)``, whitespace collapsed, at most 900 characters; "" when
    there is none or it cannot be read. Never raises.

    This is the exact text already stored for every recorded mail: reading it any other way would
    make recorded mail look new."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:_HEADER_LIMIT])
        return " ".join(str(headers.get("Message-ID") or "").split())[:900]
    except Exception:  # noqa: BLE001 - a header block we cannot read still gets archived and recorded
        return ""
