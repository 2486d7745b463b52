"""The health bar's line about mail waiting to leave, on a phone (390 px) in Debian's Chromium: shown, and
wrapped inside the window rather than pushing the page sideways."""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from typing import Any

from desk_helpers import browser, desk_harness, downloads, live_desk  # noqa: F401  (fixtures)
from desk_helpers import LiveDesk, by_css, local, login
from pipeline.ledger.outbox import OutboxItem

PHONE = 390


def test_the_waiting_mail_line_fits_a_phone(live_desk: LiveDesk, browser: Any) -> None:
    h, driver = live_desk.harness, browser
    h.clock_offset = local(2022, 2, 21, 10, 0) - datetime.now(timezone.utc)  # a morning, whenever the test runs
    now = h.now()
    # an account that may send 2 a minute and 10 a day: the reminders wait, the line names each kind
    smtp = dataclasses.replace(h.ctx.cfg.smtp, per_minute=2, per_day=10, reserve_for_receipts=4)
    h.ctx.cfg = dataclasses.replace(h.ctx.cfg, smtp=smtp)
    for n, purpose in enumerate(["receipt"] * 6 + ["alert"] + ["reminder"] * 30 + ["report"]):
        h.ctx.store.enqueue(OutboxItem(key=f"w{n}", purpose=purpose, recipients=("cdcs.ubnd@longbien.gov.vn",),
                                       subject="Thư chờ gửi", smtp_message_id=f"<w{n}@x>", raw=b"x"), now)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": PHONE, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    driver.get(live_desk.url + "/login")
    login(driver, live_desk.url, "hoa")
    line = by_css(driver, "#health-sending")
    assert line.is_displayed()
    # receipts over three minutes, the alert after them, the reminders and the report days later
    assert re.fullmatch(r"38 thư đang chờ gửi — thư báo nhận cuối cùng dự kiến đi hôm nay 10:0\d, cảnh báo dự kiến đi "
                        r"hôm nay 10:0\d, thư nhắc hạn cuối cùng dự kiến đi \d\d/02 \d\d:\d\d, báo cáo cho cán bộ dự kiến "
                        r"đi \d\d/02 \d\d:\d\d", line.text), line.text
    box = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                "return [r.left, r.right, r.height, document.documentElement.scrollWidth];", line)
    left, right, height, scroll = box
    assert left >= 0 and right <= PHONE, box
    assert scroll <= PHONE, box  # the page does not scroll sideways
    assert height > 20, box  # wrapped onto more than one line, not clipped
