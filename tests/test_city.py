"""The city federation's view (issue 14, item 4): three districts, each its own config and SQLite ledger with
documents recorded as a pass records them; the city's workbook and page say, per district, the figures of that
district's own report (its workbook's Chỉ tiêu sheet), and the city's total adds them up. A mistake in city.yaml
is a Vietnamese ConfigError naming the key. On PostgreSQL, two districts in one database (same URL, different
``district``) are two rows."""
from __future__ import annotations

import io
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from openpyxl import load_workbook

from conftest import fresh_district, write_config
from desk_helpers import local, record_document
from pipeline.city.config import load_city
from pipeline.city.figures import city_figures
from pipeline.city.page import create_city_app, csp, css, write_report
from pipeline.city.workbook import SHEET_NAME, build_city_workbook
from pipeline.config import load_config
from pipeline.context import Context
from pipeline.errors import ConfigError
from pipeline.model import Entry
from pipeline.plan.staffreport import report_data
from pipeline.plan.workbook import build_workbook

TODAY = date(2022, 3, 20)  # after the registration deadline (22/02) and the first quarter's (15/03)
CITY = "Liên đoàn Lao động thành phố Hà Nội"
UBND, AIMO, MAYDG = "cdcs.ubnd@longbien.gov.vn", "hieutruong.aimo@gmail.com", "congdoan@maydg.com.vn"
PEER1, PEER2 = "doug@example.com", "sender@email.test"
MODEL = (Entry(section="collective", name="Tổ công đoàn", model="Một cửa thân thiện", categories=("khac",)),)

# What each district's documents make of it on TODAY: units, registered, on time, late, rejected or waiting,
# not sent; the first quarter's report: sent, late, not sent.
EXPECTED = {
    "Quận Long Biên": ((5, 3, 2, 1, 2, 0), (2, 1, 2)),
    "Quận Hoàn Kiếm": ((5, 2, 1, 1, 0, 3), (1, 0, 4)),
    "Quận Ba Đình": ((5, 0, 0, 0, 0, 5), (0, 0, 5)),
}
TOTAL = ((15, 5, 3, 2, 2, 8), (3, 1, 11))


def district(folder: Path, organisation: str, database: tuple[str, str] | None = None) -> Path:
    folder.mkdir(parents=True)
    path = write_config(folder, imap_port=1, smtp_port=1, database=database)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["organisation"] = organisation
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def fill(name: str, ctx: Context) -> None:
    """Record the documents that make EXPECTED[name]."""
    docs: dict[str, dict[str, Any]] = {}
    if name == "Quận Long Biên":
        docs = {
            "<lb1@x>": dict(sender=UBND, unit_id="cq001", when=local(2022, 2, 16), on_time=True, entries=MODEL),
            "<lb2@x>": dict(sender=AIMO, unit_id="th014", when=local(2022, 2, 18), on_time=True,
                            filename="Ảnh biểu đăng ký.png"),
            "<lb3@x>": dict(sender=MAYDG, unit_id="dn027", when=local(2022, 2, 24), on_time=False, entries=MODEL),
            "<lb4@x>": dict(sender=PEER1, unit_id="peer1", when=local(2022, 2, 21), state="rejected"),
            "<lb5@x>": dict(sender=PEER2, unit_id="peer2", when=local(2022, 2, 23), state="needs_review"),
            "<lbq1@x>": dict(sender=UBND, unit_id="cq001", when=local(2022, 3, 10), kind="report", period="2022-Q1",
                             on_time=True, filename="Báo cáo quý I.docx"),
            "<lbq2@x>": dict(sender=AIMO, unit_id="th014", when=local(2022, 3, 16), kind="report", period="2022-Q1",
                             on_time=False, filename="Báo cáo quý I.docx"),
            "<lbq3@x>": dict(sender=MAYDG, unit_id="dn027", when=local(2022, 3, 14), kind="report", period="2022-Q1",
                             state="needs_review", filename="Báo cáo quý I (ảnh).png"),
        }
    elif name == "Quận Hoàn Kiếm":
        docs = {
            "<hk1@x>": dict(sender=UBND, unit_id="cq001", when=local(2022, 2, 20), on_time=True, entries=MODEL),
            "<hk2@x>": dict(sender=AIMO, unit_id="th014", when=local(2022, 3, 2), on_time=False, entries=MODEL),
            "<hkq1@x>": dict(sender=UBND, unit_id="cq001", when=local(2022, 3, 12), kind="report", period="2022-Q1",
                             on_time=True, filename="Báo cáo quý I.docx"),
        }
    for mid, kw in docs.items():
        record_document(ctx, mid=mid, campaign=2022, **kw)


def write_city(folder: Path, districts: list[Path], **extra: Any) -> Path:
    path = folder / "city.yaml"
    body = {"name": CITY, "districts": [str(p.relative_to(folder)) for p in districts], **extra}
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def city_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "unused")
    paths = []
    for slug, name in (("long-bien", "Quận Long Biên"), ("hoan-kiem", "Quận Hoàn Kiếm"), ("ba-dinh", "Quận Ba Đình")):
        path = district(tmp_path / "quan" / slug, f"Liên đoàn Lao động {name[0].lower()}{name[1:]}")
        ctx = Context(load_config(path))
        fill(name, ctx)
        ctx.store.engine.dispose()
        paths.append(path)
    return write_city(tmp_path, paths)


def sheet_rows(data: bytes) -> tuple[Any, dict[str, list[Any]]]:
    """The city sheet, and its rows by the district column's text."""
    ws = load_workbook(io.BytesIO(data))[SHEET_NAME]
    rows = {ws.cell(r, 2).value: [ws.cell(r, c).value for c in range(3, ws.max_column + 1)]
            for r in range(9, ws.max_row + 1) if ws.cell(r, 2).value}
    return ws, rows


def own_report(cfg_path: Path) -> tuple[list[Any], list[Any]]:
    """What the district's own workbook (Chỉ tiêu) says: [units, registered], and the first quarter's row
    [owed, on time, late, rejected, waiting, not sent]."""
    ctx = Context(load_config(cfg_path))
    ws = load_workbook(io.BytesIO(build_workbook(report_data(ctx, TODAY))))["Chỉ tiêu"]
    ctx.store.engine.dispose()
    whole = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == "Toàn quận")
    q1 = next(r for r in range(1, ws.max_row + 1) if str(ws.cell(r, 1).value or "").startswith("Báo cáo kết quả "
                                                                                               "thực hiện quý I"))
    return ([ws.cell(whole, c).value for c in (2, 3)], [ws.cell(q1, c).value for c in range(3, 9)])


def test_city_workbook_has_each_districts_own_figures_and_the_total(city_yaml: Path) -> None:
    city = load_city(city_yaml)
    figures = city_figures(city, today=TODAY)
    assert [c.obligation_id for c in figures.reports] == ["report-q1"]  # due by 20/03; H1 is not yet
    ws, rows = sheet_rows(build_city_workbook(figures))
    assert ws.cell(1, 1).value == f"ĐƠN VỊ: {CITY.upper()}"
    assert ws.cell(8, 3).value == "Số CĐCS phải đăng ký" and ws.cell(8, 12).value == "Đã nộp"
    assert ws.cell(7, 12).value == "Báo cáo kết quả thực hiện quý I năm 2022 (hạn 15/03/2022)"
    assert ws.freeze_panes == "C9" and int(ws.page_setup.paperSize) == 9  # A4
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth == 1
    assert ws.cell(9, 2).font.name == "Times New Roman"
    assert list(rows)[:4] == [*EXPECTED, "Toàn thành phố"]
    for name, (registration, q1) in [*EXPECTED.items(), ("Toàn thành phố", TOTAL)]:
        row = rows[name]
        assert row[:6] == list(registration), name
        assert row[6] == pytest.approx(registration[1] / registration[0]) and row[7] == 1.0, name
        assert row[8] == "Chưa đạt", name
        assert row[9:12] == list(q1), name
    # overdue figures say so, and stay numbers
    hk = 9 + list(rows).index("Quận Hoàn Kiếm")
    assert ws.cell(hk, 8).value == 3 and ws.cell(hk, 8).number_format == '0" (quá hạn)"'

    # each row is the district's own report: its workbook's Chỉ tiêu sheet of the same day
    for cfg, name in zip(city.districts, EXPECTED):
        (units, registered), (owed, on_time, late, rejected, waiting, not_sent) = own_report(cfg.path)
        row = rows[name]
        assert [row[0], row[1]] == [units, registered]
        assert [row[9], row[10], row[11]] == [on_time + late, late, not_sent]
        assert owed == on_time + late + rejected + waiting + not_sent == 5


def numbers(html: str, row_id: str) -> dict[str, str]:
    row = re.search(rf'<tr id="{row_id}"[^>]*>(.*?)</tr>', html, re.S).group(1)
    return dict(re.findall(r'data-col="([\w-]+)">([^<]*)<', row))


def test_city_page_served_on_loopback_shows_each_district(city_yaml: Path) -> None:
    from desk_helpers import Clock, utc

    app = create_city_app(load_city(city_yaml), clock=Clock(utc(local(2022, 3, 20, 10))))
    client = app.test_client()
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert f"<h1>{CITY}</h1>" in html and "Tính đến ngày 20/03/2022" in html
    assert "Báo cáo kết quả thực hiện quý I năm 2022 (hạn 15/03/2022)" in html
    for i, (name, (registration, q1)) in enumerate(EXPECTED.items(), start=1):
        assert f'<tr id="district-{i}" data-district="{name}">' in html
        cells = numbers(html, f"district-{i}")
        said = [cells[k] for k in ("units", "registered", "on_time", "late", "pending")]
        assert said == [str(n) for n in registration[:5]], name
        assert cells["not_sent"] == (f"{registration[5]} (quá hạn)" if registration[5] else "0"), name
        assert cells["share"] == f"{registration[1] / registration[0] * 100:.1f}".replace(".", ",") + "%"
        assert cells["target"] == "100%" and cells["verdict"] == "Chưa đạt"
        assert [cells["report-q1-sent"], cells["report-q1-late"]] == [str(q1[0]), str(q1[1])]
        assert cells["report-q1-not_sent"] == f"{q1[2]} (quá hạn)"
    total = numbers(html, "city-total")
    assert [total[k] for k in ("units", "registered", "on_time", "late", "pending", "not_sent")] == \
        [str(n) for n in TOTAL[0]]
    assert [total[f"report-q1-{k}"] for k in ("sent", "late", "not_sent")] == [str(n) for n in TOTAL[1]]
    assert total["share"] == "33,3%"

    # read-only, this machine only, the desk's headers; the style is allowed by its hash, no script at all
    assert r.headers["Content-Security-Policy"] == csp() and "script" not in html
    assert f"<style>{css()}</style>" in html
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"
    assert client.post("/").status_code == 405
    assert client.get("/", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 403
    book = client.get("/bang-tinh.xlsx")
    assert book.status_code == 200 and "tong-hop-thanh-pho-2022-03-20.xlsx" in book.headers["Content-Disposition"]
    _, rows = sheet_rows(book.data)
    assert rows["Toàn thành phố"][:6] == list(TOTAL[0])


def test_city_report_command_writes_workbook_and_page(city_yaml: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    out = tmp_path / "bao-cao-thanh-pho"
    old = os.umask(0o022)
    try:
        assert main(["city", "report", "--config", str(city_yaml), "--today", "2022-03-20", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    said = capsys.readouterr().out
    assert "toàn thành phố 5/15 đơn vị đã đăng ký (33,3%)" in said
    book, page = out / "tong-hop-thanh-pho-2022-03-20.xlsx", out / "tong-hop-thanh-pho-2022-03-20.html"
    _, rows = sheet_rows(book.read_bytes())
    assert rows["Quận Hoàn Kiếm"][:6] == list(EXPECTED["Quận Hoàn Kiếm"][0])
    html = page.read_text(encoding="utf-8")
    assert 'href="tong-hop-thanh-pho-2022-03-20.xlsx"' in html  # the workbook beside it
    assert numbers(html, "district-2")["registered"] == "2"
    assert (book.stat().st_mode & 0o777, page.stat().st_mode & 0o777) == (0o600, 0o600)  # the service's user only


def test_a_district_whose_ledger_cannot_be_read_is_a_row_saying_so(city_yaml: Path, tmp_path: Path) -> None:
    broken = tmp_path / "quan" / "ba-dinh" / "db" / "intake.sqlite3"
    broken.write_bytes(b"not a database at all" * 100)
    written = write_report(load_city(city_yaml), today=TODAY, out_dir=tmp_path / "out")
    _, rows = sheet_rows(written.workbook.read_bytes())
    assert str(rows["Quận Ba Đình"][0]).startswith("Chưa có số liệu: không đọc được sổ ghi của quận")
    assert rows["Toàn thành phố"][:6] == [10, 5, 3, 2, 2, 3]  # the two others
    assert "Chưa có số liệu của: Quận Ba Đình" in written.page.read_text(encoding="utf-8")


def test_bad_city_file_names_the_key_in_vietnamese(city_yaml: Path, tmp_path: Path) -> None:
    good = yaml.safe_load(city_yaml.read_text(encoding="utf-8"))

    def problem(**change: Any) -> str:
        body = {**good, **change}
        for key in [k for k, v in change.items() if v is None]:
            body.pop(key)
        city_yaml.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
        with pytest.raises(ConfigError) as exc:
            load_city(city_yaml)
        return str(exc.value)

    assert problem(name=None) == f"{city_yaml}: name: thiếu giá trị / missing"
    said = problem(districts=[good["districts"][0], "quan/khong-co/config.yaml"])
    assert said.startswith(f"{city_yaml}: districts[1]: không tìm thấy tệp cấu hình ") and "khong-co" in said
    assert problem(districts=[good["districts"][0], good["districts"][0]]).startswith(
        f"{city_yaml}: districts[1]: tệp ")
    assert problem(districts=[]).startswith(f"{city_yaml}: districts: phải liệt kê ít nhất một tệp")
    assert "serve.host: trang tổng hợp của thành phố chỉ mở trên máy này" in problem(serve={"host": "0.0.0.0"})
    assert problem(year=1990).startswith(f"{city_yaml}: year: phải trong khoảng 2000..2100")
    assert problem(nam=2022).startswith(f"{city_yaml}: nam: khoá không được hỗ trợ")
    # a mistake inside a district's own file names that file
    broken = tmp_path / "quan" / "ba-dinh" / "config.yaml"
    body = yaml.safe_load(broken.read_text(encoding="utf-8"))
    broken.write_text(yaml.safe_dump({**body, "year": "hai nghìn"}, allow_unicode=True), encoding="utf-8")
    city_yaml.write_text(yaml.safe_dump(good, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_city(city_yaml)
    assert str(exc.value).startswith(f"{broken}: year: phải là số nguyên")


def test_two_districts_in_one_postgresql_database(tmp_path: Path, pg_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "unused")
    paths = []
    for slug, name in (("long-bien", "Quận Long Biên"), ("hoan-kiem", "Quận Hoàn Kiếm")):
        path = district(tmp_path / slug, f"Liên đoàn Lao động {name[0].lower()}{name[1:]}",
                        database=(pg_url, fresh_district()))
        ctx = Context(load_config(path))
        fill(name, ctx)
        ctx.store.engine.dispose()
        paths.append(path)
    city = write_city(tmp_path, paths)
    _, rows = sheet_rows(build_city_workbook(city_figures(load_city(city), today=TODAY)))
    for name in ("Quận Long Biên", "Quận Hoàn Kiếm"):
        assert rows[name][:6] == list(EXPECTED[name][0]) and rows[name][9:12] == list(EXPECTED[name][1]), name
    assert rows["Toàn thành phố"][:6] == [10, 5, 3, 2, 2, 3]
    # the same database and the same district twice would count one ledger twice
    twin = district(tmp_path / "twin", "Liên đoàn Lao động quận Long Biên",
                    database=(pg_url, load_config(paths[0]).district))
    with pytest.raises(ConfigError, match=r"districts\[2\]: .* dùng chung sổ ghi với districts\[0\]"):
        load_city(write_city(tmp_path, [*paths, twin]))
