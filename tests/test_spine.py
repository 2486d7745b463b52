"""End to end: real Dovecot over IMAP, real SMTP, real .xlsx; the spine of issue 2."""
from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import DISTRICT, Harness, require_peer_mail
from intake_demo import samplemail
from intake_demo import samples

BACKENDS = ("sqlite", "postgresql")  # every test here runs on both (conftest.py)
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
AIMO = "thaimo.longbien@gmail.com"


def reg_xlsx(unit: str = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên") -> bytes:
    return samples.registration_xlsx(unit, [
        ("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"),
        ("Phòng TN-MT", "Phân loại rác tại nguồn", "bvmt"),
    ])


def receipt_for(h: Harness, message_id: str) -> list[email.message.EmailMessage]:
    out = []
    for m in h.smtp.messages:
        msg = email.message_from_bytes(m.data if hasattr(m, "data") else m.raw, policy=policy.default)
        if msg["In-Reply-To"] == message_id:
            out.append(msg)
    return out


def all_sent(h: Harness) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data if hasattr(m, "data") else m.raw, policy=policy.default)
            for m in h.smtp.messages]


def test_registration_accepted_end_to_end_with_threaded_receipt(intake: Harness) -> None:
    when = datetime(2022, 2, 21, 9, 15, tzinfo=TZ)
    xlsx = reg_xlsx()
    raw = samplemail.gmail_message(UBND, DISTRICT, "Đăng ký mô hình Dân vận khéo 2022", "Kính gửi LĐLĐ quận.",
                                   [("Biểu đăng ký Dân vận khéo 2022.xlsx", xlsx, XLSX)],
                                   date="Mon, 01 Jan 2024 00:00:00 +0000", message_id="<reg-1@mail.gmail.com>")
    intake.deliver(raw, when)
    summary = intake.poll()
    assert summary.error is None
    assert (summary.fetched, summary.new, summary.states) == (1, 1, {"processed": 1})
    data = intake.export()
    [m] = data["messages"]
    assert m["message_id"] == "<reg-1@mail.gmail.com>"
    assert (m["sender"], m["unit_id"], m["state"], m["reason"]) == (UBND, "cq001", "processed", None)
    # INTERNALDATE, shown in Asia/Ho_Chi_Minh, never the Date header
    assert m["received_at"] == "2022-02-21T09:15:00+07:00"
    [d] = m["documents"]
    assert d["filename"] == "Biểu đăng ký Dân vận khéo 2022.xlsx"
    assert (d["kind"], d["state"], d["period"]) == ("registration", "accepted", None)
    assert [(e["name"], e["model"], e["categories"]) for e in d["entries"]] == [
        ("Tổ công đoàn Văn phòng", "Một cửa thân thiện", ["khac"]),
        ("Phòng TN-MT", "Phân loại rác tại nguồn", ["bvmt"]),
    ]
    import hashlib

    assert d["sha256"] == hashlib.sha256(xlsx).hexdigest()
    [receipt] = receipt_for(intake, "<reg-1@mail.gmail.com>")
    assert receipt["To"] == UBND
    assert "<reg-1@mail.gmail.com>" in receipt["References"]
    assert receipt["Subject"] == "Re: Đăng ký mô hình Dân vận khéo 2022"
    assert receipt["Auto-Submitted"] == "auto-replied"
    text = receipt.get_body(("plain",)).get_content()
    assert "Biểu đăng ký Dân vận khéo 2022.xlsx" in text
    assert "đã ghi nhận" in text and "Đã ghi nhận 2 mô hình" in text
    assert "09:15 ngày 21/02/2022" in text


def test_two_passes_record_nothing_twice_and_mail_stays_unread(intake: Harness) -> None:
    for i in range(10):
        intake.deliver(samplemail.gmail_message(AIMO, DISTRICT, f"Thư số {i}", "Nội dung",
                                                [(f"Biểu {i}.xlsx", reg_xlsx("Công đoàn Trường Tiểu học Ái Mộ"), XLSX)],
                                                message_id=f"<m{i}@mail.gmail.com>"))
    first = intake.poll()
    assert (first.fetched, first.new) == (10, 10)
    assert first.outbox["sent"] == 10
    second = intake.poll()
    assert (second.fetched, second.new, second.duplicates) == (0, 0, 0)
    intake.reopen()
    third = intake.poll()
    assert (third.fetched, third.new) == (0, 0)
    assert len(intake.export()["messages"]) == 10
    assert len(intake.smtp.messages) == 10
    with intake.dovecot.client() as c:
        c.select_folder("INBOX", readonly=True)
        flags = c.get_flags(c.search(["ALL"]))
    assert flags and all(b"\\Seen" not in f for f in flags.values())


def test_crash_after_archive_then_rerun_gives_one_record_and_one_receipt(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", reg_xlsx(), XLSX)],
                                            message_id="<crash-1@mail.gmail.com>"))
    crash = Path(__file__).with_name("crashpass.py")
    proc = subprocess.run([sys.executable, str(crash), str(intake.cfg_path), "after-archive"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 70, proc.stderr
    # archived and recorded, not yet processed, nothing sent
    rows = intake.ctx.store.messages_in_state("received")
    assert len(rows) == 1
    assert intake.ctx.archive.path_for(rows[0].sha256).is_file()
    assert intake.smtp.messages == []
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(intake.cfg_path), "poll"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(intake.cfg_path), "poll"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = intake.export()
    assert [(m["message_id"], m["state"]) for m in data["messages"]] == [("<crash-1@mail.gmail.com>", "processed")]
    assert len(receipt_for(intake, "<crash-1@mail.gmail.com>")) == 1
    assert len(intake.smtp.messages) == 1


def test_uidvalidity_change_rescans_without_duplicates(intake: Harness) -> None:
    for i in range(3):
        intake.deliver(samplemail.gmail_message(UBND, DISTRICT, f"Thư {i}", "x", [("dk.xlsx", reg_xlsx(), XLSX)],
                                                message_id=f"<uv{i}@mail.gmail.com>"))
    assert intake.poll().new == 3
    old, new = intake.dovecot.set_uidvalidity_change("INBOX")
    assert old != new
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Thư mới", "x", [("dk2.xlsx", reg_xlsx(), XLSX)],
                                            message_id="<uv-new@mail.gmail.com>"))
    s = intake.poll()
    assert s.uidvalidity_changed
    assert (s.fetched, s.new, s.duplicates) == (4, 1, 3)
    assert len(intake.export()["messages"]) == 4
    assert len(intake.smtp.messages) == 4
    assert intake.ctx.store.poll_state("INBOX")[0] == new


def test_unknown_spoofed_autoreply_bounce_and_own_mail(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message("nguoi.la@yahoo.com", DISTRICT, "Gửi biểu", "x",
                                            [("dk.xlsx", reg_xlsx(), XLSX)], message_id="<unknown@x>"))
    intake.deliver(samplemail.spoofed(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", reg_xlsx(), XLSX)],
                                      message_id="<spoof@x>"))
    intake.deliver(samplemail.auto_reply(AIMO, DISTRICT, "Nhắc nộp biểu", message_id="<auto@x>"))
    original = samplemail.gmail_message(DISTRICT, "sai.dia.chi@longbien.gov.vn", "Nhắc nộp biểu", "x",
                                        message_id="<reminder-1@intake>")
    intake.deliver(samplemail.bounce(original, "sai.dia.chi@longbien.gov.vn", message_id="<bounce@x>"))
    intake.deliver(samplemail.gmail_message(DISTRICT, UBND, "Thư LĐLĐ gửi đi", "x", message_id="<own@x>"))
    intake.poll()
    got = {m["message_id"]: (m["state"], m["reason"]) for m in intake.export()["messages"]}
    assert got["<unknown@x>"][0] == "quarantined" and "nguoi.la@yahoo.com" in got["<unknown@x>"][1]
    assert got["<spoof@x>"][0] == "quarantined" and "dmarc=fail" in got["<spoof@x>"][1]
    assert got["<auto@x>"][0] == "ignored"
    assert got["<bounce@x>"][0] == "ignored"
    assert got["<own@x>"][0] == "ignored"
    assert intake.smtp.messages == []  # nobody but registered units gets a receipt
    snap = intake.ctx.store.snapshot()
    assert [json.loads(b.recipients) for b in snap["bounces"]] == [["sai.dia.chi@longbien.gov.vn"]]
    from pipeline.ledger.export import status_text

    status = status_text(intake.ctx.store, intake.ctx.units, TZ)
    head = status.split("== THEO ĐƠN VỊ")[0]
    assert "[quarantined]" in head and "nguoi.la@yahoo.com" in head and "[bounce]" in head


def test_forwarded_encoded_and_traversal_filenames_and_signature_images(intake: Harness) -> None:
    inner = samplemail.outlook_message(UBND, "chu.tich@longbien.gov.vn", "Biểu đăng ký", "x",
                                       [("Biểu đăng ký (bản cuối).xlsx", reg_xlsx(), XLSX)])
    intake.deliver(samplemail.forwarded_message(UBND, DISTRICT, "Fwd: Biểu đăng ký", inner, message_id="<fwd@x>"))
    intake.deliver(samplemail.thunderbird_message(AIMO, DISTRICT, "Đăng ký", "x",
                                                  [("Đăng ký mô hình “Dân vận khéo” năm 2022 – Trường Tiểu học Ái Mộ.xlsx",
                                                    reg_xlsx("Công đoàn Trường Tiểu học Ái Mộ"), XLSX)],
                                                  message_id="<tb@x>"))
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Tệp lạ", "x",
                                            [("../../etc/passwd.xlsx", reg_xlsx(), XLSX),
                                             ("..\\..\\Windows\\win.ini", b"[x]", "application/octet-stream")],
                                            message_id="<trav@x>"))
    intake.deliver(samplemail.with_signature_image(AIMO, DISTRICT, "Ảnh biểu đã ký", "x",
                                                   [("Ảnh biểu đăng ký.png", samplemail.SIGNATURE_PNG, "image/png")],
                                                   message_id="<sig@x>"))
    intake.poll()
    msgs = {m["message_id"]: m for m in intake.export()["messages"]}
    assert all(m["state"] == "processed" for m in msgs.values())
    [fwd] = msgs["<fwd@x>"]["documents"]
    assert (fwd["filename"], fwd["kind"], fwd["state"]) == ("Biểu đăng ký (bản cuối).xlsx", "registration", "accepted")
    [tb] = msgs["<tb@x>"]["documents"]
    assert tb["filename"] == "Đăng ký mô hình “Dân vận khéo” năm 2022 – Trường Tiểu học Ái Mộ.xlsx"
    names = [d["filename"] for d in msgs["<trav@x>"]["documents"]]
    assert len(names) == 2
    assert all("/" not in n and "\\" not in n and ".." not in n for n in names)
    assert names[0].endswith("passwd.xlsx")
    [photo] = msgs["<sig@x>"]["documents"]  # the inline logo is skipped, the real photo kept
    assert (photo["filename"], photo["state"]) == ("Ảnh biểu đăng ký.png", "needs_review")
    archived = {p.name for p in Path(intake.ctx.cfg.archive_dir).rglob("*") if p.is_file()}
    assert all(n.endswith(".eml") for n in archived)


def test_peer_mail_corpus_each_mail_ends_in_one_recorded_state(intake: Harness) -> None:
    folder = require_peer_mail()
    files = sorted(folder.glob("*.txt"))
    assert len(files) > 70
    intake.dovecot.append_many([f.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for f in files])
    summary = intake.poll()
    assert summary.error is None
    msgs = intake.export()["messages"]
    assert summary.fetched == len(files)
    # identical files are one message; every message has exactly one final state with a reason where not processed
    assert len(msgs) == summary.new
    for m in msgs:
        assert m["state"] in ("processed", "quarantined", "ignored"), m
        if m["state"] != "processed":
            assert m["reason"]
        for d in m["documents"]:
            assert d["filename"] and "/" not in d["filename"]
            assert d["state"] in ("accepted", "rejected", "needs_review")
    processed = [m for m in msgs if m["state"] == "processed"]
    assert len(processed) > 50
    names = {d["filename"] for m in msgs for d in m["documents"]}
    assert "attachment.txt" in names or any(n.endswith(".txt") for n in names)
    sent = len(intake.smtp.messages)
    assert sent == len(processed)


def test_outbox_retries_temporary_smtp_failure_and_sends_once(intake: Harness) -> None:
    intake.smtp.fail_next(1, code=451)
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", reg_xlsx(), XLSX)],
                                            message_id="<retry@x>"))
    s = intake.poll()
    assert s.outbox["retry"] == 1 and s.outbox["sent"] == 0
    [row] = intake.ctx.store.outbox_rows()
    assert row.state == "pending" and "451" in row.last_error
    assert intake.poll().outbox.get("sent", 0) == 0  # not yet due
    intake.clock_offset = timedelta(minutes=5)
    assert intake.poll().outbox["sent"] == 1
    intake.clock_offset = timedelta(hours=5)
    assert intake.poll().outbox.get("sent", 0) == 0
    assert len(receipt_for(intake, "<retry@x>")) == 1


def test_interrupted_send_is_not_repeated(intake: Harness) -> None:
    from pipeline.ledger.outbox import OutboxItem

    now = intake.now()
    intake.ctx.store.enqueue(OutboxItem(key="t:1", purpose="receipt", recipients=(UBND,), subject="x",
                                        smtp_message_id="<t1@x>", raw=b"Subject: x\r\n\r\nx\r\n"), now)
    [row] = intake.ctx.store.outbox_rows()
    assert intake.ctx.store.claim_outbox(row.id, now)  # the worker died here, mid-send
    intake.poll()  # within the grace period the claim may be a live sender's: left alone
    assert intake.ctx.store.outbox_rows()[0].state == "sending"
    intake.clock_offset = timedelta(minutes=2)
    intake.poll()  # no sent folder here, smtp.unsettled: staff (the default) → for a person
    [row] = intake.ctx.store.outbox_rows()
    assert row.state == "uncertain"
    assert intake.smtp.messages == []
    assert intake.ctx.store.retry_outbox(row.id, intake.now())
    intake.poll()
    assert len(intake.smtp.messages) == 1


def test_reprocess_replays_from_archive(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", reg_xlsx(), XLSX)],
                                            message_id="<rp@x>"))
    intake.poll()
    [m] = intake.export()["messages"]
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--config", str(intake.cfg_path), "reprocess", str(m["id"])],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert f"#{m['id']}: processed" in proc.stdout
    [m2] = intake.export()["messages"]
    assert len(m2["documents"]) == 1 and m2["documents"][0]["state"] == "accepted"
    assert len(receipt_for(intake, "<rp@x>")) == 2  # the replay answers with its own, corrected receipt


def test_unparseable_message_is_recorded_as_error_and_pass_completes(intake: Harness) -> None:
    intake.deliver(b"\x00\x01\x02 not a mail at all \xff\xfe")
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", reg_xlsx(), XLSX)],
                                            message_id="<ok@x>"))
    s = intake.poll()
    assert s.error is None
    states = sorted(m["state"] for m in intake.export()["messages"])
    assert "processed" in states and len(states) == 2
    assert all(st in ("processed", "quarantined", "ignored", "error") for st in states)


def test_cli_status_and_export(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message("nguoi.la@yahoo.com", DISTRICT, "Biểu", "x", message_id="<q@x>"))
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", reg_xlsx(), XLSX)],
                                            message_id="<ok@x>"))
    intake.poll()
    run = lambda *a: subprocess.run([sys.executable, "-m", "pipeline", "--config", str(intake.cfg_path), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    st = run("status")
    assert st.returncode == 0, st.stderr
    assert st.stdout.index("[quarantined]") < st.stdout.index("cq001")
    assert "th014 Công đoàn Trường Tiểu học Ái Mộ [truong_hoc]: chưa gửi gì" in st.stdout
    ex = run("export", "--format", "json")
    assert ex.returncode == 0, ex.stderr
    data = json.loads(ex.stdout)
    assert {m["message_id"] for m in data["messages"]} == {"<q@x>", "<ok@x>"}


def test_outbox_keeps_under_sending_limits_and_sends_the_rest_later(tmp_path: Path, dovecot, smtp, monkeypatch) -> None:
    from conftest import write_config
    from pipeline.config import load_config
    from pipeline.context import Context

    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    path = write_config(tmp_path, imap_port=dovecot.port, smtp_port=smtp.port, smtp_extra={"per_minute": 2})
    h = Harness(cfg_path=path, ctx=Context(load_config(path)), dovecot=dovecot, smtp=smtp)
    for i in range(5):
        h.deliver(samplemail.gmail_message(UBND, DISTRICT, f"Thư {i}", "x", message_id=f"<lim{i}@x>"))
    s = h.poll()
    assert (s.outbox["sent"], s.outbox["waiting"]) == (2, 3)
    assert h.poll().outbox["sent"] == 0  # the minute's budget is spent
    h.clock_offset = timedelta(minutes=2)
    assert h.poll().outbox["sent"] == 2
    h.clock_offset = timedelta(minutes=4)
    assert h.poll().outbox["sent"] == 1
    assert len(smtp.messages) == 5
    assert len({m["In-Reply-To"] for m in all_sent(h)}) == 5
