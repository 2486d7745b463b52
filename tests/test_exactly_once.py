"""Receipts exactly once with nobody's help: a worker killed between claiming a mail and marking it sent
leaves the send to be settled by the next pass, which looks the Message-ID up in the Sent folder where the
SMTP server filed its copy (as Gmail does): found → sent; not found after the grace period → sent again with
the same Message-ID. Real processes killed at the checkpoints, real Dovecot, real SMTP."""
from __future__ import annotations

import email
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
import yaml

from conftest import DISTRICT, Harness
from intake_demo import samplemail, samples

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
UBND_NAME = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
BACKENDS = ("sqlite", "postgresql")  # crash tests on both ledgers (conftest.py)


def set_smtp(h: Harness, **values: object) -> None:
    data = yaml.safe_load(h.cfg_path.read_text(encoding="utf-8"))
    data["smtp"].update(values)
    h.cfg_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    h.reopen()


@pytest.fixture
def gmailish(intake: Harness) -> Harness:
    """The SMTP server files a copy of each accepted mail in the mailbox's Sent folder before its 250."""
    with intake.dovecot.client() as c:
        c.create_folder("Sent")  # Gmail's exists from the start, empty or not
        c.logout()
    intake.smtp.keep_copy = lambda raw: intake.dovecot.append(raw, folder="Sent")
    set_smtp(intake, sent_folder="auto")
    return intake


def crash_pass(h: Harness, point: str, ahead: float = 0) -> None:
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("crashpass.py")), str(h.cfg_path), point,
                           str(ahead)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 70, proc.stderr


def deliver(h: Harness, n: int, tag: str) -> None:
    form = samples.registration_xlsx(UBND_NAME, [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])
    for i in range(n):
        h.deliver(samplemail.gmail_message(UBND, DISTRICT, f"Đăng ký {tag} {i}", "x", [(f"dk{i}.xlsx", form, XLSX)],
                                           message_id=f"<{tag}-{i}@mail.gmail.com>"))


def message_ids(h: Harness) -> Counter[str]:
    return Counter(email.message_from_bytes(m.raw, policy=policy.default)["Message-ID"] for m in h.smtp.messages)


def test_a_send_cut_off_after_smtp_is_found_in_the_sent_folder_and_not_sent_again(gmailish: Harness) -> None:
    h = gmailish
    deliver(h, 1, "after")
    crash_pass(h, "after-smtp")
    [row] = h.ctx.store.outbox_rows("receipt")
    assert row.state == "sending" and message_ids(h) == Counter({row.smtp_message_id: 1})
    h.poll()  # at once: a claim younger than the grace period may be a live sender's, it is left alone
    assert h.ctx.store.outbox_rows("receipt")[0].state == "sending"
    h.clock_offset = timedelta(minutes=2)
    summary = h.poll()
    assert summary.settled == {"sent": 1, "resend": 0, "uncertain": 0}
    row = h.ctx.store.outbox_rows("receipt")[0]
    assert row.state == "sent" and "đã thấy trong thư mục Sent" in row.last_error
    assert message_ids(h) == Counter({row.smtp_message_id: 1})


def test_a_send_cut_off_before_smtp_goes_again_with_the_same_message_id(gmailish: Harness) -> None:
    h = gmailish
    deliver(h, 1, "before")
    crash_pass(h, "before-smtp")
    [row] = h.ctx.store.outbox_rows("receipt")
    assert row.state == "sending" and not h.smtp.messages
    h.clock_offset = timedelta(minutes=2)
    summary = h.poll()
    assert summary.settled == {"sent": 0, "resend": 1, "uncertain": 0}
    assert h.ctx.store.outbox_rows("receipt")[0].state == "sent"
    assert message_ids(h) == Counter({row.smtp_message_id: 1})


def test_without_a_sent_folder_config_chooses_resend_or_staff(intake: Harness) -> None:
    h = intake
    deliver(h, 2, "nofolder")
    crash_pass(h, "before-smtp")
    h.clock_offset = timedelta(minutes=2)
    assert h.poll().settled == {"sent": 0, "resend": 0, "uncertain": 1}  # default: staff decide
    assert [r.state for r in h.ctx.store.outbox_rows("receipt")] == ["uncertain", "sent"]
    set_smtp(h, unsettled="resend")
    h.dovecot.append(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký lại", "x", [], message_id="<x@y>"))
    crash_pass(h, "before-smtp", ahead=180)
    h.clock_offset = timedelta(minutes=5)
    assert h.poll().settled == {"sent": 0, "resend": 1, "uncertain": 0}


def test_killed_again_and_again_every_receipt_leaves_exactly_once(gmailish: Harness) -> None:
    h = gmailish
    points = ["after-smtp", "before-smtp", "after-outcomes", "after-smtp", "after-archive", "before-smtp",
              "after-smtp", "after-smtp"]
    for i, point in enumerate(points):
        deliver(h, 3, f"storm{i}")  # mail keeps coming between the crashes
        crash_pass(h, point, ahead=120 * i)  # each crash two minutes after the last
    h.clock_offset = timedelta(minutes=2 * len(points) + 2)
    h.poll()
    h.poll()
    receipts = h.ctx.store.outbox_rows("receipt")
    assert len(receipts) == 24 and {r.state for r in receipts} == {"sent"}
    sent = message_ids(h)
    others = {r.smtp_message_id: r.purpose for r in h.ctx.store.outbox_rows() if r.purpose != "receipt"}
    assert sorted(m for m in sent if m not in others) == sorted(r.smtp_message_id for r in receipts)  # none missing
    assert set(sent.values()) == {1}  # none doubled
