"""Fixtures and helpers for the desk's tests: a configured intake with desk accounts on the real
Dovecot + SMTP servers, the desk served by waitress on a free loopback port, and headless Chromium
driven by Selenium (Debian's /usr/bin/chromium and /usr/bin/chromedriver; nothing is downloaded).

Test modules import the fixtures they use by name from here.
"""
from __future__ import annotations

import re
import shutil
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import pytest
from werkzeug.security import generate_password_hash

from conftest import CHROMEDRIVER, CHROMIUM, DISTRICT, Harness, chromium_available, write_config
from intake_demo import samplemail
from pipeline.config import load_config
from intake_demo import samples
from pipeline.context import Context

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
XLSX = samplemail.XLSX_TYPE
ACCOUNTS = {"hoa": ("Nguyễn Thị Hoa", "mat-khau-hoa-2022"), "lan": ("Trần Thị Lan", "mat-khau-lan-2022")}
_HASHES: dict[str, str] = {}


def desk_section(**extra: Any) -> dict[str, Any]:
    accounts = []
    for user, (name, password) in ACCOUNTS.items():
        if user not in _HASHES:  # scrypt takes a moment: once per test session
            _HASHES[user] = generate_password_hash(password)
        accounts.append({"username": user, "name": name, "password_hash": _HASHES[user]})
    return {"accounts": accounts, **extra}


# --------------------------------------------------------------------------- mail


def png(width: int, height: int, rgb: tuple[int, int, int] = (235, 235, 225)) -> bytes:
    """A plain PNG, the size of a phone photo of a page (content does not matter to the reader)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def registration(unit_name: str, rows: list[tuple[str, str, str]] | None = None) -> bytes:
    return samples.registration_xlsx(unit_name, rows or [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])


def deliver_form(h: Harness, sender: str, *, when: datetime, mid: str, subject: str = "Gửi biểu đăng ký Dân vận khéo",
                 filename: str = "Biểu đăng ký.xlsx", data: bytes | None = None, unit_name: str = "Công đoàn cơ sở",
                 sender_name: str | None = None) -> None:
    h.deliver(samplemail.gmail_message(sender, DISTRICT, subject, "Kính gửi LĐLĐ quận Long Biên.",
                                       [(filename, data or registration(unit_name), XLSX)], message_id=mid,
                                       sender_name=sender_name), when)


def deliver_scan(h: Harness, sender: str, *, when: datetime, mid: str,
                 filename: str = "Báo cáo quý I năm 2022 (ảnh chụp).png") -> None:
    """A quarterly report sent as a photo of the signed paper: recorded as needs_review."""
    h.deliver(samplemail.gmail_message(sender, DISTRICT, "Báo cáo kết quả thực hiện quý I",
                                       "Kính gửi LĐLĐ quận, đơn vị gửi ảnh chụp báo cáo quý I.",
                                       [(filename, png(240, 320), "image/png")], message_id=mid), when)


def local(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=TZ)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def desk_harness(tmp_path: Path, dovecot: Any, smtp: Any, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", dovecot.password)
    path = write_config(tmp_path, imap_port=dovecot.port, smtp_port=smtp.port, extra={"desk": desk_section()})
    return Harness(cfg_path=path, ctx=Context(load_config(path)), dovecot=dovecot, smtp=smtp)


@dataclass
class LiveDesk:
    app: Any
    server: Any
    harness: Harness
    clock_shift: list[timedelta]

    @property
    def url(self) -> str:
        return self.server.url.rstrip("/")

    def advance(self, delta: timedelta) -> None:
        """Move the desk's clock (session expiry) without touching the harness's mail clock."""
        self.clock_shift[0] += delta


@pytest.fixture
def live_desk(desk_harness: Harness) -> Iterator[LiveDesk]:
    from pipeline.desk import DeskServer, create_app

    shift = [timedelta(0)]
    app = create_app(desk_harness.ctx, clock=lambda: desk_harness.now() + shift[0], login_delay=0.05)
    server = DeskServer(app, "127.0.0.1", 0).start()
    try:
        yield LiveDesk(app, server, desk_harness, shift)
    finally:
        server.stop()


def make_driver(download_dir: Path | None = None) -> Any:
    """Headless Chromium through Debian's chromedriver, with a fresh profile."""
    if not chromium_available():
        pytest.fail(f"the desk's browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); "
                    "run scripts/install-system-deps.sh as root", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="intake-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-features=Translate,MediaRouter,OptimizationHints", "--window-size=1280,1600",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    if download_dir is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                                  "download.prompt_for_download": False,
                                                  "safebrowsing.enabled": False})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver._intake_profile = profile  # type: ignore[attr-defined]
    if download_dir is not None:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def quit_driver(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "_intake_profile", ""), ignore_errors=True)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture
def browser(downloads: Path) -> Iterator[Any]:
    driver = make_driver(downloads)
    try:
        yield driver
    finally:
        quit_driver(driver)


# --------------------------------------------------------------------------- browser helpers


def by_css(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def all_css(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except WebDriverException:  # the browser between two documents: ask again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def page_text(driver: Any) -> str:
    return by_css(driver, "body").text


def login(driver: Any, base: str, user: str = "hoa", password: str | None = None) -> None:
    if "/login" not in driver.current_url:  # on the log-in page already: keep its ?next=
        driver.get(base + "/login")
    by_css(driver, "#username").clear()
    by_css(driver, "#username").send_keys(user)
    by_css(driver, "#password").send_keys(password if password is not None else ACCOUNTS[user][1])
    submit(by_css(driver, "#login-form"))


def submit(form: Any, *, navigates: bool = True, timeout: float = 30.0) -> None:
    """Click a form's submit button (like a person would) and wait until the next page has loaded
    (``navigates=False`` for a download, where the page stays). The old page is marked with a window
    property; a new document does not have it."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    driver = form.parent
    if navigates:
        driver.execute_script("window.__intakeOldPage = true")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    if not navigates:
        return

    def loaded() -> bool:
        try:
            return bool(driver.execute_script(
                "return window.__intakeOldPage === undefined && document.readyState === 'complete'"))
        except WebDriverException:  # between two documents
            return False

    wait_until(loaded, timeout, "the next page")


def flashes(driver: Any) -> list[str]:
    return [e.text for e in all_css(driver, ".flash")]


def wait_for_file(folder: Path, suffix: str, timeout: float = 20.0) -> Path:
    def done() -> Path | None:
        hits = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        return hits[0] if hits and not any(p.name.endswith(".crdownload") for p in folder.iterdir()) else None

    return wait_until(done, timeout, f"a downloaded {suffix} in {folder}")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- test-client helpers


def csrf_in(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def client_login(client: Any, user: str = "hoa", password: str | None = None) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"csrf_token": csrf_in(page.get_data(as_text=True)), "username": user,
                                       "password": password if password is not None else ACCOUNTS[user][1]})


def utc(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc)


@pytest.fixture
def offline_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose mail servers are never contacted (pages, log-in, CSRF)."""
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "unused")
    return write_config(tmp_path, imap_port=1, smtp_port=1, extra={"desk": desk_section(session_minutes=30)})


class Clock:
    """A clock a test can move."""

    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


_UIDS = iter(range(1, 1_000_000))


def ingest(ctx: Context, raw: bytes, when: datetime) -> int:
    """Archive, record and process one raw mail the way a pass does, without a mailbox (plain tests)."""
    from pipeline.mail.mime import header_message_id
    from pipeline.worker.mailpass import process_message

    now = datetime.now(timezone.utc)
    digest, _ = ctx.archive.put(raw)
    pk, _created = ctx.store.record_raw(message_id=header_message_id(raw), sha256=digest, gm_msgid=None,
                                        folder="INBOX", uidvalidity=1, uid=next(_UIDS), size=len(raw),
                                        received_at=when, now=now)
    process_message(ctx, pk, raw, when, now)
    return pk


def record_document(ctx: Context, *, sender: str, unit_id: str | None, when: datetime, mid: str,
                    campaign: int | None, mail_campaign: int | None = None, kind: str = "registration",
                    period: str | None = None, state: str = "accepted", on_time: bool | None = None,
                    filename: str = "Biểu đăng ký.xlsx", subject: str = "Gửi biểu đăng ký",
                    entries: tuple[Any, ...] = ()) -> tuple[int, int]:
    """Record a processed mail with one document of ``campaign`` straight through the Store (as a pass
    records its outcome), without reading a form: (message id, document id). ``mail_campaign`` is the
    campaign open when the mail arrived (default: the document's)."""
    import hashlib

    from pipeline.ledger.outcomes import DocumentOutcome, OutcomeRecord
    from pipeline.mail.mime import header_message_id
    from pipeline.model import DocumentReading

    data = f"{mid} {filename}".encode()  # the file's bytes do not matter: nothing reads it again
    raw = samplemail.gmail_message(sender, DISTRICT, subject, "Kính gửi LĐLĐ quận Long Biên.",
                                   [(filename, data, XLSX)], message_id=mid)
    now = datetime.now(timezone.utc)
    digest, _ = ctx.archive.put(raw)
    pk, _created = ctx.store.record_raw(message_id=header_message_id(raw), sha256=digest, gm_msgid=None,
                                        folder="INBOX", uidvalidity=1, uid=next(_UIDS), size=len(raw),
                                        received_at=when, now=now)
    reading = DocumentReading(kind=kind, period=period, state=state, entries=tuple(entries), format="xlsx",
                              campaign=campaign)
    outcome = DocumentOutcome(part="2", filename=filename, content_type=XLSX, sha256=hashlib.sha256(data).hexdigest(),
                              size=len(data), reading=reading, on_time=on_time)
    [[doc_id]] = ctx.store.record_outcomes([OutcomeRecord(
        pk=pk, state="processed", reason=None, sender=sender, from_name=None, subject=subject, unit_id=unit_id,
        outcomes=(outcome,), campaign=mail_campaign if mail_campaign is not None else campaign)], now)
    return pk, doc_id


# --------------------------------------------------------------------------- files staff open on the desk


def pixel_flood_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of a few kilobytes that decodes to ``width`` × ``height`` pixels (400 megapixels by
    default): the image a browser must not be asked to show."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def libreoffice_xlsx(csv_text: str, folder: Path) -> bytes:
    """An .xlsx saved by LibreOffice from CSV text (formulas such as ``=A2*B2`` are computed and their results
    stored, as office software does), with a profile of its own so that parallel runs do not collide."""
    import subprocess

    src = folder / "bang.csv"
    src.write_text(csv_text, encoding="utf-8")
    profile = folder / "lo-profile"
    done = subprocess.run(["soffice", f"-env:UserInstallation=file://{profile}", "--headless",
                           "--infilter=CSV:44,34,76", "--convert-to", "xlsx", "--outdir", str(folder), str(src)],
                          capture_output=True, timeout=180, check=False)
    out = folder / "bang.xlsx"
    assert out.exists(), f"LibreOffice did not convert the CSV: {done.stderr.decode(errors='replace')}"
    return out.read_bytes()


def hidden_fields(html: str, form_id: str) -> list[tuple[str, str]]:
    """The hidden inputs of one form of a page, (name, value) in order, unescaped: what the browser posts."""
    from html import unescape

    m = re.search(rf'<form[^>]*id="{re.escape(form_id)}"[^>]*>(.*?)</form>', html, re.S)
    assert m, f"no form #{form_id} in the page"
    return [(unescape(n), unescape(v)) for n, v in
            re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', m.group(1))]
