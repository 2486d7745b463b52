"""Reminders and rejections carry the right blank form, and `intake forms` writes forms that read back clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DISTRICT, Harness
from intake_demo import samplemail
from pipeline.forms.blank import read_marker
from pipeline.forms import read_document
from intake_demo import samples
from test_remind_e2e import remind, reminders_sent

pytestmark = pytest.mark.servers

UBND = "cdcs.ubnd@longbien.gov.vn"
UNIT = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _attachments(msg) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    return [(p.get_filename(), p.get_content()) for p in msg.iter_attachments()]


def test_rejection_receipt_carries_the_blank_registration_form(intake: Harness) -> None:
    bad = samples.without_mark(samples.registration_xlsx(UNIT, [("Tổ Văn phòng", "Một cửa", "khac")]))
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x", [("dk.xlsx", bad, XLSX)],
                                            message_id="<rj@x>"))
    intake.poll()
    [receipt] = [m.parsed() for m in intake.smtp.messages]
    [(name, data)] = _attachments(receipt)
    assert name == f"Biểu đăng ký mô hình Dân vận khéo năm 2022 - {UNIT}.xlsx"
    assert read_marker(data) == {"form": "registration", "version": "1", "year": "2022", "unit": UNIT}


def test_accepted_receipt_has_no_attachment(intake: Harness) -> None:
    intake.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x",
                                            [("dk.xlsx", samples.registration_xlsx(UNIT, [("A", "B", "gpmb")]), XLSX)],
                                            message_id="<ok@x>"))
    intake.poll()
    [receipt] = [m.parsed() for m in intake.smtp.messages]
    assert _attachments(receipt) == []


def test_registration_reminder_carries_the_form(intake: Harness) -> None:
    remind(intake, "2022-02-15")
    msgs = reminders_sent(intake)
    assert msgs
    for m in msgs:
        [(name, data)] = _attachments(m)
        assert name.startswith("Biểu đăng ký mô hình Dân vận khéo năm 2022 - ")
        assert read_marker(data)["form"] == "registration"


def test_cli_forms_write_three_forms_that_read_back_as_their_kind(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline", "forms", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    paths = sorted(tmp_path.glob("*.xlsx"))
    assert len(paths) == 3
    kinds = {read_document(p.name, p.read_bytes()).kind for p in paths}
    assert kinds == {"registration", "summary", "commendation"}
