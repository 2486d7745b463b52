"""SmtpTransport.send against the real test sink (aiosmtpd) on loopback: what arrives, and how each SMTP
refusal becomes ours (SmtpRejected: the mail fails with its reason; SmtpUnavailable: it waits in the outbox).

Gmail's login refusals are in tests/test_gmail_refusals.py, XOAUTH2 in tests/test_oauth.py.
"""
from __future__ import annotations

import logging
import time
from typing import Iterator

import pytest

from pipeline.config import SmtpConfig
from pipeline.errors import SmtpRejected, SmtpUnavailable
from pipeline.outbox.compose import build_mail
from pipeline.outbox.smtp import SmtpTransport
from servers import SmtpSink

pytestmark = pytest.mark.servers

SENDER = "LĐLĐ quận Long Biên <ldldlongbien@gmail.com>"
FROM = "ldldlongbien@gmail.com"
# Gmail's reply when the account's daily sending limit is spent (refusals.REFUSALS: "sending_limit").
GMAIL_DAILY_LIMIT = ("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
                     "550-5.4.5 sending limits go to\r\n"
                     "550 5.4.5  https://support.google.com/a/answer/166852 x1 - gsmtp")
ONE_MAIL = ["MAIL", "RCPT", "DATA"]


def _cfg(sink: SmtpSink) -> SmtpConfig:
    return SmtpConfig(host=sink.host, port=sink.port, security="plain", username=None, password_env=None,
                      timeout=10, ca_file=None, sender=SENDER)


def _receipt(i: int, to: tuple[str, ...] = ("cdcs.ubnd@longbien.gov.vn",)) -> bytes:
    """A receipt-sized message (~3 KB, text and HTML) as build_mail makes it."""
    text = "".join(f"Dòng {k} của biên nhận số {i}: đã nhận hồ sơ đăng ký.\n" for k in range(20))
    html = "".join(f"<p>Dòng {k} của biên nhận số {i}: đã nhận.</p>\n" for k in range(20))
    return build_mail(sender=SENDER, to=to, subject=f"Re: Đăng ký số {i}", text=text, html=html,
                      in_reply_to=f"<m{i}@longbien.gov.vn>")[1]


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def transport(sink: SmtpSink) -> Iterator[SmtpTransport]:
    t = SmtpTransport(_cfg(sink))
    yield t
    t.close()


def _wait_quit(sink: SmtpSink, n_sessions: int) -> None:
    """QUIT is sent when the transport closes; let the sink see it before looking at its sessions."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sessions = sink.sessions
        if len(sessions) == n_sessions and all(s.verbs()[-1:] == ["QUIT"] for s in sessions):
            return
        time.sleep(0.01)
    raise AssertionError(f"sessions: {[s.verbs() for s in sink.sessions]}")


def test_messages_over_one_connection_arrive_byte_identical(sink: SmtpSink, transport: SmtpTransport) -> None:
    recipients = [("a@example.vn",), ("b@example.vn", "c@example.vn"), ("d@example.vn",)]
    raws = [_receipt(i, to) for i, to in enumerate(recipients)]
    for raw, to in zip(raws, recipients):
        transport.send(raw, SENDER, to)
    transport.close()
    got = sink.wait_for(len(raws))
    assert [m.raw for m in got] == raws
    assert [tuple(m.rcpt_tos) for m in got] == recipients
    assert {m.mail_from for m in got} == {FROM}
    _wait_quit(sink, 1)
    (session,) = sink.sessions  # one connection for all of them
    assert session.verbs() == ["MAIL", "RCPT", "DATA", "MAIL", "RCPT", "RCPT", "DATA"] + ONE_MAIL + ["QUIT"]


@pytest.mark.parametrize("code, error", [(451, SmtpUnavailable), (550, SmtpRejected)])
def test_data_refused_after_the_content(sink: SmtpSink, transport: SmtpTransport, code: int, error: type) -> None:
    sink.fail_next(1, code=code)
    with pytest.raises(error, match=str(code)):
        transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert transport.conn is None  # a refused DATA closes the connection
    raw = _receipt(2)
    transport.send(raw, SENDER, ["a@example.vn"])  # and the next message goes through on a new one
    assert [m.raw for m in sink.wait_for(1)] == [raw]
    assert len(sink.sessions) == 2


@pytest.mark.parametrize("code, error", [(451, SmtpUnavailable), (554, SmtpRejected)])
def test_data_command_refused(sink: SmtpSink, transport: SmtpTransport, code: int, error: type) -> None:
    sink.refuse_data_command(1, code=code)
    with pytest.raises(error, match=str(code)):
        transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert transport.conn is None
    raw = _receipt(2)
    transport.send(raw, SENDER, ["a@example.vn"])
    assert [m.raw for m in sink.wait_for(1)] == [raw]
    # no content went after the refused DATA: the sink would have taken its lines for commands ("500 …")
    assert not [r for s in sink.sessions for r in s.replies if r.startswith("500")]


def test_421_closes_the_connection_and_is_temporary(sink: SmtpSink, transport: SmtpTransport) -> None:
    transport.send(_receipt(1), SENDER, ["a@example.vn"])
    sink.refuse_data_command(1, reply="421 4.7.0 Try again later, closing connection. x1 - gsmtp")
    with pytest.raises(SmtpUnavailable):
        transport.send(_receipt(2), SENDER, ["a@example.vn"])
    assert transport.conn is None
    transport.send(_receipt(3), SENDER, ["a@example.vn"])
    assert len(sink.wait_for(2)) == 2
    assert len(sink.sessions) == 2
    assert sink.sessions[0].verbs() == ONE_MAIL * 2  # nothing after the 421: the server hung up


def test_all_recipients_refused_is_rejected_and_the_connection_kept(sink: SmtpSink, transport: SmtpTransport) -> None:
    sink.refuse_rcpt("gone@example.vn", 550)
    sink.refuse_rcpt("other@example.vn", 550)
    with pytest.raises(SmtpRejected, match="550"):
        transport.send(_receipt(1), SENDER, ["gone@example.vn", "other@example.vn"])
    assert transport.conn is not None  # the session is reset and used again
    raw = _receipt(2)
    transport.send(raw, SENDER, ["ok@example.vn"])
    (m,) = sink.wait_for(1)
    assert m.raw == raw and m.rcpt_tos == ["ok@example.vn"]
    (session,) = sink.sessions
    assert session.verbs() == ["MAIL", "RCPT", "RCPT", "RSET"] + ONE_MAIL


def test_all_recipients_refused_for_now_is_temporary(sink: SmtpSink, transport: SmtpTransport) -> None:
    sink.refuse_rcpt("busy@example.vn", 450)
    with pytest.raises(SmtpUnavailable, match="450"):
        transport.send(_receipt(1), SENDER, ["busy@example.vn"])
    sink.accept_rcpt("busy@example.vn")
    transport.send(_receipt(2), SENDER, ["busy@example.vn"])
    assert len(sink.wait_for(1)) == 1 and len(sink.sessions) == 1


def test_some_recipients_refused_is_sent_to_the_others_and_logged(sink: SmtpSink, transport: SmtpTransport,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    sink.refuse_rcpt("gone@example.vn", 550)
    raw = _receipt(1, ("ok@example.vn", "gone@example.vn"))
    with caplog.at_level(logging.WARNING, logger="pipeline.outbox.smtp"):
        transport.send(raw, SENDER, ["ok@example.vn", "gone@example.vn"])
    (m,) = sink.wait_for(1)
    assert m.raw == raw and m.rcpt_tos == ["ok@example.vn"]
    assert "some recipients refused" in caplog.text and "gone@example.vn" in caplog.text


@pytest.mark.parametrize("stage", ["content", "command"])
def test_gmail_daily_limit_waits_in_the_outbox(sink: SmtpSink, transport: SmtpTransport, stage: str) -> None:
    if stage == "content":
        sink.fail_next(1, reply=GMAIL_DAILY_LIMIT)
    else:
        sink.refuse_data_command(1, reply=GMAIL_DAILY_LIMIT)
    with pytest.raises(SmtpUnavailable) as err:  # a 550, but Gmail's limit: temporary, not failed
        transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert not isinstance(err.value, SmtpRejected)
    assert "hạn mức gửi thư trong ngày" in str(err.value) and "Daily user sending limit exceeded" in str(err.value)
    assert transport.conn is None
    assert sink.messages == []


def test_refused_sender_is_rejected_and_the_next_mail_goes(sink: SmtpSink, transport: SmtpTransport) -> None:
    """MAIL FROM refused (here: the size over the sink's limit, announced with SIZE=)."""
    transport.send(_receipt(0), SENDER, ["a@example.vn"])
    with pytest.raises(SmtpRejected, match="552"):
        transport.send(b"x" * 40_000_000, SENDER, ["a@example.vn"])
    transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert len(sink.wait_for(2)) == 2


def test_a_dropped_connection_is_temporary_and_closed() -> None:
    sink = SmtpSink().start()
    t = SmtpTransport(_cfg(sink))
    try:
        t.send(_receipt(1), SENDER, ["a@example.vn"])
        sink.stop()  # the server goes away with the connection open
        with pytest.raises(SmtpUnavailable):
            t.send(_receipt(2), SENDER, ["a@example.vn"])
        assert t.conn is None
    finally:
        t.close()
        sink.stop()


@pytest.mark.parametrize("sender, to, bad", [
    (SENDER, "cô.giáo@truong.edu.vn", "cô.giáo@truong.edu.vn"),             # non-ASCII, no SMTPUTF8 here
    (SENDER, "a@b.vn\r\nRCPT TO:<x@y.vn>", "a@b.vn\r\nRCPT TO:<x@y.vn>"),    # would be a second command
    (SENDER, "ten co dau@b.vn", "ten co dau@b.vn"),
    ("Intake <hộp.thư@longbien.gov.vn>", "a@b.vn", "hộp.thư@longbien.gov.vn"),
], ids=["non-ascii", "line-break", "spaces", "sender"])
def test_an_address_smtp_cannot_carry_fails_that_mail_only(sink: SmtpSink, transport: SmtpTransport, sender: str,
                                                          to: str, bad: str) -> None:
    """That receipt fails with its reason before anything is written (no half-open transaction, no injected
    command), the worker does not crash, and the next receipt on the same transport goes out."""
    with pytest.raises(SmtpRejected, match="địa chỉ không gửi được") as err:
        transport.send(_receipt(1), sender, (to,))
    assert repr(bad) in str(err.value)
    transport.send(_receipt(2), SENDER, ("cdcs.ubnd@longbien.gov.vn",))
    transport.close()
    got = sink.wait_for(1)
    assert [m.rcpt_tos for m in got] == [["cdcs.ubnd@longbien.gov.vn"]]
    _wait_quit(sink, 1)
    assert sink.sessions[0].verbs() == ONE_MAIL + ["QUIT"]  # nothing of the refused mail reached the server
