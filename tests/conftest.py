"""Shared fixtures: a real Dovecot IMAP server and a real SMTP server on loopback, and a configured intake."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Dovecot, SmtpSink, dovecot_available  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.context import Context  # noqa: E402
from pipeline.worker.mailpass import PassSummary, run_pass

DISTRICT = "ldldlongbien@gmail.com"
SHARED = Path(__file__).resolve().parents[2] / "shared"

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
    """The suite needs a real IMAP server and, for the desk, Chromium: install Debian's packages first
    when they are missing."""
    if not dovecot_available() or not chromium_available():
        import subprocess

        script = Path(__file__).resolve().parents[1] / "scripts" / "install-system-deps.sh"
        subprocess.run(["bash", str(script)], check=False)


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
                 smtp_extra: dict[str, Any] | None = None) -> Path:
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
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def intake(tmp_path: Path, dovecot: Any, smtp: Any, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    path = write_config(tmp_path, imap_port=dovecot.port, smtp_port=smtp.port)
    return Harness(cfg_path=path, ctx=Context(load_config(path)), dovecot=dovecot, smtp=smtp)
