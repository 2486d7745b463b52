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
import smtplib
import socket
import ssl
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
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
    """Build a complete message; return (Message-ID, bytes)."""
    msg = EmailMessage()
    name, addr = parseaddr(sender)
    msg["From"] = formataddr((name, addr)) if name else addr
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    domain = addr.rsplit("@", 1)[-1] if "@" in addr else "intake.local"
    mid = make_msgid(idstring="intake", domain=domain)
    msg["Message-ID"] = mid
    from email.utils import format_datetime, localtime

    msg["Date"] = format_datetime(localtime())
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
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
            ctx = tls_context(str(cfg.ca_file) if cfg.ca_file else None)
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
        if self.conn is None:
            self.conn = self._open()
        try:
            refused = self.conn.sendmail(parseaddr(sender)[1], list(recipients), raw)
        except smtplib.SMTPRecipientsRefused as exc:
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
    """Send what is due, within the per-minute and per-day limits; the rest waits for its window."""
    counts = {"sent": 0, "retry": 0, "failed": 0, "waiting": 0}
    budget = min(cfg.per_minute - store.sent_since(now - timedelta(minutes=1)),
                 cfg.per_day - store.sent_since(now - timedelta(days=1)))
    due = store.due_outbox(now, limit=max(budget, 0) + 1000)
    if budget <= 0:
        counts["waiting"] = len(due)
        return counts
    transport: Transport | None = None
    try:
        for row in due:
            if counts["sent"] >= budget:
                counts["waiting"] += 1
                continue
            if not store.claim_outbox(row.id, now):
                continue
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
