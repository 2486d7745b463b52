"""Text PostgreSQL refuses, and values longer than their column, never fail a mail (issue 14).

A NUL in a decoded subject or display name, a 300-character Content-Type and a 325-character sender each
ended the mail in ``error`` without a receipt on PostgreSQL. The ledger now stores them cleaned and cut
(pipeline/ledger/cleantext.py); the archived mail keeps every byte. Both backends.
"""
from __future__ import annotations

import email
from email import policy

from conftest import DISTRICT, UNITS_CSV, Harness
from intake_demo import samplemail, samples
from pipeline.ledger.cleantext import storable

BACKENDS = ("sqlite", "postgresql")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
# 325 characters: a 64-character local part and a long (made-up) domain of a unit
LONG = "a" * 64 + "@" + ".".join(["b" * 63] * 3 + ["c" * 61]) + ".com.vn"
LONG_CTYPE = XLSX + "-" + "x" * (300 - len(XLSX) - 1)


def reg_xlsx(unit: str) -> bytes:
    return samples.registration_xlsx(unit, [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])


def receipts_to(h: Harness, address: str) -> list[email.message.EmailMessage]:
    return [m.parsed() for m in h.smtp.messages if m.rcpt_tos == [address]]


def test_storable_drops_nul_and_lone_surrogates_and_keeps_the_start() -> None:
    assert storable("Đăng\x00 ký\udcff") == "Đăng ký"
    assert storable("x" * 300, 255) == "x" * 255
    assert storable("ngắn", 255) == "ngắn"


def test_hostile_text_is_stored_cleaned_and_every_mail_gets_its_receipt(intake: Harness) -> None:
    assert len(LONG) == 325 and len(LONG_CTYPE) == 300
    (intake.cfg_path.parent / "units.csv").write_text(
        UNITS_CSV + f"long1,Công đoàn Công ty Địa chỉ Dài,doanh_nghiep,{LONG}\n", encoding="utf-8")
    intake.reopen()
    nul = samplemail.gmail_message(UBND, DISTRICT, "Đăng ký\x00 mô hình", "x",
                                   [("dk.xlsx", reg_xlsx("Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"), XLSX)],
                                   sender_name="Nguyễn\x00 Văn A", message_id="<nul@mail.gmail.com>")
    ctype = samplemail.gmail_message(UBND, DISTRICT, "Biểu đăng ký", "x",
                                     [("dk2.xlsx", reg_xlsx("Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"),
                                       LONG_CTYPE)], message_id="<ctype@mail.gmail.com>")
    long_sender = samplemail.gmail_message(LONG, DISTRICT, "Đăng ký", "x",
                                           [("dk3.xlsx", reg_xlsx("Công đoàn Công ty Địa chỉ Dài"), XLSX)],
                                           message_id="<long@mail.gmail.com>")
    for raw in (nul, ctype, long_sender):
        intake.deliver(raw)
    summary = intake.poll()
    assert summary.error is None and summary.states == {"processed": 3}

    rows = {r.message_id: r for r in intake.ctx.store.snapshot()["messages"]}
    r = rows["<nul@mail.gmail.com>"]
    assert (r.state, r.subject, r.from_name) == ("processed", "Đăng ký mô hình", "Nguyễn Văn A")
    r = rows["<ctype@mail.gmail.com>"]
    [d] = intake.ctx.store.snapshot()["documents"][r.id]
    assert (r.state, d.state, d.content_type) == ("processed", "accepted", LONG_CTYPE[:255])
    r = rows["<long@mail.gmail.com>"]
    assert (r.state, r.unit_id, r.sender) == ("processed", "long1", LONG[:320])

    assert len(receipts_to(intake, UBND)) == 2
    assert len(receipts_to(intake, LONG)) == 1
    # the archive keeps the mail as it came: the NUL is still in its encoded subject
    kept = intake.ctx.archive.path_for(rows["<nul@mail.gmail.com>"].sha256).read_bytes()
    parsed = email.message_from_bytes(kept, policy=policy.default)
    assert "\x00" in str(parsed["Subject"]) and "\x00" in str(parsed["From"])
