"""A private PostgreSQL cluster on loopback, for tests (as tests/servers.py starts Dovecot).

``initdb`` in a temporary folder, ``pg_ctl start`` on a free port of 127.0.0.1 with its unix socket in that
folder, trust authentication, no fsync (a test cluster need not survive a power cut). Debian's server
binaries (package ``postgresql``, scripts/install-system-deps.sh) are found with ``pg_config --bindir`` or
under /usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root: as root the cluster belongs to
``nobody`` and its programs run through ``setpriv``; as anybody else it is theirs.

>>> with PostgresServer() as pg:
...     pg.url  # postgresql+psycopg://postgres@127.0.0.1:PORT/intake
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from intake_demo.embedded import free_port

INSTALL_HINT = ("PostgreSQL's server is missing: run scripts/install-system-deps.sh (Debian's `postgresql`), "
                "or install initdb/pg_ctl/postgres by hand")


def server_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, newest major version first; None when missing."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            candidates.append(out)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for c in candidates:
        if all((Path(c) / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    return None


class PostgresServer:
    """One cluster with one database (``intake``) owned by the superuser ``postgres``, reachable over TCP
    with trust authentication on loopback only."""

    def __init__(self, *, database: str = "intake", start_timeout: float = 60.0) -> None:
        self.database = database
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self._as: list[str] = []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{self.database}"

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *args: str, timeout: float = 120.0) -> str:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                               + self._log_tail())
        return proc.stdout

    def _log_tail(self) -> str:
        log = self.root / "server.log" if self.root else None
        return f"\n--- server log ---\n{log.read_text(errors='replace')[-3000:]}" if log and log.exists() else ""

    def start(self) -> PostgresServer:
        bindir = server_bindir()
        if bindir is None:
            raise RuntimeError(INSTALL_HINT)
        self.root = Path(tempfile.mkdtemp(prefix="intake-pg-"))
        data = self.root / "data"
        if os.geteuid() == 0:
            # initdb and postgres refuse root; the cluster's files belong to nobody (uid/gid 65534)
            os.chmod(self.root, 0o755)
            os.chown(self.root, 65534, 65534)
            self._as = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        self._run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        self.port = free_port(self.host)
        options = (f"-c listen_addresses={self.host} -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400 "
                   "-c shared_buffers=32MB")
        self._run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", str(int(self.start_timeout)), "start")
        self._bindir = bindir
        deadline = time.monotonic() + self.start_timeout
        while True:  # pg_ctl -w waited for the socket; createdb over TCP proves loopback works too
            try:
                self._run(str(bindir / "createdb"), "-h", self.host, "-p", str(self.port), "-U", "postgres",
                          self.database, timeout=30)
                return self
            except RuntimeError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*self._as, str(self._bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                            "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
