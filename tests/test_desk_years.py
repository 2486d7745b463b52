"""The desk over several campaigns (Flask's test client): config.yaml's year by default, another on request,
one review queue across years, accepting a document as its own campaign's form."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from desk_helpers import Clock, client_login, csrf_in, hidden_fields, local
from pipeline.config import load_config
from pipeline.context import Context
from pipeline.desk import create_app
from pipeline.forms.blank import read_marker


def _campaign_2023(rules: Path) -> None:
    """A 2023 plan of its own, as data: another title, and no commendation form (nor its obligation)."""
    import yaml

    plan = yaml.safe_load((rules / "campaigns" / "2022.yaml").read_text(encoding="utf-8"))
    plan.update(year=2023, title="Kế hoạch “Dân vận khéo” năm {year}",
                forms=[f for f in plan["forms"] if f != "commendation"],
                obligations=[o for o in plan["obligations"] if "commendation" not in o["kinds"]])
    (rules / "campaigns" / "2023.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def two_years(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The desk in 2023 (config.yaml's year) over a ledger holding documents of 2022 and 2023."""
    import shutil

    from conftest import write_config
    from desk_helpers import desk_section, record_document, utc
    from pipeline.model import Entry

    monkeypatch.setenv("INTAKE_TEST_IMAP_PW", "unused")
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[1] / "rules", rules)
    _campaign_2023(rules)
    path = write_config(tmp_path, imap_port=1, smtp_port=1,
                        extra={"year": 2023, "rules": str(rules), "desk": desk_section(session_minutes=30)})
    ctx = Context(load_config(path))
    ubnd, aimo = "cdcs.ubnd@longbien.gov.vn", "hieutruong.aimo@gmail.com"

    def model(name: str, cat: str) -> Entry:
        return Entry(section="collective", name="Tổ công đoàn Văn phòng", model=name, categories=(cat,))

    docs = {}  # message-id → document id
    for mid, kw in {
        "<r22a@x>": dict(sender=ubnd, unit_id="cq001", when=local(2022, 2, 16), campaign=2022, on_time=True,
                         entries=(model("Một cửa thân thiện 2022", "khac"), model("Phân loại rác 2022", "bvmt"))),
        "<r22b@x>": dict(sender=aimo, unit_id="th014", when=local(2022, 2, 18), campaign=2022, on_time=True,
                         entries=(model("Sân trường xanh 2022", "bvmt"),)),
        # 2022's annual report, sent late in January 2023 (before the 2023 plan opened): it counts for 2022
        "<y22@x>": dict(sender=ubnd, unit_id="cq001", when=local(2023, 1, 5), campaign=2022, kind="report",
                        period="2022-Y", on_time=False, filename="Báo cáo năm 2022.docx",
                        subject="Báo cáo tổng kết năm 2022"),
        "<r23@x>": dict(sender=ubnd, unit_id="cq001", when=local(2023, 2, 10), campaign=2023, on_time=True,
                        entries=(model("Mô hình mới 2023", "kinh_te"),)),
        # two photos of signed papers for staff to look at, one of each year
        "<s22@x>": dict(sender=aimo, unit_id="th014", when=local(2023, 1, 10), campaign=2022, kind="unknown",
                        state="needs_review", filename="Ảnh báo cáo 2022.png", subject="Báo cáo năm 2022 (ảnh)"),
        "<s23@x>": dict(sender=ubnd, unit_id="cq001", when=local(2023, 3, 1), campaign=2023, kind="unknown",
                        state="needs_review", filename="Ảnh 2023.png", subject="Ảnh chụp biểu"),
    }.items():
        docs[mid] = record_document(ctx, mid=mid, **kw)[1]
    clock = Clock(utc(local(2023, 3, 10)))
    app = create_app(ctx, clock=clock, login_delay=0)
    app.testing = False
    app.ctx, app.docs = ctx, docs  # type: ignore[attr-defined]
    app.scans = {2022: docs["<s22@x>"], 2023: docs["<s23@x>"]}  # type: ignore[attr-defined]
    c = app.test_client()
    assert client_login(c).status_code == 302
    app.client = c  # type: ignore[attr-defined]
    return app


def _counts(html: str, obligation_id: str) -> list[int]:
    row = re.search(rf'<tr id="ob-{obligation_id}">(.*?)</tr>', html, re.S).group(1)
    return [int(n) for n in re.findall(r'class="n[^"]*">(\d+)<', row)]


def _switch(html: str) -> dict[int, str | None]:
    """The year switch: year → its link (None for the year shown)."""
    box = re.search(r'<div class="years" id="year-switch">(.*?)</div>', html, re.S).group(1)
    out: dict[int, str | None] = {int(y): None for y in re.findall(r'<b aria-current="page" data-year="(\d+)">', box)}
    out.update({int(y): href.replace("&amp;", "&") for href, y in re.findall(r'<a href="([^"]*)" data-year="(\d+)">', box)})
    return out


def test_the_overview_shows_the_configured_year_and_another_on_request(two_years: Any) -> None:
    client = two_years.client
    now = client.get("/").get_data(as_text=True)
    assert "Kế hoạch “Dân vận khéo” năm 2023" in now and "Đang xem số liệu năm" not in now
    assert _switch(now) == {2022: "/?year=2022", 2023: None}
    assert _counts(now, "registration") == [1, 0, 0, 4, 0]  # 2022's registrations do not count for 2023
    assert "1/5 đơn vị" in now and 'id="ob-commendation"' not in now  # 2023's plan has no commendation
    assert "Tổng số mô hình đã đăng ký: <b>1</b>" in now
    assert "<title>Kinh tế: 1</title>" in now and "<title>BVMT: 0</title>" in now
    assert "Đăng ký mô hình “Dân vận khéo” năm 2023 (1 văn bản)" in now and "năm 2022 (" not in now
    assert 'href="/units/cq001"' in now and 'href="/review"' in now

    then = client.get("/?year=2022").get_data(as_text=True)
    assert "Kế hoạch thực hiện chủ đề công tác năm 2022" in then
    assert "Đang xem số liệu năm 2022 (năm hiện tại: 2023)" in then
    assert _switch(then) == {2022: None, 2023: "/"}
    assert _counts(then, "registration") == [2, 0, 0, 3, 0]
    assert _counts(then, "report-year")[:2] == [0, 1]  # the late annual report
    assert "2/5 đơn vị" in then and 'id="ob-commendation"' in then
    assert "Tổng số mô hình đã đăng ký: <b>3</b>" in then
    assert "<title>BVMT: 2</title>" in then and "<title>Kinh tế: 0</title>" in then
    assert "Đăng ký mô hình “Dân vận khéo” năm 2022 (2 văn bản)" in then
    assert "Báo cáo kết quả thực hiện năm 2022 (1 văn bản)" in then
    # every link to a page with figures keeps the year; the configured year explicitly is the default page
    for href in ('href="/?year=2022"', 'href="/units?year=2022"', 'href="/reports?year=2022"',
                 'href="/review?year=2022"', 'href="/units/cq001?year=2022"', 'href="/units/th014?year=2022"'):
        assert href in then, href
    assert 'href="/units/cq001"' not in then
    assert client.get("/?year=2023").get_data(as_text=True).count("Đang xem số liệu năm") == 0


def test_units_and_a_units_page_follow_the_year_and_mark_other_years(two_years: Any) -> None:
    client = two_years.client

    def cell(html: str, unit_id: str, obligation_id: str) -> str:
        row = re.search(rf'<tr id="unit-{unit_id}">(.*?)</tr>', html, re.S).group(1)
        return re.search(rf'<td class="([^"]*)" data-obligation="{obligation_id}">', row).group(1)

    now = client.get("/units").get_data(as_text=True)
    then = client.get("/units?year=2022").get_data(as_text=True)
    assert cell(now, "th014", "registration") == "s-missing" and cell(then, "th014", "registration") == "s-on_time"
    assert cell(now, "cq001", "registration") == "s-on_time" and cell(then, "cq001", "report-year") == "s-late"
    assert 'data-obligation="commendation"' in then and 'data-obligation="commendation"' not in now
    # the search keeps the year: a hidden field in its form, and the switch keeps the search
    searched = client.get("/units?q=ai&year=2022").get_data(as_text=True)
    assert '<input type="hidden" name="year" value="2022">' in searched
    assert _switch(searched) == {2022: None, 2023: "/units?q=ai"}
    assert '<input type="hidden" name="year"' not in now

    def state(html: str, obligation_id: str) -> str:
        return re.search(rf'<tr id="state-{obligation_id}" data-state="([^"]+)"', html).group(1)

    def doc_tag(html: str, doc_id: int) -> str | None:
        row = re.search(rf'<tr id="doc-{doc_id}"(.*?)</tr>', html, re.S).group(1)
        m = re.search(r'data-campaign="(\d+)">tính cho năm \1<', row)
        return m.group(1) if m else None

    docs = two_years.docs
    now = client.get("/units/cq001").get_data(as_text=True)
    then = client.get("/units/cq001?year=2022").get_data(as_text=True)
    assert (state(now, "registration"), state(now, "report-year")) == ("on_time", "missing")
    assert (state(then, "registration"), state(then, "report-year")) == ("on_time", "late")
    assert "Tình trạng nộp năm 2023" in now and "Tình trạng nộp năm 2022" in then
    # the whole mail history on both, each document marked with its year when it is not the one in view
    for html in (now, then):
        assert all(f'id="doc-{docs[m]}"' in html for m in ("<r22a@x>", "<y22@x>", "<r23@x>", "<s23@x>"))
        assert f'id="doc-{docs["<r22b@x>"]}"' not in html  # th014's
    assert doc_tag(now, docs["<y22@x>"]) == "2022" and doc_tag(now, docs["<r22a@x>"]) == "2022"
    assert doc_tag(then, docs["<y22@x>"]) is None and doc_tag(then, docs["<r22a@x>"]) is None
    assert doc_tag(now, docs["<r23@x>"]) is None and doc_tag(then, docs["<r23@x>"]) == "2023"
    assert _switch(then) == {2022: None, 2023: "/units/cq001"}
    assert 'href="/units?year=2022"' in then  # back to the list, same year
    assert 'href="/forms/commendation.xlsx?unit=cq001&amp;year=2022"' in then
    assert "commendation.xlsx" not in now  # not a form of 2023's plan


def test_reports_workbook_and_blank_forms_per_year(two_years: Any) -> None:
    client = two_years.client

    def models(data: bytes) -> set[str]:
        ws = load_workbook(io.BytesIO(data))["Tổng hợp"]
        return {str(v) for row in ws.iter_rows(values_only=True) for v in row if v and "20" in str(v)
                and str(v).startswith(("Một cửa", "Phân loại", "Sân trường", "Mô hình mới"))}

    r = client.get("/reports/workbook?date=2023-03-10")
    assert r.status_code == 200 and "bao-cao-tong-hop-2023-03-10.xlsx" in r.headers["Content-Disposition"]
    assert models(r.data) == {"Mô hình mới 2023"}
    r = client.get("/reports/workbook?date=2023-03-10&year=2022")
    assert r.status_code == 200 and "bao-cao-tong-hop-2022-ngay-2023-03-10.xlsx" in r.headers["Content-Disposition"]
    assert models(r.data) == {"Một cửa thân thiện 2022", "Phân loại rác 2022", "Sân trường xanh 2022"}
    r = client.get("/reports/workbook?date=2022-12-31&year=2022")
    assert "bao-cao-tong-hop-2022-12-31.xlsx" in r.headers["Content-Disposition"]

    page = client.get("/reports?year=2022").get_data(as_text=True)
    assert "Bảng tổng hợp năm 2022" in page and "Biểu mẫu trống năm 2022" in page
    form = re.search(r'<form method="get" action="/reports/workbook\?year=2022"[^>]*id="workbook-form">(.*?)</form>',
                     page, re.S).group(1)
    assert '<input type="hidden" name="year" value="2022">' in form  # a GET form drops its action's query
    assert 'href="/forms/commendation.xlsx?year=2022"' in page
    assert read_marker(client.get("/forms/registration.xlsx?year=2022").data)["year"] == "2022"
    assert read_marker(client.get("/forms/registration.xlsx").data)["year"] == "2023"
    assert client.get("/forms/commendation.xlsx?year=2022").status_code == 200
    r = client.get("/forms/commendation.xlsx")
    assert r.status_code == 404 and "Kế hoạch năm 2023 không có biểu mẫu này." in r.get_data(as_text=True)


@pytest.mark.parametrize("path, status, words", [
    ("/?year=1999", 404, "Không có số liệu năm 1999; có thể xem các năm: 2022, 2023."),
    ("/units?year=2024", 404, "Không có số liệu năm 2024"),
    ("/units/cq001?year=2021", 404, "Không có số liệu năm 2021"),
    ("/reports/workbook?date=2023-03-10&year=1999", 404, "Không có số liệu năm 1999"),
    ("/?year=abc", 400, "Năm không hợp lệ: “abc”"),
    ("/reports?year=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%92", 400, "Năm không hợp lệ"),  # full-width digits
    ("/units?year=20222", 400, "Năm không hợp lệ"),
])
def test_an_unknown_year_gets_the_desks_error_page(two_years: Any, path: str, status: int, words: str) -> None:
    r = two_years.client.get(path)
    html = r.get_data(as_text=True)
    assert r.status_code == status and r.mimetype == "text/html"
    assert words in html and f"Mã lỗi {status}." in html
    assert "Traceback" not in html and "Đang xem số liệu năm" not in html
    assert "Kế hoạch “Dân vận khéo” năm 2023" in html  # the header falls back to the configured year


def test_review_queue_holds_every_year_and_accepts_as_the_documents_campaign(two_years: Any) -> None:
    client, ctx, scans = two_years.client, two_years.ctx, two_years.scans
    page = client.get("/review").get_data(as_text=True)

    def item(html: str, doc_id: int) -> str:
        return re.search(rf'<article [^>]*id="item-needs_review-document-{doc_id}"(.*?)</article>', html, re.S).group(1)

    def options(html: str, name: str) -> list[str]:
        box = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S).group(1)
        return [v for v in re.findall(r'<option value="([^"]*)"', box) if v]

    old, new = item(page, scans[2022]), item(page, scans[2023])
    assert 'data-campaign="2022">năm 2022<' in old and 'data-campaign="2023">năm 2023<' in new
    assert "Ghi nhận cho kế hoạch năm 2022" in old and "Ghi nhận cho kế hoạch năm 2023" in new
    assert options(old, "kind") == ["registration", "summary", "commendation", "report"]
    assert options(new, "kind") == ["registration", "summary", "report"]
    assert options(old, "period") == ["2022-Q1", "2022-H1", "2022-Q3", "2022-Y"]
    assert options(new, "period") == ["2023-Q1", "2023-H1", "2023-Q3", "2023-Y"]
    assert client.get("/review?year=2022").get_data(as_text=True).count('id="item-needs_review-document-') == 2

    def accept(doc_id: int, kind: str, period: str = "", *, replaces: bool = False) -> str:
        token = csrf_in(client.get("/review").get_data(as_text=True))
        r = client.post("/review/accept", data={"csrf_token": token, "document_id": str(doc_id), "kind": kind,
                                                "period": period})
        if replaces:  # it would replace the unit's counting document: shown first, then confirmed (issue 13)
            assert r.status_code == 200 and "Xác nhận thay đổi" in r.get_data(as_text=True)
            r = client.post("/review/accept", data=dict(hidden_fields(r.get_data(as_text=True), "confirm-form")))
        assert r.status_code == 302
        return client.get(r.headers["Location"]).get_data(as_text=True)

    assert "Loại văn bản &#39;commendation&#39; không có trong kế hoạch năm 2023" in accept(scans[2023], "commendation")
    refused = accept(scans[2022], "report", "2023-Y")
    assert "Báo cáo kết quả thực hiện cần chọn kỳ báo cáo của năm 2022" in refused
    assert [d.state for d in ctx.store.document_records() if d.document_id in scans.values()] == ["needs_review"] * 2

    done = accept(scans[2022], "report", "2022-Y")
    assert "đã được ghi nhận là Báo cáo kết quả thực hiện (năm 2022), nộp muộn" in done
    then = client.get("/units/th014?year=2022").get_data(as_text=True)
    assert re.search(r'<tr id="state-report-year" data-state="late"', then)
    now = client.get("/units/th014").get_data(as_text=True)
    assert re.search(r'<tr id="state-report-year" data-state="missing"', now)
    [rec] = [d for d in ctx.store.document_records() if d.document_id == scans[2022]]
    assert (rec.kind, rec.period, rec.campaign, rec.state) == ("report", "2022-Y", 2022, "accepted")
    done = accept(scans[2023], "registration", replaces=True)  # UBND's on-time 2023 registration
    assert "đã được ghi nhận là Biểu đăng ký mô hình" in done
    [rec] = [d for d in ctx.store.document_records() if d.document_id == scans[2023]]
    assert (rec.kind, rec.period, rec.campaign) == ("registration", None, 2023)


def test_a_rejection_carries_the_blank_form_of_the_documents_year(two_years: Any) -> None:
    from email import message_from_bytes

    from pipeline.desk import actions

    ctx, scans = two_years.ctx, two_years.scans
    with ctx.store.tx() as c:  # the scan was taken for a registration form of 2022
        from pipeline.ledger.schema import documents

        c.execute(documents.update().where(documents.c.id == scans[2022]).values(kind="registration"))
    res = actions.reject(ctx, scans[2022], reason="Ảnh mờ, đề nghị gửi lại tệp Excel", actor="hoa")
    [row] = [o for o in ctx.store.outbox_rows() if o.id in res.outbox_ids]
    [form] = [p.get_payload(decode=True) for p in message_from_bytes(row.raw).walk() if p.get_filename()]
    assert read_marker(form)["year"] == "2022" and read_marker(form)["form"] == "registration"
