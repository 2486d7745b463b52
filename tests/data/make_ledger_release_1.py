"""Build tests/data/ledger-release-1.sqlite3: a ledger made by the first release (commit ed4202e, before
campaigns and before the schema had versions), holding real records, for tests/test_migrations.py.

It must run against that release's code, not this tree's:

    rm -rf /tmp/oldrel && mkdir /tmp/oldrel && git archive ed4202e | tar -x -C /tmp/oldrel
    PYTHONPATH=/tmp/oldrel .venv/bin/python tests/data/make_ledger_release_1.py tests/data/ledger-release-1.sqlite3

The old release's own harness does the work: its tests/servers.py starts a private Dovecot and the SMTP
sink, its config.yaml shape (tests/conftest.py write_config) points intake at them, and its real API
records everything: reminders (pipeline.plan.reminders.run_reminders) before and after the mail, one
pass (pipeline.worker.mailpass.run_pass) over accepted and rejected forms, reports of 2022 and 2021, a
photo, a mail from an unknown sender and a bounce, then the desk's review actions (assign, accept,
ignore). Receipts are sent; the last reminders are left pending in the outbox. The ledger is then
copied compactly (VACUUM INTO) to the path given.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pipeline
from pipeline.ledger import schema

if "campaign" in schema.reminders.c:
    sys.exit("this is today's code: run with PYTHONPATH=<git archive ed4202e> (see the docstring)")
OLD_TESTS = Path(pipeline.__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(OLD_TESTS))

from conftest import DISTRICT, write_config  # noqa: E402  (the old release's harness)
from servers import Dovecot, SmtpSink  # noqa: E402

from intake_demo import samplemail, samples  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.context import Context  # noqa: E402
from pipeline.desk import actions  # noqa: E402
from pipeline.desk.queue import queue  # noqa: E402
from pipeline.plan.reminders import run_reminders  # noqa: E402
from pipeline.worker.mailpass import run_pass  # noqa: E402

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
UBND, UBND_NAME = "cdcs.ubnd@longbien.gov.vn", "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
MAYDG, MAYDG_NAME = "congdoan@maydg.com.vn", "Công đoàn Công ty Cổ phần May Đức Giang"
PEER1, PEER2 = "doug@example.com", "sender@email.test"
STRANGER = "chutich.cdcs.ubnd@yahoo.com"
ENTRIES = [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"), ("Phòng TN-MT", "Phân loại rác tại nguồn", "bvmt")]


def at(day: int, month: int, hour: int = 9) -> datetime:
    return datetime(2022, month, day, hour, 0, tzinfo=TZ)


def mails() -> list[tuple[bytes, datetime]]:
    reg = samples.registration_xlsx(UBND_NAME, ENTRIES)
    return [
        # accepted, on time
        (samplemail.gmail_message(UBND, DISTRICT, "Đăng ký mô hình Dân vận khéo", "Kính gửi LĐLĐ quận.",
                                  [("Biểu đăng ký.xlsx", reg, XLSX)], message_id="<ok-cq001@mail.gmail.com>"),
         at(18, 2)),
        # rejected: a row without a category mark
        (samplemail.gmail_message(MAYDG, DISTRICT, "Đăng ký mô hình", "Kính gửi.",
                                  [("DK.xlsx", samples.without_mark(samples.registration_xlsx(MAYDG_NAME, ENTRIES),
                                                                    "Phòng TN-MT"), XLSX)],
                                  message_id="<bad-dn027@mail.gmail.com>"), at(19, 2)),
        # a summary (Mẫu M2), late
        (samplemail.outlook_message(PEER2, DISTRICT, "Biểu tổng hợp M2", "Gửi biểu tổng hợp.",
                                    [("M2.xlsx", samples.summary_xlsx("Công đoàn thử nghiệm 2", ENTRIES[1:],
                                                                      [("Nguyễn Văn A", "Tổ trưởng", "vhxh")]), XLSX)],
                                    message_id="<m2-peer2@outlook.com>"), at(25, 2)),
        # this year's first-quarter report, and last year's annual report (its period names 2021)
        (samplemail.gmail_message(PEER1, DISTRICT, "Báo cáo quý I", "Gửi báo cáo.",
                                  [("Bao cao quy I.docx", samples.report_docx("Công đoàn thử nghiệm 1"), DOCX)],
                                  message_id="<q1-peer1@mail.gmail.com>"), at(10, 3)),
        (samplemail.gmail_message(PEER1, DISTRICT, "Báo cáo năm 2021", "Gửi báo cáo năm.",
                                  [("Bao cao nam 2021.docx",
                                    samples.report_docx("Công đoàn thử nghiệm 1",
                                                        "BÁO CÁO Kết quả thực hiện năm 2021"), DOCX)],
                                  message_id="<y2021-peer1@mail.gmail.com>"), at(11, 3)),
        # a photo of a report: needs a person
        (samplemail.gmail_message(UBND, DISTRICT, "Ảnh báo cáo quý I", "Ảnh chụp báo cáo.",
                                  [("Báo cáo quý I.png", samplemail._png(40, 30), "image/png")],
                                  message_id="<photo-cq001@mail.gmail.com>"), at(12, 3)),
        # an unknown sender (quarantined), and a bounce of a reminder
        (samplemail.gmail_message(STRANGER, DISTRICT, "Biểu đăng ký Dân vận khéo", "Kính gửi",
                                  [("Đăng ký.xlsx", samples.registration_xlsx("Công đoàn Trường Tiểu học Ái Mộ",
                                                                              ENTRIES[:1]), XLSX)],
                                  message_id="<stranger-1@mail.yahoo.com>"), at(20, 2)),
        (samplemail.bounce(samplemail.gmail_message(DISTRICT, "sai.dia.chi@longbien.gov.vn", "Nhắc nộp biểu", "x",
                                                    message_id="<reminder-1@intake>"),
                           "sai.dia.chi@longbien.gov.vn", message_id="<bounce-1@mx.google.com>"), at(16, 2)),
    ]


def build(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, Dovecot() as dovecot, SmtpSink() as smtp:
        os.environ["INTAKE_TEST_IMAP_PW"] = dovecot.password
        cfg_path = write_config(Path(tmp), imap_port=dovecot.port, smtp_port=smtp.port)
        ctx = Context(load_config(cfg_path))
        run_reminders(ctx, today=date(2022, 2, 15))  # "before-7" of the registration to every unit, sent
        for raw, when in mails():
            dovecot.append(raw, internaldate=when)
        summary = run_pass(ctx)
        assert summary.error is None, summary.error
        items = queue(ctx)
        stranger = next(i for i in items if i.kind == "quarantined")
        photo = next(i for i in items if i.kind == "needs_review")
        bounce = next(i for i in items if i.kind == "bounce")
        actions.assign(ctx, stranger.message_pk, "th014", actor="hoa")
        actions.accept(ctx, photo.target_id, kind="report", period="2022-Q1", actor="hoa")
        actions.ignore(ctx, "bounce", bounce.target_id, actor="lan", reason="địa chỉ cũ")
        # 05/03: "after-1" passed over (no mail), "weekly-1" queued and left pending
        run_reminders(ctx, today=date(2022, 3, 5), flush=False)
        ctx.store.engine.dispose()
        db = Path(tmp) / "db" / "intake.sqlite3"
        out.unlink(missing_ok=True)
        with sqlite3.connect(db) as c:
            c.execute("VACUUM INTO ?", (str(out),))
    with sqlite3.connect(out) as c:
        c.execute("PRAGMA journal_mode=DELETE")  # one file, as committed
        counts = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")}
    print(out, f"{out.stat().st_size} bytes", counts)


if __name__ == "__main__":
    build(Path(sys.argv[1]).resolve())
