"""Issue 13, points 1 and 3, in Debian's Chromium (Selenium) at an office screen's width and a phone's: from Cần
xử lý staff open a photo and a spreadsheet, type in the rows of a photo of a form, accept it, and the unit's
figures count them; nothing on those pages is wider than the screen. Mail goes through the real Dovecot and
the receipts through the real SMTP sink."""
from __future__ import annotations

from datetime import date
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import DISTRICT
from desk_helpers import browser, desk_harness, downloads, live_desk  # noqa: F401  (fixtures)
from desk_helpers import (XLSX, LiveDesk, all_css, by_css, flashes, local, login, png, registration, submit,
                          wait_until)
from intake_demo import samplemail

AIMO = "Công đoàn Trường Tiểu học Ái Mộ"
STRANGER = "nguoi.la.aimo@yahoo.com"
PHOTOS = {"dn027": ("congdoan@maydg.com.vn", "Ảnh biểu đăng ký May Đức Giang.png"),
          "cq001": ("cdcs.ubnd@longbien.gov.vn", "Ảnh chụp biểu đăng ký UBND.png")}
ROWS = {"dn027": [("Tổ may số 3", "Năng suất xanh", "bvmt"), ("Chị Lê Thị Hằng", "Tiết kiệm vải thừa", "kinh_te")],
        "cq001": [("Bộ phận Một cửa", "Một cửa thân thiện", "khac"), ("Phòng Tư pháp", "Tư vấn pháp luật", "anqp")]}


def viewport(driver: Any, width: int) -> None:
    """The page laid out for a screen ``width`` CSS pixels wide (a phone at 390)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})


def fits(driver: Any, width: int) -> None:
    """Nothing on the page is wider than the screen: no sideways scrolling (a wide table scrolls in its box)."""
    got = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    wide = driver.execute_script(
        "return Array.from(document.querySelectorAll('body *'))"
        ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)"
        ".slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + (e.textContent || '').slice(0, 40))")
    assert got[0] <= got[1] <= width, f"{driver.current_url} is {got[0]} px wide on a {width} px screen: {wide}"


def click_to(driver: Any, element: Any, css: str) -> None:
    """Follow a link like a person and wait for the element ``css`` of the next page."""
    driver.execute_script("window.__intakeOldPage = true")
    element.click()
    wait_until(lambda: driver.execute_script("return window.__intakeOldPage === undefined") and all_css(driver, css),
               what=f"{css} on the next page")


def test_open_a_photo_and_a_spreadsheet_from_the_queue_and_count_a_photo_of_a_form(live_desk: LiveDesk,
                                                                                  browser: Any) -> None:
    h, driver = live_desk.harness, browser
    h.deliver(samplemail.gmail_message(STRANGER, DISTRICT, "Biểu đăng ký TH Ái Mộ", "Kính gửi",
                                       [("Đăng ký TH Ái Mộ.xlsx", registration(AIMO, [("Tổ 1", "Mô hình A", "khac")]),
                                         XLSX)], message_id="<sheet@x>"), local(2022, 2, 23))
    for unit_id, (sender, filename) in PHOTOS.items():
        h.deliver(samplemail.gmail_message(sender, DISTRICT, "Ảnh biểu đăng ký", "Kính gửi, đơn vị gửi ảnh chụp biểu.",
                                           [(filename, png(900, 1200), "image/png")], message_id=f"<{unit_id}@x>"),
                  local(2022, 2, 20))
    assert h.poll().states == {"quarantined": 1, "processed": 2}
    login(driver, live_desk.url)

    for width, unit_id in ((1366, "dn027"), (390, "cq001")):
        viewport(driver, width)
        driver.get(live_desk.url + "/review")
        fits(driver, width)
        # the stranger's spreadsheet: its cells, escaped, with the original to download
        sheet = driver.find_element(By.LINK_TEXT, "Đăng ký TH Ái Mộ.xlsx")
        click_to(driver, sheet, "table.cells")
        assert by_css(driver, "#file-name").text == "Đăng ký TH Ái Mộ.xlsx"
        assert "Mô hình A" in by_css(driver, "#sheet-1").text
        assert by_css(driver, "#download").get_attribute("href").endswith("/content?download=1")
        fits(driver, width)

        # the photo of a unit's form: shown, then its two rows typed in and accepted
        driver.get(live_desk.url + "/review")
        sender, filename = PHOTOS[unit_id]
        card = next(c for c in all_css(driver, "article.item[data-kind=needs_review]") if filename in c.text)
        click_to(driver, card.find_element(By.CSS_SELECTOR, "a.open-doc"), "#preview-image")
        image = by_css(driver, "#preview-image")
        wait_until(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image),
                   what="the photo")
        assert driver.execute_script("return arguments[0].naturalWidth", image) == 900
        assert image.size["width"] <= width
        fits(driver, width)
        form = by_css(driver, "#accept-form")
        for i, (name, model, category) in enumerate(ROWS[unit_id], start=1):
            form.find_element(By.NAME, f"r{i}.name").send_keys(name)
            form.find_element(By.NAME, f"r{i}.model").send_keys(model)
            Select(form.find_element(By.NAME, f"r{i}.category")).select_by_value(category)
        submit(form)
        assert any("2 dòng nội dung cán bộ nhập đã được ghi nhận" in f for f in flashes(driver)), flashes(driver)
        assert by_css(driver, "#doc-state").get_attribute("data-state") == "accepted"
        assert [r.text.split("\n")[0] for r in all_css(driver, "#doc-entries tbody tr")] != []
        fits(driver, width)

        # the unit's figures count them
        driver.get(f"{live_desk.url}/units/{unit_id}")
        row = next(r for r in all_css(driver, "table.docs tr[id^=doc-]") if filename in r.text)
        assert row.get_attribute("data-state") == "accepted" and "2 dòng được ghi nhận" in row.text
        assert by_css(driver, "#state-registration").get_attribute("data-state") == "on_time"

    from pipeline.plan.staffreport import report_data

    data = report_data(h.ctx, date(2022, 2, 25))
    assert sorted((u.unit_id, e.model, e.categories) for u, e in data.registered) == sorted(
        (unit_id, model, (category,)) for unit_id, rows in ROWS.items() for _name, model, category in rows)
