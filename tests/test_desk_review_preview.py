"""Issue 13, points 1–3, through Flask's test client: staff see what they judge (every attachment opens from
Cần xử lý and a unit's page, hostile files never harm the desk), nothing is rewritten silently (the change
first, an explicit confirmation, a stale one refused; the CLI the same), and a photo of a form counts once
staff type in its rows."""
from __future__ import annotations

import re
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.http import parse_options_header

import formfiles
from conftest import DISTRICT
from desk_helpers import offline_cfg  # noqa: F401  (fixture)
from desk_helpers import (XLSX, Clock, client_login, csrf_in, hidden_fields, ingest, libreoffice_xlsx, local,
                          pixel_flood_png, png, registration)
from intake_demo import samplemail, samples
from pipeline.config import load_config
from pipeline.context import Context
from pipeline.desk import create_app, typed
from pipeline.forms.definitions import Column, FormDef
from pipeline.ledger.schema import documents, entries, outbox, review_actions
from pipeline.plan import deadlines

AIMO = "Công đoàn Trường Tiểu học Ái Mộ"
MAY = "Công đoàn Công ty Cổ phần May Đức Giang"
STRANGER = "nguoi.la.aimo@yahoo.com"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
def desk(offline_cfg: Path) -> Any:
    ctx = Context(load_config(offline_cfg))
    app = create_app(ctx, clock=Clock(datetime(2022, 2, 25, 3, 0, tzinfo=timezone.utc)), login_delay=0)
    app.testing = False  # errors go through the desk's own handlers, as in production
    app.ctx = ctx  # type: ignore[attr-defined]
    app.cfg_path = offline_cfg  # type: ignore[attr-defined]
    return app


@pytest.fixture
def client(desk: Any) -> Any:
    c = desk.test_client()
    assert client_login(c).status_code == 302
    return c


def mail(ctx: Context, sender: str, files: list[tuple[str, bytes, str]], *, when: datetime, mid: str,
         subject: str = "Gửi biểu đăng ký Dân vận khéo") -> int:
    return ingest(ctx, samplemail.gmail_message(sender, DISTRICT, subject, "Kính gửi LĐLĐ quận Long Biên.", files,
                                                message_id=mid), when)


def text(resp: Any) -> str:
    return resp.get_data(as_text=True)


def links(html: str, pattern: str) -> list[str]:
    return [u.replace("&amp;", "&") for u in re.findall(rf'href="({pattern})"', html)]


def doc_rows(ctx: Context, pk: int) -> list[Any]:
    with ctx.store.tx() as c:
        return list(c.execute(sa.select(documents).where(documents.c.message_pk == pk).order_by(documents.c.id)))


def entry_rows(ctx: Context, doc_id: int) -> list[Any]:
    with ctx.store.tx() as c:
        return list(c.execute(sa.select(entries).where(entries.c.document_id == doc_id).order_by(entries.c.id)))


def state_of(ctx: Context, unit_id: str, obligation_id: str = "registration") -> tuple[str, int | None]:
    st = deadlines.unit_states(ctx.obligations, ctx.units.units, ctx.documents())[(unit_id, obligation_id)]
    return st.state, st.document_id


def filename_of(resp: Any) -> str:
    """The name a browser saves the file under: RFC 5987 ``filename*`` decoded."""
    _kind, params = parse_options_header(resp.headers["Content-Disposition"])
    return params["filename"]


def own_policy(resp: Any) -> str:
    """The policy a file or a preview page adds to the desk's (both are enforced by the browser)."""
    policies = resp.headers.getlist("Content-Security-Policy")
    assert len(policies) == 2 and "script-src 'self'" in policies[0]
    return policies[1]


# --------------------------------------------------------------------------- 1. see what you judge


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" onload="alert(1)">'
       b'<script>alert(document.cookie)</script></svg>')
HTML = b"<!doctype html><html><body><script>fetch('/units/download')</script>Bi\xe1\xbb\x83u</body></html>"


def test_every_attachment_opens_from_the_queue_and_the_units_page(client: Any, desk: Any) -> None:
    ctx = desk.ctx
    photo = png(240, 320)
    pdf = formfiles.text_pdf(["BAO CAO QUY I"])
    form = registration(AIMO, [("Tổ 1", "Mô hình A", "khac"), ("Tổ 2", "Mô hình B", "bvmt")])
    pk = mail(ctx, STRANGER, [("Đăng ký TH Ái Mộ.xlsx", form, XLSX), ("Ảnh biểu.png", photo, "image/png"),
                              ("Báo cáo quý I.pdf", pdf, PDF), ("trang.html", HTML, "text/html"),
                              ("hình.svg", SVG, "image/svg+xml")], when=local(2022, 2, 23), mid="<s@x>")
    own_form = registration(AIMO)
    own = mail(ctx, "hieutruong.aimo@gmail.com", [("Biểu đăng ký Ái Mộ.xlsx", own_form, XLSX)],
               when=local(2022, 2, 14), mid="<own@x>")
    assert ctx.store.message(pk).state == "quarantined" and ctx.store.message(own).state == "processed"

    queue = text(client.get("/review"))
    assert f'href="/mail/{pk}.eml"' in queue  # the .eml stays, for the technically minded
    pages = links(queue, rf"/mail/{pk}/files/[^\"]+")
    assert len(pages) == 5
    shown = {}
    for url in pages:
        r = client.get(url)
        html = text(r)
        assert r.status_code == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
        assert own_policy(r).startswith("default-src 'none'; img-src 'self'")
        how = re.search(r'id="preview" data-how="(\w+)"', html).group(1)
        name = re.search(r'<h1 id="file-name" class="filename">([^<]*)</h1>', html).group(1)
        shown[name] = (how, html, url)
    assert {n: v[0] for n, v in shown.items()} == {
        "Đăng ký TH Ái Mộ.xlsx": "table", "Ảnh biểu.png": "image", "Báo cáo quý I.pdf": "pdf",
        "trang.html": "file", "hình.svg": "file"}

    # the photo: an <img> from the desk itself, served as the image it is, inline, under its name
    _how, html, url = shown["Ảnh biểu.png"]
    [src] = re.findall(r'<img id="preview-image" src="([^"]+)"', html)
    assert src == url + "/content" and "240 × 320 điểm ảnh" in html
    r = client.get(src)
    assert (r.status_code, r.mimetype, r.data) == (200, "image/png", photo)
    assert r.headers["Content-Disposition"].startswith("inline;") and filename_of(r) == "Ảnh biểu.png"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" not in own_policy(r)
    # the PDF opens in the browser's viewer
    _how, html, url = shown["Báo cáo quý I.pdf"]
    r = client.get(links(html, r"[^\"]+/content")[0])
    assert (r.mimetype, r.data) == (PDF, pdf) and r.headers["Content-Disposition"].startswith("inline;")
    # the spreadsheet's cells, and the original for download under its Vietnamese name (RFC 5987)
    _how, html, url = shown["Đăng ký TH Ái Mộ.xlsx"]
    assert "<td>Mô hình A</td>" in html and "<td>Tổ 2</td>" in html
    [download] = links(html, r"[^\"]+/content\?download=1")
    r = client.get(download)
    assert (r.mimetype, r.data) == ("application/octet-stream", form)
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert ("filename*=UTF-8''%C4%90%C4%83ng%20k%C3%BD%20TH%20%C3%81i%20M%E1%BB%99.xlsx"
            in r.headers["Content-Disposition"])
    assert filename_of(r) == "Đăng ký TH Ái Mộ.xlsx"
    # HTML and SVG: never rendered, download only, and sandboxed even then
    for name, data in (("trang.html", HTML), ("hình.svg", SVG)):
        _how, html, url = shown[name]
        assert "có thể chứa mã chạy được" in html and "<script" not in html and "<svg" not in html
        assert "<img" not in html.split('id="preview"')[1]
        for target in (url + "/content", url + "/content?download=1"):
            r = client.get(target)
            assert (r.mimetype, r.data) == ("application/octet-stream", data)
            assert r.headers["Content-Disposition"].startswith("attachment;") and filename_of(r) == name
            assert own_policy(r) == "default-src 'none'; sandbox"

    # a unit's page opens its documents too
    unit_page = text(client.get("/units/th014"))
    [doc] = doc_rows(ctx, own)
    [page] = links(unit_page, rf"/documents/{doc.id}[^\"]*")
    html = text(client.get(page))
    assert "Biểu đăng ký Ái Mộ.xlsx" in html and "<td>Tổ công đoàn Văn phòng</td>" in html
    assert "Nội dung đã ghi nhận (1 dòng)" in html  # the row the reader recorded
    r = client.get(links(unit_page, rf"/mail/{own}/files/[^\"]+/content\?download=1")[0])
    assert r.data == own_form and filename_of(r) == "Biểu đăng ký Ái Mộ.xlsx"
    # an attachment that became a document has one page: the document's
    r = client.get(f"/mail/{own}/files/{doc.part}")
    assert r.status_code == 302 and r.headers["Location"] == f"/documents/{doc.id}"


def test_only_logged_in_staff_get_a_file(desk: Any) -> None:
    pk = mail(desk.ctx, STRANGER, [("Ảnh.png", png(10, 10), "image/png")], when=local(2022, 2, 23), mid="<a@x>")
    anonymous = desk.test_client()
    for path in (f"/mail/{pk}/files/2", f"/mail/{pk}/files/2/content", f"/mail/{pk}/files/2/content?download=1",
                 "/documents/1"):
        r = anonymous.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login") and b"PNG" not in r.data
    r = anonymous.post("/documents/1/accept", data={"kind": "registration"})
    assert r.status_code == 403


def test_cells_are_escaped_formulas_show_their_stored_results_and_big_sheets_are_cut(client: Any, desk: Any,
                                                                                     tmp_path: Path) -> None:
    ctx = desk.ctx
    computed = libreoffice_xlsx("Số lượng,Đơn giá,Thành tiền\n2,3,=A2*B2\n", tmp_path)
    rows = [["<script>alert('ô A1')</script>", '<img src=x onerror="alert(1)">']]
    rows += [[f"Dòng {i}", i] for i in range(2, 251)]
    big = formfiles.fast_xlsx(rows)
    word = samples.registration_docx(AIMO, [("Tổ Văn phòng", "Một cửa thân thiện", "khac")])
    xls = formfiles.registration_xls(AIMO, [("Tổ Bảo vệ", "An toàn trường học", "anqp")])
    ods = formfiles.registration_ods(AIMO, [("Tổ Bếp", "Bữa ăn sạch", "vhxh")])
    pk = mail(ctx, STRANGER, [("Thành tiền.xlsx", computed, XLSX), ("Danh sách dài.xlsx", big, XLSX),
                              ("Biểu đăng ký.docx", word, DOCX), ("Biểu cũ.xls", xls, "application/vnd.ms-excel"),
                              ("Biểu LibreOffice.ods", ods, "application/vnd.oasis.opendocument.spreadsheet")],
              when=local(2022, 2, 23), mid="<cells@x>")
    pages = {}
    for url in links(text(client.get("/review")), rf"/mail/{pk}/files/[^\"]+"):
        html = text(client.get(url))
        pages[re.search(r'<h1 id="file-name" class="filename">([^<]*)</h1>', html).group(1)] = html

    html = pages["Thành tiền.xlsx"]
    assert re.search(r"<tr><th>2</th><td>2</td><td>3</td><td>6</td></tr>", html)
    assert "A2*B2" not in html and "công thức hiện kết quả đã tính" in html

    html = pages["Danh sách dài.xlsx"]
    assert "&lt;script&gt;alert(&#39;ô A1&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "<script" not in html and "<img src=x" not in html
    assert "<td>Dòng 200</td>" in html and "Dòng 201" not in html
    assert "Chỉ hiện 200 dòng, 2 cột đầu; tệp còn nhiều hơn" in html

    html = pages["Biểu đăng ký.docx"]
    assert f'<p class="para">ĐƠN VỊ: {AIMO}</p>' in html and "<td>Một cửa thân thiện</td>" in html
    assert "<td>An toàn trường học</td>" in pages["Biểu cũ.xls"]
    assert "<td>Bữa ăn sạch</td>" in pages["Biểu LibreOffice.ods"]


def test_hostile_files_never_hang_or_crash_the_desk(client: Any, desk: Any) -> None:
    ctx = desk.ctx
    flood = pixel_flood_png()
    disguised = b"<html><body><script>alert(1)</script></body></html>"
    pk = mail(ctx, STRANGER, [("Biểu đăng ký.xlsx", formfiles.zip_bomb(), XLSX),
                              ("Biểu hỏng.xlsx", formfiles.far_cell_sheet(keep_dimension=False), XLSX),
                              ("Ảnh rất lớn.png", flood, "image/png"), ("ảnh.png", disguised, "image/png"),
                              ("Biểu tốt.xlsx", registration(AIMO), XLSX)], when=local(2022, 2, 23), mid="<h@x>")
    pages = {}
    for url in links(text(client.get("/review")), rf"/mail/{pk}/files/[^\"]+"):
        started = time.monotonic()
        r = client.get(url)
        assert r.status_code == 200 and time.monotonic() - started < 30
        html = text(r)
        pages[re.search(r'<h1 id="file-name" class="filename">([^<]*)</h1>', html).group(1)] = (html, url)

    html, _url = pages["Biểu đăng ký.xlsx"]  # a zip bomb: refused before any reader opens it
    assert "Không xem trước được: tệp nén bất thường (có thể là “bom nén”)" in html
    html, _url = pages["Biểu hỏng.xlsx"]  # calamine aborts on it: the child dies, the desk does not
    assert "Không xem trước được: tệp quá lớn hoặc hỏng, việc đọc đã bị dừng" in html
    html, _url = pages["Biểu tốt.xlsx"]  # ... and the next file is read by a fresh child
    assert "<td>Tổ công đoàn Văn phòng</td>" in html

    html, url = pages["Ảnh rất lớn.png"]  # 400 megapixels: never sent to the browser as an image
    assert 'data-how="file"' in html and "Ảnh quá lớn để hiện trên trang (20.000 × 20.000 điểm ảnh)" in html
    assert "preview-image" not in html
    r = client.get(url + "/content")
    assert (r.mimetype, r.headers["Content-Disposition"].split(";")[0]) == ("application/octet-stream", "attachment")
    assert r.data == flood
    html, url = pages["ảnh.png"]  # called a PNG, but HTML: judged by its bytes
    assert 'data-how="file"' in html and "preview-image" not in html
    assert client.get(url + "/content").mimetype == "application/octet-stream"


# --------------------------------------------------------------------------- 2. nothing rewritten silently


def _stranger_and_own(ctx: Context) -> tuple[int, int]:
    """Ái Mộ registered on time (14/02); a stranger sends Ái Mộ's form after the deadline (23/02)."""
    own = mail(ctx, "hieutruong.aimo@gmail.com", [("Biểu đăng ký Ái Mộ.xlsx", registration(AIMO), XLSX)],
               when=local(2022, 2, 14), mid="<own@x>")
    stranger = mail(ctx, STRANGER, [("Đăng ký TH Ái Mộ.xlsx", registration(AIMO, [("Tổ 1", "Mô hình A", "khac")]),
                                     XLSX)], when=local(2022, 2, 23), mid="<str@x>")
    return own, stranger


def _nothing_changed(ctx: Context, stranger: int, own_doc: int, units_before: bytes) -> None:
    assert ctx.store.message(stranger).state == "quarantined"
    assert state_of(ctx, "th014") == ("on_time", own_doc)
    assert ctx.cfg.units_file.read_bytes() == units_before
    with ctx.store.tx() as c:
        assert list(c.execute(sa.select(review_actions.c.id))) == []
        assert list(c.execute(sa.select(outbox.c.id).where(outbox.c.message_pk == stranger))) == []


def test_assigning_a_strangers_mail_over_an_on_time_record_shows_the_change_and_needs_a_confirmation(
        client: Any, desk: Any) -> None:
    ctx = desk.ctx
    own, stranger = _stranger_and_own(ctx)
    [own_doc] = doc_rows(ctx, own)
    units_before = ctx.cfg.units_file.read_bytes()
    token = csrf_in(text(client.get("/review")))

    r = client.post("/review/assign", data={"csrf_token": token, "message_pk": stranger, "unit_id": "th014",
                                            "add_address": "1"})
    html = text(r)
    assert r.status_code == 200 and "<h1>Xác nhận thay đổi</h1>" in html
    [row] = re.findall(r'<tr data-obligation="registration" data-before="on_time" data-after="late" class=warn>'
                       r"(.*?)</tr>", html, re.S)
    assert f'<a href="/documents/{own_doc.id}" class="filename">Biểu đăng ký Ái Mộ.xlsx</a>' in row
    assert "nhận lúc 14/02/2022 09:00" in row and "Đăng ký TH Ái Mộ.xlsx" in row and "nhận lúc 23/02/2022 09:00" in row
    assert "Tệp đang được tính sẽ không còn được tính." in row and "Đơn vị chuyển từ đúng hạn sang quá hạn." in row
    assert f"Địa chỉ <b>{STRANGER}</b> sẽ được thêm vào đơn vị {AIMO}" in html
    _nothing_changed(ctx, stranger, own_doc.id, units_before)

    fields = hidden_fields(html, "confirm-form")
    assert ("add_address", "1") in fields and ("unit_id", "th014") in fields
    r = client.post("/review/assign", data=dict(fields))
    assert r.status_code == 302
    assert ctx.store.message(stranger).state == "processed"
    [new_doc] = doc_rows(ctx, stranger)
    assert state_of(ctx, "th014") == ("late", new_doc.id)
    assert STRANGER in ctx.cfg.units_file.read_text(encoding="utf-8-sig")
    with ctx.store.tx() as c:
        [params] = c.execute(sa.select(review_actions.c.params)).scalars()
    assert "ĐÚNG HẠN sang QUÁ HẠN" in params  # what staff confirmed is in the action's record

    # the unit's page names the document that counts now, with its date and a link
    unit_page = text(client.get("/units/th014"))
    assert (f'(đã thay bằng tệp <a href="/documents/{new_doc.id}?back=/units/th014">Đăng ký TH Ái Mộ.xlsx</a> '
            "nhận 23/02/2022 09:00)") in unit_page
    assert "bản #" not in unit_page


def test_a_confirmation_of_a_change_that_is_no_longer_the_one_that_would_happen_is_refused(client: Any,
                                                                                            desk: Any) -> None:
    ctx = desk.ctx
    own, stranger = _stranger_and_own(ctx)
    token = csrf_in(text(client.get("/review")))
    first = text(client.post("/review/assign", data={"csrf_token": token, "message_pk": stranger, "unit_id": "th014"}))
    stale = dict(hidden_fields(first, "confirm-form"))
    # meanwhile the unit sends a newer form itself: what would be replaced is no longer what staff saw
    newer = mail(ctx, "hieutruong.aimo@gmail.com", [("Biểu đăng ký bổ sung.xlsx", registration(AIMO), XLSX)],
                 when=local(2022, 2, 24), mid="<own2@x>")
    [newer_doc] = doc_rows(ctx, newer)
    assert state_of(ctx, "th014") == ("late", newer_doc.id)

    r = client.post("/review/assign", data=stale)
    html = text(r)
    assert r.status_code == 409 and "Tình hình đã thay đổi từ lúc xem trước nên chưa thực hiện gì" in html
    assert ctx.store.message(stranger).state == "quarantined"
    assert state_of(ctx, "th014") == ("late", newer_doc.id)
    with ctx.store.tx() as c:
        assert list(c.execute(sa.select(review_actions.c.id))) == []
    # the page shows the change as it is now; the mail is older than the unit's own newer form: nothing replaced
    fresh = dict(hidden_fields(html, "confirm-form"))
    assert fresh["confirm"] != stale["confirm"]
    r = client.post("/review/assign", data=fresh)
    assert r.status_code == 302 and ctx.store.message(stranger).state == "processed"
    assert state_of(ctx, "th014") == ("late", newer_doc.id)


def test_an_assignment_that_replaces_nothing_is_done_at_once(client: Any, desk: Any) -> None:
    ctx = desk.ctx
    pk = mail(ctx, STRANGER, [("Biểu May Đức Giang.xlsx", registration(MAY), XLSX)], when=local(2022, 2, 16),
              mid="<m@x>")
    token = csrf_in(text(client.get("/review")))
    r = client.post("/review/assign", data={"csrf_token": token, "message_pk": pk, "unit_id": "dn027"})
    assert r.status_code == 302 and ctx.store.message(pk).state == "processed"
    assert state_of(ctx, "dn027")[0] == "on_time"


def test_accepting_a_document_that_supersedes_an_accepted_one_needs_a_confirmation(client: Any, desk: Any) -> None:
    ctx = desk.ctx
    own = mail(ctx, "hieutruong.aimo@gmail.com", [("Biểu đăng ký Ái Mộ.xlsx", registration(AIMO), XLSX)],
               when=local(2022, 2, 14), mid="<own@x>")
    [own_doc] = doc_rows(ctx, own)
    photo = mail(ctx, "hieutruong.aimo@gmail.com", [("Ảnh biểu đăng ký bổ sung.png", png(200, 300), "image/png")],
                 when=local(2022, 2, 24), mid="<ph@x>")
    [doc] = doc_rows(ctx, photo)
    assert doc.state == "needs_review"
    token = csrf_in(text(client.get("/review")))
    r = client.post("/review/accept", data={"csrf_token": token, "document_id": doc.id, "kind": "registration"})
    assert r.status_code == 200 and "Xác nhận thay đổi" in text(r) and "sang quá hạn" in text(r)
    assert doc_rows(ctx, photo)[0].state == "needs_review" and state_of(ctx, "th014") == ("on_time", own_doc.id)

    # from the document's page, with rows typed in: they travel through the confirmation
    page = text(client.get(f"/documents/{doc.id}"))
    data = {"csrf_token": csrf_in(page), "kind": "registration", "period": "", "rows": "5",
            "rows_kind": "registration", "r1.name": "Tổ Văn phòng", "r1.model": "Sổ tay điện tử",
            "r1.category": "kinh_te", "r1.section": "collective"}
    r = client.post(f"/documents/{doc.id}/accept", data=data)
    assert r.status_code == 200 and "Xác nhận thay đổi" in text(r)
    assert entry_rows(ctx, doc.id) == [] and doc_rows(ctx, photo)[0].state == "needs_review"
    fields = dict(hidden_fields(text(r), "confirm-form"))
    assert fields["r1.model"] == "Sổ tay điện tử"
    r = client.post(f"/documents/{doc.id}/accept", data=fields)
    assert r.status_code == 302
    assert doc_rows(ctx, photo)[0].state == "accepted" and state_of(ctx, "th014") == ("late", doc.id)
    assert [(e.name, e.model, e.categories) for e in entry_rows(ctx, doc.id)] == [
        ("Tổ Văn phòng", "Sổ tay điện tử", '["kinh_te"]')]


def test_the_cli_prints_the_change_and_needs_yes(desk: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    ctx = desk.ctx
    own, stranger = _stranger_and_own(ctx)
    [own_doc] = doc_rows(ctx, own)
    units_before = ctx.cfg.units_file.read_bytes()
    args = ["--config", str(desk.cfg_path), "review", "assign", str(stranger), "th014", "--add-address",
            "--actor", "cli-test"]
    assert main(args) == 1
    out = capsys.readouterr()
    assert f"Thao tác này thay đổi hồ sơ của đơn vị {AIMO}:" in out.out
    assert ("tệp “Biểu đăng ký Ái Mộ.xlsx” nhận lúc 09:00 ngày 14/02/2022 (đúng hạn) → "
            "tệp “Đăng ký TH Ái Mộ.xlsx”") in out.out
    assert f"Địa chỉ {STRANGER} sẽ được thêm vào đơn vị" in out.out
    assert "--yes" in out.err
    _nothing_changed(ctx, stranger, own_doc.id, units_before)

    assert main([*args, "--yes"]) == 0
    assert "đã được gán cho" in capsys.readouterr().out
    assert ctx.store.message(stranger).state == "processed" and state_of(ctx, "th014")[0] == "late"

    # accepting a document that would replace the one that counts: the same guard
    photo = mail(ctx, "hieutruong.aimo@gmail.com", [("Ảnh biểu đăng ký.png", png(200, 300), "image/png")],
                 when=local(2022, 2, 26), mid="<ph@x>")
    [doc] = doc_rows(ctx, photo)
    counted = state_of(ctx, "th014")
    args = ["--config", str(desk.cfg_path), "review", "accept", str(doc.id), "--kind", "registration"]
    assert main(args) == 1
    out = capsys.readouterr()
    assert "tệp “Ảnh biểu đăng ký.png”" in out.out and "--yes" in out.err
    assert doc_rows(ctx, photo)[0].state == "needs_review" and state_of(ctx, "th014") == counted
    assert main([*args, "--yes"]) == 0
    assert doc_rows(ctx, photo)[0].state == "accepted" and state_of(ctx, "th014") == ("late", doc.id)


# --------------------------------------------------------------------------- 3. type in what a photo shows


def _photo_of_a_form(ctx: Context) -> Any:
    pk = mail(ctx, "congdoan@maydg.com.vn", [("Ảnh biểu đăng ký.png", png(300, 400), "image/png")],
              when=local(2022, 2, 20), mid="<photo@x>", subject="Ảnh biểu đăng ký")
    [doc] = doc_rows(ctx, pk)
    assert (doc.state, doc.kind) == ("needs_review", "registration")
    return doc


def _registered(ctx: Context) -> list[tuple[str, str, tuple[str, ...]]]:
    from pipeline.plan.staffreport import report_data

    data = report_data(ctx, date(2022, 2, 25))
    return [(u.unit_id, e.model, e.categories) for u, e in data.registered]


def test_accepting_a_photo_of_a_form_with_the_rows_typed_in_counts_them_and_undo_removes_them(client: Any,
                                                                                              desk: Any) -> None:
    ctx = desk.ctx
    doc = _photo_of_a_form(ctx)
    queue = text(client.get("/review"))
    assert f'href="/documents/{doc.id}" class="open-doc">Xem tệp và nhập nội dung</a>' in queue
    page = text(client.get(f"/documents/{doc.id}"))
    assert 'id="preview-image"' in page and 'id="typed-rows"' in page
    categories = re.findall(r'<option value="(\w+)">', page.split('name="r1.category"')[1].split("</select>")[0])
    assert categories == list(ctx.rules.forms["registration"].category_codes)
    data = {"csrf_token": csrf_in(page), "kind": "registration", "period": "", "rows": "5",
            "rows_kind": "registration", "r1.name": "Tổ sản xuất số 1", "r1.model": "Tiết kiệm điện",
            "r1.category": "kinh_te", "r1.section": "collective", "r2.name": "Chị Nguyễn Thị Mai",
            "r2.model": "", "r2.category": "vhxh", "r2.section": "individual"}

    r = client.post(f"/documents/{doc.id}/accept", data={**data, "more": "1"})  # more rows: nothing recorded
    assert r.status_code == 200 and 'id="row-10"' in text(r) and 'value="Tiết kiệm điện"' in text(r)
    r = client.post(f"/documents/{doc.id}/accept", data=data)  # row 2 has no model
    assert r.status_code == 422 and "Dòng 2: thiếu “Tên mô hình”." in text(r)
    assert doc_rows(ctx, doc.message_pk)[0].state == "needs_review" and entry_rows(ctx, doc.id) == []

    data["r2.model"] = "Bữa cơm công nhân"
    r = client.post(f"/documents/{doc.id}/accept", data=data)
    assert r.status_code == 302
    after = text(client.get(r.headers["Location"]))
    assert "2 dòng nội dung cán bộ nhập đã được ghi nhận" in after
    assert [(e.section, e.name, e.model, e.categories, e.row) for e in entry_rows(ctx, doc.id)] == [
        ("collective", "Tổ sản xuất số 1", "Tiết kiệm điện", '["kinh_te"]', 1),
        ("individual", "Chị Nguyễn Thị Mai", "Bữa cơm công nhân", '["vhxh"]', 2)]
    assert _registered(ctx) == [("dn027", "Tiết kiệm điện", ("kinh_te",)), ("dn027", "Bữa cơm công nhân", ("vhxh",))]
    assert "2 dòng được ghi nhận" in text(client.get("/units/dn027"))
    history = text(client.get("/review"))
    assert "Ghi nhận tệp “Ảnh biểu đăng ký.png” là Biểu đăng ký mô hình “Dân vận khéo”, nhập 2 dòng" in history

    with ctx.store.tx() as c:
        action_id = c.execute(sa.select(review_actions.c.id)).scalar()
    client.post("/review/undo", data={"csrf_token": csrf_in(history), "action_id": action_id})
    assert doc_rows(ctx, doc.message_pk)[0].state == "needs_review" and entry_rows(ctx, doc.id) == []
    assert _registered(ctx) == []


def test_a_form_accepted_without_its_rows_says_so_and_invites_staff_to_type_them(client: Any, desk: Any) -> None:
    ctx = desk.ctx
    doc = _photo_of_a_form(ctx)
    token = csrf_in(text(client.get("/review")))
    r = client.post("/review/accept", data={"csrf_token": token, "document_id": doc.id, "kind": "registration"})
    assert r.status_code == 302
    assert "Tệp chưa có nội dung (các dòng của biểu): mở tệp để nhập." in text(client.get("/review"))
    unit_page = text(client.get("/units/dn027"))
    assert "đã ghi nhận, chưa nhập nội dung" in unit_page
    assert f'<form method="get" action="/documents/{doc.id}" class="type-entries">' in unit_page
    page = text(client.get(f"/documents/{doc.id}"))
    assert 'id="no-entries"' in page and 'id="entries-form"' in page
    assert _registered(ctx) == []

    data = {"csrf_token": csrf_in(page), "rows": "5", "r1.name": "Tổ may 3", "r1.model": "Năng suất xanh",
            "r1.category": "bvmt", "r1.section": "collective", "r2.name": "Tổ may 4", "r2.model": "An toàn lao động",
            "r2.category": "khac", "r2.section": "collective"}
    r = client.post(f"/documents/{doc.id}/entries", data=data)
    assert r.status_code == 302 and "Đã ghi nhận 2 dòng nội dung" in text(client.get(r.headers["Location"]))
    assert [m for _u, m, _c in _registered(ctx)] == ["Năng suất xanh", "An toàn lao động"]
    unit_page = text(client.get("/units/dn027"))
    assert "2 dòng được ghi nhận" in unit_page and "chưa nhập nội dung" not in unit_page
    # the same page posted again (a second tab, a double click) adds nothing
    r = client.post(f"/documents/{doc.id}/entries", data=data)
    assert "đã được nhập nội dung" in text(client.get(r.headers["Location"]))
    assert len(entry_rows(ctx, doc.id)) == 2

    history = text(client.get("/review"))
    assert "Nhập 2 dòng nội dung cho tệp “Ảnh biểu đăng ký.png”" in history
    with ctx.store.tx() as c:
        action_id = c.execute(sa.select(review_actions.c.id).where(review_actions.c.action == "entries")).scalar()
    client.post("/review/undo", data={"csrf_token": csrf_in(history), "action_id": action_id})
    assert entry_rows(ctx, doc.id) == [] and doc_rows(ctx, doc.message_pk)[0].state == "accepted"
    assert "đã ghi nhận, chưa nhập nội dung" in text(client.get("/units/dn027"))


def test_typed_rows_follow_the_forms_definition() -> None:
    """Name, model, one of the form's categories, and its required extra columns with their types."""
    form = FormDef(id="sangkien", name="Biểu sáng kiến", short_name="Sáng kiến", type="table", order=5, phrases=(),
                   columns=(Column("name", "Tên tập thể, cá nhân", required=True),
                            Column("model", "Tên sáng kiến", required=True),
                            Column("so_nguoi", "Số người tham gia", required=True, type="integer", min=1, max=500),
                            Column("ngay", "Ngày bắt đầu", required=True, type="date"),
                            Column("ghi_chu_them", "Ghi chú thêm")),
                   categories=(), report_as="registration")
    lay = typed.layout(form)
    assert lay is not None and [c.key for c in lay.extras] == ["so_nguoi", "ngay"] and lay.categories == ()
    values = {"rows": "3", "r1.name": "Tổ 1", "r1.model": "Sáng kiến A", "r1.x.so_nguoi": "12",
              "r1.x.ngay": "05/03/2022", "r2.name": "Tổ 2", "r2.model": "Sáng kiến B", "r2.x.so_nguoi": "0",
              "r2.x.ngay": "31/02/2022"}
    rows = typed.read_rows(values, lay, typed.row_count(values))
    got, problems = typed.check(rows, lay, "hoa")
    assert got == () and problems == ["Dòng 2: “Số người tham gia” phải trong khoảng 1–500.",
                                      "Dòng 2: “Ngày bắt đầu” phải là ngày dạng ngày/tháng/năm (ví dụ 15/02/2022)."]
    values.update({"r2.x.so_nguoi": "3", "r2.x.ngay": "28/02/2022"})
    got, problems = typed.check(typed.read_rows(values, lay, 3), lay, "hoa")
    assert problems == [] and [(e.name, e.extra, e.row, e.location) for e in got] == [
        ("Tổ 1", (("so_nguoi", "12"), ("ngay", "05/03/2022")), 1, "cán bộ hoa nhập, dòng 1"),
        ("Tổ 2", (("so_nguoi", "3"), ("ngay", "28/02/2022")), 2, "cán bộ hoa nhập, dòng 2")]
    assert typed.check(typed.read_rows({}, lay, 3), lay, "hoa")[1] == [
        "Chưa nhập dòng nào: hãy gõ ít nhất một dòng (tên tập thể, cá nhân và tên mô hình)."]
    assert typed.layout(FormDef(id="report", name="Báo cáo", short_name="Báo cáo", type="report", order=1,
                                phrases=())) is None


def test_content_disposition_keeps_the_vietnamese_name() -> None:
    from pipeline.desk.preview import content_disposition

    value = content_disposition("attachment", 'Biểu "đăng ký" Đức Giang.xlsx')
    kind, params = parse_options_header(value)
    assert kind == "attachment" and params["filename"] == 'Biểu "đăng ký" Đức Giang.xlsx'
    assert 'filename="Bieu \\"dang ky\\" Duc Giang.xlsx"' in value


def test_word_97_and_opendocument_files_are_previewed_as_their_cells(client: Any, desk: Any) -> None:
    """.doc (through LibreOffice, as the intake reads it) and .odt open as a preview of their table's cells."""
    import officefiles
    from intake_demo import samples

    docx = samples.registration_docx(AIMO, [("Tổ công đoàn Văn phòng", "Một cửa thân thiện", "khac")])
    files = [("Biểu đăng ký.doc", officefiles.convert(docx, "docx", "doc"), "application/msword"),
             ("Biểu đăng ký.odt", officefiles.convert(docx, "docx", "odt"),
              "application/vnd.oasis.opendocument.text")]
    pk = mail(desk.ctx, STRANGER, files, when=local(2022, 2, 20), mid="<word@x>")
    pages = links(text(client.get("/review")), rf"/mail/{pk}/files/[^\"]+")
    assert len(pages) == 2
    for url in pages:
        html = text(client.get(url))
        assert re.search(r'id="preview" data-how="table"', html), html[:500]
        assert "<td>Tổ công đoàn Văn phòng</td>" in html and "<td>Một cửa thân thiện</td>" in html
