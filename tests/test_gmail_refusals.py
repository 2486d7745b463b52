"""Gmail's usual refusals, word for word, over real IMAP and SMTP conversations on loopback, come out as
one clear Vietnamese message each: what happened and what to do."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import DISTRICT, Harness, write_config
from intake_demo import samplemail
from pipeline.config import load_config
from pipeline.errors import AccessRefused, MailboxAccessRefused, MailboxUnavailable, SmtpAccessRefused, SmtpUnavailable
from pipeline.mail.mailbox import Mailbox
from pipeline.mail.refusals import REFUSALS, match_refusal, refused_logins
from pipeline.outbox.smtp import SmtpTransport
from pipeline.context import Context
from pipeline.worker.mailpass import run_pass
from servers import OAuthProvider, RefusingImap, SmtpSink

pytestmark = pytest.mark.servers

UBND = "cdcs.ubnd@longbien.gov.vn"
APP_PASSWORD = "Bảo mật → Xác minh 2 bước"
ENABLE_IMAP = "Chuyển tiếp và POP/IMAP"

# Gmail's IMAP replies (tagged NO to LOGIN/AUTHENTICATE), as Gmail words them.
IMAP_REFUSALS = [
    ("[AUTHENTICATIONFAILED] Invalid credentials (Failure)", True, [APP_PASSWORD, "Mật khẩu ứng dụng",
                                                                     "INTAKE_TEST_IMAP_PW"]),
    ("[ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)",
     True, ["đòi mật khẩu ứng dụng", APP_PASSWORD]),
    ("[ALERT] Please log in via your web browser: https://support.google.com/mail/accounts/answer/78754 (Failure)",
     True, ["trình duyệt", "accounts.google.com", ENABLE_IMAP]),
    ("[ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page and enable your "
     "account for IMAP access. (Failure)", True, ["IMAP đang tắt", ENABLE_IMAP, "Bật IMAP"]),
    ("[ALERT] IMAP access is disabled for your domain. Please contact your domain administrator for questions "
     "about this feature. (Failure)", True, ["IMAP đang tắt", ENABLE_IMAP]),
    ("[ALERT] Too many simultaneous connections. (Failure)", False, ["quá nhiều kết nối IMAP cùng lúc",
                                                                     "tự thử lại"]),
    ("[UNAVAILABLE] Too many connections", False, ["quá nhiều kết nối"]),
    ("[UNAVAILABLE] Temporary System Problem. Try again later. (Failure)", False, ["tạm thời không phục vụ"]),
]


def _ctx(tmp_path: Path, imap_port: int, smtp_port: int, **mailbox: Any) -> Context:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Context(load_config(write_config(tmp_path, imap_port=imap_port, smtp_port=smtp_port,
                                            mailbox_extra=mailbox)))


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    refused_logins.clear()
    yield
    refused_logins.clear()


@pytest.mark.parametrize("reply, permanent, words", IMAP_REFUSALS, ids=[r[0][:40] for r in IMAP_REFUSALS])
def test_imap_login_refusals_are_explained(reply: str, permanent: bool, words: list[str], tmp_path: Path,
                                           smtp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "abcd efgh ijkl mnop")
    with RefusingImap(reply) as server:
        ctx = _ctx(tmp_path, server.port, smtp.port)
        with pytest.raises(MailboxUnavailable) as err:
            with Mailbox(ctx.cfg.mailbox):
                pass
        assert server.logins == 1
    text = str(err.value)
    assert isinstance(err.value, AccessRefused) is permanent
    assert isinstance(err.value, MailboxAccessRefused) is permanent
    for w in words:
        assert w in text, text
    assert text.startswith("IMAP district@example.org@127.0.0.1: ")
    assert f"(máy chủ trả lời: {reply})" in text        # Gmail's own words kept for whoever digs further
    assert "abcd efgh" not in text                      # never the password


@pytest.mark.parametrize("greeting, words", [
    ("* BYE [UNAVAILABLE] Too many connections", "quá nhiều kết nối"),
    ("* BYE System Error", "tạm thời không phục vụ"),
])
def test_refusals_at_the_greeting_are_temporary(greeting: str, words: str, tmp_path: Path, smtp: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "x")
    with RefusingImap(greeting=greeting) as server:
        ctx = _ctx(tmp_path, server.port, smtp.port)
        with pytest.raises(MailboxUnavailable, match=words) as err:
            with Mailbox(ctx.cfg.mailbox):
                pass
    assert not isinstance(err.value, AccessRefused)


def test_a_refused_pass_is_recorded_and_the_outbox_still_flushed(intake: Harness, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a receipt waiting in the outbox from an earlier, good pass
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", message_id="<before@x>"))
    intake.smtp.fail_next(1)
    assert intake.poll().outbox["retry"] == 1
    with RefusingImap("[ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page "
                      "and enable your account for IMAP access. (Failure)") as server:
        # the same installation (database, archive, outbox), its mailbox now refusing
        ctx = Context(load_config(write_config(intake.cfg_path.parent, imap_port=server.port,
                                               smtp_port=intake.smtp.port)))
        summary = run_pass(ctx, clock=lambda: intake.now() + timedelta(hours=1))
    assert summary.error and "IMAP đang tắt" in summary.error
    assert summary.outbox["sent"] == 1       # the pass went on to the outbox

    from pipeline.worker.jobs import _poll     # the worker's poll job reports the same words

    with RefusingImap() as server:
        ctx = _ctx(tmp_path / "worker", server.port, intake.smtp.port)
        text = _poll(ctx, intake.now(), intake.now)
    assert "LỖI:" in text and "Mật khẩu ứng dụng" in text


def test_a_refused_password_is_not_offered_again_until_it_changes(tmp_path: Path, smtp: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "wrong-one")
    with RefusingImap() as server:
        ctx = _ctx(tmp_path, server.port, smtp.port)
        for _ in range(3):
            with pytest.raises(MailboxAccessRefused):
                with Mailbox(ctx.cfg.mailbox):
                    pass
        assert server.logins == 1                       # Google locks accounts that keep failing
        with pytest.raises(MailboxAccessRefused, match="chưa đăng nhập lại"):
            with Mailbox(ctx.cfg.mailbox):
                pass
        monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "a-new-one")
        with pytest.raises(MailboxAccessRefused) as err:
            with Mailbox(ctx.cfg.mailbox):
                pass
        assert server.logins == 2 and "chưa đăng nhập lại" not in str(err.value)


def test_too_many_connections_is_tried_again_next_pass(tmp_path: Path, smtp: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "pw")
    with RefusingImap("[ALERT] Too many simultaneous connections. (Failure)") as server:
        ctx = _ctx(tmp_path, server.port, smtp.port)
        assert run_pass(ctx).error and run_pass(ctx).error
        assert server.logins == 2


def test_xoauth2_token_refused_by_gmail_names_the_scope(tmp_path: Path, smtp: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with OAuthProvider() as provider, RefusingImap() as server:
        monkeypatch.setenv("CS", provider.client_secret)
        monkeypatch.setenv("RT", provider.grant("district@example.org"))
        ctx = _ctx(tmp_path, server.port, smtp.port, password_env=None, auth="xoauth2",
                   oauth={"client_id": provider.client_id, "client_secret_env": "CS", "refresh_token_env": "RT",
                          "token_uri": provider.token_uri})
        with pytest.raises(MailboxAccessRefused) as err:
            with Mailbox(ctx.cfg.mailbox):
                pass
        assert server.logins == 2 and len(provider.token_requests) == 2  # one retry with a new token
    assert "mã truy cập OAuth" in str(err.value) and "https://mail.google.com/" in str(err.value)
    assert "biến môi trường RT" in str(err.value)


# --------------------------------------------------------------------------------------------
# SMTP

GMAIL_SMTP_AUTH = [
    ("535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
     "535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1-20020a17090a000100b0 - gsmtp",
     True, [APP_PASSWORD, "INTAKE_TEST_SMTP_PW"]),
    ("534-5.7.9 Application-specific password required. Learn more at\r\n"
     "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor x1-20020a17090a000100b0 - gsmtp",
     True, ["đòi mật khẩu ứng dụng"]),
    ("534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbt>\r\n"
     "534-5.7.14 Please log in via your web browser and\r\n534-5.7.14 then try again.\r\n"
     "534 5.7.14  Learn more at https://support.google.com/mail/answer/78754 x1 - gsmtp",
     True, ["trình duyệt"]),
    ("454 4.7.0 Too many login attempts, please try again later. x1-20020a17090a000100b0 - gsmtp",
     False, ["quá nhiều lần đăng nhập"]),
]


@pytest.mark.parametrize("reply, permanent, words", GMAIL_SMTP_AUTH, ids=[r[0][:12] for r in GMAIL_SMTP_AUTH])
def test_smtp_login_refusals_are_explained(reply: str, permanent: bool, words: list[str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_SMTP_PW", "abcd efgh ijkl mnop")
    with SmtpSink() as sink:
        sink.refuse_auth(reply)
        cfg = load_config(write_config(tmp_path, imap_port=1, smtp_port=sink.port, smtp_extra={
            "username": "district@example.org", "password_env": "INTAKE_TEST_SMTP_PW"})).smtp
        with pytest.raises(SmtpUnavailable) as err:
            SmtpTransport(cfg).send(b"Subject: x\r\n\r\nx\r\n", DISTRICT, ["a@example.org"])
        assert sink.messages == []
    text = str(err.value)
    assert isinstance(err.value, SmtpAccessRefused) is permanent
    for w in words:
        assert w in text, text
    assert "abcd efgh" not in text


def test_gmail_daily_sending_limit_keeps_the_receipt_waiting(intake: Harness) -> None:
    intake.smtp.fail_next(1, reply="550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
                                   "550-5.4.5 sending limits go to\r\n"
                                   "550 5.4.5  https://support.google.com/a/answer/166852 x1 - gsmtp")
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", message_id="<limit@x>"))
    summary = intake.poll()
    assert summary.outbox["retry"] == 1 and summary.outbox["failed"] == 0
    [row] = intake.ctx.store.outbox_rows("receipt")
    assert row.state == "pending" and "hạn mức gửi thư trong ngày" in row.last_error
    intake.clock_offset = timedelta(hours=2)
    assert intake.poll().outbox["sent"] == 1


def test_the_table_has_one_entry_per_kind_and_matches_case_insensitively() -> None:
    kinds = [r.kind for _n, r in REFUSALS]
    assert len(kinds) == len(set(kinds))
    assert match_refusal("a1 no [alert] too many simultaneous connections. (failure)").kind == "too_many_connections"
    assert match_refusal("some other reply") is None
