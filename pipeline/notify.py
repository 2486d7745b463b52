"""Renders templates/ and sends the outbox over SMTP.

Mail is built completely (with its own Message-ID) when it is enqueued, in the same transaction as the
outcome it reports; sending only replays those bytes. An item is claimed ('sending') before the SMTP
conversation and marked 'sent' after it: a crash in between leaves it 'uncertain' for staff rather than
risking a second copy in a unit's inbox. Claims and outcomes are written a group at a time (``SEND_GROUP``).
"""
from __future__ import annotations

import base64
import email.policy
import functools
import json
import logging
import random
import re
import smtplib
import socket
import ssl
import time
import urllib.parse
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, localtime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import jinja2

from pipeline import oauth
from pipeline.config import SmtpConfig
from pipeline.errors import SmtpAccessRefused, SmtpRejected, SmtpUnavailable
from pipeline.mailbox import (Refusal, describe_refusal, match_refusal, oauth_access_token, refusal_of,
                              refused_logins, tls_context)
from pipeline.store import OutboxItem, Store

log = logging.getLogger(__name__)


def template_env(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["ddmmyyyy"] = lambda d: d.strftime("%d/%m/%Y") if d else ""
    env.filters["ddmmyyyy_hhmm"] = lambda d: d.strftime("%H:%M ngày %d/%m/%Y") if d else ""
    return env


def build_mail(*, sender: str, to: Sequence[str], subject: str, text: str, html: str | None = None,
               cc: Sequence[str] = (), in_reply_to: str | None = None, references: Sequence[str] = (),
               attachments: Iterable[tuple[str, bytes, str]] = (), auto_submitted: bool = True) -> tuple[str, bytes]:
    """Build a complete message with CRLF line ends; return (Message-ID, bytes).

    The usual mail (plain ASCII addresses, headers without control characters) is written directly:
    the same headers and parts as ``email.message.EmailMessage`` with ``policy.SMTP`` would write
    (``_build_mail_email``), RFC 2047 encoded words for non-ASCII header text, RFC 2231 file names,
    lines folded at 78 where possible — at a tenth of the cost. Anything else goes through ``email``.
    """
    attachments = list(attachments)
    name, addr = parseaddr(sender)
    domain = addr.rsplit("@", 1)[-1] if "@" in addr else "intake.local"
    mid = make_msgid(idstring="intake", domain=domain)
    refs: list[str] = []
    if in_reply_to:
        refs = [r for r in references if r] + ([in_reply_to] if in_reply_to not in references else [])
    raw = _build_mail_fast(name=name, addr=addr, to=to, cc=cc, subject=subject, mid=mid, text=text, html=html,
                           in_reply_to=in_reply_to, refs=refs, attachments=attachments,
                           auto_submitted=auto_submitted)
    if raw is None:
        raw = _build_mail_email(name=name, addr=addr, to=to, cc=cc, subject=subject, mid=mid, text=text,
                                html=html, in_reply_to=in_reply_to, refs=refs, attachments=attachments,
                                auto_submitted=auto_submitted)
    return mid, raw


def _build_mail_email(*, name: str, addr: str, to: Sequence[str], cc: Sequence[str], subject: str, mid: str,
                      text: str, html: str | None, in_reply_to: str | None, refs: Sequence[str],
                      attachments: Sequence[tuple[str, bytes, str]], auto_submitted: bool) -> bytes:
    """The general builder (``email.message.EmailMessage``, ``policy.SMTP``): for what the fast one declines."""
    msg = EmailMessage()
    msg["From"] = formataddr((name, addr)) if name else addr
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Message-ID"] = mid
    msg["Date"] = format_datetime(localtime())
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = " ".join(refs)
    if auto_submitted:
        # RFC 3834: machine-made replies say so, so that units' autoresponders do not answer them.
        msg["Auto-Submitted"] = "auto-replied" if in_reply_to else "auto-generated"
    msg.set_content(text, charset="utf-8")
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    for filename, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    # SMTP wants CRLF line ends, and smtplib does not convert the line ends of bytes it is given.
    return msg.as_bytes(policy=email.policy.SMTP)


# -- the fast builder ----------------------------------------------------------------------------
_LINE = 78  # RFC 5322's "SHOULD" line length; 998 octets is the hard limit
_PLAIN_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[A-Za-z0-9!#$&^_.+-]+")
_QUOTED_NAME = re.compile(r'[\x20-\x7e]*')


def _fold(name: str, tokens: Sequence[str]) -> str:
    """``name: tok tok …``, one space between tokens, a line break before a token that would pass 78."""
    line = name + ":"
    lines = []
    for tok in tokens:
        if len(line) + 1 + len(tok) > _LINE and len(line) > len(name) + 1:
            lines.append(line)
            line = " " + tok
        else:
            line += " " + tok
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(value: str) -> list[str]:
    """RFC 2047 B-encoded words of UTF-8, at most 39 octets each (64 characters), never splitting a character."""
    data = value.encode("utf-8")
    words = []
    i, n = 0, len(data)
    while i < n:
        j = min(i + 39, n)
        while j < n and (data[j] & 0xC0) == 0x80:
            j -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[i:j]).decode("ascii") + "?=")
        i = j
    return words


def _text_tokens(value: str) -> list[str]:
    """Unstructured header text as tokens for ``_fold``: leading plain-ASCII words as they are, from the
    first word that is not (non-ASCII, or looks like an encoded word) to the end as encoded words."""
    words = value.split(" ")
    k = 0
    while k < len(words) and words[k].isascii() and "=?" not in words[k]:
        k += 1
    if k == len(words):
        return words
    return words[:k] + _encoded_words(" ".join(words[k:]))


def _mailbox_tokens(name: str, addr: str) -> list[str]:
    if not name:
        return [addr]
    if name.isascii():
        return formataddr((name, addr)).split(" ")
    return _encoded_words(name) + [f"<{addr}>"]


def _list_tokens(addrs: Sequence[str]) -> list[str]:
    return [a + "," for a in addrs[:-1]] + list(addrs[-1:])


def _base64_lines(data: bytes) -> bytes:
    enc = base64.b64encode(data)
    return b"".join(enc[i:i + 76] + b"\r\n" for i in range(0, len(enc), 76))


def _text_part(text: str, subtype: str) -> bytes:
    """A text part as EmailMessage.set_content(charset='utf-8') makes it: 7bit/8bit when every line fits
    in 78 octets, base64 otherwise (line ends inside base64 stay LF, as there)."""
    lines = text.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) <= _LINE:
        cte = "7bit" if text.isascii() else "8bit"
        body = b"".join(line + b"\r\n" for line in lines) or b"\r\n"
    else:
        cte = "base64"
        body = _base64_lines(b"\n".join(lines) + b"\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode("ascii") + body


def _filename_param(filename: str) -> str:
    """``Content-Disposition`` value for an attachment: quoted ASCII, or RFC 2231 (continued if long)."""
    if _QUOTED_NAME.fullmatch(filename) and '"' not in filename and "\\" not in filename \
            and len(f'Content-Disposition: attachment; filename="{filename}"') <= _LINE:
        return f'attachment; filename="{filename}"'
    pieces = [urllib.parse.quote(ch, safe="") for ch in filename]
    whole = "utf-8''" + "".join(pieces)
    if len(" filename*=" + whole) <= _LINE:
        return "attachment;\r\n filename*=" + whole
    segments: list[str] = []
    current = "utf-8''"
    for piece in pieces:
        label = f" filename*{len(segments)}*="
        if len(label) + len(current) + len(piece) + 1 > _LINE and current != "utf-8''":
            segments.append(current)
            current = ""
        current += piece
    segments.append(current)
    return "attachment;" + ";".join(f"\r\n filename*{i}*={seg}" for i, seg in enumerate(segments))


def _multipart(subtype: str, parts: Sequence[bytes]) -> bytes:
    while True:
        boundary = f"=_intake_{random.getrandbits(96):024x}"
        delimiter = b"--" + boundary.encode("ascii")
        if not any(delimiter in part for part in parts):
            break
    out = [f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n\r\n'.encode("ascii")]
    for part in parts:
        out += [delimiter, b"\r\n", part, b"\r\n"]
    out += [delimiter, b"--\r\n"]
    return b"".join(out)


def _build_mail_fast(*, name: str, addr: str, to: Sequence[str], cc: Sequence[str], subject: str, mid: str,
                     text: str, html: str | None, in_reply_to: str | None, refs: Sequence[str],
                     attachments: Sequence[tuple[str, bytes, str]], auto_submitted: bool) -> bytes | None:
    """The message as bytes, or None when it is not the usual kind (then ``_build_mail_email`` builds it)."""
    if not _PLAIN_ADDR.fullmatch(addr) or not all(_PLAIN_ADDR.fullmatch(a) for a in (*to, *cc)) or not to:
        return None
    if _CONTROL.search("".join((name, subject, in_reply_to or "", *refs))):
        return None
    mimes = []
    for _filename, _data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        if not _TOKEN.fullmatch(maintype) or not _TOKEN.fullmatch(subtype or "octet-stream"):
            return None
        mimes.append(f"{maintype}/{subtype or 'octet-stream'}")
    head = [_fold("From", _mailbox_tokens(name, addr)), _fold("To", _list_tokens(list(to)))]
    if cc:
        head.append(_fold("Cc", _list_tokens(list(cc))))
    head.append(_fold("Subject", _text_tokens(subject)))
    head.append(f"Message-ID: {mid}\r\nDate: {format_datetime(localtime())}\r\n")
    if in_reply_to:
        head.append(_fold("In-Reply-To", _text_tokens(in_reply_to)))
        head.append(_fold("References", _text_tokens(" ".join(refs))))
    if auto_submitted:
        # RFC 3834: machine-made replies say so, so that units' autoresponders do not answer them.
        head.append("Auto-Submitted: auto-replied\r\n" if in_reply_to else "Auto-Submitted: auto-generated\r\n")
    head.append("MIME-Version: 1.0\r\n")
    body = _text_part(text, "plain")
    if html:
        body = _multipart("alternative", [body, _text_part(html, "html")])
    if attachments:
        parts = [body]
        for (filename, data, _mime), mime in zip(attachments, mimes):
            parts.append((f"Content-Type: {mime}\r\nContent-Transfer-Encoding: base64\r\n"
                          f"Content-Disposition: {_filename_param(filename)}\r\n\r\n").encode("ascii")
                         + _base64_lines(data))
        body = _multipart("mixed", parts)
    raw = "".join(head).encode("ascii") + body
    if any(len(line) > 998 for line in raw.split(b"\r\n")):
        return None  # a word too long to fold: the general builder encodes it
    return raw


class Transport(Protocol):
    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None: ...
    def close(self) -> None: ...


def _smtp_reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} " + " ".join(words.split())


def _auth_refusal(code: int, reply: str) -> Refusal | None:
    refusal = match_refusal(reply)
    if refusal is None and 500 <= code < 600:
        refusal = refusal_of("wrong_password")  # any other 5xx to AUTH
    return refusal


# What an envelope address may be here: printable ASCII without spaces or angle brackets, one '@' inside.
_SMTP_ADDRESS = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")


class SmtpTransport:
    """One SMTP connection, opened lazily; errors translated into ours (Gmail's refusals via mailbox.REFUSALS).

    A refused login is SmtpAccessRefused, a kind of SmtpUnavailable: the outbox keeps the mail for later
    instead of failing it, and the message says what to fix. ``auth: xoauth2`` logs in with AUTH XOAUTH2.
    """

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self.conn: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        cfg = self.cfg
        password = cfg.password() if cfg.auth == "password" and cfg.username and cfg.password_env else None
        held = refused_logins.check(cfg, password)
        if held:
            raise SmtpAccessRefused(held)
        conn: smtplib.SMTP | None = None
        try:
            # Loading the system CA store costs ~25 ms: only when TLS is used (as mailbox.py does).
            ctx = tls_context(str(cfg.ca_file) if cfg.ca_file else None) if cfg.security != "plain" else None
            if cfg.security == "ssl":
                conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=ctx)
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
                if cfg.security == "starttls":
                    conn.starttls(context=ctx)
            if cfg.auth == "xoauth2" and cfg.username:
                self._xoauth2(conn)
            elif password is not None:
                conn.login(cfg.username or "", password)
        except smtplib.SMTPAuthenticationError as exc:
            _quit_quietly(conn)
            reply = _smtp_reply(exc.smtp_code, exc.smtp_error)
            refusal = _auth_refusal(exc.smtp_code, reply)
            if refusal is None:
                raise SmtpUnavailable(f"đăng nhập SMTP {cfg.username}@{cfg.host} tạm thời bị từ chối ({reply}); "
                                      "sẽ thử lại sau") from exc
            message = describe_refusal(refusal, cfg, "SMTP", reply)
            refused_logins.note(cfg, password, refusal, message)
            raise (SmtpAccessRefused(message) if refusal.permanent else SmtpUnavailable(message)) from exc
        except (SmtpUnavailable, SmtpRejected):
            _quit_quietly(conn)
            raise
        except (smtplib.SMTPException, OSError, ssl.SSLError, socket.timeout) as exc:
            _quit_quietly(conn)
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise SmtpUnavailable(f"chứng chỉ TLS của {cfg.host} không hợp lệ: {exc.verify_message}") from exc
            if isinstance(exc, smtplib.SMTPResponseException):
                reply = _smtp_reply(exc.smtp_code, exc.smtp_error)
                refusal = match_refusal(reply)
                if refusal is not None:
                    raise SmtpUnavailable(describe_refusal(refusal, cfg, "SMTP", reply)) from exc
            raise SmtpUnavailable(f"không kết nối được SMTP {cfg.host}:{cfg.port}: {exc}") from exc
        return conn

    def _xoauth2(self, conn: smtplib.SMTP) -> None:
        """AUTH XOAUTH2 with the access token; one retry with a new token if the cached one is refused."""
        cfg = self.cfg
        assert cfg.username and cfg.oauth is not None
        conn.ehlo_or_helo_if_needed()
        offered = conn.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in offered:
            raise SmtpAccessRefused(f"SMTP {cfg.host}:{cfg.port} không nhận đăng nhập XOAUTH2 (chỉ có: "
                                    f"{' '.join(offered) or 'không có AUTH'}); với Gmail dùng smtp.gmail.com")
        for attempt in (1, 2):
            token = oauth_access_token(cfg, "SMTP", SmtpAccessRefused, SmtpUnavailable)
            initial = oauth.xoauth2_string(cfg.username, token)
            # On failure Gmail sends a 334 challenge (base64 JSON with the reason) and waits for an empty line.
            try:
                conn.auth("XOAUTH2", lambda challenge=None: initial if challenge is None else "",
                          initial_response_ok=True)
                return
            except smtplib.SMTPAuthenticationError as exc:
                refusal = _auth_refusal(exc.smtp_code, _smtp_reply(exc.smtp_code, exc.smtp_error))
                if attempt == 2 or refusal != refusal_of("wrong_password"):
                    raise
                oauth.forget(cfg.oauth)

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        """Send one message. With PIPELINING advertised (Gmail does) MAIL, RCPT and DATA go in one write
        (``_sendmail_pipelined``: two round trips instead of four); otherwise ``smtplib``'s ``sendmail``.
        Both raise the same smtplib errors in the same cases, translated here into ours."""
        bad = [a for a in recipients if not _SMTP_ADDRESS.fullmatch(a)]
        if bad:  # checked before anything is written: a line break in an address would be a second command
            raise SmtpRejected(f"địa chỉ không gửi được qua SMTP ({', '.join(map(repr, bad))}): "
                               "chỉ nhận địa chỉ ASCII dạng ten@ten-mien, không có khoảng trắng hay ký tự điều khiển")
        if self.conn is None:
            self.conn = self._open()
        try:
            conn = self.conn
            conn.ehlo_or_helo_if_needed()
            if conn.does_esmtp and conn.has_extn("pipelining"):
                refused = _sendmail_pipelined(conn, _envelope_sender(sender), list(recipients), raw)
            else:
                refused = conn.sendmail(_envelope_sender(sender), list(recipients), raw)
        except smtplib.SMTPRecipientsRefused as exc:
            if self.conn is not None and self.conn.sock is None:
                self.close()  # a 421 among the replies: smtplib has already dropped the connection
            codes = {r: c for r, (c, _m) in exc.recipients.items()}
            for code, text in exc.recipients.values():
                reply = _smtp_reply(code, text)
                refusal = match_refusal(reply)
                if refusal is not None and not refusal.permanent:
                    self.close()
                    raise SmtpUnavailable(describe_refusal(refusal, self.cfg, "SMTP", reply)) from exc
            if all(400 <= c < 500 for c in codes.values()):
                raise SmtpUnavailable(f"SMTP tạm từ chối người nhận: {codes}") from exc
            raise SmtpRejected(f"SMTP từ chối người nhận: {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            self.close()
            reply = _smtp_reply(exc.smtp_code, exc.smtp_error)
            refusal = match_refusal(reply)
            if refusal is not None and not refusal.permanent:
                # e.g. Gmail's daily sending limit: the mail waits in the outbox instead of failing
                raise SmtpUnavailable(describe_refusal(refusal, self.cfg, "SMTP", reply)) from exc
            if 400 <= exc.smtp_code < 500:
                raise SmtpUnavailable(f"SMTP tạm thời lỗi {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise SmtpRejected(f"SMTP từ chối {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise SmtpUnavailable(f"lỗi SMTP: {exc}") from exc
        except (UnicodeError, ValueError) as exc:
            # An address SMTP cannot carry as written (non-ASCII without SMTPUTF8, a line break): this
            # mail fails with the reason; the connection may be mid-transaction, so it starts afresh.
            self.close()
            raise SmtpRejected(f"địa chỉ không gửi được qua SMTP (người gửi {_envelope_sender(sender)!r}, "
                               f"người nhận {', '.join(map(repr, recipients))}): {exc}") from exc
        if refused:
            log.warning("some recipients refused: %s", refused)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.conn = None


_CRLF = b"\r\n"


@functools.lru_cache(maxsize=256)
def _envelope_sender(sender: str) -> str:
    """The address of ``sender`` (the same configured sender every time: parsed once)."""
    return parseaddr(sender)[1]


# smtplib.quoteaddr parses with email.utils (~8 µs); the same few addresses come again and again.
_quoteaddr = functools.lru_cache(maxsize=1024)(smtplib.quoteaddr)


def _quote_periods(data: bytes) -> bytes:
    """``smtplib._quote_periods`` (a leading dot doubled on every line), skipping its regex when no line
    starts with a dot, as in nearly every message."""
    if data[:1] == b"." or b"\n." in data:
        return smtplib._quote_periods(data)
    return data


def _sendmail_pipelined(conn: smtplib.SMTP, from_addr: str, to_addrs: list[str],
                        msg: bytes | str) -> dict[str, tuple[int, bytes]]:
    """``smtplib.SMTP.sendmail`` with RFC 2920 pipelining, for a server that advertises PIPELINING.

    MAIL FROM (with the options sendmail adds: ``size=`` when SIZE is offered), every RCPT TO and DATA go
    in one write; the replies are read in order. Only when MAIL got 250, at least one RCPT 250/251 and DATA
    354 is the content sent (dot-stuffed and ended as ``smtplib.SMTP.data`` does), then the final reply
    read. Returns the refused recipients and raises exactly what sendmail raises in the same cases
    (SMTPSenderRefused, SMTPRecipientsRefused, SMTPDataError, SMTPServerDisconnected), after RSET when the
    session is left mid-transaction, and with the connection closed after a 421.
    """
    if isinstance(msg, str):
        msg = smtplib._fix_eols(msg).encode("ascii")
    options = f" size={len(msg)}" if conn.has_extn("size") else ""
    commands = [f"mail FROM:{_quoteaddr(from_addr)}{options}"]
    commands += [f"rcpt TO:{_quoteaddr(each)}" for each in to_addrs]
    commands.append("data")
    for command in commands:
        if "\r" in command or "\n" in command:  # as smtplib.SMTP.putcmd refuses them
            raise ValueError(f"command and arguments contain prohibited newline characters: {command!r}")
    # Encoded as smtplib would (command_encoding), all before anything is written.
    conn.send("".join(command + "\r\n" for command in commands).encode(conn.command_encoding))
    # A 421 means the server is closing the connection: close it (as sendmail does), read nothing more.
    mail_code, mail_resp = conn.getreply()
    if mail_code == 421:
        conn.close()
        raise smtplib.SMTPSenderRefused(mail_code, mail_resp, from_addr)
    senderrs: dict[str, tuple[int, bytes]] = {}
    for each in to_addrs:
        code, resp = conn.getreply()
        if code != 250 and code != 251:
            senderrs[each] = (code, resp)
        if code == 421:
            conn.close()
            if mail_code != 250:
                raise smtplib.SMTPSenderRefused(mail_code, mail_resp, from_addr)
            raise smtplib.SMTPRecipientsRefused(senderrs)
    data_code, data_resp = conn.getreply()
    refused_all = len(senderrs) == len(to_addrs)
    if data_code == 421:
        conn.close()
    elif (mail_code != 250 or refused_all) and data_code == 354:
        # RFC 2920 3.1: DATA accepted although nothing valid preceded it: end it with a lone dot, no content.
        conn.send(b"." + _CRLF)
        code, _resp = conn.getreply()
        if code == 421:
            conn.close()
    if mail_code != 250:
        conn._rset()  # quiet when the connection is already closed
        raise smtplib.SMTPSenderRefused(mail_code, mail_resp, from_addr)
    if refused_all:
        conn._rset()  # quiet when the connection is already closed
        raise smtplib.SMTPRecipientsRefused(senderrs)
    if data_code != 354:
        conn._rset()  # quiet when the connection is already closed
        raise smtplib.SMTPDataError(data_code, data_resp)
    quoted = _quote_periods(msg)
    conn.send(quoted + (b"." + _CRLF if quoted[-2:] == _CRLF else _CRLF + b"." + _CRLF))
    code, resp = conn.getreply()
    if code != 250:
        if code == 421:
            conn.close()
        else:
            conn._rset()
        raise smtplib.SMTPDataError(code, resp)
    return senderrs


def _quit_quietly(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()


RETRY_DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)
# Items are claimed ('sending') and their outcomes recorded a group at a time: two durable transactions per
# group instead of per item. A crash mid-group leaves the whole group 'uncertain' (never resent blindly), so a
# group is kept small, and closed early when SMTP is slow; what it claimed but did not send goes back to pending.
SEND_GROUP = 50
SEND_GROUP_SECONDS = 2.0


def flush_outbox(store: Store, cfg: SmtpConfig, now: datetime,
                 transport_factory: Callable[[SmtpConfig], Transport] = SmtpTransport) -> dict[str, int]:
    """Send what is due, within the per-minute and per-day limits; the rest waits for its window."""
    counts = {"sent": 0, "retry": 0, "failed": 0, "waiting": 0}
    budget = min(cfg.per_minute - store.sent_since(now - timedelta(minutes=1), limit=cfg.per_minute),
                 cfg.per_day - store.sent_since(now - timedelta(days=1), limit=cfg.per_day))
    due = store.due_outbox(now, limit=max(budget, 0) + 1000)
    if budget <= 0:
        counts["waiting"] = len(due)
        return counts
    transport: Transport | None = None
    pos = 0
    try:
        while pos < len(due):
            room = budget - counts["sent"]
            if room <= 0:
                counts["waiting"] += len(due) - pos
                break
            # Every claimed item may be sent: a group never claims more than the budget left.
            group = due[pos:pos + min(SEND_GROUP, room)]
            pos += len(group)
            claimed = store.claim_outbox_batch([row.id for row in group], now)
            rows = {row.id: row for row in group}
            outcomes: list[tuple[int, str, str | None, datetime | None]] = []
            started = time.monotonic()
            handed = 0
            try:
                for oid in claimed:
                    if handed and time.monotonic() - started > SEND_GROUP_SECONDS:
                        break
                    row = rows[oid]
                    handed += 1
                    try:
                        if transport is None:
                            transport = transport_factory(cfg)
                        transport.send(row.raw, cfg.sender, json.loads(row.recipients))
                    except SmtpRejected as exc:
                        outcomes.append((oid, "failed", str(exc), None))
                        counts["failed"] += 1
                    except SmtpUnavailable as exc:
                        delay = RETRY_DELAYS[min(row.attempts, len(RETRY_DELAYS) - 1)]
                        outcomes.append((oid, "pending", str(exc), now + timedelta(seconds=delay)))
                        counts["retry"] += 1
                        log.warning("outbox item %s will be retried in %ss: %s", oid, delay, exc)
                        if transport is not None:
                            transport.close()
                            transport = None
                    else:
                        outcomes.append((oid, "sent", None, None))
                        counts["sent"] += 1
            finally:
                # Also when sending raised something unexpected: the outcomes known so far are recorded; the
                # item being sent stays 'sending' (→ uncertain), the ones not yet handed to SMTP are released.
                store.finish_outbox_batch(outcomes, now, release=claimed[handed:])
            if handed < len(claimed):  # closed early: what it released comes first in the next group
                due = [rows[oid] for oid in claimed[handed:]] + due[pos:]
                pos = 0
    finally:
        if transport is not None:
            transport.close()
    return counts


def receipt_item(env: jinja2.Environment, view: dict[str, Any], *, sender: str, to: Sequence[str],
                 key: str, message_pk: int, unit_id: str | None, in_reply_to: str | None,
                 references: Sequence[str], subject: str,
                 attachments: Sequence[tuple[str, bytes, str]] = ()) -> OutboxItem:
    text = env.get_template("receipt.txt.j2").render(**view)
    html = env.get_template("receipt.html.j2").render(**view)
    base = subject.strip() or "(không có tiêu đề)"
    subj = base if base.lower().startswith(("re:", "trả lời:")) else f"Re: {base}"
    mid, raw = build_mail(sender=sender, to=to, subject=subj, text=text, html=html,
                          in_reply_to=in_reply_to, references=references, attachments=attachments)
    return OutboxItem(key=key, purpose="receipt", recipients=tuple(to), subject=subj, smtp_message_id=mid,
                      raw=raw, message_pk=message_pk, unit_id=unit_id)
