"""The loopback mail servers of tests/servers.py do what the other tests rely on."""
from __future__ import annotations

import smtplib
import ssl
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from imapclient import IMAPClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import Dovecot, DovecotMissing, SmtpSink, dovecot_available  # noqa: E402

pytestmark = pytest.mark.servers

HANOI = timezone(timedelta(hours=7))


def _msg(n: int, subject: str = "Báo cáo quý I") -> bytes:
    return (
        f"From: cd{n:03d}@example.org\r\n"
        f"To: district@example.org\r\n"
        f"Subject: =?utf-8?b?QsOhbyBjw6FvIHF1w70gSQ==?= {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\n"
        f"Date: Mon, 21 Feb 2022 09:15:00 +0700\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"{subject} số {n}\r\n"
    ).encode()


@pytest.fixture
def dovecot():
    if not dovecot_available():  # a skip would hide a defect: the suite needs a real IMAP server
        pytest.fail("dovecot is not installed: run scripts/install-system-deps.sh as root")
    with Dovecot() as dc:
        yield dc


def test_append_and_fetch_keeps_mail_unseen(dovecot):
    raws = [_msg(i) for i in range(5)]
    assert dovecot.append_many(raws) == 5
    dovecot.append(_msg(99), flags=[b"\\Flagged"])
    with dovecot.client() as c:
        info = c.select_folder("INBOX", readonly=False)
        assert info[b"EXISTS"] == 6
        uids = c.search(["ALL"])
        assert len(uids) == 6
        data = c.fetch(uids, [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"])
        got = [data[u][b"BODY[]"] for u in sorted(data)]
        assert got[:5] == raws
        assert b"\\Flagged" in data[uids[-1]][b"FLAGS"]
        # BODY.PEEK[] must not set \Seen
        flags = c.fetch(uids, [b"FLAGS"])
        assert all(b"\\Seen" not in flags[u][b"FLAGS"] for u in uids)
        assert c.search(["UNSEEN"]) == uids
        c.logout()


def test_internaldate_preserved_on_append(dovecot):
    when = datetime(2022, 2, 21, 9, 15, 30, tzinfo=HANOI)
    dovecot.append(_msg(1), internaldate=when)
    dovecot.append_many([(_msg(2), (), when + timedelta(days=3)),
                         {"raw": _msg(3), "internaldate": when - timedelta(hours=1)}])
    with dovecot.client() as c:
        c.normalise_times = False
        c.select_folder("INBOX", readonly=True)
        uids = c.search(["ALL"])
        data = c.fetch(uids, [b"INTERNALDATE"])
        dates = [data[u][b"INTERNALDATE"] for u in sorted(data)]
        c.logout()
    assert dates == [when, when + timedelta(days=3), when - timedelta(hours=1)]


def test_uidvalidity_change_renumbers_inbox(dovecot):
    dovecot.append_many([_msg(i) for i in range(3)])
    with dovecot.client() as c:
        c.select_folder("INBOX")
        c.fetch(c.search(["ALL"]), [b"FLAGS"])
        c.logout()
    dovecot.append(_msg(3))
    old_uv = dovecot.uidvalidity()
    old, new = dovecot.set_uidvalidity_change("INBOX")
    assert old == old_uv and new != old
    with dovecot.client() as c:
        info = c.select_folder("INBOX", readonly=True)
        assert info[b"UIDVALIDITY"] == new
        uids = c.search(["ALL"])
        assert uids == [1, 2, 3, 4]
        bodies = c.fetch(uids, [b"BODY.PEEK[]"])
        assert sorted(bodies[u][b"BODY[]"] for u in uids) == sorted(_msg(i) for i in range(4))
        c.logout()


def test_set_uidvalidity_keeps_uids(dovecot):
    dovecot.append_many([_msg(i) for i in range(2)])
    old = dovecot.uidvalidity()
    new = dovecot.set_uidvalidity("INBOX")
    assert new != old and dovecot.uidvalidity() == new


def test_recreate_folder_changes_uidvalidity_and_keeps_dates(dovecot):
    when = datetime(2022, 3, 1, 8, 0, tzinfo=HANOI)
    dovecot.append_many([(_msg(i), [b"\\Seen"], when) for i in range(2)], folder="Lưu trữ")
    old, new = dovecot.recreate_folder("Lưu trữ")
    assert new != old
    with dovecot.client() as c:
        c.normalise_times = False
        c.select_folder("Lưu trữ", readonly=True)
        data = c.fetch(c.search(["ALL"]), [b"FLAGS", b"INTERNALDATE"])
        c.logout()
    assert len(data) == 2
    assert all(d[b"INTERNALDATE"] == when and b"\\Seen" in d[b"FLAGS"] for d in data.values())


def test_failed_login_does_not_slow_later_logins(dovecot):
    import time

    c = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
    with pytest.raises(Exception):
        c.login(dovecot.user, "wrong")
    t = time.monotonic()
    with dovecot.client() as c2:
        c2.logout()
    assert time.monotonic() - t < 1.0


def test_imaps_verifies_against_ca():
    if not dovecot_available():
        pytest.fail("dovecot is not installed: run scripts/install-system-deps.sh as root")
    with Dovecot(tls=True) as dc:
        dc.append(_msg(1))
        with dc.client(tls=True) as c:
            assert c.select_folder("INBOX")[b"EXISTS"] == 1
            c.logout()
        # without the CA the certificate is refused
        with pytest.raises(ssl.SSLError):
            IMAPClient(dc.host, port=dc.tls_port, ssl=True, timeout=10)


def test_missing_dovecot_error_names_install_script(monkeypatch):
    import servers

    monkeypatch.setattr(servers, "_find_dovecot", lambda: None)
    with pytest.raises(DovecotMissing, match="install-system-deps.sh"):
        Dovecot().start()


def test_smtp_sink_receives():
    with SmtpSink() as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as s:
            s.sendmail("district@example.org", ["cd001@example.org"], _msg(1))
        (m,) = sink.wait_for(1, timeout=5)
        assert m.mail_from == "district@example.org"
        assert m.rcpt_tos == ["cd001@example.org"]
        assert m.raw == _msg(1)
        assert m.parsed()["Message-ID"] == "<m1@example.org>"


def test_smtp_sink_fail_next_then_succeeds():
    with SmtpSink() as sink:
        sink.fail_next(1, code=451)
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as s:
            with pytest.raises(smtplib.SMTPDataError) as ei:
                s.sendmail("a@example.org", ["b@example.org"], _msg(1))
            assert ei.value.smtp_code == 451
            s.sendmail("a@example.org", ["b@example.org"], _msg(1))
        assert len(sink.wait_for(1)) == 1


def test_smtp_sink_refuses_rcpt_and_checks_auth():
    with SmtpSink(username="district@example.org", password="pw") as sink:
        sink.refuse_rcpt("Gone@Example.org")
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as s:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login("district@example.org", "bad")
            s.login("district@example.org", "pw")
            refused = s.sendmail("district@example.org", ["ok@example.org", "gone@example.org"], _msg(2))
            assert refused["gone@example.org"][0] == 550
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                s.sendmail("district@example.org", ["gone@example.org"], _msg(3))
        (m,) = sink.wait_for(1)
        assert m.rcpt_tos == ["ok@example.org"] and m.login == "district@example.org"


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_smtp_sink_tls_verifies_against_ca(mode):
    with SmtpSink(mode=mode) as sink:
        ctx = ssl.create_default_context(cafile=str(sink.ca_path))
        if mode == "ssl":
            s = smtplib.SMTP_SSL(sink.host, sink.port, timeout=10, context=ctx)
        else:
            s = smtplib.SMTP(sink.host, sink.port, timeout=10)
            s.starttls(context=ctx)
        with s:
            s.sendmail("a@example.org", ["b@example.org"], _msg(4))
        (m,) = sink.wait_for(1)
        assert m.tls
