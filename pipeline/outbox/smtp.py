"""SMTP with smtplib: the envelope checked, Gmail's refusals and every SMTP error translated into ours.

A refused login is SmtpAccessRefused, a kind of SmtpUnavailable: the outbox keeps the mail for later
instead of failing it. SmtpRejected means this mail will never be taken (it fails with its reason);
SmtpUnavailable means try again later (it waits in the outbox).
"""
from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from email.utils import parseaddr
from typing import Protocol, Sequence

from pipeline import oauth
from pipeline.config import SmtpConfig
from pipeline.errors import SmtpAccessRefused, SmtpRejected, SmtpUnavailable
from pipeline.mail.login import oauth_access_token, tls_context
from pipeline.mail.refusals import Refusal, describe_refusal, match_refusal, refusal_of, refused_logins

log = logging.getLogger(__name__)


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
    """One SMTP connection, opened lazily; errors translated into ours (Gmail's refusals via refusals.REFUSALS).

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
