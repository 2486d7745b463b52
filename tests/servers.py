"""Real mail servers on loopback for tests and benchmarks.

No pytest in here: ``bench/`` scripts use these classes too.

* :class:`Dovecot` -- a private Dovecot 2.3 (Debian ``dovecot-core dovecot-imapd``) run as
  ``dovecot -F -c FILE`` with its own config, passwd-file user and Maildir in a temp dir.
* :class:`SmtpSink` -- an aiosmtpd server in a background thread that records every message,
  and can be told to fail the next DATA commands or refuse a recipient.
* :func:`make_test_certs` -- a throwaway CA and a server certificate for 127.0.0.1/localhost
  (openssl CLI), so tests can verify TLS against ``ca_path``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "Dovecot",
    "DovecotMissing",
    "SmtpSink",
    "ReceivedMessage",
    "TestCerts",
    "make_test_certs",
    "free_port",
    "dovecot_available",
]

INSTALL_HINT = (
    "the `dovecot` binary was not found: run `scripts/install-system-deps.sh` as root "
    "(installs Debian's dovecot-core and dovecot-imapd)"
)


class DovecotMissing(RuntimeError):
    """Dovecot is not installed on this machine."""


# --------------------------------------------------------------------------------------------
# small helpers


from pipeline.embedded import free_port, start_smtp_controller  # noqa: E402  (one copy for demo and tests)


def _find_dovecot() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    for cand in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(cand, os.X_OK):
            return cand
    return None


def _find_doveadm() -> str | None:
    found = shutil.which("doveadm")
    if found:
        return found
    for cand in ("/usr/bin/doveadm", "/usr/local/bin/doveadm"):
        if os.access(cand, os.X_OK):
            return cand
    return None


def dovecot_available() -> bool:
    return _find_dovecot() is not None


def _wait_for_greeting(host: str, port: int, *, timeout: float, tls: ssl.SSLContext | None = None,
                       proc: subprocess.Popen | None = None, prefix: bytes = b"* OK") -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before accepting connections")
        try:
            with socket.create_connection((host, port), timeout=1.0) as raw:
                sock = tls.wrap_socket(raw, server_hostname=host) if tls else raw
                sock.settimeout(2.0)
                greeting = sock.recv(1024)
                if greeting.startswith(prefix):
                    return
                last = RuntimeError(f"unexpected greeting {greeting!r}")
        except OSError as exc:  # refused, reset, timeout
            last = exc
        time.sleep(0.02)
    raise TimeoutError(f"{host}:{port} did not answer {prefix!r} within {timeout}s: {last}")


# --------------------------------------------------------------------------------------------
# certificates


@dataclass(frozen=True)
class TestCerts:
    """A throwaway CA and a server certificate signed by it (valid for 127.0.0.1, localhost)."""

    __test__ = False  # not a pytest test class

    ca_path: Path     # PEM of the CA: give it to ssl.create_default_context(cafile=...)
    cert_path: Path   # PEM of the server certificate
    key_path: Path    # PEM of the server key (unencrypted)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))


def make_test_certs(directory: str | os.PathLike, hostnames: Sequence[str] = ("localhost",),
                    ips: Sequence[str] = ("127.0.0.1",)) -> TestCerts:
    """Make a CA and a server cert with the openssl CLI (EC P-256, fast), valid for 2 days."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("the `openssl` command is needed to make test certificates "
                           "(Debian package `openssl`; scripts/install-system-deps.sh installs it)")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = d / "ca.key", d / "ca.pem"
    key, csr, crt = d / "server.key", d / "server.csr", d / "server.pem"
    ext = d / "server.ext"
    san = ",".join([f"DNS:{h}" for h in hostnames] + [f"IP:{i}" for i in ips])
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={san}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2",
        "-subj", "/CN=intake test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash")
    run("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={hostnames[0]}")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))
    for p in (ca_crt, crt, key):
        os.chmod(p, 0o644)  # dovecot reads them as root, but keep them readable for the fixtures
    return TestCerts(ca_path=ca_crt, cert_path=crt, key_path=key)


# --------------------------------------------------------------------------------------------
# Dovecot


_DOVECOT_CONF = """\
# private test instance, written by tests/servers.py
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = {host}
shutdown_clients = yes
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_failure_delay = 0
ssl = {ssl}
{ssl_files}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
    ssl = yes
  }}
{nonroot_chroot}}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{nonroot_chroot}}}
protocol imap {{
  mail_max_userip_connections = 1000
}}
"""


class Dovecot:
    """A private Dovecot IMAP server on loopback, for tests.

    >>> with Dovecot() as dc:
    ...     dc.append(b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
    ...     with dc.client() as c: c.select_folder("INBOX")

    Plain IMAP on ``.port``; with ``tls=True`` also implicit-TLS IMAP on ``.tls_port`` with a
    certificate that verifies against ``.ca_path`` for host 127.0.0.1 or localhost.
    Works as root (mail owned by uid 65534, login processes as dovenull) and as an ordinary user
    (everything runs as that user).
    """

    def __init__(self, user: str = "district@example.org", password: str = "secret-pw",
                 *, tls: bool = False, host: str = "127.0.0.1", extra_users: dict[str, str] | None = None,
                 keep_dir: bool = False, start_timeout: float = 15.0) -> None:
        self.host = host
        self.user = user
        self.password = password
        self.users: dict[str, str] = {user: password, **(extra_users or {})}
        self.tls = tls
        self.keep_dir = keep_dir
        self.start_timeout = start_timeout
        self.port: int = 0
        self.tls_port: int | None = None
        self.ca_path: Path | None = None
        self.certs: TestCerts | None = None
        self.root: Path | None = None
        self.config_path: Path | None = None
        self.log_path: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._uid = self._gid = 0

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "Dovecot":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Dovecot":
        binary = _find_dovecot()
        if binary is None:
            raise DovecotMissing(INSTALL_HINT)
        self.root = Path(tempfile.mkdtemp(prefix="intake-dovecot-"))
        os.chmod(self.root, 0o755)
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir()
            os.chmod(self.root / sub, 0o755)
        if os.geteuid() == 0:
            import pwd
            self._uid = self._gid = 65534
            login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
            for name in (login_user, internal_user):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    raise DovecotMissing(f"system user {name!r} is missing; {INSTALL_HINT}") from None
        else:
            import pwd
            self._uid, self._gid = os.getuid(), os.getgid()
            import grp
            login_user = internal_user = pwd.getpwuid(self._uid).pw_name
            try:
                internal_group = grp.getgrgid(self._gid).gr_name
            except KeyError:
                internal_group = str(self._gid)
        for u in self.users:
            home = self.root / "home" / u
            home.mkdir()
            os.chmod(home, 0o700)
            if os.geteuid() == 0:
                os.chown(home, self._uid, self._gid)
        passwd = self.root / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        os.chmod(passwd, 0o644)

        self.port = free_port(self.host)
        ssl_files = ""
        if self.tls:
            self.certs = make_test_certs(self.root / "tls")
            self.ca_path = self.certs.ca_path
            self.tls_port = free_port(self.host)
            ssl_files = (f"ssl_cert = <{self.certs.cert_path}\n"
                         f"ssl_key = <{self.certs.key_path}\n")
        self.log_path = self.root / "dovecot.log"
        self.config_path = self.root / "dovecot.conf"
        self.config_path.write_text(_DOVECOT_CONF.format(
            root=self.root, host=self.host, port=self.port,
            tls_port=self.tls_port if self.tls else 0,
            ssl="yes" if self.tls else "no", ssl_files=ssl_files,
            login_user=login_user, internal_user=internal_user, internal_group=internal_group,
            nonroot_chroot="" if os.geteuid() == 0 else "  chroot =\n", uid=self._uid, gid=self._gid,
        ))
        os.chmod(self.config_path, 0o644)
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for_greeting(self.host, self.port, timeout=self.start_timeout, proc=self.proc)
            if self.tls:
                _wait_for_greeting(self.host, self.tls_port, timeout=self.start_timeout, proc=self.proc,
                                   tls=self.certs.client_context())
        except Exception as exc:
            out = self._drain_output()
            self.stop()
            raise RuntimeError(f"Dovecot did not start: {exc}\n--- output ---\n{out}") from exc
        return self

    def _drain_output(self) -> str:
        text = ""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stdout:
            with contextlib.suppress(Exception):
                text += self.proc.stdout.read().decode(errors="replace")
        if self.log_path and self.log_path.exists():
            text += "\n--- dovecot.log ---\n" + self.log_path.read_text(errors="replace")[-4000:]
        return text

    def log(self) -> str:
        """The Dovecot log so far (useful in assertion messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            if proc.stdout:
                proc.stdout.close()
        if self.root is not None and not self.keep_dir:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- clients --------------------------------------------------------------------------
    def client(self, *, user: str | None = None, password: str | None = None, tls: bool = False,
               timeout: float = 30.0):
        """A logged-in ``imapclient.IMAPClient`` (plain, or implicit TLS verified against the CA)."""
        from imapclient import IMAPClient

        if tls:
            if not self.tls:
                raise ValueError("this Dovecot was started without tls=True")
            c = IMAPClient(self.host, port=self.tls_port, ssl=True,
                           ssl_context=self.certs.client_context(), timeout=timeout)
        else:
            c = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        u = user or self.user
        c.login(u, password if password is not None else self.users[u])
        return c

    def append(self, raw: bytes, folder: str = "INBOX", flags: Iterable[str] = (),
               internaldate: datetime | None = None) -> None:
        """Append one message (INTERNALDATE as given; naive datetimes are local time)."""
        self.append_many([(raw, flags, internaldate)], folder=folder)

    def append_many(self, messages: Iterable, folder: str = "INBOX", *, batch: int = 200) -> int:
        """Append many messages over one connection with MULTIAPPEND, ``batch`` per command.

        Each item is raw ``bytes``, or a tuple ``(raw, flags, internaldate)`` (trailing parts
        optional), or a dict with keys ``raw``/``msg``, ``flags``, ``internaldate``/``date``.
        Returns the number appended. The folder is created if it does not exist.
        """
        count = 0
        with self.client() as c:
            if folder.upper() != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            chunk: list[dict] = []
            for item in messages:
                chunk.append(_append_item(item))
                if len(chunk) >= batch:
                    c.multiappend(folder, chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                c.multiappend(folder, chunk)
                count += len(chunk)
            c.logout()
        return count

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as c:
            st = c.folder_status(folder, [b"UIDVALIDITY"])
            c.logout()
        return int(st[b"UIDVALIDITY"])

    # -- UIDVALIDITY changes ----------------------------------------------------------------
    def set_uidvalidity(self, folder: str = "INBOX", value: int | None = None) -> int:
        """Give ``folder`` a new UIDVALIDITY, keeping its messages *and their UIDs*.

        Uses ``doveadm mailbox update --uid-validity``. Returns the new value (default: old + 1).
        """
        doveadm = _find_doveadm()
        if doveadm is None:
            raise DovecotMissing(INSTALL_HINT)
        old = self.uidvalidity(folder)
        new = value if value is not None else old + 1
        if new == old:
            raise ValueError("new UIDVALIDITY equals the old one")
        self._doveadm("mailbox", "update", "-u", self.user, "--uid-validity", str(new), folder)
        got = self.uidvalidity(folder)
        if got != new:
            raise RuntimeError(f"UIDVALIDITY of {folder} is {got}, wanted {new}")
        return new

    def set_uidvalidity_change(self, folder: str = "INBOX") -> tuple[int, int]:
        """Rebuild ``folder`` as a server does after losing its index: same messages, same
        flags and INTERNALDATEs, a new UIDVALIDITY and UIDs renumbered from 1.

        Done by deleting Dovecot's ``dovecot-uidlist`` and index files for that Maildir folder
        (no IMAP session may be open on it). Returns ``(old, new)`` UIDVALIDITY.
        """
        old = self.uidvalidity(folder)
        maildir = self.maildir_path(folder)
        # Dovecot hands out the next value from its dovecot-uidvalidity file, so the number
        # changes at once; the retry loop below is only a safety net.
        for name in os.listdir(maildir):
            if name == "dovecot-uidlist" or name.startswith("dovecot.index") or name == "dovecot-uidlist.lock":
                os.unlink(maildir / name)
        new = self.uidvalidity(folder)
        deadline = time.monotonic() + 3
        while new == old and time.monotonic() < deadline:
            time.sleep(0.3)
            for name in os.listdir(maildir):
                if name == "dovecot-uidlist" or name.startswith("dovecot.index"):
                    os.unlink(maildir / name)
            new = self.uidvalidity(folder)
        if new == old:
            raise RuntimeError(f"UIDVALIDITY of {folder} did not change ({old})")
        return old, new

    def recreate_folder(self, folder: str) -> tuple[int, int]:
        """DELETE and CREATE a (non-INBOX) folder over IMAP, re-appending its messages with the
        same flags and INTERNALDATEs. Returns ``(old, new)`` UIDVALIDITY."""
        if folder.upper() == "INBOX":
            raise ValueError("INBOX cannot be deleted: use set_uidvalidity_change('INBOX')")
        with self.client() as c:
            c.normalise_times = False
            c.select_folder(folder, readonly=True)
            uids = c.search(["ALL"])
            saved = []
            if uids:
                data = c.fetch(uids, [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"])
                saved = [(data[u][b"BODY[]"], [f for f in data[u][b"FLAGS"] if f != b"\\Recent"],
                          data[u][b"INTERNALDATE"]) for u in sorted(data)]
            c.unselect_folder() if c.has_capability("UNSELECT") else c.close_folder()
            old = int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
            c.delete_folder(folder)
            c.create_folder(folder)
            c.logout()
        if saved:
            self.append_many(saved, folder=folder)
        new = self.uidvalidity(folder)
        if new == old:
            raise RuntimeError(f"UIDVALIDITY of {folder} did not change ({old})")
        return old, new

    def maildir_path(self, folder: str = "INBOX", user: str | None = None) -> Path:
        base = self.root / "home" / (user or self.user) / "Maildir"
        if folder.upper() == "INBOX":
            return base
        return base / ("." + folder.replace("/", "."))

    def _doveadm(self, *args: str) -> str:
        doveadm = _find_doveadm()
        res = subprocess.run([doveadm, "-c", str(self.config_path), *args],
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed ({res.returncode}): {res.stderr}{res.stdout}")
        return res.stdout


def _append_item(item) -> dict:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return {"msg": bytes(item)}
    if isinstance(item, str):
        return {"msg": item.encode()}
    if isinstance(item, dict):
        raw = item.get("raw", item.get("msg"))
        flags = item.get("flags") or ()
        when = item.get("internaldate", item.get("date"))
    else:
        raw, flags, when = (tuple(item) + ((), None))[:3]
    out: dict = {"msg": bytes(raw)}
    if flags:
        out["flags"] = [f.decode() if isinstance(f, bytes) else f for f in flags]
    if when is not None:
        out["date"] = when
    return out


# --------------------------------------------------------------------------------------------
# SMTP sink


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    peer: tuple | None = None
    login: str | None = None
    tls: bool = False
    received_at: float = field(default_factory=time.time)

    def parsed(self):
        """The message as an ``email.message.EmailMessage``."""
        import email
        import email.policy
        return email.message_from_bytes(self.raw, policy=email.policy.default)


class _SinkHandler:
    def __init__(self, sink: "SmtpSink") -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.sink._refused_code(address)
        if code is not None:
            return f"{code} {'5.1.1' if code >= 500 else '4.2.0'} recipient <{address}> refused by test sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        code = self.sink._take_failure()
        if code is not None:
            return f"{code} {'4.3.0' if code < 500 else '5.3.0'} test sink failing this DATA on purpose"
        login = None
        if getattr(session, "authenticated", False) and session.auth_data is not None:
            login = getattr(session.auth_data, "login", None)
            if isinstance(login, bytes):
                login = login.decode(errors="replace")
        msg = ReceivedMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            raw=bytes(envelope.original_content or envelope.content),
            peer=session.peer,
            login=login,
            tls=session.ssl is not None or self.sink.mode == "ssl",
        )
        self.sink._record(msg)
        return "250 OK message accepted"


class SmtpSink:
    """An SMTP server on loopback (aiosmtpd, own thread) that records what it receives.

    ``mode``: ``"plain"`` (default), ``"starttls"`` (STARTTLS offered; ``require_tls=True`` to
    insist), or ``"ssl"`` (implicit TLS). With TLS the cert verifies against ``.ca_path``.
    AUTH PLAIN/LOGIN is offered (also without TLS); with ``username`` set only that
    username/password is accepted, otherwise any login is.
    """

    def __init__(self, *, host: str = "127.0.0.1", mode: str = "plain", require_tls: bool = False,
                 username: str | None = None, password: str | None = None,
                 auth_required: bool = False) -> None:
        if mode not in ("plain", "starttls", "ssl"):
            raise ValueError("mode must be plain, starttls or ssl")
        self.host = host
        self.port = 0
        self.mode = mode
        self.require_tls = require_tls
        self.username = username
        self.password = password
        self.auth_required = auth_required
        self.ca_path: Path | None = None
        self.certs: TestCerts | None = None
        self._messages: list[ReceivedMessage] = []
        self._cond = threading.Condition()
        self._fail_queue: list[int] = []
        self._refused: dict[str, int] = {}
        self._controller = None
        self._tmp: str | None = None

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of everything received so far, in order."""
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Wait until at least ``n`` messages arrived; return them. TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"SMTP sink got {len(self._messages)} messages, wanted {n}")
                self._cond.wait(left)
            return list(self._messages)

    def fail_next(self, n: int = 1, code: int = 451) -> None:
        """Make the next ``n`` DATA commands answer ``code`` (451: temporary) instead of 250."""
        with self._cond:
            self._fail_queue.extend([code] * n)

    def refuse_rcpt(self, address: str, code: int = 550) -> None:
        """Refuse RCPT TO for ``address`` (case-insensitive) with ``code`` from now on."""
        with self._cond:
            self._refused[address.lower()] = code

    def accept_rcpt(self, address: str) -> None:
        with self._cond:
            self._refused.pop(address.lower(), None)

    def _take_failure(self) -> int | None:
        with self._cond:
            return self._fail_queue.pop(0) if self._fail_queue else None

    def _refused_code(self, address: str) -> int | None:
        with self._cond:
            return self._refused.get(address.lower())

    def _record(self, msg: ReceivedMessage) -> None:
        with self._cond:
            self._messages.append(msg)
            self._cond.notify_all()

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode(errors="replace")
        password = auth_data.password.decode(errors="replace")
        ok = self.username is None or (login == self.username and password == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def __enter__(self) -> "SmtpSink":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "SmtpSink":
        kwargs: dict = dict(
            authenticator=self._authenticator,
            auth_require_tls=False,
            auth_required=self.auth_required,
            enable_SMTPUTF8=True,
        )
        ssl_context = None
        if self.mode != "plain":
            self._tmp = tempfile.mkdtemp(prefix="intake-smtp-")
            self.certs = make_test_certs(self._tmp)
            self.ca_path = self.certs.ca_path
            ctx = self.certs.server_context()
            if self.mode == "ssl":
                ssl_context = ctx
            else:
                kwargs["tls_context"] = ctx
                kwargs["require_starttls"] = self.require_tls
        self._controller, self.port = start_smtp_controller(
            _SinkHandler(self), self.host, ssl_context=ssl_context, server_hostname="localhost", **kwargs)
        return self

    def stop(self) -> None:
        c, self._controller = self._controller, None
        if c is not None:
            with contextlib.suppress(Exception):
                c.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def smtp_client(self, timeout: float = 10.0):
        """An ``smtplib`` client connected (and TLS-verified against the CA, if TLS)."""
        import smtplib

        if self.mode == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=timeout,
                                    context=self.certs.client_context())
        s = smtplib.SMTP(self.host, self.port, timeout=timeout)
        if self.mode == "starttls":
            s.starttls(context=self.certs.client_context())
        return s
