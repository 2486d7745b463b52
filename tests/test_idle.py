"""Receipts in seconds: `intake run` waits on IMAP IDLE (real Dovecot, real SMTP sink, a real worker process).

The worker runs at its default settings (poll every 5 minutes) unless a test says otherwise, so an
answer within seconds can only come from IDLE. Connections are dropped the hard ways a real network
drops them: the server's IMAP process killed (no BYE), the whole server stopped and started again on
the same port with mail delivered while it was down.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import DISTRICT, Harness, write_config
from workerproc import Worker, running
from intake_demo import samplemail
from pipeline.worker import lock
from pipeline.config import load_config
from pipeline.errors import ConfigError, MailboxUnavailable
from intake_demo import samples
from pipeline.mail.mailbox import Mailbox

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
ANSWER_WITHIN = 15.0  # seconds; the poll interval is 300


def reg_mail() -> bytes:
    xlsx = samples.registration_xlsx("Công đoàn cơ quan Ủy ban nhân dân quận Long Biên",
                                     [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])
    return samplemail.gmail_message(UBND, DISTRICT, "Đăng ký Dân vận khéo", "Kính gửi LĐLĐ quận.",
                                    [("Biểu đăng ký.xlsx", xlsx, XLSX)],
                                    message_id=f"<{uuid.uuid4().hex}@mail.gmail.com>")


def set_worker(path: Path, **worker: Any) -> None:
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg.setdefault("worker", {}).update(worker)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")


@contextlib.contextmanager
def worker(cfg_path: Path, *args: str) -> Iterator[Worker]:
    with running("--config", str(cfg_path), "run", *args) as w:
        yield w


def ready(w: Worker, connections: int = 1) -> None:
    """The worker waits on IDLE and its first passes (the schedule's and the IDLE connection's) are over."""
    w.wait_log("IDLE: waiting for mail in INBOX", connections)
    w.wait_log("poll: fetched", connections + 1)


def answered_within(h: Harness, w: Worker, n: int, since: float, limit: float = ANSWER_WITHIN) -> float:
    try:
        h.smtp.wait_for(n, timeout=limit + 5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; worker log:\n{w.log}") from None
    took = time.monotonic() - since
    assert took < limit, f"receipt after {took:.1f} s; worker log:\n{w.log}"
    assert h.smtp.messages[n - 1].rcpt_tos == [UBND]
    return took


def imap_processes(h: Harness) -> list[int]:
    """Pids of the test Dovecot's IMAP session processes (one per logged-in connection)."""
    assert h.dovecot.proc is not None
    group = h.dovecot.proc.pid
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            if comm == "imap" and int(fields[2]) == group:  # fields[2]: the process group
                pids.append(int(entry.name))
    return pids


# --------------------------------------------------------------------------- the session


def test_mailbox_idle_announces_mail_and_notices_a_dropped_connection(intake: Harness) -> None:
    cfg = intake.ctx.cfg.mailbox
    with Mailbox(cfg) as mb:
        assert mb.can_idle()
        mb.examine("INBOX")
        mb.idle_start()
        assert mb.idle_wait(0.2) is False
        intake.deliver(reg_mail())
        deadline = time.monotonic() + 10
        while not mb.idle_wait(1):
            assert time.monotonic() < deadline, "no EXISTS within 10 s"
        assert mb.idle_stop() is False
        mb.idle_start()
        intake.dovecot.restart()  # the server says BYE as it shuts down
        with pytest.raises(MailboxUnavailable, match="đã đóng kết nối"):
            for _ in range(10):
                mb.idle_wait(1)
    with Mailbox(cfg) as mb:
        mb.examine("INBOX")
        mb.idle_start()
        for pid in imap_processes(intake):  # no BYE, just the end of the connection
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(MailboxUnavailable, match="đã đóng kết nối"):
            for _ in range(10):
                mb.idle_wait(1)
        assert time.monotonic() - started < 5
    assert not intake.smtp.messages  # waiting on IDLE reads and answers nothing by itself


def test_idle_settings_are_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, imap_port=1, smtp_port=2)
    cfg = load_config(path)
    assert cfg.idle is True and cfg.idle_renew_minutes == 10
    set_worker(path, idle=False, idle_renew_minutes=0.5)
    cfg = load_config(path)
    assert cfg.idle is False and cfg.idle_renew_minutes == 0.5
    set_worker(path, idle=True, idle_renew_minutes=30)
    with pytest.raises(ConfigError, match=r"worker\.idle_renew_minutes"):
        load_config(path)


# --------------------------------------------------------------------------- `intake run`


def test_a_mail_is_answered_within_seconds_at_default_settings(intake: Harness) -> None:
    with worker(intake.cfg_path) as w:
        ready(w)
        assert "IDLE: waiting for mail in INBOX (renewed every 10 min)" in w.log
        started = time.monotonic()
        intake.deliver(reg_mail())
        answered_within(intake, w, 1, started)
        w.wait_log("poll: fetched 1, new 1")
        assert "IDLE: new mail → pass" in w.log
        # a second mail, to a worker that has already answered one
        started = time.monotonic()
        intake.deliver(reg_mail())
        answered_within(intake, w, 2, started)
        w.sigterm(within=5)  # while waiting on IDLE
    assert intake.ctx.store.lock_row(lock.LOCK_NAME) is None
    assert [o.state for o in intake.ctx.store.outbox_rows()] == ["sent", "sent"]


def test_idle_is_renewed_and_mail_after_the_renewal_is_answered(intake: Harness) -> None:
    set_worker(intake.cfg_path, idle_renew_minutes=0.05)  # every 3 s
    with worker(intake.cfg_path) as w:
        ready(w)
        w.wait_log("IDLE: renewed", 2, timeout=20)
        started = time.monotonic()
        intake.deliver(reg_mail())
        answered_within(intake, w, 1, started)
        w.wait_log("IDLE: renewed", 3, timeout=20)
        w.sigterm(within=5)
    assert "reconnecting" not in w.log  # renewing is not reconnecting


def test_the_worker_reconnects_and_misses_nothing(intake: Harness) -> None:
    with worker(intake.cfg_path) as w:
        ready(w)
        # 1. The connection ends without a word (the server's process killed): noticed, reopened.
        for pid in imap_processes(intake):
            os.kill(pid, signal.SIGKILL)
        w.wait_log("reconnecting in 1 s", timeout=10)
        w.wait_log("IDLE: waiting for mail in INBOX", 2, timeout=20)
        started = time.monotonic()
        intake.deliver(reg_mail())
        answered_within(intake, w, 1, started)
        # 2. The server goes away for a while; a mail arrives meanwhile; the reconnection's pass answers it.
        intake.dovecot.restart(deliver=[reg_mail()], down_for=3)
        started = time.monotonic()
        answered_within(intake, w, 2, started, limit=30)  # back-off 1 + 2 + 4 … s while it was down
        w.wait_log("IDLE: connected → pass", 3)
        assert "reconnecting in 2 s" in w.log
        # and it waits on IDLE again
        w.wait_log("IDLE: waiting for mail in INBOX", 3, timeout=20)
        started = time.monotonic()
        intake.deliver(reg_mail())
        answered_within(intake, w, 3, started)
        w.sigterm(within=5)
    assert len({m.parsed()["In-Reply-To"] for m in intake.smtp.messages}) == 3  # three mails, one receipt each


def hide_idle(h: Harness) -> None:
    """The test Dovecot stops announcing IDLE (``imap_capability``), as some servers do."""
    d = h.dovecot
    with open(d.config_path, "a", encoding="utf-8") as conf:
        conf.write("imap_capability = IMAP4rev1 SASL-IR LITERAL+ ID ENABLE MULTIAPPEND UNSELECT NAMESPACE "
                   "UIDPLUS MOVE\n")
    os.kill(d.proc.pid, signal.SIGHUP)  # reread the configuration
    deadline = time.monotonic() + 15
    while True:
        with d.client() as c:
            caps = c.capabilities()
            c.logout()
        if b"IDLE" not in caps:
            return
        assert time.monotonic() < deadline, f"IDLE still offered: {caps}"
        time.sleep(0.2)


@pytest.mark.parametrize("missing", ["server", "config"])
def test_without_idle_the_schedule_still_polls(intake: Harness, missing: str) -> None:
    if missing == "server":
        hide_idle(intake)
        expected = "IDLE: the server does not offer IDLE; polling every 2 s"
    else:
        set_worker(intake.cfg_path, idle=False)
        expected = "IDLE off (worker.idle: false); polling every 2 s"
    with worker(intake.cfg_path, "--poll-seconds", "2") as w:
        w.wait_log(expected)
        w.wait_log("poll: fetched")
        started = time.monotonic()
        intake.deliver(reg_mail())
        answered_within(intake, w, 1, started)
        w.sigterm(within=5)
    assert "IDLE: waiting" not in w.log and "IDLE: new mail" not in w.log
