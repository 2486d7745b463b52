"""Issue 3 end to end through the mailbox: every format a unit sends, as a receipt and a ledger entry."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from conftest import DISTRICT, Harness
from formfiles import corrupt_zip, encrypted, registration_ods, registration_xls, with_macro, zip_bomb
from intake_demo import samplemail
from intake_demo import samples

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
UBND = "cdcs.ubnd@longbien.gov.vn"
UNIT = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ENTRIES = [("Tổ Văn phòng", "Một cửa thân thiện", "khac"), ("Phòng TN-MT", "Phân loại rác", "bvmt")]


def test_every_format_through_the_mailbox_gets_a_precise_receipt(intake: Harness) -> None:
    good = samples.registration_xlsx(UNIT, ENTRIES)
    files = [
        ("Đăng ký.xls", registration_xls(UNIT, ENTRIES), "application/vnd.ms-excel"),
        ("Đăng ký.ods", registration_ods(UNIT, ENTRIES), "application/vnd.oasis.opendocument.spreadsheet"),
        ("Đăng ký có macro.xlsm", with_macro(good), "application/vnd.ms-excel.sheet.macroEnabled.12"),
        ("Đăng ký (Word).docx", samples.registration_docx(UNIT, ENTRIES),
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("Có mật khẩu.xlsx", encrypted(good), XLSX),
        ("Hỏng.xlsx", corrupt_zip(good), XLSX),
        ("bom.xlsx", zip_bomb(), XLSX),
    ]
    intake.deliver(samplemail.outlook_message(UBND, DISTRICT, "Biểu đăng ký các định dạng", "x", files,
                                              message_id="<formats@x>"),
                   datetime(2022, 2, 20, 10, 0, tzinfo=TZ))
    s = intake.poll()
    assert s.error is None and s.states == {"processed": 1}
    [m] = intake.export()["messages"]
    got = {d["filename"]: d for d in m["documents"]}
    for name in ("Đăng ký.xls", "Đăng ký.ods", "Đăng ký có macro.xlsm", "Đăng ký (Word).docx"):
        d = got[name]
        assert (d["kind"], d["state"]) == ("registration", "accepted"), (name, d["issues"])
        assert [(e["name"], e["categories"]) for e in d["entries"]] == [("Tổ Văn phòng", ["khac"]),
                                                                        ("Phòng TN-MT", ["bvmt"])], name
    for name in ("Có mật khẩu.xlsx", "Hỏng.xlsx", "bom.xlsx"):
        d = got[name]
        assert d["state"] == "rejected", name
        assert d["issues"] and all(i["severity"] == "error" for i in d["issues"]), name
    [receipt] = [r.parsed() for r in intake.smtp.messages]
    text = receipt.get_body(("plain",)).get_content()
    assert text.count("Chưa có nội dung nào của tệp này được ghi nhận") == 3
    assert "mật khẩu" in text


def test_a_corrected_file_supersedes_the_earlier_one(intake: Harness) -> None:
    first = samples.registration_xlsx(UNIT, ENTRIES[:1])
    second = samples.registration_xlsx(UNIT, ENTRIES)
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", first, XLSX)],
                                            message_id="<v1@x>"), datetime(2022, 2, 15, 9, 0, tzinfo=TZ))
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký (bản sửa)", "x", [("dk2.xlsx", second, XLSX)],
                                            message_id="<v2@x>"), datetime(2022, 2, 16, 9, 0, tzinfo=TZ))
    intake.poll()
    docs = {m["message_id"]: m["documents"][0] for m in intake.export()["messages"]}
    assert (docs["<v1@x>"]["state"], docs["<v1@x>"]["superseded"]) == ("accepted", True)
    assert (docs["<v2@x>"]["state"], docs["<v2@x>"]["superseded"]) == ("accepted", False)


def test_unit_line_mismatch_is_flagged_not_rejected(intake: Harness) -> None:
    other = samples.registration_xlsx("Công đoàn Công ty Cổ phần May Đức Giang", ENTRIES)
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", other, XLSX)],
                                            message_id="<mm@x>"))
    intake.poll()
    [d] = intake.export()["messages"][0]["documents"]
    assert d["state"] == "accepted"
    assert [(i["code"], i["severity"]) for i in d["issues"]] == [("unit-mismatch", "warning")]


def test_nothing_from_a_rejected_file_is_recorded(intake: Harness) -> None:
    bad = samples.without_mark(samples.registration_xlsx(UNIT, ENTRIES), "Phòng TN-MT")
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", bad, XLSX)],
                                            message_id="<rej@x>"))
    intake.poll()
    [d] = intake.export()["messages"][0]["documents"]
    assert d["state"] == "rejected"
    assert [i["code"] for i in d["issues"]] == ["no-category"]
    assert d["entries"] == []
