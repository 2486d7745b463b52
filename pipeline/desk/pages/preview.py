"""Xem tệp: an attachment opened on the desk (from Cần xử lý and a unit's page), its original for download, and
a document's page, where staff accept a photo or scan of a form with the rows they type in from it, or type
them in later for one accepted without them.

What may be shown how is decided from the bytes (pipeline.desk.preview); the preview page and the files
carry a Content-Security-Policy of their own besides the desk's (a browser enforces both): no script, no
frame, images only from the desk itself; a file served for download is also sandboxed.
"""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, g, redirect, render_template, request, url_for

from pipeline.desk import actions, typed
from pipeline.desk.cells import read_cells
from pipeline.desk.pages.review import confirmation_page
from pipeline.desk.preview import content_disposition, describe, find, size_label, view_of
from pipeline.desk.web import bp, desk, flash, safe_next
from pipeline.ledger.schema import documents, entries

PAGE_POLICY = ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; base-uri 'none'; "
               "frame-ancestors 'none'")
# An image or a PDF shown on its own: nothing in it may load anything but itself (Chromium's PDF viewer is
# not subject to the page's policy; a sandbox would keep it from showing the PDF at all).
INLINE_POLICY = "default-src 'none'; img-src 'self'; base-uri 'none'; form-action 'none'"
DOWNLOAD_POLICY = "default-src 'none'; sandbox"


class _Policed(Response):
    """A response with a Content-Security-Policy of its own, added as the response leaves, after the desk's
    common headers (pipeline.desk.security sets the desk's policy on every response, replacing any other)."""

    policy = ""

    def get_wsgi_headers(self, environ: Any) -> Any:
        headers = super().get_wsgi_headers(environ)
        if self.policy:
            headers.add("Content-Security-Policy", self.policy)
        return headers


def _policed(body: Any, policy: str, **kw: Any) -> _Policed:
    resp = _Policed(body, **kw)
    resp.policy = policy
    return resp


# ------------------------------------------------------------------------------------------ files

@bp.route("/mail/<int:pk>/files/<part>")
def attachment_page(pk: int, part: str) -> Any:
    """An attachment of a mail; a document's has its own page (with its review)."""
    ctx = desk().ctx
    with ctx.store.tx() as c:
        doc_id = c.execute(sa.select(documents.c.id).where(documents.c.message_pk == pk, documents.c.part == part)
                           .order_by(documents.c.id)).scalar()
    if doc_id is not None:
        return redirect(url_for("desk.document_page", document_id=doc_id))
    return _page(pk, part, None)


@bp.route("/mail/<int:pk>/files/<part>/content")
def attachment_content(pk: int, part: str) -> Any:
    """The attachment's bytes: shown in the browser when it is a sane image or a PDF (``?download=1``: never),
    else downloaded, under its own name either way."""
    ctx = desk().ctx
    att = find(ctx, pk, part)
    if att is None:
        abort(404, f"Không có tệp đính kèm này trong thư #{pk}.")
    view = view_of(att, ctx.rules.limits)
    if view.how in ("image", "pdf") and not request.args.get("download"):
        return _policed(att.data, INLINE_POLICY, mimetype=view.content_type,
                        headers={"Content-Disposition": content_disposition("inline", att.filename)})
    return _policed(att.data, DOWNLOAD_POLICY, mimetype="application/octet-stream",
                    headers={"Content-Disposition": content_disposition("attachment", att.filename)})


@bp.route("/documents/<int:document_id>")
def document_page(document_id: int) -> Any:
    return _page(None, None, _document(document_id))


def _document(document_id: int) -> Any:
    with desk().ctx.store.tx() as c:
        d = c.execute(sa.select(documents).where(documents.c.id == document_id)).first()
    if d is None:
        abort(404, f"Không có tài liệu #{document_id}.")
    return d


def _page(pk: int | None, part: str | None, d: Any, *, rows: list[typed.TypedRow] | None = None,
          problems: tuple[str, ...] = (), status: int = 200) -> Any:
    ctx = desk().ctx
    if d is not None:
        pk, part = d.message_pk, d.part
    assert pk is not None and part is not None
    msg = ctx.store.message(pk)
    if msg is None:
        abort(404, f"Không có thư #{pk}.")
    att = find(ctx, pk, part, d.sha256 if d is not None else None)
    if att is None and d is None:
        abort(404, f"Không có tệp đính kèm này trong thư #{pk}.")
    view = view_of(att, ctx.rules.limits) if att is not None else None
    cells = read_cells(att.filename, att.data, att.sha256, ctx.rules) if view and view.how == "table" else None
    unit_id = d.unit_id if d is not None else msg.unit_id
    review = _review_view(d, rows) if d is not None else None
    html = render_template(
        "preview.html", msg=msg, d=d, att=att, view=view, cells=cells,
        unit=ctx.units.by_id(unit_id) if unit_id else None,
        filename=att.filename if att is not None else d.filename, described=describe(view) if view else "Tệp",
        size=size_label(att.size) if att is not None else "", part=att.part if att is not None else part,
        review=review, problems=problems, section_labels=typed.SECTION_LABELS,
        back=safe_next(request.values.get("back")) if request.values.get("back") else url_for("desk.review_page"))
    return _policed(html, PAGE_POLICY, status=status, mimetype="text/html")


def _review_view(d: Any, rows: list[typed.TypedRow] | None) -> dict[str, Any]:
    """What the document's page offers: accept (with rows to type for a table form), type the rows of a form
    accepted without them, the rows recorded."""
    ctx = desk().ctx
    with ctx.store.tx() as c:
        recorded = [dict(e._mapping, categories=json.loads(e.categories or "[]")) for e in c.execute(
            sa.select(entries).where(entries.c.document_id == d.id).order_by(entries.c.id).limit(500))]
    out: dict[str, Any] = {"recorded": recorded, "mode": None, "layout": None, "rows": rows or [],
                           "choices": None, "rows_kind": None, "labels": {}}
    if d.state == "needs_review":
        choices = actions.accept_choices(ctx, d.campaign)
        kinds = dict(choices.kinds)
        asked = request.values.get("rows_kind") or request.values.get("kind") or d.kind
        rows_kind = asked if asked in kinds and typed.layout(ctx.rules.forms.get(asked)) else None
        out.update(mode="accept", choices=choices, rows_kind=rows_kind,
                   table_kinds=[(k, label) for k, label in choices.kinds if typed.layout(ctx.rules.forms.get(k))],
                   kind=request.values.get("kind") or d.kind, period=request.values.get("period") or d.period)
    elif d.state == "accepted" and not recorded and typed.layout(ctx.rules.forms.get(d.kind)):
        out.update(mode="entries", rows_kind=d.kind)
    lay = typed.layout(ctx.rules.forms.get(out["rows_kind"] or ""))
    if lay is not None:
        out["layout"] = lay
        out["rows"] = rows or typed.blank_rows(lay, typed.row_count(request.values))
    form = ctx.rules.forms.get(d.kind)
    out["labels"] = form.category_labels() if form is not None else {}
    return out


# ------------------------------------------------------------------------------------------ acting on a document

@bp.route("/documents/<int:document_id>/accept", methods=["POST"])
def document_accept(document_id: int) -> Any:
    """Accept a needs_review document, with the rows staff typed in from it (a table form)."""
    d = _document(document_id)
    ctx, form = desk().ctx, request.form
    kind, period = form.get("kind", ""), form.get("period") or None
    rows_kind = form.get("rows_kind") or None
    lay = typed.layout(ctx.rules.forms.get(rows_kind or ""))
    rows = typed.read_rows(form, lay, typed.row_count(form)) if lay is not None else []
    if form.get("more"):  # more rows to type: the page again, nothing recorded
        return _page(None, None, d, rows=rows + typed.blank_rows(lay, len(rows) + 5)[len(rows):] if lay else None)
    entered: tuple[Any, ...] = ()
    if any(not r.blank for r in rows):
        assert lay is not None
        if kind != lay.kind:
            return _page(None, None, d, rows=rows, status=422, problems=(
                f"Các dòng đã nhập theo cột của {lay.form_name}, nhưng loại văn bản chọn là "
                f"{ctx.rules.kind_label(kind)}: hãy chọn lại loại văn bản cho khớp.",))
        entered, problems = typed.check(rows, lay, g.account.username)
        if problems:
            return _page(None, None, d, rows=rows, problems=tuple(problems), status=422)
    try:
        result = actions.accept(ctx, document_id, kind=kind, period=period, actor=g.account.username,
                                now=desk().now(), entries=entered, confirm=form.get("confirm") or None)
    except actions.NeedsConfirmation as exc:
        return confirmation_page(exc, url_for("desk.document_accept", document_id=document_id),
                                 url_for("desk.document_page", document_id=document_id))
    except actions.ReviewError as exc:
        flash("error", _sentence(str(exc)))
        return redirect(url_for("desk.document_page", document_id=document_id))
    flash("ok", result.message)
    return redirect(safe_next(form.get("back")) if form.get("back") else url_for("desk.document_page",
                                                                                  document_id=document_id))


@bp.route("/documents/<int:document_id>/entries", methods=["POST"])
def document_entries(document_id: int) -> Any:
    """The rows of a form accepted earlier without them, typed in now."""
    d = _document(document_id)
    ctx, form = desk().ctx, request.form
    lay = typed.layout(ctx.rules.forms.get(d.kind))
    if lay is None:
        abort(400, "Loại văn bản này không có bảng để nhập nội dung.")
    rows = typed.read_rows(form, lay, typed.row_count(form))
    if form.get("more"):
        return _page(None, None, d, rows=rows + typed.blank_rows(lay, len(rows) + 5)[len(rows):])
    entered, problems = typed.check(rows, lay, g.account.username)
    if problems:
        return _page(None, None, d, rows=rows, problems=tuple(problems), status=422)
    try:
        result = actions.enter_entries(ctx, document_id, entered, actor=g.account.username, now=desk().now())
    except actions.ReviewError as exc:
        flash("error", _sentence(str(exc)))
    else:
        flash("ok", result.message)
    return redirect(url_for("desk.document_page", document_id=document_id))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# ------------------------------------------------------------------------------------------ for other pages

@bp.app_template_global()
def document_brief(document_id: int | None) -> Any:
    """A document's file name and arrival, to name it where the ledger has only its id ("đã thay bằng …")."""
    if document_id is None:
        return None
    with desk().ctx.store.tx() as c:
        return c.execute(sa.select(documents.c.id, documents.c.filename, documents.c.received_at)
                         .where(documents.c.id == document_id)).first()


@bp.app_template_global()
def awaits_entries(row: Any, n_entries: int) -> bool:
    """An accepted photo or scan of a table form with no rows yet: "đã ghi nhận, chưa nhập nội dung"."""
    form = desk().ctx.rules.forms.get(row.kind)
    return row.state == "accepted" and not n_entries and form is not None and not form.is_report


@bp.app_template_global()
def table_form(kind: str | None) -> bool:
    """A form with rows to type in (not a report, not unknown)."""
    form = desk().ctx.rules.forms.get(kind or "")
    return form is not None and not form.is_report
