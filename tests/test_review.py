"""Review actions (issue 5) end to end on real IMAP and SMTP: assign, release, accept, reject, ignore, undo.

The desk's buttons and `intake review …` both call pipeline.desk.queue, .actions and .actionlog; these tests
drive them directly and through the CLI, and check what a unit sees (receipts and notices in the SMTP sink)
and what the ledger records, including that a second click never sends a second mail.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import DISTRICT, Harness
from pipeline.desk import actionlog, actions
from pipeline.desk.queue import queue, suggest_unit
from intake_demo import samplemail
from pipeline.plan.deadlines import unit_states
from intake_demo import samples

BACKENDS = ("sqlite", "postgresql")  # every test here runs on both (conftest.py)
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
UNIT = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
STRANGER = "chutich.cdcs.ubnd@yahoo.com"
ENTRIES = [("Tổ Văn phòng", "Một cửa thân thiện", "khac")]


def _reg() -> bytes:
    return samples.registration_xlsx(UNIT, ENTRIES)


def _photo() -> bytes:
    return samplemail._png(40, 30)


def _receipts_to(h: Harness, addr: str) -> list:
    return [m for m in h.smtp.messages if addr in m.rcpt_tos]


def _queue_kinds(h: Harness) -> list[tuple[str, str]]:
    return [(i.kind, i.target) for i in queue(h.ctx)]


def test_assign_a_quarantined_mail_processes_it_once_and_learns_the_address(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message(STRANGER, DISTRICT, "Biểu đăng ký Dân vận khéo", "Kính gửi",
                                            [("Đăng ký.xlsx", _reg(), XLSX)], message_id="<stranger-1@x>"),
                   datetime(2022, 2, 18, 9, 0, tzinfo=TZ))
    intake.poll()
    [item] = queue(intake.ctx)
    assert (item.kind, item.target, item.sender) == ("quarantined", "message", STRANGER)
    assert "assign" in item.actions and STRANGER in item.reason
    assert intake.smtp.messages == []

    # adding an address to a unit is a change staff confirm (issue 13): without it nothing happens
    with pytest.raises(actions.NeedsConfirmation):
        actions.assign(intake.ctx, item.message_pk, "cq001", actor="hoa", add_address=True)
    assert intake.export()["messages"][0]["state"] == "quarantined"
    plan = actions.plan_assign(intake.ctx, item.message_pk, "cq001", add_address=True)
    res = actions.assign(intake.ctx, item.message_pk, "cq001", actor="hoa", add_address=True, confirm=plan.token)
    assert "Công đoàn cơ quan" in res.message and STRANGER in res.message
    [m] = intake.export()["messages"]
    assert (m["state"], m["unit_id"]) == ("processed", "cq001")
    [doc] = m["documents"]
    assert (doc["kind"], doc["state"], doc["on_time"]) == ("registration", "accepted", True)
    [receipt] = _receipts_to(intake, STRANGER)
    assert receipt.parsed()["In-Reply-To"] == "<stranger-1@x>"
    assert queue(intake.ctx) == []

    # a second click (another tab, another person) is refused and sends nothing
    with pytest.raises(actions.ReviewError, match="đã được xử lý"):
        actions.assign(intake.ctx, item.message_pk, "cq001", actor="lan")
    intake.poll()
    assert len(_receipts_to(intake, STRANGER)) == 1

    # the address was learnt: the unit's next mail from it goes straight through
    assert STRANGER in intake.ctx.units.by_id("cq001").emails
    intake.deliver(samplemail.gmail_message(STRANGER, DISTRICT, "Biểu tổng hợp", "x",
                                            [("dk2.xlsx", _reg(), XLSX)], message_id="<stranger-2@x>"))
    intake.poll()
    states = {x["message_id"]: (x["state"], x["unit_id"]) for x in intake.export()["messages"]}
    assert states["<stranger-2@x>"] == ("processed", "cq001")
    [row] = actionlog.history(intake.ctx)
    assert (row.action, row.actor, row.params["address_added"]) == ("assign", "hoa", True)
    assert actionlog.history(intake.ctx, unit_id="cq001")[0].id == row.id


def test_undo_an_assignment_puts_the_mail_back_and_forgets_the_address(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message(STRANGER, DISTRICT, "Biểu đăng ký", "x",
                                            [("Đăng ký.xlsx", _reg(), XLSX)], message_id="<u1@x>"))
    intake.poll()
    [item] = queue(intake.ctx)
    plan = actions.plan_assign(intake.ctx, item.message_pk, "cq001", add_address=True)
    res = actions.assign(intake.ctx, item.message_pk, "cq001", actor="hoa", add_address=True, confirm=plan.token)
    back = actionlog.undo(intake.ctx, res.action_id, actor="lan")
    assert "quarantined" in back.message and "không thu hồi" in back.message and STRANGER in back.message
    [m] = intake.export()["messages"]
    assert (m["state"], m["unit_id"], m["documents"]) == ("quarantined", None, [])
    assert STRANGER not in intake.ctx.units.by_id("cq001").emails
    assert [i.message_pk for i in queue(intake.ctx)] == [item.message_pk]
    with pytest.raises(actions.ReviewError, match="đã được hoàn tác"):
        actionlog.undo(intake.ctx, res.action_id, actor="lan")
    [row] = actionlog.history(intake.ctx)
    assert row.undone_by == "lan"
    # assigned again, to another unit: a new receipt for the new outcome, exactly one more
    actions.assign(intake.ctx, item.message_pk, "dn027", actor="hoa")
    [m] = intake.export()["messages"]
    assert (m["state"], m["unit_id"]) == ("processed", "dn027")
    assert len(_receipts_to(intake, STRANGER)) == 2


def test_assign_survives_a_crash_between_the_decision_and_the_processing(intake: Harness) -> None:
    """The decision is written on the message first: the worker's next pass finishes it the same way."""
    import sqlalchemy as sa

    from pipeline.ledger.schema import messages

    intake.deliver(samplemail.gmail_message(STRANGER, DISTRICT, "Biểu đăng ký", "x",
                                            [("Đăng ký.xlsx", _reg(), XLSX)], message_id="<c1@x>"))
    intake.poll()
    [item] = queue(intake.ctx)
    # what assign() commits before processing, as if the desk died right after it
    action_id = intake.ctx.store.assign_message(item.message_pk, "cq001", add_address=False, actor="hoa",
                                                now=intake.now())
    with pytest.raises(actions.ReviewError, match="đang được xử lý; thử lại"):
        actionlog.undo(intake.ctx, action_id, actor="lan")
    intake.reopen()
    intake.poll()
    [m] = intake.export()["messages"]
    assert (m["state"], m["unit_id"]) == ("processed", "cq001")
    assert len(_receipts_to(intake, STRANGER)) == 1
    with intake.ctx.store.tx() as c:
        assert c.execute(sa.select(messages.c.assigned_unit_id)).scalar() == "cq001"


def test_the_ledger_checks_the_state_as_it_writes_and_the_desk_says_why_it_refused(intake: Harness) -> None:
    """Each action is a compare-and-set in the ledger; a refusal reaches staff in the desk's words."""
    from pipeline.ledger.review import StateChanged

    intake.deliver(samplemail.gmail_message(STRANGER, DISTRICT, "Biểu đăng ký", "x",
                                            [("Đăng ký.xlsx", _reg(), XLSX)], message_id="<cas@x>"))
    intake.poll()
    [item] = queue(intake.ctx)
    with pytest.raises(actions.ReviewError, match="không có thư #999"):
        actions.ignore(intake.ctx, "message", 999, actor="hoa")
    res = actions.ignore(intake.ctx, "message", item.message_pk, actor="hoa", reason="thư thử")
    assert res.message == f"Thư #{item.message_pk} đã được bỏ qua."
    with pytest.raises(StateChanged) as refused:  # the ledger writes nothing twice
        intake.ctx.store.ignore_item("message", item.message_pk, reason="", note="", actor="lan", now=intake.now())
    assert (refused.value.table, refused.value.state) == ("messages", "ignored")
    with pytest.raises(actions.ReviewError, match=r"Thư #\d+ đã được xử lý \(trạng thái hiện tại: bỏ qua\)"):
        actions.assign(intake.ctx, item.message_pk, "cq001", actor="lan")
    intake.ctx.store.reset_for_reprocess(item.message_pk, intake.now())  # `intake reprocess`: the mail is 'received' again
    with pytest.raises(actions.ReviewError, match=r"thư #\d+ đã thay đổi \(trạng thái received\); không hoàn tác"):
        actionlog.undo(intake.ctx, res.action_id, actor="lan")
    assert actionlog.history(intake.ctx)[0].undone_by is None
    with pytest.raises(actions.ReviewError, match="không có thao tác #999"):
        actionlog.undo(intake.ctx, 999, actor="lan")


def test_release_a_suspected_spoof(intake: Harness) -> None:
    intake.deliver(samplemail.spoofed(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", _reg(), XLSX)],
                                      message_id="<spoof@x>"))
    intake.poll()
    [item] = queue(intake.ctx)
    assert item.kind == "spoof" and "release" in item.actions and "dmarc=fail" in item.reason
    res = actions.release(intake.ctx, item.message_pk, actor="hoa")
    assert "cho qua" in res.message
    [m] = intake.export()["messages"]
    assert (m["state"], m["unit_id"]) == ("processed", "cq001")
    assert len(_receipts_to(intake, UBND)) == 1
    with pytest.raises(actions.ReviewError):
        actions.release(intake.ctx, item.message_pk, actor="hoa")
    actionlog.undo(intake.ctx, res.action_id, actor="hoa")
    [m] = intake.export()["messages"]
    assert m["state"] == "quarantined" and "dmarc=fail" in m["reason"]
    assert _queue_kinds(intake) == [("spoof", "message")]


def test_accept_a_scanned_report_changes_the_units_state(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Báo cáo quý I (bản scan)", "x",
                                            [("Báo cáo quý I.png", _photo(), "image/png")],
                                            message_id="<scan@x>"),
                   datetime(2022, 3, 10, 9, 0, tzinfo=TZ))
    intake.poll()
    [receipt] = _receipts_to(intake, UBND)
    [item] = queue(intake.ctx)
    assert (item.kind, item.target, item.filename) == ("needs_review", "document", "Báo cáo quý I.png")

    def q1_state() -> str:
        states = unit_states(intake.ctx.obligations, intake.ctx.units.units, intake.ctx.store.document_records())
        return next(s.state for (u, ob), s in states.items()
                    if u == "cq001" and any(o.id == ob and "report" in o.kinds and o.period == "2022-Q1"
                                            for o in intake.ctx.obligations))

    assert q1_state() == "missing"
    with pytest.raises(actions.ReviewError, match="kỳ"):
        actions.accept(intake.ctx, item.target_id, kind="report", period=None, actor="hoa")
    res = actions.accept(intake.ctx, item.target_id, kind="report", period="2022-Q1", actor="hoa")
    assert "đúng hạn" in res.message
    assert q1_state() == "on_time"
    [doc] = intake.export()["messages"][0]["documents"]
    assert (doc["kind"], doc["period"], doc["state"], doc["on_time"]) == ("report", "2022-Q1", "accepted", True)
    notices = _receipts_to(intake, UBND)
    assert len(notices) == 2
    body = notices[1].parsed().get_body(("plain",)).get_content()
    assert "Báo cáo quý I.png" in body and "quý I/2022" in body and "đúng hạn" in body
    with pytest.raises(actions.ReviewError, match="đã được xử lý"):
        actions.accept(intake.ctx, item.target_id, kind="report", period="2022-Q1", actor="lan")
    assert len(_receipts_to(intake, UBND)) == 2

    actionlog.undo(intake.ctx, res.action_id, actor="hoa")
    assert q1_state() == "missing"
    assert _queue_kinds(intake) == [("needs_review", "document")]


def test_reject_sends_the_reason_and_a_blank_form_and_ignore_takes_items_off(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Ảnh biểu đăng ký", "x",
                                            [("ảnh biểu đăng ký.png", _photo(), "image/png"),
                                             ("ảnh khác.png", samplemail._png(50, 50, (1, 2, 3)), "image/png")],
                                            message_id="<photo@x>"))
    original = samplemail.gmail_message(DISTRICT, "sai.dia.chi@longbien.gov.vn", "Nhắc nộp biểu", "x",
                                        message_id="<reminder-1@intake>")
    intake.deliver(samplemail.bounce(original, "sai.dia.chi@longbien.gov.vn", message_id="<bounce@x>"))
    intake.poll()
    items = queue(intake.ctx)
    assert sorted(i.kind for i in items) == ["bounce", "needs_review", "needs_review"]
    photo = next(i for i in items if i.filename == "ảnh biểu đăng ký.png")
    other = next(i for i in items if i.filename == "ảnh khác.png")
    bounce = next(i for i in items if i.kind == "bounce")
    assert "sai.dia.chi@longbien.gov.vn" in bounce.reason

    with pytest.raises(actions.ReviewError, match="lý do"):
        actions.reject(intake.ctx, photo.target_id, reason=" ", actor="hoa")
    # the photo was read as 'unknown' by the reader; staff say what it is by accepting/rejecting only
    with intake.ctx.store.tx() as c:
        from pipeline.ledger.schema import documents
        c.execute(documents.update().where(documents.c.id == photo.target_id).values(kind="registration"))
    res = actions.reject(intake.ctx, photo.target_id, reason="Ảnh chụp bị mờ, không đọc được cột GPMB",
                         actor="hoa")
    notice = _receipts_to(intake, UBND)[-1].parsed()
    text = notice.get_body(("plain",)).get_content()
    assert "Ảnh chụp bị mờ, không đọc được cột GPMB" in text and "CHƯA được ghi nhận" in text
    names = [p.get_filename() for p in notice.iter_attachments()]
    assert len(names) == 1 and names[0].endswith(".xlsx")
    doc = next(d for d in intake.export()["messages"][0]["documents"] if d["filename"] == "ảnh biểu đăng ký.png")
    assert doc["state"] == "rejected" and any(i["code"] == "staff-rejected" for i in doc["issues"])

    sent_before = len(intake.smtp.messages)
    actions.ignore(intake.ctx, "document", other.target_id, actor="hoa", reason="ảnh trùng")
    actions.ignore(intake.ctx, "bounce", bounce.target_id, actor="hoa")
    with pytest.raises(actions.ReviewError, match=r"Thư báo lỗi #\d+ đã được xử lý \(trạng thái hiện tại: đã xem\)"):
        actions.ignore(intake.ctx, "bounce", bounce.target_id, actor="hoa")
    assert queue(intake.ctx) == []
    assert len(intake.smtp.messages) == sent_before  # ignoring tells nobody
    undo_reject = actionlog.undo(intake.ctx, res.action_id, actor="lan")
    assert "chờ xem xét" in undo_reject.message
    doc = next(d for d in intake.export()["messages"][0]["documents"] if d["filename"] == "ảnh biểu đăng ký.png")
    assert doc["state"] == "needs_review" and not any(i["code"] == "staff-rejected" for i in doc["issues"])
    assert [i.target_id for i in queue(intake.ctx)] == [photo.target_id]


def test_review_cli_lists_acts_and_refuses_twice(intake: Harness, tmp_path: Path) -> None:
    intake.deliver(samplemail.gmail_message(STRANGER, DISTRICT, "Biểu đăng ký", "x",
                                            [("Đăng ký.xlsx", _reg(), XLSX)], message_id="<cli@x>"))
    intake.poll()
    [item] = queue(intake.ctx)
    env = {**os.environ, "INTAKE_TEST_IMAP_PW": intake.dovecot.password}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline", "--config", str(intake.cfg_path), *args],
                              capture_output=True, text=True, env=env, timeout=120)

    listed = run("review", "list")
    assert listed.returncode == 0 and f"thư #{item.message_pk}" in listed.stdout and STRANGER in listed.stdout
    done = run("review", "assign", str(item.message_pk), "th014", "--actor", "cli-test")
    assert done.returncode == 0, done.stderr
    assert "Trường Tiểu học Ái Mộ" in done.stdout
    again = run("review", "assign", str(item.message_pk), "th014")
    assert again.returncode == 1 and "đã được xử lý" in again.stderr
    assert len(_receipts_to(intake, STRANGER)) == 1
    hist = run("review", "history")
    assert "cli-test" in hist.stdout and "Gán thư" in hist.stdout
    snap = json.loads(run("export").stdout)
    assert snap["messages"][0]["unit_id"] == "th014"


def test_a_quarantined_mail_suggests_the_unit_its_form_names(intake: Harness) -> None:
    form = samples.registration_xlsx("Công đoàn Trường TH Ái Mộ", ENTRIES)
    intake.deliver(samplemail.gmail_message("giaovien.aimo@yahoo.com", DISTRICT, "Gửi biểu", "x",
                                            [("dk.xlsx", form, XLSX)], message_id="<sg1@x>"))
    intake.deliver(samplemail.gmail_message("nguoi.la@yahoo.com", DISTRICT, "Hỏi thăm", "x", message_id="<sg2@x>"))
    intake.poll()
    got = {i.sender: (i.suggested_unit_id, i.suggested_why) for i in queue(intake.ctx)}
    assert got["giaovien.aimo@yahoo.com"][0] == "th014" and "dk.xlsx" in got["giaovien.aimo@yahoo.com"][1]
    assert got["nguoi.la@yahoo.com"] == (None, None)


def test_suggest_unit_ignores_accents_case_and_abbreviations_but_not_other_schools() -> None:
    from pipeline.plan.units import parse_units
    from conftest import UNITS_CSV

    units = parse_units(UNITS_CSV.encode("utf-8"), "units.csv").units

    def best(text: str) -> str | None:
        hit = suggest_unit(units, [(text, "x")])
        return hit[0] if hit else None

    assert best("ĐƠN VỊ: CĐCS Trường TH Ái Mộ") == "th014"
    assert best("cong doan truong tieu hoc ai mo") == "th014"
    assert best("Cty CP May Đức Giang") == "dn027"
    assert best("CĐCS UBND quận Long Biên") == "cq001"
    assert best("Trường THCS Ái Mộ") is None
    assert best("Biểu đăng ký") is None


def test_status_leaves_out_bounces_set_aside_and_shows_the_workers_health(intake: Harness) -> None:
    from pipeline.ledger.export import status_text

    original = samplemail.gmail_message(DISTRICT, "sai.dia.chi@longbien.gov.vn", "Nhắc nộp biểu", "x",
                                        message_id="<reminder-9@intake>")
    intake.deliver(samplemail.bounce(original, "sai.dia.chi@longbien.gov.vn", message_id="<bounce9@x>"))
    intake.poll()

    def head() -> str:
        return status_text(intake.ctx.store, intake.ctx.units, TZ).split("== THEO ĐƠN VỊ")[0]

    assert "[bounce]" in head() and "chưa có (worker" in head()
    [item] = queue(intake.ctx)
    actions.ignore(intake.ctx, "bounce", item.target_id, actor="hoa")
    now = datetime(2022, 2, 21, 8, 0, tzinfo=TZ)
    intake.ctx.store.set_kv("poll.last_ok", "2022-02-21T01:00:00+00:00", now)
    intake.ctx.store.set_kv("poll.failing_since", "2022-02-21T01:05:00+00:00", now)
    intake.ctx.store.set_kv("poll.last_error", "Gmail từ chối mật khẩu ứng dụng", now)
    text = head()
    assert "[bounce]" not in text
    assert "21/02/2022 08:00" in text and "ĐANG LỖI từ 21/02/2022 08:05: Gmail từ chối mật khẩu ứng dụng" in text
