"""Shared fixtures: a real Dovecot IMAP server and a real SMTP server on loopback, and a configured intake.

Also the `servers` marker (pyproject.toml): a test that needs a server, a browser or an `intake` child process
carries it, so `pytest -m "not servers"` runs the pure-logic tests in seconds. Tests that use a server fixture
get it by themselves (SERVER_FIXTURES); any other test that starts one unmarked fails at once (the guard below).
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgserver import PostgresServer, server_bindir  # noqa: E402
from servers import Dovecot, OAuthProvider, RefusingImap, SmtpSink, dovecot_available  # noqa: E402

from intake_demo.embedded import EmbeddedMailbox, EmbeddedSmtp  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.ledger.backend import district_url  # noqa: E402
from pipeline.context import Context  # noqa: E402
from pipeline.worker.mailpass import PassSummary, run_pass

DISTRICT = "ldldlongbien@gmail.com"
SHARED = Path(__file__).resolve().parents[2] / "shared"
PEER_MAIL = SHARED / "peer-mail"

UNITS_CSV = (
    "\ufeffunit_id,name,group,emails\n"
    "cq001,Công đoàn cơ quan Ủy ban nhân dân quận Long Biên,hcsn,CDCS.UBND@longbien.gov.vn\n"
    "th014,Công đoàn Trường Tiểu học Ái Mộ,truong_hoc,thaimo.longbien@gmail.com;hieutruong.aimo@gmail.com\n"
    "dn027,Công đoàn Công ty Cổ phần May Đức Giang,doanh_nghiep,congdoan@maydg.com.vn\n"
    "peer1,Công đoàn thử nghiệm 1,hcsn,doug@example.com;dwsauder@example.com\n"
    "peer2,Công đoàn thử nghiệm 2,doanh_nghiep,doug@penguin.example.com;sender@email.test\n"
)


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium_available() -> bool:
    """Debian's chromium and chromium-driver, which the desk's browser tests drive (nothing downloads a browser)."""
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite needs a real IMAP server, PostgreSQL's server and, for the desk, Chromium: install Debian's
    packages first when they are missing."""
    if not dovecot_available() or not chromium_available() or server_bindir() is None:
        script = Path(__file__).resolve().parents[1] / "scripts" / "install-system-deps.sh"
        subprocess.run(["bash", str(script)], check=False)


# --------------------------------------------------------------------------- the `servers` marker

# Fixtures (anywhere in tests/) that start a server or a browser themselves. A test is marked `servers` at
# collection when its fixture closure holds one, so fixtures built on them (intake, desk_harness, secrets,
# transport, ...) need no entry. A starter missing here is caught by the guard, never silently.
SERVER_FIXTURES = frozenset({
    "dovecot", "smtp",                      # conftest (and test_servers' own `dovecot`)
    "live_desk", "browser",                 # desk_helpers: the desk on a port, Chromium
    "provider", "plain_provider", "gmail",  # test_oauth: OAuthProvider, Dovecot with XOAUTH2
    "sink",                                 # test_smtp: SmtpSink
    "pg_url",                               # the private PostgreSQL cluster (tests/pgserver.py)
})

# What the guard refuses to start in an unmarked test: in-process servers, by their start method ...
_GUARDED_STARTS: tuple[tuple[type, str], ...] = (
    (Dovecot, "Dovecot"), (SmtpSink, "the SMTP sink"), (OAuthProvider, "the OAuth provider"),
    (RefusingImap, "the refusing IMAP server"), (EmbeddedMailbox, "the demo's IMAP server"),
    (EmbeddedSmtp, "the demo's SMTP server"),
)
# ... and child processes, by their command line: servers, the browser, and `intake` itself (not the
# forms reader's `python -c` child, which is part of the logic under test).
_GUARDED_PROGRAMS = frozenset({"dovecot", "chromedriver", "chromium", "intake", "crashpass.py"})
_GUARDED_MODULES = ("pipeline", "intake_demo")

_running: pytest.Item | None = None  # the test whose setup, call or teardown runs now


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use a server fixture; tryfirst, so that `-m` selects on the marker afterwards."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
        elif getattr(item, "callspec", None) is not None and item.callspec.params.get("backend") == "postgresql":
            item.add_marker(pytest.mark.servers)  # its database is the PostgreSQL cluster, started lazily


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    # a hook, not a function-scoped fixture: module-scoped server fixtures start before those
    global _running
    _running = item
    try:
        return (yield)
    finally:
        _running = None


def _refuse_unless_marked(what: str) -> None:
    item = _running
    if item is not None and item.get_closest_marker("servers") is None:
        pytest.fail(f"{item.nodeid} starts {what} but is not marked `servers`: mark this test `servers` "
                    "(@pytest.mark.servers, or `pytestmark = pytest.mark.servers` for the module; a fixture "
                    "that starts it goes in SERVER_FIXTURES in tests/conftest.py), so that "
                    "`pytest -m \"not servers\"` leaves it out", pytrace=False)


def _guarded_program(args: Any) -> str | None:
    """The guarded program, Python script or `-m` module a Popen command line runs, if any."""
    argv = [os.fspath(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
    if not argv:
        return None
    if Path(argv[0]).name in _GUARDED_PROGRAMS:
        return Path(argv[0]).name
    if Path(argv[0]).name.startswith("python"):
        # the first argument that is not an option is the script; `-m` names a module, `-c` runs code
        for i, arg in enumerate(argv[1:], 1):
            if arg == "-m" and i + 1 < len(argv):
                return f"python -m {argv[i + 1]}" if argv[i + 1].split(".")[0] in _GUARDED_MODULES else None
            if arg == "-c" or not arg.startswith("-"):
                return Path(arg).name if Path(arg).name in _GUARDED_PROGRAMS else None
    return None


@pytest.fixture(scope="session", autouse=True)
def _servers_guard() -> Iterator[None]:
    """Starting a server, the browser or `intake` in a test not marked `servers` fails at once."""
    def guard_start(cls: type, what: str) -> Callable[..., Any]:
        start = cls.start

        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            _refuse_unless_marked(what)
            return start(self, *args, **kwargs)
        return guarded

    popen_init = subprocess.Popen.__init__

    def guarded_popen(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        program = _guarded_program(args)
        if program is not None:
            _refuse_unless_marked(f"`{program}`")
        popen_init(self, args, *rest, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        for cls, what in _GUARDED_STARTS:
            mp.setattr(cls, "start", guard_start(cls, what))
        mp.setattr(subprocess.Popen, "__init__", guarded_popen)
        yield


# --------------------------------------------------------------------------- peers' sample mail

def require_peer_mail(sub: str = "mail-mime-parser") -> Path:
    """A folder of ../shared/peer-mail; a test that reads it fails (never skips) when it is missing."""
    folder = PEER_MAIL / sub
    if not folder.is_dir():
        where = "in CI (CI=true), the job must provide it" if os.environ.get("CI") else "put it there"
        pytest.fail(f"the peers' sample mail {folder} is missing: these tests read it from ../shared/peer-mail "
                    f"beside the checkout; {where}", pytrace=False)
    return folder


@pytest.fixture
def peer_mail() -> Path:
    """../shared/peer-mail/mail-mime-parser, or a failure naming it."""
    return require_peer_mail()


# --------------------------------------------------------------------------- the ledger's database

# A test module that sets BACKENDS = ("sqlite", "postgresql") runs each test using the ledger (through
# `intake`, `database` or `db_url`) on both; any other module on SQLite alone.
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    backends = getattr(metafunc.module, "BACKENDS", None)
    chosen = any("backend" in m.args[0] for m in metafunc.definition.iter_markers("parametrize"))
    if backends and "backend" in metafunc.fixturenames and not chosen:  # a test may name its own
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The private PostgreSQL cluster's URL (one per session); a test needing it fails when it cannot start."""
    with PostgresServer() as pg:
        yield pg.url


_districts = iter(range(1, 10**9))


def fresh_district() -> str:
    """A district id not used before in this session: a fresh, empty schema on the cluster."""
    return f"t{os.getpid()}_{next(_districts)}"


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """config.yaml's (storage.database, district) for the backend: None on SQLite (the file beside the
    config), the cluster and a fresh district on PostgreSQL."""
    if backend == "sqlite":
        return None
    return request.getfixturevalue("pg_url"), fresh_district()


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A ledger URL of its own for the test: a SQLite file, or a fresh district schema on the cluster."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'intake.db'}"
    return district_url(request.getfixturevalue("pg_url"), fresh_district())


@pytest.fixture
def dovecot() -> Any:
    with Dovecot() as d:
        yield d


@pytest.fixture
def smtp() -> Any:
    with SmtpSink() as s:
        yield s


@dataclass
class Harness:
    cfg_path: Path
    ctx: Context
    dovecot: Any
    smtp: Any
    clock_offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.clock_offset

    def poll(self) -> PassSummary:
        return run_pass(self.ctx, clock=self.now)

    def deliver(self, raw: bytes, when: datetime | None = None, folder: str = "INBOX") -> None:
        self.dovecot.append(raw, folder=folder, internaldate=when)

    def export(self) -> dict[str, Any]:
        from pipeline.ledger.export import export

        return export(self.ctx.store, self.ctx.cfg.tz)

    def reopen(self) -> Context:
        """A fresh Context on the same files, as after a restart."""
        self.ctx = Context(load_config(self.cfg_path))
        return self.ctx


def write_config(tmp: Path, *, imap_port: int, smtp_port: int, extra: dict[str, Any] | None = None,
                 mailbox_extra: dict[str, Any] | None = None,
                 smtp_extra: dict[str, Any] | None = None, database: tuple[str, str] | None = None) -> Path:
    (tmp / "units.csv").write_text(UNITS_CSV, encoding="utf-8")
    cfg: dict[str, Any] = {
        "organisation": "Liên đoàn Lao động quận Long Biên",
        "year": 2022,
        "timezone": "Asia/Ho_Chi_Minh",
        "mailbox": {"host": "127.0.0.1", "port": imap_port, "security": "plain", "username": "district@example.org",
                    "password_env": "INTAKE_TEST_IMAP_PW", "folder": "INBOX", "timeout": 10, "batch_size": 7,
                    **(mailbox_extra or {})},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "plain",
                 "sender": f"LĐLĐ quận Long Biên <{DISTRICT}>", "timeout": 10,
                 "per_minute": 1000, "per_day": 10000, **(smtp_extra or {})},
        "storage": {"database": "db/intake.sqlite3", "archive": "archive"},
        "units": "units.csv",
        "staff": ["staff@example.org"],
        **(extra or {}),
    }
    if database is not None:  # (URL, district): the ledger on PostgreSQL
        cfg["storage"] = {**cfg["storage"], "database": database[0]}
        cfg["district"] = database[1]
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def intake(tmp_path: Path, dovecot: Any, smtp: Any, monkeypatch: pytest.MonkeyPatch,
           database: tuple[str, str] | None) -> Iterator[Harness]:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    path = write_config(tmp_path, imap_port=dovecot.port, smtp_port=smtp.port, database=database)
    harness = Harness(cfg_path=path, ctx=Context(load_config(path)), dovecot=dovecot, smtp=smtp)
    yield harness
    harness.ctx.store.engine.dispose()  # PostgreSQL: the test's connections close now, not when collected
