"""The desk end to end in a real headless browser (Debian's Chromium through Selenium and chromedriver),
against the desk served by waitress on loopback, with mail delivered to a real Dovecot and receipts
caught by a real SMTP server."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from desk_helpers import browser, desk_harness, downloads, live_desk  # noqa: F401  (fixtures)
from desk_helpers import (ACCOUNTS, LiveDesk, all_css, by_css, deliver_form, deliver_scan, flashes, local, login,
                          page_text, registration, submit, wait_for_file, wait_until)
from conftest import DISTRICT
from intake_demo import samplemail
from pipeline.forms.blank import read_marker
from pipeline.ledger.schema import outbox

AIMO = "Công đoàn Trường Tiểu học Ái Mộ"
UBND = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"


def select(element: Any, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(element).select_by_value(value)


def go(driver: Any, desk: LiveDesk, path: str) -> None:
    driver.get(desk.url + path)


def item(driver: Any, kind: str, target: str, target_id: int) -> Any:
    return by_css(driver, f"#item-{kind}-{target}-{target_id}")


def receipts_for(desk: LiveDesk, message_pk: int) -> list[Any]:
    with desk.harness.ctx.store.tx() as c:
        return list(c.execute(sa.select(outbox.c.id, outbox.c.state, outbox.c.recipients).where(
            outbox.c.purpose == "receipt", outbox.c.message_pk == message_pk)))


def unit_state(driver: Any, desk: LiveDesk, unit_id: str, obligation_id: str) -> str:
    go(driver, desk, f"/units/{unit_id}")
    return by_css(driver, f"#state-{obligation_id}").get_attribute("data-state")


# --------------------------------------------------------------------------- log in, pages, reports


def test_log_in_visit_every_page_download_and_send_the_report(live_desk: LiveDesk, browser: Any,
                                                               downloads: Path) -> None:
    h, driver = live_desk.harness, browser
    deliver_form(h, "cdcs.ubnd@longbien.gov.vn", when=local(2022, 2, 16), mid="<b1@mail.gmail.com>",
                 data=registration(UBND, [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac"),
                                          ("Phòng TN-MT", "Phân loại rác", "bvmt")]))
    assert h.poll().states == {"processed": 1}
    h.smtp.wait_for(1)
    h.smtp.clear()

    go(driver, live_desk, "/")
    assert "/login" in driver.current_url
    login(driver, live_desk.url, "hoa", "sai-mat-khau")
    assert "không đúng" in by_css(driver, "#login-error").text
    login(driver, live_desk.url, "hoa")
    assert by_css(driver, "h1").text == "Tổng quan"
    assert ACCOUNTS["hoa"][0] in by_css(driver, ".who").text
    text = page_text(driver)
    assert "Lần đọc hộp thư thành công gần nhất" in text and "1/5 đơn vị" in text
    assert len(all_css(driver, "svg.chart")) >= 2
    for nav, title in (("Cần xử lý", "Cần xử lý"), ("Đơn vị", "Đơn vị"), ("Báo cáo", "Báo cáo"),
                       ("Tổng quan", "Tổng quan")):
        from selenium.webdriver.common.by import By

        driver.find_element(By.LINK_TEXT, nav).click()
        wait_until(lambda: by_css(driver, "h1").text == title, what=f"page {title}")
    # a unit's page from the overview, with the mail and its receipt
    from selenium.webdriver.common.by import By

    by_css(driver, "#unit-links").find_element(By.LINK_TEXT, UBND).click()
    wait_until(lambda: all_css(driver, "#unit-name"), what="the unit's page")
    assert by_css(driver, "#unit-name").text == UBND
    assert by_css(driver, "#state-registration").get_attribute("data-state") == "on_time"
    assert "Thư báo nhận" in by_css(driver, "#unit-outbox").text and "đã gửi" in by_css(driver, "#unit-outbox").text
    by_css(driver, "a.dl").click()
    eml = wait_for_file(downloads, ".eml")
    [row] = h.ctx.store.messages_in_state("processed")
    assert eml.name == f"thu-{row.id}.eml"
    assert eml.read_bytes() == h.ctx.archive.get(row.sha256)

    # the workbook for a chosen date, and the report to staff now (once per day)
    go(driver, live_desk, "/reports")
    date_box = by_css(driver, "#workbook-form input[name=date]")
    driver.execute_script("arguments[0].value = '2022-02-25'", date_box)
    submit(by_css(driver, "#workbook-form"), navigates=False)
    book = wait_for_file(downloads, "bao-cao-tong-hop-2022-02-25.xlsx")
    assert load_workbook(book).sheetnames == ["Tổng hợp", "Khen thưởng", "Tiến độ", "Chỉ tiêu"]
    submit(by_css(driver, "#send-form"))
    assert any("Đã gửi báo cáo tổng hợp" in f for f in flashes(driver))
    [mail] = h.smtp.wait_for(1)
    assert mail.rcpt_tos == ["staff@example.org"]
    submit(by_css(driver, "#send-form"))
    assert any("đã được gửi cho cán bộ trước đó" in f for f in flashes(driver))
    time.sleep(0.5)
    assert len(h.smtp.messages) == 1

    by_css(driver, "#blank-forms a").click()
    form = wait_for_file(downloads, "2022.xlsx")
    assert read_marker(form.read_bytes())["form"] == "registration"

    submit(by_css(driver, "form.logout"))
    assert "/login" in driver.current_url
    go(driver, live_desk, "/units")
    assert "/login" in driver.current_url


# --------------------------------------------------------------------------- Cần xử lý


def test_assign_a_quarantined_mail_sends_its_receipt_exactly_once(live_desk: LiveDesk, browser: Any) -> None:
    h, driver = live_desk.harness, browser
    stranger = "chutich.congdoan.aimo@gmail.com"
    deliver_form(h, stranger, when=local(2022, 2, 18), mid="<q1@mail.gmail.com>", unit_name=AIMO,
                 sender_name="Nguyễn Văn Bình", subject="Biểu đăng ký Dân vận khéo - TH Ái Mộ")
    assert h.poll().states == {"quarantined": 1}
    pk = h.ctx.store.messages_in_state("quarantined")[0].id
    assert h.smtp.messages == []

    login(driver, live_desk.url)
    go(driver, live_desk, "/review")
    first_tab = driver.current_window_handle
    card = item(driver, "quarantined", "message", pk)
    assert stranger in card.text and "không có trong danh sách đơn vị" in card.text
    # a second tab with the same page, as a colleague (or an impatient double click) would have
    driver.switch_to.new_window("tab")
    go(driver, live_desk, "/review")
    second_tab = driver.current_window_handle
    driver.switch_to.window(first_tab)

    form = card.find_element("css selector", "form.assign")
    select(form.find_element("css selector", "select[name=unit_id]"), "th014")
    form.find_element("css selector", "input[name=add_address]").click()
    submit(form)
    # adding the address to the unit is shown first and needs a second, explicit confirmation (issue 13)
    assert stranger in by_css(driver, "#confirm-address").text and h.smtp.messages == []
    submit(by_css(driver, "#confirm-form"))
    ok = " ".join(flashes(driver))
    assert f"Thư #{pk} đã được gán cho {AIMO}" in ok and f"Địa chỉ {stranger} đã được thêm" in ok
    [receipt] = h.smtp.wait_for(1)
    assert receipt.rcpt_tos == [stranger]
    assert receipt.parsed()["Subject"].startswith("Re: Biểu đăng ký")
    assert all_css(driver, f"#item-quarantined-message-{pk}") == []

    driver.switch_to.window(second_tab)  # the stale page still shows the mail: submit it again
    form = item(driver, "quarantined", "message", pk).find_element("css selector", "form.assign")
    select(form.find_element("css selector", "select[name=unit_id]"), "th014")
    submit(form)
    assert any("đã được xử lý" in f for f in flashes(driver))
    driver.refresh()  # after the redirect a reload only reads the page again
    driver.switch_to.window(first_tab)
    driver.refresh()
    time.sleep(0.5)
    assert len(h.smtp.messages) == 1
    assert [r.state for r in receipts_for(live_desk, pk)] == ["sent"]
    # the action is in the history, with who did it; the unit's page shows the mail and the address
    assert "Gán thư" in by_css(driver, "#history").text and "hoa" in by_css(driver, "#history").text
    assert stranger in h.ctx.cfg.units_file.read_text(encoding="utf-8-sig")
    go(driver, live_desk, "/units/th014")
    assert by_css(driver, "#state-registration").get_attribute("data-state") == "on_time"
    assert by_css(driver, f"#mail-{pk}").is_displayed()
    assert stranger in page_text(driver)

    # the next mail from that address goes straight through
    deliver_form(h, stranger, when=local(2022, 2, 19), mid="<q2@mail.gmail.com>", unit_name=AIMO)
    assert h.poll().states == {"processed": 1}


def test_accept_a_scanned_report_changes_the_units_state_and_undo_puts_it_back(live_desk: LiveDesk,
                                                                               browser: Any) -> None:
    h, driver = live_desk.harness, browser
    deliver_scan(h, "cdcs.ubnd@longbien.gov.vn", when=local(2022, 3, 10), mid="<scan1@mail.gmail.com>")
    assert h.poll().states == {"processed": 1}
    h.smtp.wait_for(1)  # the receipt says the photo waits for staff
    h.smtp.clear()
    [doc] = [d for m in h.export()["messages"] for d in m["documents"]]
    assert doc["state"] == "needs_review"

    login(driver, live_desk.url)
    assert unit_state(driver, live_desk, "cq001", "report-q1") == "missing"
    assert "có văn bản chờ xem xét" in by_css(driver, "#state-report-q1").text

    go(driver, live_desk, "/review")
    card = item(driver, "needs_review", "document", doc["id"])
    assert "Báo cáo quý I năm 2022 (ảnh chụp).png" in card.text
    form = card.find_element("css selector", "form.accept")
    select(form.find_element("css selector", "select[name=kind]"), "report")
    select(form.find_element("css selector", "select[name=period]"), "2022-Q1")
    submit(form)
    assert any("đã được ghi nhận là Báo cáo kết quả thực hiện (quý I/2022), đúng hạn" in f for f in flashes(driver))
    [notice] = h.smtp.wait_for(1)
    assert notice.rcpt_tos == ["cdcs.ubnd@longbien.gov.vn"]

    assert unit_state(driver, live_desk, "cq001", "report-q1") == "on_time"
    go(driver, live_desk, "/")
    row = by_css(driver, "#ob-report-q1")
    assert row.find_element("css selector", "td.s-on_time").text == "1"
    go(driver, live_desk, "/units")
    assert by_css(driver, "#unit-cq001 td[data-obligation=report-q1]").text == "Đúng hạn"

    go(driver, live_desk, "/review")
    [undo] = [f for f in all_css(driver, "form.undo")]
    submit(undo)
    assert any("trở lại trạng thái chờ xem xét" in f for f in flashes(driver))
    assert "đã hoàn tác" in by_css(driver, "#history").text
    assert unit_state(driver, live_desk, "cq001", "report-q1") == "missing"
    go(driver, live_desk, "/review")
    assert item(driver, "needs_review", "document", doc["id"]).is_displayed()


def test_reject_release_and_ignore(live_desk: LiveDesk, browser: Any) -> None:
    h, driver = live_desk.harness, browser
    deliver_scan(h, "congdoan@maydg.com.vn", when=local(2022, 3, 11), mid="<scan2@mail.gmail.com>",
                 filename="Ảnh báo cáo.png")
    h.deliver(samplemail.spoofed("thaimo.longbien@gmail.com", DISTRICT, "Biểu đăng ký Ái Mộ", "Kính gửi",
                                 [("dk.xlsx", registration(AIMO), samplemail.XLSX_TYPE)],
                                 message_id="<spoof@x>"), local(2022, 2, 20))
    h.deliver(samplemail.gmail_message("quangcao@example.net", DISTRICT, "Khuyến mãi", "Mua ngay",
                                       message_id="<spam@x>"), local(2022, 2, 21))
    assert h.poll().states == {"processed": 1, "quarantined": 2}
    h.smtp.wait_for(1)
    h.smtp.clear()
    docs = [d for m in h.export()["messages"] for d in m["documents"]]
    [scan] = [d for d in docs if d["state"] == "needs_review"]
    spoof = next(m for m in h.export()["messages"] if m["message_id"] == "<spoof@x>")["id"]
    spam = next(m for m in h.export()["messages"] if m["message_id"] == "<spam@x>")["id"]

    login(driver, live_desk.url, "lan")
    go(driver, live_desk, "/review")
    kinds = [e.get_attribute("data-kind") for e in all_css(driver, "article.item")]
    assert kinds == ["spoof", "quarantined", "needs_review"]  # oldest first

    # reject: the reason goes back to the unit
    form = item(driver, "needs_review", "document", scan["id"]).find_element("css selector", "form.reject")
    form.find_element("css selector", "textarea[name=reason]").send_keys("Ảnh mờ, đề nghị gửi bản scan rõ hơn")
    submit(form)
    assert any("đã bị từ chối" in f for f in flashes(driver))
    [notice] = h.smtp.wait_for(1)
    assert notice.rcpt_tos == ["congdoan@maydg.com.vn"]
    assert "Ảnh mờ, đề nghị gửi bản scan rõ hơn" in notice.parsed().get_body(("plain",)).get_content()

    # release a suspected spoof: processed as the unit's mail, with its receipt
    card = item(driver, "spoof", "message", spoof)
    assert "giả mạo" in card.text
    submit(card.find_element("css selector", "form.release"))
    assert any("đã được cho qua" in f for f in flashes(driver)), flashes(driver)
    mails = h.smtp.wait_for(2)
    assert mails[1].rcpt_tos == ["thaimo.longbien@gmail.com"]

    # ignore: off the queue, no mail
    form = item(driver, "quarantined", "message", spam).find_element("css selector", "form.ignore")
    form.find_element("css selector", "input[name=reason]").send_keys("thư quảng cáo")
    submit(form)
    assert any("đã được bỏ qua" in f for f in flashes(driver))
    assert by_css(driver, "#queue-empty").is_displayed()
    history = by_css(driver, "#history").text
    assert "Bỏ qua thư" in history and "Từ chối tệp" in history and "lan" in history
    time.sleep(0.3)
    assert len(h.smtp.messages) == 2
    assert unit_state(driver, live_desk, "dn027", "report-q1") == "rejected"


# --------------------------------------------------------------------------- Đơn vị


BAD_UNITS = (
    "unit_id,name,group,emails\n"
    "cq001,Công đoàn cơ quan UBND quận,hcsn,cdcs.ubnd@longbien.gov.vn\n"
    "cq001,Công đoàn trùng mã,hcsn,khac@longbien.gov.vn\n"
    "th014,Công đoàn Trường Tiểu học Ái Mộ,truong_hoc,cdcs.ubnd@longbien.gov.vn\n"
    "dn027,Công đoàn May Đức Giang,doanh_nghiep,congdoan(at)maydg.com.vn\n"
)


def test_a_bad_unit_list_is_refused_with_reasons_and_a_good_one_replaces_it(live_desk: LiveDesk, browser: Any,
                                                                           tmp_path: Path) -> None:
    h, driver = live_desk.harness, browser
    units_file = h.ctx.cfg.units_file
    before = units_file.read_bytes()
    bad = tmp_path / "don-vi-moi.csv"
    bad.write_text(BAD_UNITS, encoding="utf-8")

    login(driver, live_desk.url)
    go(driver, live_desk, "/units")
    by_css(driver, "#units-file").send_keys(str(bad))
    submit(by_css(driver, "#units-upload"))
    problems = [li.text for li in all_css(driver, "#upload-problems li")]
    assert by_css(driver, "#upload-refused").is_displayed()
    assert any("dòng 3" in p and "trùng" in p for p in problems), problems
    assert any("dòng 4" in p and "cdcs.ubnd@longbien.gov.vn" in p and "đã thuộc đơn vị" in p for p in problems)
    assert any("dòng 5" in p and "không hợp lệ" in p for p in problems)
    assert units_file.read_bytes() == before
    assert len(all_css(driver, "#units tbody tr")) == 5

    good = tmp_path / "don-vi-dung.csv"
    good.write_text(before.decode("utf-8-sig") + "pb001,Công đoàn Phường Bồ Đề,hcsn,cdbode@gmail.com\n",
                    encoding="utf-8")
    by_css(driver, "#units-file").send_keys(str(good))
    submit(by_css(driver, "#units-upload"))
    assert any("Đã thay danh sách đơn vị (6 đơn vị): thêm 1" in f for f in flashes(driver))
    assert "Công đoàn Phường Bồ Đề" in by_css(driver, "#unit-pb001").text
    assert h.ctx.units.by_id("pb001") is not None
    # search ignores diacritics
    box = by_css(driver, "input[name=q]")
    box.send_keys("bo de")
    submit(box.find_element("xpath", "./ancestor::form"))
    assert [r.get_attribute("id") for r in all_css(driver, "#units tbody tr")] == ["unit-pb001"]


# --------------------------------------------------------------------------- refused requests


def test_requests_without_csrf_token_or_session_are_refused_and_sessions_expire(live_desk: LiveDesk,
                                                                                browser: Any) -> None:
    h, driver = live_desk.harness, browser
    login(driver, live_desk.url)
    go(driver, live_desk, "/reports")
    driver.execute_script("document.querySelector('#send-form input[name=csrf_token]').remove()")
    submit(by_css(driver, "#send-form"))
    assert "Yêu cầu bị từ chối" in by_css(driver, "h1").text
    assert "CSRF" in by_css(driver, "#error-detail").text
    time.sleep(0.3)
    assert h.smtp.messages == []

    go(driver, live_desk, "/reports")
    driver.delete_cookie("intake_desk")  # the page is still open, the session is gone
    submit(by_css(driver, "#send-form"))
    assert "Yêu cầu bị từ chối" in by_css(driver, "h1").text
    assert "Cần đăng nhập" in by_css(driver, "#error-detail").text
    assert h.smtp.messages == []

    login(driver, live_desk.url)
    go(driver, live_desk, "/units")
    live_desk.advance(timedelta(minutes=h.ctx.cfg.desk.session_minutes + 1))
    go(driver, live_desk, "/review")
    assert "/login" in driver.current_url
    assert "Phiên làm việc đã hết hạn" in by_css(driver, "#expired").text
    login(driver, live_desk.url)
    assert "/review" in driver.current_url  # back where the expired session left off


# --------------------------------------------------------------------------- the year in view


@pytest.fixture
def desk_in_2023(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The desk of a config in 2023 over a ledger with registrations of 2022 and 2023 (no mail server: the
    documents are recorded through the Store as a pass records them)."""
    from conftest import write_config
    from desk_helpers import desk_section, record_document, utc
    from pipeline.config import load_config
    from pipeline.context import Context
    from pipeline.desk import DeskServer, create_app

    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "unused")
    ctx = Context(load_config(write_config(tmp_path, imap_port=1, smtp_port=1,
                                           extra={"year": 2023, "desk": desk_section()})))
    for mid, unit_id, sender, when, year in (
            ("<a22@x>", "cq001", "cdcs.ubnd@longbien.gov.vn", local(2022, 2, 16), 2022),
            ("<b22@x>", "th014", "hieutruong.aimo@gmail.com", local(2022, 2, 18), 2022),
            ("<a23@x>", "cq001", "cdcs.ubnd@longbien.gov.vn", local(2023, 2, 10), 2023)):
        record_document(ctx, sender=sender, unit_id=unit_id, when=when, mid=mid, campaign=year, on_time=True)
    app = create_app(ctx, clock=lambda: utc(local(2023, 3, 10)), login_delay=0.05)
    server = DeskServer(app, "127.0.0.1", 0).start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.stop()


def test_the_year_switch_changes_the_figures_and_navigation_keeps_it(desk_in_2023: str, browser: Any,
                                                                      downloads: Path) -> None:
    from selenium.webdriver.common.by import By

    driver, base = browser, desk_in_2023
    driver.get(base + "/")
    login(driver, base, "hoa")

    def on_time(obligation_id: str = "registration") -> str:
        return by_css(driver, f"#ob-{obligation_id} td.s-on_time").text

    def switch_to(year: int) -> None:
        driver.execute_script("window.__intakeOldPage = true")
        by_css(driver, f"#year-switch a[data-year='{year}']").click()
        wait_until(lambda: driver.execute_script("return window.__intakeOldPage === undefined "
                                                 "&& document.readyState === 'complete'"), what=f"the {year} page")

    assert by_css(driver, "h1").text == "Tổng quan" and on_time() == "1"
    assert by_css(driver, "#year-switch b").text == "2023" and not all_css(driver, "#other-year")
    switch_to(2022)
    assert on_time() == "2" and "year=2022" in driver.current_url
    assert by_css(driver, "#other-year").text.startswith("Đang xem số liệu năm 2022 (năm hiện tại: 2023).")
    assert "năm 2022" in by_css(driver, "#campaign-title").text
    # moving around keeps 2022: the units list, then the reports page and its workbook
    driver.find_element(By.LINK_TEXT, "Đơn vị").click()
    wait_until(lambda: by_css(driver, "h1").text == "Đơn vị", what="the units page")
    assert "year=2022" in driver.current_url
    assert by_css(driver, "#unit-th014 td[data-obligation='registration']").text == "Đúng hạn"
    driver.find_element(By.LINK_TEXT, "Báo cáo").click()
    wait_until(lambda: by_css(driver, "h1").text == "Báo cáo", what="the reports page")
    submit(by_css(driver, "#workbook-form"), navigates=False)
    book = wait_for_file(downloads, ".xlsx")
    assert book.name == "bao-cao-tong-hop-2022-ngay-2023-03-10.xlsx"
    driver.find_element(By.LINK_TEXT, "Đơn vị").click()
    wait_until(lambda: by_css(driver, "h1").text == "Đơn vị", what="the units page")
    switch_to(2023)
    assert "year=" not in driver.current_url and not all_css(driver, "#other-year")
    # 10/03/2023, after 2023's deadline (22/02): nothing sent is overdue, and says so
    assert by_css(driver, "#unit-th014 td[data-obligation='registration']").text == "Quá hạn, chưa nộp"
