"""Every desk page on a phone (390 px) and on an office screen (1366 px): nothing wider than the window, so
no page scrolls sideways. Debian's Chromium through Selenium, against the live desk with real mail in it."""
from __future__ import annotations

from typing import Any

import pytest

from desk_helpers import browser, desk_harness, downloads, live_desk  # noqa: F401  (fixtures)
from desk_helpers import LiveDesk, all_css, by_css, deliver_form, deliver_scan, local, login, registration

UBND = "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên"
CODE_WORDS = ("processed", "quarantined", "needs_review", "intake run", "before-", "after-", "weekly-", "Sheet1!",
              "obligation")  # (the units file's column names are shown, explained, on the units page)


def _width(driver: Any, width: int) -> None:
    # The window as a phone or a desktop screen shows it; media queries see this width.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})


def _overflow(driver: Any) -> list[str]:
    """The elements that stick out of the window on the right (to name them when the page is too wide)."""
    return driver.execute_script("""
        const w = document.documentElement.clientWidth, out = [];
        for (const e of document.querySelectorAll('body *')) {
          const r = e.getBoundingClientRect();
          if (r.right > w + 1 && r.width > 0) out.push(e.tagName + (e.id ? '#' + e.id : '') +
            (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '') +
            ' ' + Math.round(r.right));
        }
        return out.slice(0, 8);""")


@pytest.mark.parametrize("width", [390, 1366])
def test_every_page_fits_the_window(live_desk: LiveDesk, browser: Any, width: int) -> None:
    h, driver = live_desk.harness, browser
    deliver_form(h, "cdcs.ubnd@longbien.gov.vn", when=local(2022, 2, 16), mid="<p1@mail.gmail.com>",
                 data=registration(UBND, [("Tổ công đoàn Văn phòng Quận ủy và Ủy ban nhân dân", "Một cửa thân thiện",
                                           "khac"), ("Phòng Tài nguyên và Môi trường", "Phân loại rác", "bvmt")]))
    deliver_scan(h, "cdcs.ubnd@longbien.gov.vn", when=local(2022, 4, 5), mid="<p2@mail.gmail.com>")
    h.poll()
    _width(driver, width)
    driver.get(live_desk.url + "/login")
    login(driver, live_desk.url, "hoa")
    assert by_css(driver, "h1").text == "Tổng quan"
    driver.get(live_desk.url + "/review")
    docs = [a.get_attribute("href") for a in all_css(driver, "a[href*='/documents/']")]
    assert docs, "the scan waits for review and links to its page"
    pages = ["/", "/review", "/units", "/units/cq001", "/reports", docs[0].removeprefix(live_desk.url)]
    for path in pages:
        driver.get(live_desk.url + path)
        assert by_css(driver, "h1").text
        assert driver.execute_script("return window.innerWidth") == width
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width, (path, scroll, _overflow(driver))
        # what people read is Vietnamese: no words of the code (states, stage codes, commands, cell references)
        text = by_css(driver, "body").text
        leaked = [w for w in CODE_WORDS if w in text]
        assert not leaked, (path, leaked)
    # an overdue report stands apart from one not yet due, and the bar says the worker is not running
    driver.get(live_desk.url + "/units")
    assert "Quá hạn, chưa nộp" in by_css(driver, "body").text
    assert by_css(driver, "#healthbar").get_attribute("data-level") in ("warn", "bad")
