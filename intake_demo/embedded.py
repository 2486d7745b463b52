"""Embedded loopback mail servers for ``intake demo`` (nothing to install, nothing configured).

* :class:`EmbeddedMailbox` -- an IMAP server (pymap's in-memory ``dict`` backend) running
  in-process on its own thread and event loop, on 127.0.0.1 and a port picked by the OS,
  plain IMAP, one login user with the password we choose.  Messages go in with
  :meth:`EmbeddedMailbox.deliver` (an IMAP APPEND, so the INTERNALDATE is the one we give).
* :class:`EmbeddedSmtp` -- an SMTP server (aiosmtpd) on 127.0.0.1 that writes every message it
  receives to ``out_dir`` as an ``.eml`` file and keeps a list of them.

What pymap 0.36 does and doesn't do (checked with imapclient): SELECT, UID SEARCH, UID FETCH of
``BODY.PEEK[]``/``INTERNALDATE``/``FLAGS``/``RFC822.SIZE`` on a UID set in one command,
MULTIAPPEND, IDLE, UIDPLUS, MOVE, STATUS, LOGIN/AUTHENTICATE PLAIN; ``BODY.PEEK[]`` leaves
mail unseen.  It has no CONDSTORE/QRESYNC, NAMESPACE, SORT, THREAD nor Gmail's X-GM-EXT-1,
and returns BODYSTRUCTURE dispositions as raw strings -- so fetch ``BODY.PEEK[]`` whole and parse
locally.  Its mail lives in memory and is gone when the server stops.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import tempfile
import threading
import time
from argparse import Namespace
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

__all__ = ["EmbeddedMailbox", "EmbeddedSmtp", "SentMessage"]

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# IMAP


class EmbeddedMailbox:
    """An in-process IMAP server with one user and one (or more) folders, for the demo.

    >>> with EmbeddedMailbox() as mbox:
    ...     mbox.deliver(raw_bytes, when=datetime(2022, 2, 21, 9, 15, tzinfo=HANOI))
    ...     # connect with IMAPClient(mbox.host, port=mbox.port, ssl=False)
    """

    def __init__(self, username: str = "district@example.org", password: str | None = None,
                 folder: str = "INBOX", *, host: str = LOOPBACK, start_timeout: float = 15.0) -> None:
        self.host = host
        self.port = 0
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.folder = folder
        self.start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._client = None
        self._client_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "EmbeddedMailbox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "EmbeddedMailbox":
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="embedded-imap", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            raise TimeoutError("embedded IMAP server did not start")
        if self._error is not None:
            self._thread.join(1)
            self._thread = None
            raise RuntimeError(f"embedded IMAP server failed to start: {self._error!r}") from self._error
        if self.folder.upper() != "INBOX":
            c = self._admin()
            if not c.folder_exists(self.folder):
                c.create_folder(self.folder)
        return self

    def stop(self) -> None:
        with self._client_lock:
            c, self._client = self._client, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.logout()
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # report start-up failures to start()
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()

    async def _serve(self) -> None:
        from proxyprotocol.reader import ProxyProtocolReader
        from pymap.backend.dict import DictBackend
        from pymap.imap import IMAPServer

        args = Namespace(
            debug=False, host=[self.host], port="0", cert=None, key=None, tls=False,
            proxy_protocol=None, inherited_sockets=None, passlib_cfg=None,
            demo_data=False, demo_user=self.username, demo_password=self.password,
            skip_services=[],
        )
        backend, config = await DictBackend.init(args, invalid_user_sleep=0.0)
        config.apply_context()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        handler = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(backend.login, config))
        server = await asyncio.start_server(handler, host=self.host, port=0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            self._ready.set()
            await self._stop.wait()
            server.close()
        # close connections still open (Python 3.11's wait_closed does not wait for them)
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)

    # -- clients and delivery ---------------------------------------------------------------
    def client(self, timeout: float = 30.0):
        """A new logged-in ``imapclient.IMAPClient`` (plain IMAP on loopback)."""
        from imapclient import IMAPClient

        c = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        c.login(self.username, self.password)
        return c

    def _admin(self):
        with self._client_lock:
            if self._client is None:
                self._client = self.client()
            return self._client

    def deliver(self, raw: bytes, when: datetime | None = None, *, folder: str | None = None,
                flags: Iterable[str] = ()) -> None:
        """Put one message in the mailbox, unseen, with INTERNALDATE ``when`` (default: now)."""
        self.deliver_many([(raw, when)], folder=folder, flags=flags)

    def deliver_many(self, messages: Iterable, *, folder: str | None = None,
                     flags: Iterable[str] = (), batch: int = 100) -> int:
        """Deliver ``(raw, when)`` pairs (or raw bytes) with MULTIAPPEND, ``batch`` per command."""
        folder = folder or self.folder
        flag_list = [f.decode() if isinstance(f, bytes) else f for f in flags]
        count = 0
        with self._client_lock:
            if self._client is None:
                self._client = self.client()
            c = self._client
            if folder.upper() != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            chunk: list[dict] = []
            for item in messages:
                raw, when = (item, None) if isinstance(item, (bytes, bytearray)) else item
                entry: dict = {"msg": bytes(raw)}
                if flag_list:
                    entry["flags"] = flag_list
                if when is not None:
                    entry["date"] = when
                chunk.append(entry)
                if len(chunk) >= batch:
                    c.multiappend(folder, chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                c.multiappend(folder, chunk)
                count += len(chunk)
        return count


# --------------------------------------------------------------------------------------------
# SMTP


@dataclass
class SentMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    path: Path
    received_at: float = field(default_factory=time.time)


_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")


class _SaveHandler:
    def __init__(self, owner: "EmbeddedSmtp") -> None:
        self.owner = owner

    async def handle_DATA(self, server, session, envelope):
        raw = bytes(envelope.original_content or envelope.content)
        self.owner._save(envelope.mail_from, list(envelope.rcpt_tos), raw)
        return "250 OK saved"


def _quiet_controller():
    """aiosmtpd's Controller, minus the deprecation warning it logs after every AUTH."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Session

    class _QuietSession(Session):
        login_data = None  # a plain attribute instead of the warning property

    class _SMTP(SMTP):
        def _create_session(self):
            return _QuietSession(self.loop)

    class _Controller(Controller):
        def factory(self):
            return _SMTP(self.handler, **self.SMTP_kwargs)

    return _Controller


def start_smtp_controller(handler: object, host: str, **kwargs: object) -> tuple[object, int]:
    """Start a quiet aiosmtpd Controller on a free port of ``host``; return (controller, port).

    aiosmtpd's Controller cannot take port 0, so a free port is picked first; it may be taken between
    picking and binding, hence a few tries.
    """
    Controller = _quiet_controller()
    last: Exception | None = None
    for _ in range(5):
        port = free_port(host)
        controller = Controller(handler, hostname=host, port=port, ready_timeout=10.0, **kwargs)
        try:
            controller.start()
        except Exception as exc:
            last = exc
            continue
        return controller, port
    raise RuntimeError(f"SMTP server could not start on {host}: {last}")


class EmbeddedSmtp:
    """An SMTP server on loopback that saves every message to ``out_dir`` as ``NNNN-rcpt.eml``.

    AUTH PLAIN/LOGIN is offered without TLS (loopback only) and any login is accepted unless
    ``username`` is given.
    """

    def __init__(self, out_dir: str | Path | None = None, *, host: str = LOOPBACK,
                 username: str | None = None, password: str | None = None) -> None:
        self.host = host
        self.port = 0
        self.out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="intake-sent-"))
        self.username = username
        self.password = password
        self._messages: list[SentMessage] = []
        self._lock = threading.Condition()
        self._controller = None

    @property
    def messages(self) -> list[SentMessage]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[SentMessage]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"got {len(self._messages)} messages, wanted {n}")
                self._lock.wait(left)
            return list(self._messages)

    def _save(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        with self._lock:
            n = len(self._messages) + 1
            first = _UNSAFE.sub("_", rcpt_tos[0] if rcpt_tos else "nobody")[:80]
            path = self.out_dir / f"{n:04d}-{first}.eml"
            tmp = path.with_suffix(".eml.tmp")
            tmp.write_bytes(raw)
            tmp.replace(path)
            self._messages.append(SentMessage(mail_from, rcpt_tos, raw, path))
            self._lock.notify_all()

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = self.username is None or (
            auth_data.login.decode(errors="replace") == self.username
            and auth_data.password.decode(errors="replace") == (self.password or ""))
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> "EmbeddedSmtp":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "EmbeddedSmtp":
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._controller, self.port = start_smtp_controller(
            _SaveHandler(self), self.host, authenticator=self._authenticator, auth_require_tls=False,
            enable_SMTPUTF8=True)
        return self

    def stop(self) -> None:
        c, self._controller = self._controller, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.stop()
