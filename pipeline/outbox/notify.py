"""Renders templates/ and sends the outbox over SMTP.

Mail is built completely (with its own Message-ID) when it is enqueued, in the same transaction as the
outcome it reports; sending only replays those bytes. An item is claimed ('sending') before the SMTP
conversation and marked 'sent' after it: a crash in between leaves it 'uncertain' for staff rather than
risking a second copy in a unit's inbox.
"""
from __future__ import annotations

import email.policy
import json
import logging
import re
import smtplib
import socket
import ssl
from datetime import datetime, timedelta
from email import headerregistry
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, localtime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import jinja2

from pipeline import oauth
from pipeline.config import SmtpConfig
from pipeline.errors import SmtpAccessRefused, SmtpRejected, SmtpUnavailable
from pipeline.mail.mailbox import (Refusal, describe_refusal, match_refusal, oauth_access_token, refusal_of,
                              refused_logins, tls_context)
from pipeline.ledger.store import OutboxItem, Store

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


def _encoded_words(name: str, text: str, policy: email.policy.Policy) -> str:
    """``text`` as RFC 2047 encoded words by ``email.header.Header``, which keeps every space inside a word."""
    return Header(text, "utf-8", header_name=name).encode(linesep=policy.linesep,
                                                           maxlinelen=policy.max_line_length or 78)


# Python 3.11's folder (policy.default and policy.SMTP) sometimes writes the space between two words of a
# long non-ASCII Subject or display name as whitespace between two encoded words, which readers drop
# (RFC 2047 6.2): "phổ thôngNguyễn", in about one Vietnamese receipt subject in ten (CPython gh-144156; 3.11
# does not get the fix). These two headers are folded by email.header.Header instead when they are not ASCII.

class _Subject(headerregistry.UniqueUnstructuredHeader):
    def fold(self, *, policy: email.policy.Policy) -> str:
        text = str(self)
        if text.isascii():
            return super().fold(policy=policy)
        return f"{self.name}: {_encoded_words(self.name, text, policy)}{policy.linesep}"


class _From(headerregistry.UniqueAddressHeader):
    def fold(self, *, policy: email.policy.Policy) -> str:
        if len(self.addresses) != 1 or self.addresses[0].display_name.isascii():
            return super().fold(policy=policy)
        mailbox = self.addresses[0]
        folded = f"{self.name}: {_encoded_words(self.name, mailbox.display_name, policy)}"
        address = f" <{mailbox.addr_spec}>"
        if len(folded.rsplit(policy.linesep, 1)[-1] + address) > (policy.max_line_length or 78):
            folded += policy.linesep  # the address goes on a line of its own
        return f"{folded}{address}{policy.linesep}"


class _MessageIds(headerregistry.UnstructuredHeader):
    """In-Reply-To and References: the message ids as they are, folded between ids only.

    The email package makes an encoded word of a token longer than a line, and Outlook's message ids are
    about 90 characters: no reader would take that for an id, and the receipt would leave the unit's thread.
    """

    def fold(self, *, policy: email.policy.Policy) -> str:
        width = policy.max_line_length or 78
        ids = str(self).split()
        lines = [f"{self.name}: {ids[0]}"] if ids else [f"{self.name}:"]
        for mid in ids[1:]:
            if len(lines[-1]) + 1 + len(mid) > width:
                lines.append("")  # a folded line starts with the space before its id
            lines[-1] += " " + mid
        return policy.linesep.join(lines) + policy.linesep


def _header_factory() -> headerregistry.HeaderRegistry:
    registry = headerregistry.HeaderRegistry()
    registry.map_to_type("subject", _Subject)
    registry.map_to_type("from", _From)
    registry.map_to_type("in-reply-to", _MessageIds)
    registry.map_to_type("references", _MessageIds)
    return registry


# Headers are made (and later folded) by the policy the message is built with; the bytes are written with
# policy.SMTP's CRLF line ends.
_POLICY = email.policy.default.clone(header_factory=_header_factory())


def build_mail(*, sender: str, to: Sequence[str], subject: str, text: str, html: str | None = None,
               cc: Sequence[str] = (), in_reply_to: str | None = None, references: Sequence[str] = (),
               attachments: Iterable[tuple[str, bytes, str]] = (), auto_submitted: bool = True) -> tuple[str, bytes]:
    """Build a complete message with CRLF line ends; return (Message-ID, bytes).

    ``email.message.EmailMessage`` does the encoding: RFC 2047 encoded words for non-ASCII header text,
    RFC 2231 for non-ASCII file names, text and HTML as ``multipart/alternative``, attachments after them.
    """
    name, addr = parseaddr(sender)
    domain = addr.rsplit("@", 1)[-1] if "@" in addr else "intake.local"
    mid = make_msgid(idstring="intake", domain=domain)
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = formataddr((name, addr)) if name else addr
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Message-ID"] = mid
    msg["Date"] = format_datetime(localtime())
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        # RFC 5322 3.6.4: the parent's References followed by the parent itself.
        refs = [r for r in references if r] + ([in_reply_to] if in_reply_to not in references else [])
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
    return mid, msg.as_bytes(policy=email.policy.SMTP)


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
        """Send one message with ``smtplib``'s ``sendmail``; its errors are translated here into ours."""
        envelope_sender = parseaddr(sender)[1]
        bad = [a for a in (envelope_sender, *recipients) if not _SMTP_ADDRESS.fullmatch(a)]
        if bad:
            # Checked before anything is written: smtplib would send MAIL FROM and then stop at this RCPT with
            # an uncaught error, and a line break inside an address would become a second command.
            raise SmtpRejected(f"địa chỉ không gửi được qua SMTP ({', '.join(map(repr, bad))}): "
                               "chỉ nhận địa chỉ ASCII dạng ten@ten-mien, không có khoảng trắng hay ký tự điều khiển")
        if self.conn is None:
            self.conn = self._open()
        try:
            refused = self.conn.sendmail(envelope_sender, list(recipients), raw)
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
        if refused:
            log.warning("some recipients refused: %s", refused)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.conn = None


def _quit_quietly(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()


RETRY_DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)


def flush_outbox(store: Store, cfg: SmtpConfig, now: datetime,
                 transport_factory: Callable[[SmtpConfig], Transport] = SmtpTransport) -> dict[str, int]:
    """Send what is due, within the per-minute and per-day limits; the rest waits for its window.

    Each item is claimed ('sending') before it is handed to SMTP and marked after: if the process dies in
    between, the item stays 'sending' and the next pass makes it 'uncertain' (never resent by itself).
    """
    counts = {"sent": 0, "retry": 0, "failed": 0, "waiting": 0}
    budget = min(cfg.per_minute - store.sent_since(now - timedelta(minutes=1), limit=cfg.per_minute),
                 cfg.per_day - store.sent_since(now - timedelta(days=1), limit=cfg.per_day))
    due = store.due_outbox(now, limit=max(budget, 0) + 1000)
    transport: Transport | None = None
    try:
        for row in due:
            if counts["sent"] >= budget:
                counts["waiting"] += 1  # not claimed: it keeps its place for the next window
                continue
            if not store.claim_outbox(row.id, now):
                continue  # another sender claimed it first
            try:
                if transport is None:
                    transport = transport_factory(cfg)
                transport.send(row.raw, cfg.sender, json.loads(row.recipients))
            except SmtpRejected as exc:
                store.finish_outbox(row.id, "failed", now, error=str(exc))
                counts["failed"] += 1
            except SmtpUnavailable as exc:
                delay = RETRY_DELAYS[min(row.attempts, len(RETRY_DELAYS) - 1)]
                store.finish_outbox(row.id, "pending", now, error=str(exc), retry_at=now + timedelta(seconds=delay))
                counts["retry"] += 1
                log.warning("outbox item %s will be retried in %ss: %s", row.id, delay, exc)
                if transport is not None:
                    transport.close()
                    transport = None
            else:
                store.finish_outbox(row.id, "sent", now)
                counts["sent"] += 1
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
