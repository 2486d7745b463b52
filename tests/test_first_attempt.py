"""keep_first_attempt_date: a correction sent after the deadline, following a rejected first attempt sent
before it, is on time — in the document's own flag, in the receipt and in the unit's state (issue 4)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import DISTRICT, Harness, write_config
from intake_demo import samplemail
from pipeline.config import load_config
from pipeline.plan.deadlines import unit_states
from intake_demo import samples
from pipeline.context import Context

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UBND = "cdcs.ubnd@longbien.gov.vn"
UNIT = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
ENTRIES = [("Tổ Văn phòng", "Một cửa thân thiện", "khac")]


@pytest.mark.parametrize("keep", [True, False])
def test_a_late_correction_keeps_the_first_attempts_date_when_configured(
        tmp_path: Path, dovecot: Any, smtp: Any, monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    path = write_config(tmp_path, imap_port=dovecot.port, smtp_port=smtp.port,
                        extra={"keep_first_attempt_date": keep})
    h = Harness(cfg_path=path, ctx=Context(load_config(path)), dovecot=dovecot, smtp=smtp)
    good = samples.registration_xlsx(UNIT, ENTRIES)
    h.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký", "x",
                                       [("dk.xlsx", samples.without_mark(good), XLSX)], message_id="<first@x>"),
              datetime(2022, 2, 20, 9, 0, tzinfo=TZ))
    h.poll()
    h.deliver(samplemail.gmail_message(UBND, DISTRICT, "Đăng ký (bản sửa)", "x", [("dk.xlsx", good, XLSX)],
                                       message_id="<fix@x>"), datetime(2022, 2, 25, 9, 0, tzinfo=TZ))
    h.poll()
    docs = {m["message_id"]: m["documents"][0] for m in h.export()["messages"]}
    assert docs["<first@x>"]["state"] == "rejected"
    assert (docs["<fix@x>"]["state"], docs["<fix@x>"]["on_time"]) == ("accepted", keep)
    receipt = h.smtp.messages[-1].parsed().get_body(("plain",)).get_content()
    assert ("nộp muộn" in receipt) is (not keep)
    states = unit_states(h.ctx.obligations, h.ctx.units.units, h.ctx.store.document_records(),
                         keep_first_attempt_date=keep)
    [reg] = [s for (u, ob), s in states.items() if u == "cq001" and ob == "registration"]
    assert reg.state == ("on_time" if keep else "late")
