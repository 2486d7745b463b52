"""The IMAP session: UID bookkeeping helpers and batched fetches.

Every IMAP, TLS and socket error is translated here, once, into MailboxUnavailable; nothing above this
module knows imapclient. The mailbox is opened read-only unless config asks for processed mail to be
marked or moved, and messages are fetched with BODY.PEEK[] so staff still see them unread in Gmail.
"""
from __future__ import annotations

import imaplib
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator, Sequence

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from pipeline.config import MailboxConfig
from pipeline.errors import MailboxUnavailable

_NET_ERRORS = (IMAPClientError, imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError, ssl.SSLError, socket.timeout)


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    internaldate: datetime
    gm_msgid: int | None


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context: system CAs plus an optional extra bundle; hostnames checked."""
    ctx = ssl.create_default_context()
    if cafile:
        ctx.load_verify_locations(cafile=cafile)
    return ctx


def _friendly(exc: BaseException, cfg: MailboxConfig) -> str:
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, LoginError) or "AUTHENTICATIONFAILED" in text or "Invalid credentials" in text:
        return (f"đăng nhập IMAP {cfg.username}@{cfg.host} bị từ chối ({text}); với Gmail hãy dùng mật khẩu ứng dụng "
                "(App Password) và bật IMAP trong cài đặt Gmail")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"máy chủ IMAP {cfg.host}:{cfg.port} không trả lời sau {cfg.timeout:g} giây"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"chứng chỉ TLS của {cfg.host} không hợp lệ: {exc.verify_message}"
    if "Too many simultaneous connections" in text:
        return f"Gmail từ chối: quá nhiều kết nối IMAP đồng thời ({text})"
    return f"lỗi IMAP với {cfg.host}:{cfg.port}: {text}"


class Mailbox:
    """One logged-in IMAP session. Use as a context manager."""

    def __init__(self, cfg: MailboxConfig) -> None:
        self.cfg = cfg
        self.client: IMAPClient | None = None
        self.gmail = False
        self.readonly = True

    def __enter__(self) -> Mailbox:
        cfg = self.cfg
        password = cfg.password()
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
            if cfg.username:
                client.login(cfg.username, password or "")
            self.gmail = b"X-GM-EXT-1" in client.capabilities()
        except _NET_ERRORS as exc:
            raise MailboxUnavailable(_friendly(exc, cfg)) from exc
        self.client = client
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except _NET_ERRORS:
                try:
                    self.client.shutdown()
                except _NET_ERRORS:
                    pass
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
            raise MailboxUnavailable(_friendly(exc, self.cfg)) from exc
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
            raise MailboxUnavailable(_friendly(exc, self.cfg)) from exc
        return sorted(int(u) for u in uids if int(u) > last_uid)

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
            raise MailboxUnavailable(_friendly(exc, self.cfg)) from exc
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
            raise MailboxUnavailable(_friendly(exc, self.cfg)) from exc
