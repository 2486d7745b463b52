"""SmtpTransport pipelines MAIL, RCPT and DATA (RFC 2920) when the server offers PIPELINING, as Gmail does:
two round trips per message instead of four, with the same outcomes as smtplib's sendmail.

Everything runs against the real test sink (aiosmtpd) on loopback. The sink records, per connection, the TCP
read each command came in with (``SmtpSink.sessions``): commands of one message sharing a read were written
without waiting for a reply, which only a pipelining client does.
"""
from __future__ import annotations

import logging
import time
from typing import Iterator

import pytest

from pipeline.config import SmtpConfig
from pipeline.errors import SmtpRejected, SmtpUnavailable
from pipeline.notify import SmtpTransport, build_mail
from servers import SmtpSink

SENDER = "LĐLĐ quận Long Biên <ldldlongbien@gmail.com>"
FROM = "ldldlongbien@gmail.com"
# Gmail's reply when the account's daily sending limit is spent (mailbox.REFUSALS: "sending_limit").
GMAIL_DAILY_LIMIT = ("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
                     "550-5.4.5 sending limits go to\r\n"
                     "550 5.4.5  https://support.google.com/a/answer/166852 x1 - gsmtp")
PIPELINED = ["MAIL", "RCPT", "DATA"]


def _cfg(sink: SmtpSink) -> SmtpConfig:
    return SmtpConfig(host=sink.host, port=sink.port, security="plain", username=None, password_env=None,
                      timeout=10, ca_file=None, sender=SENDER)


def _receipt(i: int, to: tuple[str, ...] = ("cdcs.ubnd@longbien.gov.vn",)) -> bytes:
    """A receipt-sized message (~3 KB, text and HTML) as build_mail makes it."""
    text = "".join(f"Dòng {k} của biên nhận số {i}: đã nhận hồ sơ đăng ký.\n" for k in range(20))
    html = "".join(f"<p>Dòng {k} của biên nhận số {i}: đã nhận.</p>\n" for k in range(20))
    return build_mail(sender=SENDER, to=to, subject=f"Re: Đăng ký số {i}", text=text, html=html,
                      in_reply_to=f"<m{i}@longbien.gov.vn>")[1]


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
def sink(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    with SmtpSink(pipelining=request.param) as s:
        yield s


@pytest.fixture
def transport(sink: SmtpSink) -> Iterator[SmtpTransport]:
    t = SmtpTransport(_cfg(sink))
    yield t
    t.close()


def _one_message(n_rcpt: int = 1) -> list[str]:
    return ["MAIL"] + ["RCPT"] * n_rcpt + ["DATA"]


def _expected_groups(pipelining: bool, *messages: list[str]) -> list[list[str]]:
    """The command runs the sink should see for these messages: one run each when pipelined, else one per command."""
    if pipelining:
        return [list(m) for m in messages]
    return [[verb] for m in messages for verb in m]


def _wait_quit(sink: SmtpSink, n_sessions: int) -> None:
    """QUIT is sent when the transport closes; let the sink see it before looking at its sessions."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sessions = sink.sessions
        if len(sessions) == n_sessions and all(s.verbs()[-1:] == ["QUIT"] for s in sessions):
            return
        time.sleep(0.01)
    raise AssertionError(f"sessions: {[s.verbs() for s in sink.sessions]}")


def test_the_sink_offers_pipelining_only_when_asked(sink: SmtpSink) -> None:
    with sink.smtp_client() as c:
        c.ehlo()
        assert c.has_extn("pipelining") is sink.pipelining
        assert c.has_extn("size")


def test_messages_over_one_connection_arrive_byte_identical(sink: SmtpSink, transport: SmtpTransport) -> None:
    recipients = [("a@example.vn",), ("b@example.vn", "c@example.vn"), ("d@example.vn",), ("e@example.vn",),
                  ("f@example.vn", "g@example.vn", "h@example.vn")]
    raws = [_receipt(i, to) for i, to in enumerate(recipients)]
    assert all(2500 < len(r) < 4000 for r in raws)
    for raw, to in zip(raws, recipients):
        transport.send(raw, SENDER, to)
    transport.close()
    got = sink.wait_for(len(raws))
    assert [m.raw for m in got] == raws
    assert [tuple(m.rcpt_tos) for m in got] == recipients
    assert {m.mail_from for m in got} == {FROM}
    # the same MAIL FROM parameter as smtplib's sendmail: SIZE, since the server offers it; nothing else
    assert [m.mail_options for m in got] == [[f"SIZE={len(r)}"] for r in raws]
    _wait_quit(sink, 1)
    (session,) = sink.sessions                       # one connection for all of them
    assert session.groups() == _expected_groups(sink.pipelining, *[_one_message(len(to)) for to in recipients]) \
        + [["QUIT"]]
    assert "500" not in " ".join(r[:3] for r in session.replies)


def test_pipelining_halves_the_reads(sink: SmtpSink, transport: SmtpTransport) -> None:
    """Per message, the sink takes in the command group and the content: 2 reads (4 without pipelining)."""
    n = 20
    for i in range(n):
        transport.send(_receipt(i), SENDER, ["a@example.vn"])
    sink.wait_for(n)
    (session,) = sink.sessions
    commands = [c for c in session.commands if c[0] in ("MAIL", "RCPT", "DATA")]
    assert len(commands) == 3 * n
    command_reads = len({read for _verb, read in commands})
    assert command_reads == (n if sink.pipelining else 3 * n)
    # content ~3 KB goes in one write; loopback may still split it, hence "at most" a few reads more
    assert session.reads <= (2 if sink.pipelining else 4) * n + n // 2


def test_lines_starting_with_a_dot_arrive_intact(sink: SmtpSink, transport: SmtpTransport) -> None:
    raw = (b"From: a@example.vn\r\nTo: b@example.vn\r\nSubject: dots\r\n\r\n"
           b".\r\n..\r\n.hidden\r\n...three\r\nmid.dle\r\n. space\r\n.")
    first_line_dot = b".first line\r\n.\r\nrest\r\n"
    transport.send(raw, SENDER, ["b@example.vn"])
    transport.send(raw + b"\r\n", SENDER, ["b@example.vn"])
    transport.send(first_line_dot, SENDER, ["b@example.vn"])
    a, b, c = sink.wait_for(3)
    # a last line without CRLF gets one, as smtplib.SMTP.data does; nothing else changes
    assert a.raw == raw + b"\r\n" and b.raw == raw + b"\r\n"
    assert c.raw == first_line_dot


@pytest.mark.parametrize("code, error", [(451, SmtpUnavailable), (550, SmtpRejected)])
def test_data_refused_after_the_content(sink: SmtpSink, transport: SmtpTransport, code: int, error: type) -> None:
    sink.fail_next(1, code=code)
    with pytest.raises(error, match=str(code)):
        transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert transport.conn is None                    # as before: a refused DATA closes the connection
    raw = _receipt(2)
    transport.send(raw, SENDER, ["a@example.vn"])   # and the next message goes through
    assert [m.raw for m in sink.wait_for(1)] == [raw]
    transport.close()
    _wait_quit(sink, 2)
    first, second = sink.sessions
    assert first.verbs() == PIPELINED + ["RSET", "QUIT"]   # RSET after the refused transaction, as smtplib does
    assert second.verbs() == PIPELINED + ["QUIT"]


@pytest.mark.parametrize("code, error", [(451, SmtpUnavailable), (554, SmtpRejected)])
def test_data_command_refused_sends_no_content(sink: SmtpSink, transport: SmtpTransport, code: int,
                                               error: type) -> None:
    sink.refuse_data_command(1, code=code)
    with pytest.raises(error, match=str(code)):
        transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert transport.conn is None
    raw = _receipt(2)
    transport.send(raw, SENDER, ["a@example.vn"])
    assert [m.raw for m in sink.wait_for(1)] == [raw]
    transport.close()
    _wait_quit(sink, 2)
    first, second = sink.sessions
    # no content went after the refused DATA: the sink would have taken its lines for commands ("500 …").
    # The pipelined path resets the session before the transport closes it; smtplib's data() just raises.
    reset = ["RSET"] if sink.pipelining else []
    assert first.verbs() == PIPELINED + reset + ["QUIT"]
    assert not [r for r in first.replies if r.startswith("500")]
    assert first.groups() == _expected_groups(sink.pipelining, PIPELINED) + [[v] for v in reset] + [["QUIT"]]
    assert second.verbs() == PIPELINED + ["QUIT"]


def test_421_closes_the_connection_and_is_temporary(sink: SmtpSink, transport: SmtpTransport) -> None:
    transport.send(_receipt(1), SENDER, ["a@example.vn"])
    sink.refuse_data_command(1, reply="421 4.7.0 Try again later, closing connection. x1 - gsmtp")
    with pytest.raises(SmtpUnavailable):
        transport.send(_receipt(2), SENDER, ["a@example.vn"])
    assert transport.conn is None
    transport.send(_receipt(3), SENDER, ["a@example.vn"])
    assert len(sink.wait_for(2)) == 2
    assert len(sink.sessions) == 2
    assert sink.sessions[0].verbs() == PIPELINED * 2        # nothing after the 421: the server hung up


def test_all_recipients_refused_is_rejected_and_the_connection_kept(sink: SmtpSink, transport: SmtpTransport) -> None:
    sink.refuse_rcpt("gone@example.vn", 550)
    sink.refuse_rcpt("other@example.vn", 550)
    with pytest.raises(SmtpRejected, match="550"):
        transport.send(_receipt(1), SENDER, ["gone@example.vn", "other@example.vn"])
    assert transport.conn is not None                # as before: the session is reset and used again
    raw = _receipt(2)
    transport.send(raw, SENDER, ["ok@example.vn"])
    (m,) = sink.wait_for(1)
    assert m.raw == raw and m.rcpt_tos == ["ok@example.vn"]
    (session,) = sink.sessions
    assert session.verbs() == ["MAIL", "RCPT", "RCPT"] + (["DATA"] if sink.pipelining else []) + ["RSET"] \
        + PIPELINED
    assert not [r for r in session.replies if r.startswith("354")][1:]   # only the good message's DATA got 354


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
    with caplog.at_level(logging.WARNING, logger="pipeline.notify"):
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
    with pytest.raises(SmtpUnavailable) as err:        # a 550, but Gmail's limit: temporary, not failed
        transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert not isinstance(err.value, SmtpRejected)
    assert "hạn mức gửi thư trong ngày" in str(err.value) and "Daily user sending limit exceeded" in str(err.value)
    assert transport.conn is None
    assert sink.messages == []


def test_refused_sender_is_reset_and_reported(sink: SmtpSink, transport: SmtpTransport) -> None:
    """MAIL FROM refused (here: the size over the sink's limit): with pipelining the RCPT and DATA that
    followed it are answered 503 and no content is sent; the outcome is smtplib's SMTPSenderRefused."""
    transport.send(_receipt(0), SENDER, ["a@example.vn"])
    with pytest.raises(SmtpRejected, match="552"):
        transport.send(b"x" * 40_000_000, SENDER, ["a@example.vn"])
    transport.send(_receipt(1), SENDER, ["a@example.vn"])
    assert len(sink.wait_for(2)) == 2
    transport.close()
    _wait_quit(sink, 2)
    first = sink.sessions[0]
    assert first.verbs() == PIPELINED + ["MAIL"] + (["RCPT", "DATA"] if sink.pipelining else []) + ["RSET", "QUIT"]
    codes = [r[:3] for r in first.replies]
    after = codes[codes.index("552"):]
    # pipelined: RCPT and DATA answered "no MAIL"/"no RCPT", then RSET, QUIT; no content taken for commands
    assert after == (["552", "503", "503", "250", "221"] if sink.pipelining else ["552", "250", "221"])


def test_lax_server_taking_data_without_recipients_gets_a_lone_dot() -> None:
    """RFC 2920 3.1: a client must check DATA's reply even when every RCPT was refused; if it is 354, it
    ends the (empty) message with a lone dot and never sends the content."""
    with SmtpSink(lax_data=True) as sink:
        sink.refuse_rcpt("gone@example.vn", 550)
        t = SmtpTransport(_cfg(sink))
        try:
            with pytest.raises(SmtpRejected, match="550"):
                t.send(_receipt(1), SENDER, ["gone@example.vn"])
            raw = _receipt(2)
            t.send(raw, SENDER, ["ok@example.vn"])
        finally:
            t.close()
        first, second = sink.wait_for(2)
        assert first.raw == b""                     # the lone dot: an empty message, not the receipt
        assert second.raw == raw
        (session,) = sink.sessions
        assert session.verbs()[:5] == ["MAIL", "RCPT", "DATA", "RSET", "MAIL"]


def test_a_dropped_connection_is_temporary_and_closed() -> None:
    sink = SmtpSink().start()
    t = SmtpTransport(_cfg(sink))
    try:
        t.send(_receipt(1), SENDER, ["a@example.vn"])
        sink.stop()                                  # the server goes away with the connection open
        with pytest.raises(SmtpUnavailable):
            t.send(_receipt(2), SENDER, ["a@example.vn"])
        assert t.conn is None
    finally:
        t.close()
        sink.stop()


@pytest.mark.parametrize("bad", ["cô.giáo@truong.edu.vn", "a@b.vn\r\nRCPT TO:<x@y.vn>"])
def test_an_address_smtp_cannot_carry_fails_that_mail_only(sink: SmtpSink, transport: SmtpTransport, bad: str) -> None:
    """A non-ASCII address (no SMTPUTF8 here) or one with a line break: that receipt fails with its reason,
    the worker does not crash, and the next receipt on the same transport goes out."""
    with pytest.raises(SmtpRejected, match="địa chỉ không gửi được"):
        transport.send(_receipt(1), SENDER, (bad,))
    transport.send(_receipt(2), SENDER, ("cdcs.ubnd@longbien.gov.vn",))
    got = sink.wait_for(1)
    assert [m.rcpt_tos for m in got] == [["cdcs.ubnd@longbien.gov.vn"]]
    assert all("x@y.vn" not in m.rcpt_tos for m in sink.messages)
