"""One definition of each figure: the desk's pages, the staff mail and the workbook, made from one ledger on one
day, say the same numbers (registered, on time, late, rejected, waiting for staff, not sent) of the same units.

The ledger (real SQLite through the Store, documents recorded as a pass records them) holds every case that
used to make the figures disagree: a superseded registration, an accepted photo with no models, a late
registration, a rejected one, one waiting for staff, and reports on time, late, waiting and overdue."""
from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from desk_helpers import offline_cfg  # noqa: F401  (fixture)
from desk_helpers import Clock, client_login, local, record_document, utc
from pipeline.config import load_config
from pipeline.context import Context
from pipeline.desk import create_app
from pipeline.model import Entry
from pipeline.plan.deadlines import STANDING_LABELS_VI
from pipeline.plan.staffmail import render_staff_email
from pipeline.plan.staffreport import report_data

UBND, AIMO, MAYDG = "cdcs.ubnd@longbien.gov.vn", "hieutruong.aimo@gmail.com", "congdoan@maydg.com.vn"
PEER1, PEER2 = "doug@example.com", "sender@email.test"
TODAY = (2022, 3, 20)
OBLIGATIONS = ("registration", "commendation", "report-q1", "report-h1", "report-q3", "report-year")

# What every place must say on 20/03/2022, per obligation: on time (or sent where no deadline is set), late,
# rejected, not sent, waiting for staff, and what the units that sent nothing are.
EXPECTED = {
    "registration": ((2, 1, 1, 0, 1), "overdue"),
    "commendation": ((1, 0, 0, 4, 0), "missing"),
    "report-q1": ((1, 1, 0, 2, 1), "overdue"),
    "report-h1": ((0, 0, 0, 5, 0), "not_due"),
    "report-q3": ((0, 0, 0, 5, 0), "not_due"),
    "report-year": ((0, 0, 0, 5, 0), "not_due"),
}


def model(name: str, cat: str, section: str = "collective") -> Entry:
    return Entry(section=section, name="Tổ công đoàn", model=name, categories=(cat,))


@pytest.fixture
def office(offline_cfg: Path) -> Any:  # noqa: F811
    ctx = Context(load_config(offline_cfg))
    for mid, kw in {
        # cq001 registers on time twice: the second replaces the first (superseded), one model counts
        "<r1a@x>": dict(sender=UBND, unit_id="cq001", when=local(2022, 2, 16), on_time=True,
                        entries=(model("Một cửa thân thiện", "khac"), model("Phân loại rác", "bvmt"))),
        "<r1b@x>": dict(sender=UBND, unit_id="cq001", when=local(2022, 2, 20), on_time=True,
                        entries=(model("Một cửa thân thiện (bản sửa)", "khac"),)),
        # th014: a photo of the form, accepted by staff, no models typed in yet
        "<r2@x>": dict(sender=AIMO, unit_id="th014", when=local(2022, 2, 18), on_time=True,
                       filename="Ảnh biểu đăng ký.png"),
        # dn027 registers late; peer1 is rejected; peer2's waits for staff
        "<r3@x>": dict(sender=MAYDG, unit_id="dn027", when=local(2022, 2, 24), on_time=False,
                       entries=(model("Bữa cơm ca", "kinh_te"), model("Tổ may", "vhxh", "individual"))),
        "<r4@x>": dict(sender=PEER1, unit_id="peer1", when=local(2022, 2, 21), state="rejected"),
        "<r5@x>": dict(sender=PEER2, unit_id="peer2", when=local(2022, 2, 23), state="needs_review"),
        # the first quarter's report: on time, late, waiting for staff; peer1 and peer2 send nothing
        "<q1@x>": dict(sender=UBND, unit_id="cq001", when=local(2022, 3, 10), kind="report", period="2022-Q1",
                       on_time=True, filename="Báo cáo quý I.docx"),
        "<q2@x>": dict(sender=AIMO, unit_id="th014", when=local(2022, 3, 16), kind="report", period="2022-Q1",
                       on_time=False, filename="Báo cáo quý I.docx"),
        "<q3@x>": dict(sender=MAYDG, unit_id="dn027", when=local(2022, 3, 14), kind="report", period="2022-Q1",
                       state="needs_review", filename="Báo cáo quý I (ảnh).png"),
        # a commendation list, which has no deadline
        "<c1@x>": dict(sender=MAYDG, unit_id="dn027", when=local(2022, 3, 1), kind="commendation",
                       filename="Danh sách khen thưởng.xlsx",
                       entries=(Entry("individual", "Chị Lan", "Tổ may", ("vhxh",), result="Hoàn thành"),)),
    }.items():
        record_document(ctx, mid=mid, campaign=2022, **kw)
    app = create_app(ctx, clock=Clock(utc(local(*TODAY))), login_delay=0)
    app.testing = False
    client = app.test_client()
    assert client_login(client).status_code == 302
    app.ctx, app.client = ctx, client  # type: ignore[attr-defined]
    return app


def numbers(row_html: str) -> list[int]:
    return [int(n) for n in re.findall(r'class="n[^"]*">(\d+)<', row_html)]


def desk_figures(client: Any) -> dict[str, Any]:
    """What the overview, the units page and each unit's page say."""
    html = client.get("/").get_data(as_text=True)
    out: dict[str, Any] = {}
    for ob in OBLIGATIONS:
        row = re.search(rf'<tr id="ob-{ob}">(.*?)</tr>', html, re.S).group(1)
        not_sent = re.search(r'data-standing="(\w+)" class="n s-missing', row).group(1)
        details = re.search(rf'<details class="units-by-state" id="detail-{ob}">(.*?)</details>', html, re.S).group(1)
        groups = {s: set(re.findall(r'<li><a href="/units/(\w+)">', col))
                  for s, col in re.findall(r'<div class="col" data-state="(\w+)">(.*?)</div>', details, re.S)}
        out[ob] = (tuple(numbers(row)), not_sent, groups)
    target = re.search(r'<tr id="target-registration">(.*?)</tr>', html, re.S).group(1)
    m = re.search(r"(\d+)/(\d+) đơn vị", target)
    out["registered"] = (int(m.group(1)), int(m.group(2)))
    m = re.search(r"trong đó (\d+) đơn vị chưa có số liệu mô hình", target)
    out["without_entries"] = int(m.group(1)) if m else 0
    out["models"] = int(re.search(r"Tổng số mô hình đã đăng ký: <b>(\d+)</b>", html).group(1))

    units = client.get("/units").get_data(as_text=True)
    cells: dict[tuple[str, str], str] = {}
    for unit_id, row in re.findall(r'<tr id="unit-(\w+)">(.*?)</tr>', units, re.S):
        for ob, standing in re.findall(r'data-obligation="([\w-]+)">(?:<span class="cell-label">[^<]*</span>)?<span class="standing st-\w+" '
                                       r'data-standing="(\w+)"', row):
            cells[(unit_id, ob)] = standing
    out["units_page"] = cells
    pages = {}
    for unit_id in ("cq001", "th014", "dn027", "peer1", "peer2"):
        page = client.get(f"/units/{unit_id}").get_data(as_text=True)
        for ob, standing in re.findall(r'<tr id="state-([\w-]+)" data-state="\w+" data-standing="(\w+)">', page):
            pages[(unit_id, ob)] = standing
    out["unit_pages"] = pages
    return out


def by_obligation(cells: dict[tuple[str, str], str]) -> dict[str, dict[str, set[str]]]:
    out: dict[str, dict[str, set[str]]] = {}
    for (unit_id, ob), standing in cells.items():
        out.setdefault(ob, {}).setdefault(standing, set()).add(unit_id)
    return out


def test_desk_mail_and_workbook_say_the_same_numbers(office: Any) -> None:
    ctx, client = office.ctx, office.client
    desk = desk_figures(client)
    names = {u.unit_id: u.name for u in ctx.units.units}
    ids = {v: k for k, v in names.items()}

    # --- the desk, against what happened, and against itself
    assert desk["registered"] == (3, 5)  # cq001, th014 (a photo, no models yet), dn027 (late)
    assert desk["without_entries"] == 1
    assert desk["models"] == 3  # cq001's second form (1) and dn027's (2); the superseded one does not count
    for ob, (counts, not_sent) in EXPECTED.items():
        shown, standing, groups = desk[ob]
        assert (shown, standing) == (counts, not_sent), ob
        assert sum(shown) == 5, ob  # every unit in exactly one column
        # the lists under the table name exactly the units each count counts
        assert sum(len(v) for v in groups.values()) == 5, ob
        assert len(groups["on_time"] if "on_time" in groups else groups["submitted"]) == counts[0]
        assert len(groups.get("late", set())) == counts[1] and len(groups["rejected"]) == counts[2]
        assert len(groups[not_sent]) == counts[3] and len(groups["under_review"]) == counts[4]
        # the units page and each unit's page give every unit the standing the overview lists it under
        assert by_obligation(desk["units_page"])[ob] == {s: u for s, u in groups.items() if u}, ob
        assert by_obligation(desk["unit_pages"])[ob] == {s: u for s, u in groups.items() if u}, ob
    assert desk["registration"][2]["under_review"] == {"peer2"}
    assert desk["report-q1"][2]["overdue"] == {"peer1", "peer2"}

    # --- the staff mail of the same day
    data = report_data(ctx, datetime(*TODAY).date())
    _, html, text = render_staff_email(ctx.env, data, attachment_name="x.xlsx")
    m = re.search(r"CĐCS đã đăng ký mô hình: (\d+)/(\d+) \(60,0%; chỉ tiêu 100%\); trong đó (\d+) đơn vị chưa có "
                  r"số liệu mô hình", text)
    assert m and (int(m.group(1)), int(m.group(2))) == desk["registered"] and int(m.group(3)) == 1
    assert f"Tổng số mô hình: {desk['models']} " in text and "<strong>3/5</strong>" in html
    labels = [STANDING_LABELS_VI[s].lower() for s in ("on_time", "late", "rejected", "under_review")]
    for ob in ("registration", "report-q1", "report-h1"):
        title = next(o.title for o in ctx.obligations if o.id == ob)
        line = next(li for li in text.splitlines() if li.startswith(f"- {title} (hạn "))
        counts, not_sent = EXPECTED[ob]
        said = [int(re.search(rf"; {re.escape(label)} (\d+)", line).group(1)) for label in labels]
        not_sent_said = int(re.search(rf"; {re.escape(STANDING_LABELS_VI[not_sent].lower())} (\d+)$", line).group(1))
        assert said + [not_sent_said] == [*counts[:3], counts[4], counts[3]] == [
            desk[ob][0][0], desk[ob][0][1], desk[ob][0][2], desk[ob][0][4], desk[ob][0][3]], line
        assert f": {sum(counts)} đơn vị phải nộp;" in line
    overdue_block = text.split("Đơn vị chưa gửi, đã quá hạn:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    q1_title = next(o.title for o in ctx.obligations if o.id == "report-q1")
    assert {ids[li[2:].split(" (", 1)[0]] for li in overdue_block if q1_title in li} == desk["report-q1"][2]["overdue"]
    assert any(names["peer1"] in li and "Chưa đạt, chờ gửi lại" in li for li in overdue_block)
    assert not any(names["peer2"] in li and "Đăng ký" in li for li in overdue_block)  # it waits for staff

    # --- the workbook of the same day, from the desk
    r = client.get("/reports/workbook?date=2022-03-20")
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.data))
    targets = wb["Chỉ tiêu"]
    whole = next(r for r in range(1, targets.max_row + 1) if targets.cell(r, 1).value == "Toàn quận")
    assert (targets.cell(whole, 3).value, targets.cell(whole, 2).value) == desk["registered"]
    assert targets.cell(whole, 4).value == desk["models"]
    assert any("Trong đó 1 đơn vị đã đăng ký nhưng chưa có số liệu mô hình" in str(c.value or "")
               for row in targets.iter_rows() for c in row)
    q1 = next(r for r in range(1, targets.max_row + 1) if targets.cell(r, 1).value == q1_title)
    on_time, late, rejected, not_sent, review = desk["report-q1"][0]
    assert [targets.cell(q1, c).value for c in range(3, 9)] == [5, on_time, late, rejected, review, not_sent]

    grid = wb["Tiến độ"]
    columns = {ob.id: 4 + i for i, ob in enumerate(ctx.obligations)}
    assert [grid.cell(7, c).value for c in columns.values()] == [ob.title for ob in ctx.obligations]
    short = {"Đúng hạn": "on_time", "Nộp quá hạn": "late", "Đã nộp": "submitted", "Chưa đạt": "rejected",
             "Chờ xem xét": "under_review", "Quá hạn, chưa nộp": "overdue", "Chưa đến hạn": "not_due",
             "Chưa nộp": "missing"}
    cells = {}
    for row in range(9, 14):
        unit_id = ids[grid.cell(row, 2).value]
        for ob, col in columns.items():
            text_ = grid.cell(row, col).value
            cells[(unit_id, ob)] = next(s for label, s in sorted(short.items(), key=lambda kv: -len(kv[0]))
                                        if text_.startswith(label))
    assert cells == desk["units_page"]
    block = {grid.cell(r, 2).value: r for r in range(15, grid.max_row + 1) if grid.cell(r, 2).value}
    for ob, (counts, not_sent) in EXPECTED.items():
        col = columns[ob]
        said = {s: grid.cell(block[STANDING_LABELS_VI[s]], col).value for s in STANDING_LABELS_VI}
        first = said["on_time"] + said["submitted"]
        assert (first, said["late"], said["rejected"], said[not_sent], said["under_review"]) == desk[ob][0], ob
        assert grid.cell(block["Số đơn vị phải nộp"], col).value == sum(desk[ob][0]) == 5


def test_the_city_row_of_a_district_says_what_its_desk_says(office: Any, tmp_path: Path) -> None:
    """The city's workbook and page (pipeline/city) show the district's own figures: the desk's, of the same day."""
    import yaml

    from pipeline.city.config import load_city
    from pipeline.city.figures import city_figures
    from pipeline.city.page import render_page
    from pipeline.city.workbook import SHEET_NAME, build_city_workbook

    desk = desk_figures(office.client)
    city_yaml = tmp_path / "city.yaml"
    city_yaml.write_text(yaml.safe_dump({"name": "Liên đoàn Lao động thành phố Hà Nội",
                                         "districts": [str(office.ctx.cfg.path)]}, allow_unicode=True), encoding="utf-8")
    figures = city_figures(load_city(city_yaml), today=datetime(*TODAY).date())
    ws = load_workbook(io.BytesIO(build_city_workbook(figures)))[SHEET_NAME]
    assert ws.cell(9, 2).value == "Quận Long Biên"
    row = [ws.cell(9, c).value for c in range(3, 15)]
    on_time, late, rejected, not_sent, review = desk["registration"][0]
    assert row[:6] == [desk["registered"][1], desk["registered"][0], on_time, late, rejected + review, not_sent]
    on_time, late, rejected, not_sent, review = desk["report-q1"][0]
    assert row[9:12] == [on_time + late, late, not_sent]
    html = render_page(figures)
    cells = dict(re.findall(r'data-col="([\w-]+)">([^<]*)<', re.search(r'<tr id="district-1"[^>]*>(.*?)</tr>',
                                                                      html, re.S).group(1)))
    assert (cells["registered"], cells["units"]) == tuple(str(n) for n in desk["registered"])
    assert cells["report-q1-not_sent"] == f"{not_sent} (quá hạn)"
