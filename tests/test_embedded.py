"""The demo's embedded IMAP (pymap) and SMTP (aiosmtpd) servers behave as the pass needs."""
from __future__ import annotations

import smtplib
from datetime import datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from intake_demo.embedded import EmbeddedMailbox, EmbeddedSmtp

pytestmark = pytest.mark.servers

HANOI = timezone(timedelta(hours=7))


def _msg(n: int) -> bytes:
    return (f"From: cd{n:03d}@example.org\r\nTo: district@example.org\r\n"
            f"Subject: =?utf-8?b?xJDEg25nIGvDvQ==?= {n}\r\nMessage-ID: <e{n}@example.org>\r\n"
            f"\r\nĐăng ký thi đua {n}\r\n").encode()


def test_mailbox_serves_batches_unseen_with_given_internaldate():
    base = datetime(2022, 2, 21, 9, 15, tzinfo=HANOI)
    with EmbeddedMailbox(username="lienket@example.org", password="demo-pw") as mbox:
        assert mbox.host == "127.0.0.1" and mbox.port > 0 and mbox.folder == "INBOX"
        mbox.deliver(_msg(0), when=base)
        assert mbox.deliver_many([(_msg(i), base + timedelta(hours=i)) for i in range(1, 40)]) == 39

        c = IMAPClient(mbox.host, port=mbox.port, ssl=False, timeout=10)
        c.login(mbox.username, mbox.password)
        c.normalise_times = False
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 40
        uidvalidity = info[b"UIDVALIDITY"]
        uids = c.search(["ALL"])
        assert len(uids) == 40 and uids == sorted(uids)

        # new mail only: UIDs above a high-water mark, fetched in batches
        high = uids[9]
        newer = c.search(["UID", f"{high + 1}:*"])
        assert newer == uids[10:]
        seen = {}
        for i in range(0, len(newer), 12):
            batch = newer[i:i + 12]
            seen.update(c.fetch(batch, [b"BODY.PEEK[]", b"INTERNALDATE", b"FLAGS"]))
        assert sorted(seen) == newer
        for n, uid in enumerate(uids[10:], start=10):
            assert seen[uid][b"BODY[]"] == _msg(n)
            assert seen[uid][b"INTERNALDATE"] == base + timedelta(hours=n)
            assert b"\\Seen" not in seen[uid][b"FLAGS"]

        # still unseen after the fetches
        assert c.search(["UNSEEN"]) == uids
        assert c.folder_status("INBOX", [b"UIDVALIDITY"])[b"UIDVALIDITY"] == uidvalidity
        c.logout()


def test_mailbox_refuses_wrong_password_and_has_no_condstore():
    with EmbeddedMailbox() as mbox:
        c = IMAPClient(mbox.host, port=mbox.port, ssl=False, timeout=10)
        assert not c.has_capability("CONDSTORE")
        assert not c.has_capability("X-GM-EXT-1")
        with pytest.raises(LoginError):
            c.login(mbox.username, mbox.password + "x")
        c.login(mbox.username, mbox.password)
        c.logout()


def test_mailbox_other_folder():
    with EmbeddedMailbox(folder="Hộp thư đơn vị") as mbox:
        mbox.deliver(_msg(1))
        with mbox.client() as c:
            assert c.select_folder("Hộp thư đơn vị", readonly=True)[b"EXISTS"] == 1
            c.logout()


def test_smtp_saves_eml(tmp_path):
    with EmbeddedSmtp(tmp_path / "sent") as smtp:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=10) as s:
            s.login("district@example.org", "anything")
            s.sendmail("district@example.org", ["cd001@example.org"], _msg(1))
            s.sendmail("district@example.org", ["cd002@example.org", "x@example.org"], _msg(2))
        msgs = smtp.wait_for(2)
        assert [m.rcpt_tos for m in msgs] == [["cd001@example.org"], ["cd002@example.org", "x@example.org"]]
        files = sorted(p.name for p in smtp.out_dir.iterdir())
        assert files == ["0001-cd001@example.org.eml", "0002-cd002@example.org.eml"]
        assert (smtp.out_dir / files[0]).read_bytes() == _msg(1)
        assert msgs[1].path.read_bytes() == _msg(2)
