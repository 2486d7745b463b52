"""The IMAP edge: TLS verified, timeouts on every call, failures recorded and retried, Gmail's ids."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import DISTRICT, Harness, write_config
from intake_demo import samplemail
from pipeline.config import load_config
from pipeline.errors import MailboxUnavailable
from pipeline.mail.mailbox import Fetched, Mailbox
from pipeline.context import Context
from pipeline.worker.mailpass import run_pass
from servers import Dovecot

UBND = "cdcs.ubnd@longbien.gov.vn"


def _ctx(tmp_path: Path, imap_port: int, smtp_port: int, **mailbox: Any) -> Context:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Context(load_config(write_config(tmp_path, imap_port=imap_port, smtp_port=smtp_port, mailbox_extra=mailbox)))


def test_tls_is_verified(tmp_path: Path, smtp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with Dovecot(tls=True) as dc:
        monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dc.password)
        dc.append(samplemail.gmail_message(UBND, DISTRICT, "TLS", "x", message_id="<tls@x>"))
        good = _ctx(tmp_path / "good", dc.tls_port, smtp.port, security="ssl", ca_file=str(dc.ca_path))
        assert run_pass(good).new == 1
        # the same server without its CA: the certificate is not trusted, so nothing is fetched
        bad = _ctx(tmp_path / "bad", dc.tls_port, smtp.port, security="ssl")
        summary = run_pass(bad)
        assert summary.new == 0
        assert summary.error and "chứng chỉ" in summary.error


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word: a hung IMAP server."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join()
        for c in conns:
            c.close()
        srv.close()


def test_a_hung_server_times_out_and_the_pass_records_the_failure(tmp_path: Path, smtp: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "x")
    with silent_server() as port:
        ctx = _ctx(tmp_path, port, smtp.port, timeout=1)
        start = time.monotonic()
        summary = run_pass(ctx)
        elapsed = time.monotonic() - start
    assert elapsed < 10
    assert summary.error and "không trả lời sau 1 giây" in summary.error


def test_unreachable_server_then_recovery_loses_nothing(intake: Harness, tmp_path: Path) -> None:
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Thư", "x", message_id="<later@x>"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    down = _ctx(tmp_path / "down", closed_port, intake.smtp.port)
    assert run_pass(down).error
    assert down.store.poll_state("INBOX") is None
    assert intake.poll().new == 1


def test_wrong_password_is_explained(intake: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "wrong")
    with pytest.raises(MailboxUnavailable, match="mật khẩu ứng dụng"):
        with Mailbox(intake.ctx.cfg.mailbox):
            pass


def test_processed_keyword_is_set_only_when_configured(tmp_path: Path, dovecot: Any, smtp: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    dovecot.append(samplemail.gmail_message(UBND, DISTRICT, "Thư", "x", message_id="<kw@x>"))
    ctx = _ctx(tmp_path, dovecot.port, smtp.port, processed_keyword="IntakeDone")
    assert run_pass(ctx).new == 1
    with dovecot.client() as c:
        c.select_folder("INBOX", readonly=True)
        [flags] = c.get_flags(c.search(["ALL"])).values()
    assert b"IntakeDone" in flags and b"\\Seen" not in flags


class FakeGmail:
    """Gmail's view of one mail in two labels: two folders, same X-GM-MSGID, different UIDs."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def select(self, folder: str) -> int:
        return 7

    def uids_above(self, last_uid: int) -> list[int]:
        return [u for u in (3, 9) if u > last_uid]

    def uids_since(self, day: date) -> list[int]:  # first contact: both arrived on 20/02/2022
        return [3, 9] if day <= date(2022, 2, 20) else []

    def fetch(self, uids: list[int]) -> Iterator[Fetched]:
        when = datetime(2022, 2, 20, 3, 0, tzinfo=timezone.utc)
        # Gmail rewrites nothing, but a label copy can differ in a trailing header; the msgid is the same
        return iter([Fetched(uid=u, raw=self.raw + (b"" if u == 3 else b"X-Label: copy\r\n"), internaldate=when,
                             gm_msgid=1700000000000000001) for u in uids])

    def mark_processed(self, uids: list[int]) -> None:
        pass


def test_gmail_msgid_recognises_the_same_mail_in_two_labels(intake: Harness) -> None:
    raw = samplemail.gmail_message(UBND, DISTRICT, "Một thư, hai nhãn", "x", message_id="<gm@x>")

    @contextmanager
    def factory() -> Iterator[FakeGmail]:
        yield FakeGmail(raw)

    s = run_pass(intake.ctx, mailbox_factory=factory)
    assert (s.fetched, s.new, s.duplicates) == (2, 1, 1)
    assert len(intake.export()["messages"]) == 1
    assert len(intake.smtp.messages) == 1
