"""A resent copy is one mail (issue 12, point 5): a sending server's retry delivers the same mail again with the
same Message-ID and files but new MIME boundaries, Received headers and Date. The copy is archived and
recorded as a copy of the first, shown so in `intake status` and the export, and never answered; in one pass,
in two, or with a pass killed in between. A reused Message-ID with another file, the same Message-ID from
another sender, and mail without a Message-ID are new mail.

Real Dovecot and SMTP (the `intake` fixture); crashes are real processes killed at a checkpoint (crashpass.py).
"""
from __future__ import annotations

import email
import functools
import hashlib
import json
import re
import subprocess
import sys
from datetime import datetime
from email import policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import DISTRICT, Harness
from intake_demo import samplemail, samples
from pipeline import cli
from pipeline.ledger.export import status_text
from pipeline.mail import mime
from pipeline.mail.copies import copy_key
from pipeline.worker.mailpass import RECORDING_CHECKPOINTS, reprocess

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
UBND_NAME = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
MAYDG = "congdoan@maydg.com.vn"  # another unit (dn027)
MID = "<CAKdangky-dvk-2022-ubnd@mail.gmail.com>"
SUBJECT = "Đăng ký mô hình Dân vận khéo năm 2022 của Công đoàn cơ quan UBND quận"
FILENAME = "Biểu đăng ký Dân vận khéo 2022.xlsx"
FIRST = datetime(2022, 2, 21, 9, 15, tzinfo=TZ)
RETRY = datetime(2022, 2, 21, 9, 47, tzinfo=TZ)  # the sending server tried again half an hour later


@functools.cache
def reg_xlsx(model: str = "Một cửa thân thiện") -> bytes:
    """The unit's file, made once: a retry sends the same bytes (a file made again differs in its zip times)."""
    return samples.registration_xlsx(UBND_NAME, [("Tổ công đoàn Văn phòng", model, "khac"),
                                                 ("Phòng TN-MT", "Phân loại rác tại nguồn", "bvmt")])


def registration(*, date: str = "Mon, 21 Feb 2022 09:14:02 +0700", sender: str = UBND, message_id: str | None = MID,
                 data: bytes | None = None, body: str = "Kính gửi LĐLĐ quận, đơn vị gửi biểu đăng ký.",
                 hop: str | None = None, attach: bool = True) -> bytes:
    """The unit's registration mail as Gmail delivers it; ``hop``: a relay the copy went through."""
    trace = [f"Received: from {hop} (relay.longbien.gov.vn [203.162.4.7]) by mx.google.com;\r\n        {date}"] \
        if hop else []
    raw = samplemail.gmail_message(sender, DISTRICT, SUBJECT, body,
                                   [(FILENAME, data if data is not None else reg_xlsx(), XLSX)] if attach else [],
                                   date=date, message_id=message_id or "<dropped@x>", extra_headers=trace)
    if message_id is None:  # a client that writes no Message-ID at all
        raw = re.sub(rb"Message-ID: <dropped@x>\r\n", b"", raw)
    return raw


def recomposed(raw: bytes, tag: str) -> bytes:
    """The same mail composed again: every MIME boundary new, as a client or a server re-encoding it makes them."""
    boundaries = sorted(set(re.findall(rb'boundary="([^"]+)"', raw)))
    assert boundaries, "a multipart mail has boundaries to change"
    for i, b in enumerate(boundaries):
        raw = raw.replace(b, f"----=_Part_{tag}_{i}_{hashlib.sha1(b).hexdigest()[:12]}".encode())
    return raw


def resent(**kwargs: Any) -> bytes:
    """A retry of ``registration(**kwargs)``: new boundaries, Date re-stamped, another Received hop."""
    return recomposed(registration(date="Mon, 21 Feb 2022 09:47:31 +0700", hop="outbox-retry.longbien.gov.vn",
                                   **kwargs), "retry")


def sent(h: Harness) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data if hasattr(m, "data") else m.raw, policy=policy.default)
            for m in h.smtp.messages]


def poll_cli(h: Harness, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """A pass as a real process; with ``fault``, one killed at that checkpoint (tests/crashpass.py)."""
    args = [str(Path(__file__).with_name("crashpass.py")), str(h.cfg_path), fault] if fault else \
        ["-m", "pipeline", "--config", str(h.cfg_path), "poll"]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=180)


def assert_one_mail_and_its_copies(h: Harness, copies: int, capsys: pytest.CaptureFixture[str]) -> None:
    """The first mail processed and answered once, its document counted once; each copy recorded, archived,
    linked to it, unanswered, and shown so in the export and `intake status`."""
    data = h.export()
    first, *rest = data["messages"]
    assert len(rest) == copies
    assert (first["message_id"], first["state"], first["duplicate_of"]) == (MID, "processed", None)
    assert [(d["filename"], d["kind"], d["state"]) for d in first["documents"]] == [
        (FILENAME, "registration", "accepted")]
    reason = f"bản gửi lặp lại của thư #{first['id']} (cùng Message-ID, cùng tệp đính kèm)"
    for copy in rest:
        assert (copy["message_id"], copy["sender"], copy["unit_id"], copy["state"], copy["reason"],
                copy["duplicate_of"], copy["documents"]) == (MID, UBND, "cq001", "ignored", reason, first["id"], [])
        row = h.ctx.store.message(copy["id"])
        assert h.ctx.archive.path_for(row.sha256).is_file()  # nothing lost: the copy's own bytes are kept
    assert len({h.ctx.store.message(m["id"]).sha256 for m in data["messages"]}) == copies + 1
    docs = h.ctx.store.document_records(2022)
    assert [(d.unit_id, d.kind, d.state, d.superseded) for d in docs] == [("cq001", "registration", "accepted", False)]
    assert [o["message"] for o in data["outbox"]] == [first["id"]]
    receipts = sent(h)
    assert [(r["To"], r["In-Reply-To"]) for r in receipts] == [(UBND, MID)]

    capsys.readouterr()
    assert cli.main(["--config", str(h.cfg_path), "status"]) == 0
    status = capsys.readouterr().out
    ids = ", ".join(f"#{c['id']}" for c in rest)
    assert f"#{first['id']} 21/02/2022 09:15 [processed] {SUBJECT} (đã nhận thêm {copies} bản gửi lặp lại: {ids}, " \
           f"không trả lời lại)" in status
    for copy in rest:
        assert f"#{copy['id']} 21/02/2022 09:47 [ignored] {SUBJECT} — {reason}" in status
    assert f"Tổng: ignored {copies}, processed 1 (trong đó {copies} bản gửi lặp lại)" in status
    out = h.cfg_path.parent / "export.json"
    assert cli.main(["--config", str(h.cfg_path), "export", "--out", str(out)]) == 0
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert [(m["id"], m["state"], m["duplicate_of"]) for m in exported["messages"]] == \
        [(first["id"], "processed", None)] + [(c["id"], "ignored", first["id"]) for c in rest]


# -- the key: pure logic ---------------------------------------------------------------------------------

def key(raw: bytes) -> Any:
    return copy_key(mime.parse_message(raw), raw)


def test_a_retry_has_the_key_of_the_first_whatever_its_boundaries_received_headers_and_date() -> None:
    first, copy = registration(), resent()
    assert first != copy and b"09:47:31" in copy and b"outbox-retry" in copy
    assert set(re.findall(rb'boundary="([^"]+)"', first)).isdisjoint(re.findall(rb'boundary="([^"]+)"', copy))
    assert key(first) is not None and key(first) == key(copy)
    # a subject folded or encoded otherwise is the same subject
    refolded = first.replace(samplemail.encoded_words(SUBJECT).encode(),
                             samplemail.encoded_words(SUBJECT, encoding="Q", max_bytes=20).encode())
    assert refolded != first and key(refolded) == key(first)


def test_what_is_not_a_copy_has_another_key_or_none() -> None:
    first = key(registration())
    assert key(registration(data=reg_xlsx("Tủ sách pháp luật"))) != first  # the same Message-ID, another file
    assert key(registration(sender=MAYDG)) != first  # another sender
    assert key(registration(message_id=None)) is None  # no Message-ID: nothing says two such mails are one
    assert mime.parse_message(registration(message_id=None)).message_id is None
    # without files the text decides: the same text re-encoded is a copy, another text is not
    text_only = key(registration(attach=False, body="Xin hỏi hạn nộp biểu đăng ký?"))
    assert text_only is not None and text_only.body is not None
    again = recomposed(registration(attach=False, body="Xin hỏi hạn nộp biểu đăng ký?",
                                    date="Tue, 22 Feb 2022 08:00:00 +0700"), "again")
    assert key(again) == text_only
    assert key(registration(attach=False, body="Xin hỏi mẫu báo cáo quý I?")) != text_only


# -- end to end ------------------------------------------------------------------------------------------

def test_two_copies_in_one_pass_are_one_mail(intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    intake.deliver(registration(), FIRST)
    intake.deliver(resent(), RETRY)
    intake.deliver(recomposed(resent(), "again"), RETRY)  # and a third try, in the same FETCH batch
    summary = intake.poll()
    assert summary.error is None
    assert (summary.fetched, summary.new, summary.states) == (3, 3, {"processed": 1, "ignored": 2})
    assert_one_mail_and_its_copies(intake, 2, capsys)


def test_a_copy_in_a_later_pass_is_one_mail_and_stays_one_when_replayed(
        intake: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    intake.deliver(registration(), FIRST)
    assert intake.poll().states == {"processed": 1}
    intake.deliver(resent(), RETRY)
    assert intake.poll().states == {"ignored": 1}
    assert_one_mail_and_its_copies(intake, 1, capsys)
    # `intake reprocess` of the copy finds the same: still a copy, still no second receipt
    copy = intake.export()["messages"][1]
    assert reprocess(intake.ctx, copy["id"], clock=intake.now) == "ignored"
    assert_one_mail_and_its_copies(intake, 1, capsys)


@pytest.mark.parametrize("fault", RECORDING_CHECKPOINTS)
@pytest.mark.parametrize("copy_arrives", ["before the crash", "after the crash"])
def test_a_pass_killed_between_the_copies_still_answers_once(
        intake: Harness, capsys: pytest.CaptureFixture[str], fault: str, copy_arrives: str) -> None:
    intake.deliver(registration(), FIRST)
    if copy_arrives == "before the crash":
        intake.deliver(resent(), RETRY)
    proc = poll_cli(intake, fault)
    assert proc.returncode == 70, proc.stderr
    assert intake.smtp.messages == []  # killed before anything was sent
    states = sorted(m["state"] for m in intake.export()["messages"])
    both = copy_arrives == "before the crash"
    assert states == ({"after-archive": ["received"] * 2, "after-outcomes": ["ignored", "processed"]}[fault]
                      if both else {"after-archive": ["received"], "after-outcomes": ["processed"]}[fault])
    if not both:
        intake.deliver(resent(), RETRY)
    for _ in range(2):
        proc = poll_cli(intake)
        assert proc.returncode == 0, proc.stderr
    assert_one_mail_and_its_copies(intake, 1, capsys)


def test_a_reused_message_id_with_another_file_is_new_mail(intake: Harness) -> None:
    intake.deliver(registration(), FIRST)
    intake.deliver(resent(data=reg_xlsx("Tủ sách pháp luật")), RETRY)  # a broken client: same id, new file
    assert intake.poll().states == {"processed": 2}
    first, second = intake.export()["messages"]
    assert [(m["state"], m["duplicate_of"], len(m["documents"])) for m in (first, second)] == [
        ("processed", None, 1), ("processed", None, 1)]
    assert [r["In-Reply-To"] for r in sent(intake)] == [MID, MID]  # each answered
    # the second registration counts, superseding the first
    assert [(d.document_id, d.superseded) for d in intake.ctx.store.document_records(2022)] == [
        (first["documents"][0]["id"], True), (second["documents"][0]["id"], False)]


def test_the_same_message_id_from_another_sender_is_not_a_copy(intake: Harness) -> None:
    original = registration()
    intake.deliver(original, FIRST)
    # another unit's address, the same Message-ID, file and subject
    intake.deliver(resent(sender=MAYDG), RETRY)
    # staff forward the unit's mail keeping its Message-ID: the forward holds the same file, from staff
    intake.deliver(samplemail.forwarded_message("nhanvien.ldld@gmail.com", DISTRICT, SUBJECT, original,
                                                message_id=MID), RETRY)
    intake.poll()
    got = [(m["sender"], m["unit_id"], m["state"], m["duplicate_of"]) for m in intake.export()["messages"]]
    assert got[:2] == [(UBND, "cq001", "processed", None), (MAYDG, "dn027", "processed", None)]
    assert got[2][0] == "nhanvien.ldld@gmail.com" and got[2][2] == "quarantined" and got[2][3] is None
    assert sorted(r["To"] for r in sent(intake)) == sorted([UBND, MAYDG])
    assert len(intake.ctx.store.document_records(2022)) == 2


def test_mail_without_a_message_id_is_never_a_copy(intake: Harness) -> None:
    intake.deliver(registration(message_id=None), FIRST)
    intake.deliver(resent(message_id=None), RETRY)
    assert intake.poll().states == {"processed": 2}
    assert [(m["message_id"], m["duplicate_of"]) for m in intake.export()["messages"]] == [(None, None)] * 2
    assert [r["To"] for r in sent(intake)] == [UBND, UBND]


def test_mail_without_files_is_a_copy_only_with_the_same_text(intake: Harness) -> None:
    question = "Kính gửi LĐLĐ quận, xin hỏi hạn nộp biểu đăng ký?"
    intake.deliver(registration(attach=False, body=question), FIRST)
    intake.deliver(resent(attach=False, body=question), RETRY)
    intake.deliver(registration(attach=False, body="Xin hỏi thêm: mẫu báo cáo quý I?",
                                date="Mon, 21 Feb 2022 10:02:00 +0700"), RETRY)
    intake.poll()
    first, copy, other = intake.export()["messages"]
    assert (first["state"], first["duplicate_of"]) == ("processed", None)
    assert (copy["state"], copy["duplicate_of"], copy["reason"]) == (
        "ignored", first["id"], f"bản gửi lặp lại của thư #{first['id']} (cùng Message-ID, cùng nội dung)")
    assert (other["state"], other["duplicate_of"]) == ("processed", None)
    assert len(sent(intake)) == 2


def test_a_copy_of_a_quarantined_mail_waits_with_it(intake: Harness) -> None:
    """Staff handle one mail: the copy of mail from an unknown address is not a second item to decide on, and
    once staff assign the original, its copy is still not answered."""
    stranger = "chu.tich.cd@yahoo.com.vn"
    intake.deliver(registration(sender=stranger), FIRST)
    intake.deliver(resent(sender=stranger), RETRY)
    assert intake.poll().states == {"quarantined": 1, "ignored": 1}
    first, copy = intake.export()["messages"]
    assert (copy["state"], copy["duplicate_of"]) == ("ignored", first["id"])
    attention = status_text(intake.ctx.store, intake.ctx.units, TZ).split("== THEO ĐƠN VỊ")[0].splitlines()
    [line] = [ln for ln in attention if f"#{first['id']} " in ln]
    assert line.startswith(f"  [quarantined] #{first['id']} 21/02/2022 09:15 {stranger}")
    assert line.endswith(f"(đã nhận thêm 1 bản gửi lặp lại: #{copy['id']}, không trả lời lại)")
    assert not any(f"#{copy['id']} 21/02/2022" in ln for ln in attention)  # not a second item to decide on
    intake.ctx.store.assign_message(first["id"], "cq001", add_address=False, actor="test", now=intake.now())
    intake.poll()
    first, copy = intake.export()["messages"]
    assert (first["state"], first["unit_id"], copy["state"], copy["duplicate_of"]) == (
        "processed", "cq001", "ignored", first["id"])
    assert [r["To"] for r in sent(intake)] == [stranger]

