"""Messages built the way real clients build them, for the demo and for tests. No I/O, no clock.

Each builder returns the raw bytes (CRLF line ends) a mailbox would hold after delivery to the
district's Gmail box: the receiving server's trace and Authentication-Results headers on top, then
the headers the sending client wrote. Boundaries and Message-IDs are derived from the content, so
the same call always gives the same bytes.

How each client encodes a non-ASCII filename (what mime.py must undo):
- Gmail:       ``filename="=?UTF-8?B?...?="`` (RFC 2047 inside quotes, not RFC-compliant) plus a
               Content-ID / X-Attachment-Id on every attachment.
- Outlook:     ``name="=?utf-8?B?...?="`` and ``filename="=?utf-8?B?...?="``, split into several
               words; Thread-Index, X-MS-Has-Attach.
- Thunderbird: RFC 2231 ``filename*0*=utf-8''...; filename*1*=...`` continuations.
"""
from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import Sequence

__all__ = [
    "DEFAULT_DATE",
    "SIGNATURE_PNG",
    "XLSX_TYPE",
    "auto_reply",
    "bounce",
    "forwarded_message",
    "gmail_message",
    "outlook_message",
    "spoofed",
    "thunderbird_message",
    "with_signature_image",
]

Attachments = Sequence[tuple[str, bytes, str]]  # (filename, data, mime type)

DEFAULT_DATE = "Mon, 21 Feb 2022 09:15:00 +0700"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CRLF = "\r\n"


def _png(width: int = 1, height: int = 1, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


SIGNATURE_PNG = _png(4, 2, (0, 90, 160))  # the "logo" in a unit's signature


# ---------------------------------------------------------------------------------------------
# Small raw-MIME helpers (hand-made so each client's quirks are exact)
# ---------------------------------------------------------------------------------------------


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x00".join(repr(p) for p in parts).encode("utf-8")).hexdigest()


def _is_ascii(text: str) -> bool:
    return all(ord(c) < 128 for c in text)


def _chunks_utf8(text: str, max_bytes: int) -> list[str]:
    """Split text so that each piece's UTF-8 is at most max_bytes, never inside a letter."""
    pieces: list[str] = []
    current = ""
    for ch in text:
        if len((current + ch).encode("utf-8")) > max_bytes and current:
            pieces.append(current)
            current = ""
        current += ch
    if current:
        pieces.append(current)
    return pieces


def encoded_words(text: str, *, encoding: str = "B", charset: str = "UTF-8", max_bytes: int = 36) -> str:
    """RFC 2047 encoded words for ``text``, folded with CRLF SPACE between words."""
    if _is_ascii(text):
        return text
    words = []
    for piece in _chunks_utf8(text, max_bytes):
        data = piece.encode("utf-8")
        if encoding.upper() == "B":
            payload = base64.b64encode(data).decode("ascii")
        else:
            payload = "".join(
                chr(b) if (chr(b).isalnum() and b < 128) else ("_" if b == 32 else f"={b:02X}") for b in data
            )
        words.append(f"=?{charset}?{encoding.upper()}?{payload}?=")
    return (CRLF + " ").join(words)


def _rfc2231(name: str, value: str, *, section_bytes: int = 30) -> str:
    """Thunderbird's ``name*0*=utf-8''...; name*1*=...`` form, one section per folded line."""
    if _is_ascii(value) and len(value) < 60:
        return f'{name}="{value}"'
    sections = []
    for i, piece in enumerate(_chunks_utf8(value, section_bytes)):
        quoted = "".join(
            chr(b) if (chr(b).isalnum() and b < 128) or chr(b) in "-._" else f"%{b:02X}"
            for b in piece.encode("utf-8")
        )
        prefix = "utf-8''" if i == 0 else ""
        sections.append(f"{name}*{i}*={prefix}{quoted}")
    return (";" + CRLF + " ").join(sections)


def _b64_body(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return CRLF.join(text[i : i + 76] for i in range(0, len(text), 76)) or ""


def _qp_body(text: str) -> str:
    import quopri

    encoded = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8")).decode("ascii")
    return encoded.replace("\n", CRLF)


def _leaf(headers: list[str], body: str) -> str:
    return CRLF.join(headers) + CRLF + CRLF + body


def _multipart(subtype: str, parts: list[str], seed: str, extra_params: str = "") -> tuple[str, str]:
    boundary = f"000000000000{_digest(subtype, seed, len(parts))[:16]}"
    header = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{extra_params}'
    body = "".join(f"--{boundary}{CRLF}{p}{CRLF}" for p in parts) + f"--{boundary}--{CRLF}"
    return header, body


def _text_parts(body: str, seed: str, html: bool = True) -> tuple[str, str]:
    plain = _leaf(['Content-Type: text/plain; charset="UTF-8"', "Content-Transfer-Encoding: quoted-printable"],
                  _qp_body(body))
    if not html:
        return 'Content-Type: text/plain; charset="UTF-8"' + CRLF + "Content-Transfer-Encoding: quoted-printable", \
            _qp_body(body)
    paragraphs = "".join(f"<div>{line}</div>" for line in body.splitlines()) or "<div></div>"
    html_part = _leaf(['Content-Type: text/html; charset="UTF-8"', "Content-Transfer-Encoding: quoted-printable"],
                      _qp_body(f'<div dir="ltr">{paragraphs}</div>'))
    return _multipart("alternative", [plain, html_part], seed)


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].lower() or "example.com"


def _addr_header(addr: str, name: str | None) -> str:
    if not name:
        return addr
    if _is_ascii(name):
        return f'"{name}" <{addr}>'
    return f"{encoded_words(name)} <{addr}>"


def gmail_auth_results(sender: str, *, dmarc: str = "pass", spf: str = "pass", dkim: str = "pass") -> str:
    """The Authentication-Results line Gmail's MX writes on delivery."""
    domain = _domain(sender)
    return (
        f"mx.google.com;{CRLF}       dkim={dkim} header.i=@{domain} header.s=20210112 header.b=AbCdEf12;{CRLF}"
        f"       spf={spf} (google.com: domain of {sender} designates 209.85.220.41 as permitted sender)"
        f" smtp.mailfrom={sender};{CRLF}"
        f"       dmarc={dmarc} (p=NONE sp=NONE dis=NONE) header.from={domain}"
    )


def _envelope(
    sender: str,
    to: str,
    date: str,
    auth_results: str | None,
    extra_trace: Sequence[str] = (),
) -> list[str]:
    """Headers the receiving Gmail server puts on top of the message."""
    headers = [
        f"Delivered-To: {to}",
        f"Received: by 2002:a05:6520:2a4b:b0:1a2:3b4c:5d6e with SMTP id x11csp123456lkq;{CRLF}        {date}",
        f"Return-Path: <{sender}>",
        f"Received: from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41]){CRLF}"
        f"        by mx.google.com with SMTPS id a1sor123456pgb.2022;{CRLF}        {date}",
        f"Received-SPF: pass (google.com: domain of {sender} designates 209.85.220.41 as permitted sender)"
        f" client-ip=209.85.220.41;",
    ]
    if auth_results is None:
        auth_results = gmail_auth_results(sender)
    if auth_results:
        headers.append(f"Authentication-Results: {auth_results}")
    headers.extend(extra_trace)
    return headers


def _finish(headers: list[str], content_header: str, body: str) -> bytes:
    return (CRLF.join([*headers, content_header]) + CRLF + CRLF + body).encode("utf-8")


def _attachment_part(filename: str, data: bytes, mime_type: str, style: str, index: int) -> str:
    if style == "gmail":
        encoded = encoded_words(filename)
        att_id = f"f_l{_digest(filename, data)[:7]}{index}"
        headers = [
            f'Content-Type: {mime_type}; {CRLF} name="{encoded}"',
            f'Content-Disposition: attachment; {CRLF} filename="{encoded}"',
            "Content-Transfer-Encoding: base64",
            f"Content-ID: <{att_id}>",
            f"X-Attachment-Id: {att_id}",
        ]
    elif style == "outlook":
        encoded = encoded_words(filename, charset="utf-8", max_bytes=30)
        headers = [
            f'Content-Type: {mime_type};{CRLF}\tname="{encoded}"',
            f'Content-Description: {encoded}',
            f'Content-Disposition: attachment;{CRLF}\tfilename="{encoded}"; size={len(data)};{CRLF}'
            f'\tcreation-date="Mon, 21 Feb 2022 02:10:00 GMT";{CRLF}'
            f'\tmodification-date="Mon, 21 Feb 2022 02:14:00 GMT"',
            "Content-Transfer-Encoding: base64",
        ]
    elif style == "thunderbird":
        headers = [
            f"Content-Type: {mime_type};{CRLF} {_rfc2231('name', filename)}",
            f"Content-Disposition: attachment;{CRLF} {_rfc2231('filename', filename)}",
            "Content-Transfer-Encoding: base64",
        ]
    else:  # raw: the name as given, quoted, UTF-8 bytes unencoded (phones, webmail)
        escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
        headers = [
            f'Content-Type: {mime_type}; name="{escaped}"',
            f'Content-Disposition: attachment; filename="{escaped}"',
            "Content-Transfer-Encoding: base64",
        ]
    return _leaf(headers, _b64_body(data))


def _message_id(style: str, *parts: object) -> str:
    digest = _digest(style, *parts)
    if style == "outlook":
        return f"<SG2PR06MB{digest[:10].upper()}{digest[10:20].upper()}@SG2PR06MB3456.apcprd06.prod.outlook.com>"
    if style == "thunderbird":
        return f"<{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}@{parts[0] and _domain(str(parts[0]))}>"
    return f"<CAK{digest[:40]}@mail.gmail.com>"


def _build(
    style: str,
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Attachments,
    *,
    date: str | None,
    message_id: str | None,
    auth_results: str | None,
    sender_name: str | None,
    in_reply_to: str | None,
    extra_headers: Sequence[str],
    filename_style: str | None = None,
) -> bytes:
    date = date or DEFAULT_DATE
    message_id = message_id or _message_id(style, sender, to, subject, body, date,
                                           [(n, hashlib.sha256(d).hexdigest()) for n, d, _ in attachments])
    seed = message_id
    headers = _envelope(sender, to, date, auth_results)
    headers.append(f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={_domain(sender)}; s=20210112;"
                   f"{CRLF}        h=mime-version:from:date:message-id:subject:to; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"
                   f"{CRLF}        b=AbCdEf12")
    headers.extend(extra_headers)
    client: list[str] = []
    if style == "outlook":
        client += [
            f"From: {_addr_header(sender, sender_name)}",
            f"To: {to}",
            f"Subject: {encoded_words(subject, charset='utf-8')}",
            f"Thread-Topic: {encoded_words(subject, charset='utf-8')}",
            f"Thread-Index: AdgmxR{_digest(seed)[:20]}==",
            f"Date: {date}",
            f"Message-ID: {message_id}",
            "Accept-Language: vi-VN, en-US",
            "Content-Language: vi-VN",
            f"X-MS-Has-Attach: {'yes' if attachments else ''}",
            "X-MS-TNEF-Correlator: ",
            "MIME-Version: 1.0",
        ]
    elif style == "thunderbird":
        client += [
            f"Message-ID: {message_id}",
            f"Date: {date}",
            "MIME-Version: 1.0",
            "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:91.0) Gecko/20100101 Thunderbird/91.6.1",
            "Content-Language: vi",
            f"To: {to}",
            f"From: {_addr_header(sender, sender_name)}",
            f"Subject: {encoded_words(subject, encoding='Q')}",
        ]
    else:
        client += [
            "MIME-Version: 1.0",
            f"From: {_addr_header(sender, sender_name)}",
            f"Date: {date}",
            f"Message-ID: {message_id}",
            f"Subject: {encoded_words(subject)}",
            f"To: {to}",
        ]
    if in_reply_to:
        client.insert(-1, f"In-Reply-To: {in_reply_to}")
        client.insert(-1, f"References: {in_reply_to}")
    headers.extend(client)

    text_header, text_body = _text_parts(body, seed, html=style != "thunderbird")
    if not attachments:
        return _finish(headers, text_header, text_body)
    parts = [_leaf([text_header], text_body)]
    fstyle = filename_style or style
    for i, (name, data, mime_type) in enumerate(attachments):
        parts.append(_attachment_part(name, data, mime_type, fstyle, i))
    mixed_header, mixed_body = _multipart("mixed", parts, seed)
    return _finish(headers, mixed_header, mixed_body)


def gmail_message(
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Attachments = (),
    *,
    date: str | None = None,
    message_id: str | None = None,
    auth_results: str | None = None,
    sender_name: str | None = None,
    in_reply_to: str | None = None,
    extra_headers: Sequence[str] = (),
    filename_style: str | None = None,
) -> bytes:
    """A mail written in Gmail's web client. ``auth_results``: None → Gmail's passing header,
    "" → no Authentication-Results at all, any other text → that header value.
    ``extra_headers`` go below the receiving server's headers (where a sender could forge them).
    ``filename_style="raw"`` writes filenames as raw UTF-8 in quotes (phones, some webmail)."""
    return _build("gmail", sender, to, subject, body, attachments, date=date, message_id=message_id,
                  auth_results=auth_results, sender_name=sender_name, in_reply_to=in_reply_to,
                  extra_headers=extra_headers, filename_style=filename_style)


def outlook_message(
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Attachments = (),
    *,
    date: str | None = None,
    message_id: str | None = None,
    auth_results: str | None = None,
    sender_name: str | None = None,
    in_reply_to: str | None = None,
    extra_headers: Sequence[str] = (),
) -> bytes:
    """A mail from Outlook: RFC 2047 words inside quotes in name= and filename=, Thread-Index."""
    return _build("outlook", sender, to, subject, body, attachments, date=date, message_id=message_id,
                  auth_results=auth_results, sender_name=sender_name, in_reply_to=in_reply_to,
                  extra_headers=extra_headers)


def thunderbird_message(
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Attachments = (),
    *,
    date: str | None = None,
    message_id: str | None = None,
    auth_results: str | None = None,
    sender_name: str | None = None,
    in_reply_to: str | None = None,
    extra_headers: Sequence[str] = (),
) -> bytes:
    """A mail from Thunderbird: RFC 2231 filename*0*=utf-8''... continuations."""
    return _build("thunderbird", sender, to, subject, body, attachments, date=date, message_id=message_id,
                  auth_results=auth_results, sender_name=sender_name, in_reply_to=in_reply_to,
                  extra_headers=extra_headers)


def spoofed(
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Attachments = (),
    *,
    date: str | None = None,
    message_id: str | None = None,
    forged_pass: bool = True,
) -> bytes:
    """A mail whose From claims ``sender`` but was sent from elsewhere: Gmail's own header says
    dmarc=fail; with ``forged_pass`` the forger also added a lower Authentication-Results saying pass."""
    domain = _domain(sender)
    auth = (
        f"mx.google.com;{CRLF}       spf=softfail (google.com: domain of transitioning {sender} does not"
        f" designate 185.220.101.7 as permitted sender) smtp.mailfrom={sender};{CRLF}"
        f"       dmarc=fail (p=NONE sp=NONE dis=NONE) header.from={domain}"
    )
    extra = [f"Authentication-Results: mx.google.com; dkim=pass header.i=@{domain}; spf=pass"
             f" smtp.mailfrom={sender}; dmarc=pass header.from={domain}"] if forged_pass else []
    return gmail_message(sender, to, subject, body, attachments, date=date, message_id=message_id,
                         auth_results=auth, extra_headers=extra)


def with_signature_image(
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Attachments = (),
    *,
    date: str | None = None,
    message_id: str | None = None,
    signature_png: bytes = SIGNATURE_PNG,
    sender_name: str | None = None,
) -> bytes:
    """A Gmail mail whose signature has an inline logo (multipart/related, Content-ID, inline)."""
    date = date or DEFAULT_DATE
    message_id = message_id or _message_id("gmail-sig", sender, to, subject, body, date)
    seed = message_id
    cid = f"ii_{_digest(seed, 'logo')[:10]}"
    headers = _envelope(sender, to, date, None)
    headers += [
        "MIME-Version: 1.0",
        f"From: {_addr_header(sender, sender_name)}",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        f"Subject: {encoded_words(subject)}",
        f"To: {to}",
    ]
    plain = _leaf(['Content-Type: text/plain; charset="UTF-8"', "Content-Transfer-Encoding: quoted-printable"],
                  _qp_body(body + "\n--\n[image: logo]\n"))
    html = _leaf(['Content-Type: text/html; charset="UTF-8"', "Content-Transfer-Encoding: quoted-printable"],
                 _qp_body(f'<div dir="ltr"><div>{body}</div>--<br><img src="cid:{cid}" alt="logo"></div>'))
    alt_header, alt_body = _multipart("alternative", [plain, html], seed)
    logo = _leaf(
        ['Content-Type: image/png; name="logo.png"', 'Content-Disposition: inline; filename="logo.png"',
         "Content-Transfer-Encoding: base64", f"Content-ID: <{cid}>", f"X-Attachment-Id: {cid}"],
        _b64_body(signature_png),
    )
    rel_header, rel_body = _multipart("related", [_leaf([alt_header], alt_body), logo], seed)
    if not attachments:
        return _finish(headers, rel_header, rel_body)
    parts = [_leaf([rel_header], rel_body)]
    for i, (name, data, mime_type) in enumerate(attachments):
        parts.append(_attachment_part(name, data, mime_type, "gmail", i))
    mixed_header, mixed_body = _multipart("mixed", parts, seed)
    return _finish(headers, mixed_header, mixed_body)


def forwarded_message(
    sender: str,
    to: str,
    subject: str,
    inner: bytes,
    *,
    body: str = "Chuyển tiếp thư của đơn vị.",
    date: str | None = None,
    message_id: str | None = None,
    sender_name: str | None = None,
) -> bytes:
    """``inner`` forwarded as an attachment (message/rfc822), as Gmail and Outlook do."""
    date = date or DEFAULT_DATE
    message_id = message_id or _message_id("gmail-fwd", sender, to, subject, date, hashlib.sha256(inner).hexdigest())
    headers = _envelope(sender, to, date, None)
    headers += [
        "MIME-Version: 1.0",
        f"From: {_addr_header(sender, sender_name)}",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        f"Subject: {encoded_words(subject)}",
        f"To: {to}",
    ]
    text_header, text_body = _text_parts(body, message_id)
    inner_text = inner.decode("utf-8", errors="surrogateescape").replace("\r\n", "\n").replace("\n", CRLF)
    attached = _leaf(['Content-Type: message/rfc822; name="forwarded.eml"',
                      'Content-Disposition: attachment; filename="forwarded.eml"'], inner_text)
    mixed_header, mixed_body = _multipart("mixed", [_leaf([text_header], text_body), attached], message_id)
    return (CRLF.join([*headers, mixed_header]) + CRLF + CRLF + mixed_body).encode("utf-8", errors="surrogateescape")


def auto_reply(
    sender: str,
    to: str,
    original_subject: str,
    body: str = "Tôi đang đi công tác, sẽ trả lời thư khi về cơ quan.",
    *,
    date: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    """An out-of-office answer: Auto-Submitted: auto-replied, subject "Trả lời tự động: …"."""
    return gmail_message(sender, to, f"Trả lời tự động: {original_subject}", body, date=date,
                         message_id=message_id, in_reply_to=in_reply_to,
                         extra_headers=["Auto-Submitted: auto-replied", "X-Autoreply: yes"])


def bounce(
    original: bytes,
    failed_recipient: str,
    *,
    to: str | None = None,
    date: str | None = None,
    message_id: str | None = None,
    reporting_mta: str = "mx.google.com",
) -> bytes:
    """Gmail's delivery-status notification for ``original`` that could not reach ``failed_recipient``."""
    head, _, _ = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    header_text = head.decode("utf-8", errors="replace").replace("\n", CRLF)
    if to is None:
        for line in head.decode("utf-8", errors="replace").splitlines():
            if line.lower().startswith("from:"):
                addr = line.split(":", 1)[1].strip()
                to = addr[addr.find("<") + 1 : addr.find(">")] if "<" in addr else addr
                break
    to = to or "undisclosed-recipients:;"
    date = date or DEFAULT_DATE
    message_id = message_id or f"<{_digest('bounce', original, failed_recipient)[:32]}@mx.google.com>"
    headers = [
        f"Delivered-To: {to}",
        "Return-Path: <>",
        "Auto-Submitted: auto-replied",
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        f"To: {to}",
        "Subject: Delivery Status Notification (Failure)",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    explanation = _leaf(
        ['Content-Type: text/plain; charset="UTF-8"', "Content-Transfer-Encoding: quoted-printable"],
        _qp_body(f"Không gửi được thư tới {failed_recipient}.\n\n"
                 f"Địa chỉ không tồn tại hoặc không nhận thư.\n"),
    )
    status = _leaf(
        ["Content-Type: message/delivery-status"],
        CRLF.join([
            f"Reporting-MTA: dns; {reporting_mta}",
            f"Arrival-Date: {date}",
            "",
            f"Final-Recipient: rfc822; {failed_recipient}",
            "Action: failed",
            "Status: 5.1.1",
            f"Remote-MTA: dns; {_domain(failed_recipient)}",
            "Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
            f"Last-Attempt-Date: {date}",
            "",
        ]),
    )
    returned = _leaf(["Content-Type: text/rfc822-headers"], header_text + CRLF)
    report_header, report_body = _multipart("report", [explanation, status, returned], message_id,
                                            "; report-type=delivery-status")
    return (CRLF.join([*headers, report_header]) + CRLF + CRLF + report_body).encode("utf-8")
