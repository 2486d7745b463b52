"""The IMAP session: UID bookkeeping helpers and batched fetches.

Every IMAP, TLS and socket error is translated here, once, into MailboxUnavailable (or its
MailboxAccessRefused when a person must act); nothing above this module knows imapclient. The mailbox is
opened read-only unless config asks for processed mail to be marked or moved, and messages are fetched
with BODY.PEEK[] so staff still see them unread in Gmail.

Login is LOGIN with an app password (``auth: password``) or AUTHENTICATE XOAUTH2 with an access token
from oauth.py (``auth: xoauth2``). Gmail's refusals are put in plain Vietnamese with the table in
refusals.py, and a password Gmail refused is not offered again until it changes (refusals.refused_logins).

The same session can wait on IMAP IDLE (RFC 2177) for ``intake run``: :meth:`Mailbox.examine`,
:meth:`Mailbox.idle_start`, :meth:`Mailbox.idle_wait`, :meth:`Mailbox.idle_stop`.
"""
from __future__ import annotations

import imaplib
import select
import socket
import ssl
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Iterable, Iterator, Sequence

from imapclient import IMAPClient
from imapclient.imapclient import SENT
from imapclient.exceptions import IMAPClientError, LoginError

from pipeline import oauth
from pipeline.config import MailboxConfig
from pipeline.errors import MailboxAccessRefused, MailboxUnavailable
from pipeline.mail.login import oauth_access_token, tls_context
from pipeline.mail.refusals import Refusal, describe_refusal, match_refusal, refusal_of, refused_logins, reply_text

_NET_ERRORS = (IMAPClientError, imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError, ssl.SSLError, socket.timeout)


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    internaldate: datetime
    gm_msgid: int | None


def _refusal(exc: BaseException) -> Refusal | None:
    refusal = match_refusal(reply_text(exc))
    if refusal is None and isinstance(exc, LoginError):
        refusal = refusal_of("wrong_password")  # any other NO to LOGIN/AUTHENTICATE
    return refusal


def _translate(exc: BaseException, cfg: MailboxConfig) -> MailboxUnavailable:
    """Our error for an imapclient/imaplib/socket/TLS failure, with what to do in Vietnamese."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return MailboxUnavailable(f"máy chủ IMAP {cfg.host}:{cfg.port} không trả lời sau {cfg.timeout:g} giây")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return MailboxUnavailable(f"chứng chỉ TLS của {cfg.host} không hợp lệ: {exc.verify_message}")
    text = reply_text(exc)
    refusal = _refusal(exc)
    if refusal is None:
        return MailboxUnavailable(f"lỗi IMAP với {cfg.host}:{cfg.port}: {text}")
    message = describe_refusal(refusal, cfg, "IMAP", text)
    return MailboxAccessRefused(message) if refusal.permanent else MailboxUnavailable(message)


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except _NET_ERRORS:
        try:
            client.shutdown()
        except _NET_ERRORS:
            pass


class Mailbox:
    """One logged-in IMAP session. Use as a context manager."""

    def __init__(self, cfg: MailboxConfig) -> None:
        self.cfg = cfg
        self.client: IMAPClient | None = None
        self.gmail = False
        self.readonly = True
        self.idling = False

    def __enter__(self) -> Mailbox:
        cfg = self.cfg
        password = cfg.password() if cfg.auth == "password" and cfg.username else None
        held = refused_logins.check(cfg, password)
        if held:
            raise MailboxAccessRefused(held)
        try:
            # loading the system CA store costs ~25 ms: only when TLS is used
            ctx = tls_context(str(cfg.ca_file) if cfg.ca_file else None) if cfg.security != "plain" else None
            if cfg.security == "ssl":
                client = IMAPClient(cfg.host, port=cfg.port, ssl=True, ssl_context=ctx, timeout=cfg.timeout)
            else:
                client = IMAPClient(cfg.host, port=cfg.port, ssl=False, timeout=cfg.timeout)
                if cfg.security == "starttls":
                    client.starttls(ctx)
            client.normalise_times = False
            try:
                self._login(client, password)
                self.gmail = b"X-GM-EXT-1" in client.capabilities()
            except BaseException:
                _close_quietly(client)
                raise
        except _NET_ERRORS as exc:
            error = _translate(exc, cfg)
            if isinstance(exc, LoginError):
                refused_logins.note(cfg, password, _refusal(exc), str(error))
            raise error from exc
        self.client = client
        return self

    def _login(self, client: IMAPClient, password: str | None) -> None:
        cfg = self.cfg
        if not cfg.username:
            return
        if cfg.auth != "xoauth2":
            client.login(cfg.username, password or "")
            return
        for attempt in (1, 2):
            token = oauth_access_token(cfg, "IMAP", MailboxAccessRefused, MailboxUnavailable)
            try:
                client.oauth2_login(cfg.username, token)
                return
            except LoginError as exc:
                if attempt == 2 or _refusal(exc) != refusal_of("wrong_password"):
                    raise
                # The cached token may have been revoked or expired early: one more try with a new one.
                assert cfg.oauth is not None
                oauth.forget(cfg.oauth)

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            if self.idling:  # LOGOUT is not accepted in IDLE
                try:
                    self.idle_stop()
                except MailboxUnavailable:
                    pass
            _close_quietly(self.client)
            self.client = None

    def _c(self) -> IMAPClient:
        assert self.client is not None, "Mailbox used outside its context"
        return self.client

    def select(self, folder: str) -> int:
        """Select the folder (read-only unless processed mail is marked or moved); return UIDVALIDITY."""
        self.readonly = not (self.cfg.processed_keyword or self.cfg.processed_folder)
        try:
            info = self._c().select_folder(folder, readonly=self.readonly)
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        value = info.get(b"UIDVALIDITY")
        if value is None:
            raise MailboxUnavailable(f"máy chủ không cho biết UIDVALIDITY của thư mục {folder}")
        return int(value)

    def uids_above(self, last_uid: int) -> list[int]:
        """UIDs strictly greater than last_uid, ascending.

        "N:*" always matches the highest UID even when it is below N (RFC 3501), hence the filter.
        """
        try:
            uids = self._c().search(["UID", f"{last_uid + 1}:*"])
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        return sorted(int(u) for u in uids if int(u) > last_uid)

    def uids_since(self, day: date) -> list[int]:
        """UIDs of the messages the server received on ``day`` or later (IMAP SEARCH SINCE), ascending.

        First contact with a mailbox with years of history: only these are fetched at all. SINCE compares
        the INTERNALDATE's date, in the server's reckoning; the caller asks from a day early and judges the
        exact instant itself.
        """
        try:
            uids = self._c().search(["SINCE", day])
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        return sorted(int(u) for u in uids)

    def sent_folder(self, configured: str) -> str | None:
        """The folder where the account keeps a copy of what its SMTP server sent: ``configured``, or with
        "auto" the folder the server marks \\Sent (RFC 6154 SPECIAL-USE: Gmail's "[Gmail]/Sent Mail", whatever
        the language of the account); None when there is none."""
        try:
            if configured != "auto":
                return configured if self._c().folder_exists(configured) else None
            return self._c().find_special_folder(SENT)
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc

    def holding(self, folder: str, message_ids: Iterable[str]) -> set[str]:
        """Which of ``message_ids`` a message in ``folder`` carries (read-only). Gmail is asked with its own
        search (X-GM-RAW ``rfc822msgid:``), which finds a Message-ID where its SEARCH HEADER is known to miss
        some; other servers with SEARCH HEADER Message-ID."""
        found: set[str] = set()
        try:
            client = self._c()
            client.select_folder(folder, readonly=True)
            gmail = client.has_capability("X-GM-EXT-1")
            for mid in message_ids:
                hits = (client.gmail_search(f"rfc822msgid:{mid.strip().strip('<>')}") if gmail
                        else client.search(["HEADER", "Message-ID", mid]))
                if hits:
                    found.add(mid)
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        return found

    def fetch(self, uids: Sequence[int]) -> Iterator[Fetched]:
        """Fetch whole raw messages in one round trip for the given UIDs, ascending by UID."""
        if not uids:
            return iter(())
        items = [b"BODY.PEEK[]", b"INTERNALDATE"]
        if self.gmail:
            items.append(b"X-GM-MSGID")
        try:
            data = self._c().fetch(list(uids), items)
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        out: list[Fetched] = []
        for uid in sorted(data):
            d = data[uid]
            raw = d.get(b"BODY[]")
            if raw is None:
                continue  # expunged between SEARCH and FETCH; it is gone from the server
            when = d.get(b"INTERNALDATE")
            if not isinstance(when, datetime):
                when = datetime.now(timezone.utc)
            elif when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            gm = d.get(b"X-GM-MSGID")
            out.append(Fetched(uid=int(uid), raw=bytes(raw), internaldate=when, gm_msgid=int(gm) if gm else None))
        return iter(out)

    def mark_processed(self, uids: Iterable[int]) -> None:
        """Apply the configured keyword and/or move to the configured folder; nothing when neither is set."""
        uids = list(uids)
        if not uids or self.readonly:
            return
        try:
            if self.cfg.processed_keyword:
                self._c().add_flags(uids, [self.cfg.processed_keyword.encode()], silent=True)
            if self.cfg.processed_folder:
                c = self._c()
                if not c.folder_exists(self.cfg.processed_folder):
                    c.create_folder(self.cfg.processed_folder)
                c.move(uids, self.cfg.processed_folder) if c.has_capability("MOVE") else (
                    c.copy(uids, self.cfg.processed_folder), c.delete_messages(uids, silent=True), c.expunge(uids))
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc


    # ---------------------------------------------------------------------------------------- IDLE

    def can_idle(self) -> bool:
        """Whether the server offers IDLE (its capabilities after login)."""
        try:
            return bool(self._c().has_capability("IDLE"))
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc

    def examine(self, folder: str) -> None:
        """Open the folder read-only, whatever config says about marking: waiting for mail changes nothing."""
        try:
            self._c().select_folder(folder, readonly=True)
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc

    def idle_start(self) -> None:
        """Enter IDLE: from now on the server announces new mail in the examined folder by itself."""
        try:
            self._c().idle()
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        self.idling = True

    def idle_wait(self, timeout: float) -> bool:
        """Wait in IDLE up to ``timeout`` seconds; True when the server announced mail (an EXISTS).

        A connection the server closed raises MailboxUnavailable: imapclient's ``idle_check`` just
        returns nothing at end of file (it would otherwise be called again and again at once).
        """
        client = self._c()
        try:
            responses = client.idle_check(timeout)
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        bye = next((r for r in responses if r and r[0] == b"BYE"), None)
        if bye is not None or (not responses and _peer_closed(client)):
            self.idling = False
            said = " ".join(x.decode(errors="replace") for x in (bye or ())[1:] if isinstance(x, bytes))
            raise MailboxUnavailable(f"máy chủ IMAP {self.cfg.host}:{self.cfg.port} đã đóng kết nối"
                                     + (f" ({said})" if said else ""))
        return _announces_mail(responses)

    def idle_stop(self) -> bool:
        """Leave IDLE (to renew it, or before logging out); True when its last responses announced mail."""
        self.idling = False
        try:
            _text, responses = self._c().idle_done()
        except _NET_ERRORS as exc:
            raise _translate(exc, self.cfg) from exc
        return _announces_mail(responses)


def _announces_mail(responses: Iterable[tuple[object, ...]]) -> bool:
    """``* n EXISTS`` is how a server says the folder grew; flag changes and expunges are not new mail."""
    return any(len(r) >= 2 and r[1] == b"EXISTS" for r in responses)


def _peer_closed(client: IMAPClient) -> bool:
    """Whether the other end hung up (Linux reports it without reading: POLLRDHUP)."""
    poller = select.poll()
    poller.register(client.socket().fileno(), getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))
