"""Real mail servers on loopback for tests and benchmarks.

No pytest in here: ``bench/`` scripts use these classes too.

* :class:`Dovecot` -- a private Dovecot 2.3 (Debian ``dovecot-core dovecot-imapd``) run as
  ``dovecot -F -c FILE`` with its own config, passwd-file user and Maildir in a temp dir.
* :class:`SmtpSink` -- an aiosmtpd server in a background thread that records every message,
  and can be told to fail the next DATA commands or refuse a recipient.
* :class:`OAuthProvider` -- a tiny OAuth 2 token + introspection endpoint (Google-shaped) for XOAUTH2.
* :class:`RefusingImap` -- a scripted IMAP server that refuses logins with Gmail's exact replies.
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
from typing import Callable, Iterable, Sequence

__all__ = [
    "Dovecot",
    "DovecotMissing",
    "SmtpSink",
    "ReceivedMessage",
    "TestCerts",
    "make_test_certs",
    "free_port",
    "dovecot_available",
    "OAuthProvider",
    "RefusingImap",
    "LineLog",
]

INSTALL_HINT = (
    "the `dovecot` binary was not found: run `scripts/install-system-deps.sh` as root "
    "(installs Debian's dovecot-core and dovecot-imapd)"
)


class DovecotMissing(RuntimeError):
    """Dovecot is not installed on this machine."""


# --------------------------------------------------------------------------------------------
# small helpers


from intake_demo.embedded import free_port, start_smtp_controller  # noqa: E402  (one copy for demo and tests)


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
auth_mechanisms = plain login{oauth_mechanisms}
disable_plaintext_auth = no
auth_failure_delay = 0
ssl = {ssl}
{ssl_files}{oauth_passdb}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd{passwd_mechanisms}
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
# Like Gmail's "[Gmail]/Sent Mail": the folder an SMTP copy lands in, flagged \\Sent (RFC 6154) once created.
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
  }}
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

    With ``oauth=`` an :class:`OAuthProvider`, XOAUTH2 and OAUTHBEARER are offered too: Dovecot's
    ``oauth2`` passdb asks the provider's introspection endpoint whether a bearer token is active
    and whose it is (``email``); PLAIN/LOGIN keep using the passwd-file, so the helpers still work.
    """

    def __init__(self, user: str = "district@example.org", password: str = "secret-pw",
                 *, tls: bool = False, host: str = "127.0.0.1", extra_users: dict[str, str] | None = None,
                 keep_dir: bool = False, start_timeout: float = 15.0,
                 oauth: "OAuthProvider | None" = None) -> None:
        self.oauth = oauth
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
            **self._oauth_settings(),
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

    def _oauth_settings(self) -> dict[str, str]:
        if self.oauth is None:
            return {"oauth_mechanisms": "", "oauth_passdb": "", "passwd_mechanisms": ""}
        ext = self.root / "dovecot-oauth2.conf.ext"
        lines = [f"introspection_url = {self.oauth.introspection_url}",
                 "introspection_mode = post",
                 "force_introspection = yes",
                 "username_attribute = email",
                 "active_attribute = active",
                 "active_value = true",
                 "timeout_msecs = 5000"]
        if self.oauth.certs is not None:
            # a copy Dovecot's auth process can read (the caller's temp dir may be private)
            ca = self.root / "oauth-ca.pem"
            shutil.copyfile(self.oauth.certs.ca_path, ca)
            os.chmod(ca, 0o644)
            lines.append(f"tls_ca_cert_file = {ca}")
        ext.write_text("\n".join(lines) + "\n")
        os.chmod(ext, 0o644)
        return {
            "oauth_mechanisms": " xoauth2 oauthbearer",
            "oauth_passdb": ("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                             f"  args = {ext}\n}}\n"),
            "passwd_mechanisms": "\n  mechanisms = plain login",
        }

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

    def restart(self, *, deliver: Iterable[bytes] = (), down_for: float = 0.0) -> None:
        """Stop the server as an outage does (its sessions get BYE), then start it again: same port, same mail.

        While it is down, ``deliver`` goes into INBOX as a local delivery agent puts it there with no IMAP
        server running (a file in Maildir/new), and then the server stays down ``down_for`` more seconds.
        """
        assert self.proc is not None and self.config_path is not None, "restart() of a Dovecot not started"
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=15)
        if self.proc.stdout:
            self.proc.stdout.close()
        maildir = self.maildir_path("INBOX")
        for raw in deliver:
            for sub in ("tmp", "new", "cur"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            name = f"{time.time():.0f}.{os.urandom(8).hex()}.intake-test"
            tmp = maildir / "tmp" / name
            tmp.write_bytes(raw.replace(b"\r\n", b"\n"))
            os.chown(tmp, self._uid, self._gid)
            tmp.rename(maildir / "new" / name)
        time.sleep(down_for)
        self.proc = subprocess.Popen([_find_dovecot(), "-F", "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_greeting(self.host, self.port, timeout=self.start_timeout, proc=self.proc)
        if self.tls:
            _wait_for_greeting(self.host, self.tls_port, timeout=self.start_timeout, proc=self.proc,
                               tls=self.certs.client_context())

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
    mail_options: list[str] = field(default_factory=list)  # MAIL FROM parameters, upper-cased (e.g. SIZE=123)

    def parsed(self):
        """The message as an ``email.message.EmailMessage``."""
        import email
        import email.policy
        return email.message_from_bytes(self.raw, policy=email.policy.default)


#: Gmail's answer to a wrong password or access token (two lines, as Gmail sends it).
GMAIL_535 = ("535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
             "535 5.7.8  https://support.google.com/mail/?p=BadCredentials a1-20020a17090a000100b0000000000000sm1.1 - gsmtp")


@dataclass
class SinkSession:
    """One SMTP connection as the sink saw it.

    ``reads``: how many TCP reads (``data_received``) it took since EHLO. ``commands``: every command line, as
    ``(VERB, read)`` with the number of the read that was last taken in when the sink came to it: commands
    with the same number were all waiting in the sink's buffer together, i.e. the client wrote them without
    waiting for a reply (pipelined). ``replies``: every reply line the sink sent (the first line of one sent
    as a block), from EHLO's on.
    """
    peer: tuple | None
    reads: int = 0
    commands: list[tuple[str, int]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    def verbs(self) -> list[str]:
        return [verb for verb, _read in self.commands]

    def groups(self) -> list[list[str]]:
        """The commands in runs that came in the same read: ``[["MAIL", "RCPT", "DATA"], ["MAIL", …], …]``
        pipelined, ``[["MAIL"], ["RCPT"], ["DATA"], …]`` not (the EHLO that started the record and the
        message content, which is no command, do not appear)."""
        out: list[list[str]] = []
        last = None
        for verb, read in self.commands:
            if out and read == last:
                out[-1].append(verb)
            else:
                out.append([verb])
            last = read
        return out


class _CommandLog(dict):
    """aiosmtpd's table of command methods (``SMTP._smtp_methods``), noting each command looked up in it
    (unknown ones too: the content of a refused DATA sent anyway would show up here), and answering DATA
    with an injected refusal when ``SmtpSink.refuse_data_command`` asked for one."""

    def __init__(self, methods: dict, server, record: SinkSession, sink: "SmtpSink") -> None:
        super().__init__(methods)
        self.server = server
        self.record = record
        self.sink = sink

    def get(self, command, default=None):
        self.record.commands.append((command, self.record.reads))
        method = super().get(command, default)
        if command == "DATA" and method is not None:
            return self._data(method)
        return method

    def _data(self, method):
        import functools

        server, sink = self.server, self.sink

        @functools.wraps(method)
        async def data(arg):
            reply = sink._take_data_command_refusal() if server.envelope.rcpt_tos else None
            if reply is None:
                return await method(arg)
            await server.push(reply)
            if reply.startswith("421"):
                server.transport.close()

        return data


class _SinkHandler:
    def __init__(self, sink: "SmtpSink") -> None:
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        """Watch the connection: its reads, commands and replies go to a :class:`SinkSession` in ``sink.sessions``."""
        session.host_name = hostname  # what aiosmtpd does itself when there is no EHLO hook
        if not isinstance(server._smtp_methods, _CommandLog):   # once per connection (EHLO again after STARTTLS)
            record = SinkSession(peer=session.peer)
            received, push = server.data_received, server.push

            def data_received(data: bytes) -> None:
                record.reads += 1
                received(data)

            async def push_noted(status):
                if isinstance(status, str):   # as aiosmtpd's push encodes it
                    status = status.encode("utf-8" if server.enable_SMTPUTF8 else "ascii")
                record.replies.append(status.split(b"\r\n", 1)[0].decode("utf-8", "replace"))
                await push(status)

            server.data_received = data_received
            server.push = push_noted
            server._smtp_methods = _CommandLog(server._smtp_methods, server, record, self.sink)
            self.sink._add_session(record)
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.sink._refused_code(address)
        if code is not None:
            return f"{code} {'5.1.1' if code >= 500 else '4.2.0'} recipient <{address}> refused by test sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def auth_XOAUTH2(self, server, args):
        """AUTH XOAUTH2 as Gmail does it: on failure a 334 challenge with a JSON reason, then 535."""
        import base64
        import json

        from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

        if len(args) == 1:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = dict(p.split("=", 1) for p in blob.decode(errors="replace").split("\x01") if "=" in p)
        user = fields.get("user", "")
        auth = fields.get("auth", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        sink = self.sink
        with sink._cond:
            sink.bearer_logins.append((user, token))
            refusal = sink._auth_reply
        if refusal is None and sink.xoauth2 is not None and sink.xoauth2(user, token):
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), token.encode()))
        reason = json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(reason)   # the client answers with an empty line
        return AuthResult(success=False, handled=False, message=refusal or GMAIL_535)

    async def handle_DATA(self, server, session, envelope):
        code, reply = self.sink._take_failure_reply()
        if reply is not None:
            return reply
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
            mail_options=list(envelope.mail_options),
        )
        self.sink._record(msg)
        return "250 OK message accepted"


class SmtpSink:
    """An SMTP server on loopback (aiosmtpd, own thread) that records what it receives.

    ``mode``: ``"plain"`` (default), ``"starttls"`` (STARTTLS offered; ``require_tls=True`` to
    insist), or ``"ssl"`` (implicit TLS). With TLS the cert verifies against ``.ca_path``.
    AUTH PLAIN/LOGIN is offered (also without TLS); with ``username`` set only that
    username/password is accepted, otherwise any login is. With ``xoauth2`` (a function of
    ``(user, bearer_token) -> bool``) AUTH XOAUTH2 is offered too, answering failures the way Gmail
    does; every XOAUTH2 attempt is kept in ``bearer_logins``. ``refuse_auth(reply)`` makes every
    AUTH answer ``reply`` (e.g. Gmail's exact 535/534 text).

    Every connection is recorded in ``sessions`` (:class:`SinkSession`: its reads, commands and replies).
    """

    def __init__(self, *, host: str = "127.0.0.1", mode: str = "plain", require_tls: bool = False,
                 username: str | None = None, password: str | None = None,
                 auth_required: bool = False, xoauth2=None) -> None:
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
        self._fail_queue: list[int | str] = []
        self._data_command_queue: list[str] = []
        self._sessions: list[SinkSession] = []
        self._refused: dict[str, int] = {}
        self.xoauth2 = xoauth2
        self.bearer_logins: list[tuple[str, str]] = []
        self._auth_reply: str | None = None
        self._controller = None
        self._tmp: str | None = None
        self.keep_copy: Callable[[bytes], None] | None = None  # e.g. file a copy in the mailbox's Sent folder

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of everything received so far, in order."""
        with self._cond:
            return list(self._messages)

    @property
    def sessions(self) -> list[SinkSession]:
        """Every connection that said EHLO so far (since ``clear``), in order."""
        with self._cond:
            return list(self._sessions)

    def _add_session(self, record: SinkSession) -> None:
        with self._cond:
            self._sessions.append(record)

    def clear(self) -> None:
        """Forget the messages and sessions received so far."""
        with self._cond:
            self._messages.clear()
            self._sessions.clear()

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

    def fail_next(self, n: int = 1, code: int = 451, reply: str | None = None) -> None:
        """Make the next ``n`` DATA commands answer ``code`` (451: temporary) instead of 250,
        or exactly ``reply`` when given (e.g. Gmail's ``550 5.4.5 Daily user sending limit exceeded``)."""
        with self._cond:
            self._fail_queue.extend([reply if reply is not None else code] * n)

    def refuse_data_command(self, n: int = 1, code: int = 451, reply: str | None = None) -> None:
        """Make the next ``n`` DATA commands that follow an accepted recipient answer ``code`` (or exactly
        ``reply``) instead of 354, before any content (``fail_next`` refuses after the content). A 421 also
        closes the connection, as a server shutting down does."""
        text = reply if reply is not None else (
            f"{code} {'4.3.0' if code < 500 else '5.3.0'} test sink refusing this DATA command on purpose")
        with self._cond:
            self._data_command_queue.extend([text] * n)

    def _take_data_command_refusal(self) -> str | None:
        with self._cond:
            return self._data_command_queue.pop(0) if self._data_command_queue else None

    def refuse_auth(self, reply: str | None) -> None:
        """Answer every AUTH with ``reply`` (a full SMTP reply, lines joined by CRLF); None: normal again."""
        with self._cond:
            self._auth_reply = reply

    def _take_failure_reply(self) -> tuple[int | None, str | None]:
        with self._cond:
            if not self._fail_queue:
                return None, None
            item = self._fail_queue.pop(0)
        return (None, item) if isinstance(item, str) else (item, None)

    def refuse_rcpt(self, address: str, code: int = 550) -> None:
        """Refuse RCPT TO for ``address`` (case-insensitive) with ``code`` from now on."""
        with self._cond:
            self._refused[address.lower()] = code

    def accept_rcpt(self, address: str) -> None:
        with self._cond:
            self._refused.pop(address.lower(), None)

    def _refused_code(self, address: str) -> int | None:
        with self._cond:
            return self._refused.get(address.lower())

    def _record(self, msg: ReceivedMessage) -> None:
        if self.keep_copy is not None:
            # As Gmail files every mail sent through its SMTP in "[Gmail]/Sent Mail" before answering 250.
            self.keep_copy(msg.raw)
        with self._cond:
            self._messages.append(msg)
            self._cond.notify_all()

    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        with self._cond:
            refusal = self._auth_reply
        if refusal is not None:
            return AuthResult(success=False, handled=False, message=refusal)
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
        if self.xoauth2 is None:
            kwargs["auth_exclude_mechanism"] = ["XOAUTH2"]
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


# --------------------------------------------------------------------------------------------
# OAuth 2 provider


class OAuthProvider:
    """A tiny OAuth 2 provider on loopback (``http.server`` in a thread), shaped like Google's.

    * ``POST /token`` -- the refresh-token grant (form ``grant_type=refresh_token&refresh_token=…
      &client_id=…&client_secret=…``) answers ``{"access_token", "expires_in", "scope",
      "token_type": "Bearer"}``; a revoked or unknown refresh token gets Google's
      ``400 {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}``,
      a wrong client ``401 {"error": "invalid_client"}``.
    * ``POST /introspect`` -- RFC 7662 introspection (form ``token=…``) for Dovecot's oauth2 passdb:
      ``{"active": true, "email": user}`` for a live access token, ``{"active": false}`` otherwise.
    * ``GET /auth`` -- the consent screen, agreed at once by ``consenting_user``: a redirect back to
      ``redirect_uri`` with a code, which ``POST /token`` (``grant_type=authorization_code``, PKCE
      S256 checked) exchanges for a refresh token.

    With ``certs`` (a :class:`TestCerts`) it speaks HTTPS with that certificate; clients verify it
    against ``certs.ca_path``.
    """

    __test__ = False

    def __init__(self, *, client_id: str = "intake-test.apps.googleusercontent.com",
                 client_secret: str = "test-client-secret", host: str = "127.0.0.1",
                 certs: TestCerts | None = None, lifetime: int = 3599) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self.certs = certs
        self.lifetime = lifetime
        self.port = 0
        self._lock = threading.Lock()
        self._refresh: dict[str, str] = {}          # refresh token -> user
        self._access: dict[str, str] = {}           # live access token -> user
        self._fail_queue: list[int] = []
        self.token_requests: list[dict[str, str]] = []   # forms received at /token (for assertions)
        self.authorizations: list[dict[str, str]] = []   # queries received at /auth
        self.consenting_user = "district@example.org"    # who "signs in" on the consent screen
        self._codes: dict[str, tuple[str, str, str]] = {}
        self.introspections = 0
        self._server = None
        self._thread: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------
    def grant(self, user: str) -> str:
        """A new refresh token for ``user`` (what the one-time consent screen would give)."""
        import secrets

        token = "1//test-refresh-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = user
        return token

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token and every access token issued so far (as Google does)."""
        with self._lock:
            user = self._refresh.pop(refresh_token, None)
            self._access = {a: u for a, u in self._access.items() if u != user}

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (the refresh tokens stay good)."""
        with self._lock:
            self._access.clear()

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` token requests with HTTP ``status`` (an outage)."""
        with self._lock:
            self._fail_queue.extend([status] * n)

    @property
    def issued(self) -> list[str]:
        with self._lock:
            return list(self._access)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.certs else 'http'}://{self.host}:{self.port}"

    @property
    def token_uri(self) -> str:
        return self.base_url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.base_url + "/introspect"

    # -- HTTP ------------------------------------------------------------------------------
    def _token(self, form: dict[str, str]) -> tuple[int, dict]:
        import secrets

        with self._lock:
            self.token_requests.append(dict(form))
            if self._fail_queue:
                return self._fail_queue.pop(0), {"error": "backend_error"}
            if form.get("grant_type") not in ("refresh_token", "authorization_code"):
                return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        if form.get("grant_type") == "authorization_code":
            return self._code_grant(form)
        with self._lock:
            user = self._refresh.get(form.get("refresh_token", ""))
            if user is None:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            access = "ya29.test-" + secrets.token_urlsafe(32)
            self._access[access] = user
        return 200, {"access_token": access, "expires_in": self.lifetime, "scope": "https://mail.google.com/",
                     "token_type": "Bearer"}

    def _authorize(self, query: dict[str, str]) -> str:
        """The consent screen, already agreed: where the browser is sent back (with a code)."""
        import secrets

        code = "4/test-code-" + secrets.token_urlsafe(16)
        with self._lock:
            self.authorizations.append(dict(query))
            self._codes[code] = (self.consenting_user, query.get("redirect_uri", ""),
                                 query.get("code_challenge", ""))
        back = {"code": code, "state": query.get("state", ""), "scope": query.get("scope", "")}
        from urllib.parse import urlencode

        return f"{query.get('redirect_uri', '')}?{urlencode(back)}"

    def _code_grant(self, form: dict[str, str]) -> tuple[int, dict]:
        import base64
        import hashlib
        import secrets

        with self._lock:
            user, redirect_uri, challenge = self._codes.pop(form.get("code", ""), (None, "", ""))
        verifier = form.get("code_verifier", "")
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if user is None or form.get("redirect_uri") != redirect_uri or expected != challenge:
            return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
        refresh = self.grant(user)
        access = "ya29.test-" + secrets.token_urlsafe(32)
        with self._lock:
            self._access[access] = user
        return 200, {"access_token": access, "expires_in": self.lifetime, "refresh_token": refresh,
                     "scope": "https://mail.google.com/", "token_type": "Bearer"}

    def _introspect(self, form: dict[str, str]) -> tuple[int, dict]:
        with self._lock:
            self.introspections += 1
            user = self._access.get(form.get("token", ""))
        if user is None:
            return 200, {"active": False}
        return 200, {"active": True, "email": user, "scope": "https://mail.google.com/"}

    def __enter__(self) -> "OAuthProvider":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "OAuthProvider":
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qsl

        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if not self.path.startswith("/auth"):
                    self.send_response(404)
                    self.end_headers()
                    return
                from urllib.parse import urlsplit

                query = dict(parse_qsl(urlsplit(self.path).query))
                self.send_response(302)
                self.send_header("Location", provider._authorize(query))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                if self.path.startswith("/token"):
                    status, body = provider._token(form)
                elif self.path.startswith("/introspect"):
                    status, body = provider._introspect(form)
                else:
                    status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        if self.certs is not None:
            server.socket = self.certs.server_context().wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# --------------------------------------------------------------------------------------------
# An IMAP server that refuses as Gmail does


GMAIL_CAPABILITY = ("IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR "
                    "AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER AUTH=XOAUTH")


class RefusingImap:
    """A scripted IMAP server on loopback that greets and refuses every login with a fixed reply.

    It speaks just enough IMAP4rev1 over a real socket for a client to connect, ask CAPABILITY, try
    LOGIN or AUTHENTICATE XOAUTH2 (answered, as Gmail does, with a ``+`` challenge carrying a JSON
    reason before the tagged NO), and LOGOUT. ``refusal`` is the text after ``NO`` (e.g. Gmail's
    ``[AUTHENTICATIONFAILED] Invalid credentials (Failure)``); with ``greeting`` set, that untagged
    line is sent instead of the usual ``* OK`` (e.g. ``* BYE [UNAVAILABLE] …``) and the connection
    closed. ``logins`` counts LOGIN/AUTHENTICATE attempts.
    """

    def __init__(self, refusal: str = "[AUTHENTICATIONFAILED] Invalid credentials (Failure)", *,
                 greeting: str | None = None, host: str = "127.0.0.1") -> None:
        self.refusal = refusal
        self.greeting = greeting
        self.host = host
        self.port = 0
        self.logins = 0
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "RefusingImap":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "RefusingImap":
        srv = socket.socket()
        srv.bind((self.host, 0))
        srv.listen(8)
        srv.settimeout(0.1)
        self._sock = srv
        self.port = srv.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        import base64
        import json

        conn.settimeout(10)
        f = conn.makefile("rwb", buffering=0)

        def send(line: str) -> None:
            f.write(line.encode() + b"\r\n")

        try:
            if self.greeting is not None:
                send(self.greeting)
                return
            send("* OK Gimap ready for requests from 127.0.0.1 x1mb12345678abc")
            while not self._stop.is_set():
                raw = f.readline()
                if not raw:
                    return
                parts = raw.decode(errors="replace").strip().split(" ", 2)
                if len(parts) < 2:
                    continue
                tag, cmd = parts[0], parts[1].upper()
                if cmd == "CAPABILITY":
                    send(f"* CAPABILITY {GMAIL_CAPABILITY}")
                    send(f"{tag} OK Thats all she wrote! x1mb12345678abc")
                elif cmd == "LOGIN":
                    with self._lock:
                        self.logins += 1
                    send(f"{tag} NO {self.refusal}")
                elif cmd == "AUTHENTICATE":
                    with self._lock:
                        self.logins += 1
                    args = parts[2].split() if len(parts) > 2 else []
                    if len(args) < 2:            # no SASL-IR: ask for the initial response
                        send("+ ")
                        f.readline()
                    reason = json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})
                    send("+ " + base64.b64encode(reason.encode()).decode())
                    f.readline()
                    send(f"{tag} NO {self.refusal}")
                elif cmd == "LOGOUT":
                    send("* BYE LOGOUT Requested")
                    send(f"{tag} OK 73 good day (Success)")
                    return
                elif cmd == "NOOP":
                    send(f"{tag} OK Success")
                else:
                    send(f"{tag} BAD Unknown command x1mb12345678abc")
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                f.close()
                conn.close()


class LineLog:
    """The lines a child process writes to a pipe (an `intake run`'s log), collected by a thread as they come."""

    def __init__(self, stream, alive) -> None:
        self.lines: list[str] = []
        self._alive = alive  # () -> bool: is the writer still running?
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def count(self, needle: str) -> int:
        with self._changed:
            return sum(needle in line for line in self.lines)

    def wait(self, needle: str, count: int = 1, timeout: float = 30.0) -> bool:
        """True once ``needle`` is in ``count`` lines; False after ``timeout`` or once the writer is gone."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(needle in line for line in self.lines) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (not self._alive() and not self._reader.is_alive()):
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)
