"""Đơn vị: the list of units (search, upload a new list, download it), a unit's page and an archived mail.

The states shown are those of the campaign in view, as the standing of the day (queries.standings: overdue
or not yet due, as the overview, the staff mail and the workbook say); a unit's page lists all its mail
whatever the year."""
from __future__ import annotations

import io
import logging
from typing import Any

from flask import Response, abort, g, redirect, render_template, request, send_file, url_for

from pipeline.desk import actionlog, queries, unitsadmin
from pipeline.desk.web import MAX_UPLOAD, bp, desk, flash, view_ctx

log = logging.getLogger(__name__)


def _units_page(check: Any = None, status: int = 200) -> Any:
    ctx = view_ctx()
    q = request.args.get("q", "")
    standings = queries.standings(ctx, desk().today())
    shown = queries.search_units(ctx.units.units, q)
    obligations = [(ob, queries.short_title(ob, ctx.rules)) for ob in ctx.obligations]
    replacements = unitsadmin.last_replacements(ctx, 5)
    html = render_template("units.html", units=shown, total=len(ctx.units.units), q=q, standings=standings,
                           obligations=obligations, check=check, units_file=ctx.cfg.units_file.name,
                           replacements=replacements, max_mb=MAX_UPLOAD // (1024 * 1024))
    return Response(html, status=status, mimetype="text/html")


@bp.route("/units")
def units_page() -> Any:
    return _units_page()


@bp.route("/units/upload", methods=["POST"])
def units_upload() -> Any:
    f = request.files.get("file")
    if f is None or not f.filename:
        flash("error", "Hãy chọn tệp danh sách đơn vị (.csv hoặc .xlsx) để tải lên.")
        return redirect(url_for("desk.units_page"))
    data = f.read(MAX_UPLOAD + 1)
    check = unitsadmin.replace_units(desk().ctx, data, f.filename, actor=g.account.username)
    if not check.ok:
        return _units_page(check, status=422)
    n = len(check.units.units) if check.units else 0
    text = (f"Đã thay danh sách đơn vị ({n} đơn vị): thêm {len(check.added)}, bỏ {len(check.removed)}, "
            f"sửa {len(check.changed)}.")
    for label, ids in (("Thêm", check.added), ("Bỏ", check.removed), ("Sửa", check.changed)):
        if ids:
            text += f" {label}: {', '.join(ids)}."
    flash("ok", text)
    for w in getattr(check, "warnings", ()):
        flash("warn", w)
    return redirect(url_for("desk.units_page"))


@bp.route("/units/download")
def units_download() -> Any:
    data, name, mime = unitsadmin.units_file_bytes(desk().ctx)
    return send_file(io.BytesIO(data), mimetype=mime, as_attachment=True, download_name=name, max_age=0)


@bp.route("/units/<unit_id>")
def unit(unit_id: str) -> Any:
    ctx = view_ctx()
    u = ctx.units.by_id(unit_id)
    if u is None:
        abort(404, f"Không có đơn vị mã {unit_id} trong danh sách hiện tại.")
    st = queries.states(ctx)
    standings = queries.standings(ctx, desk().today(), st)
    rows = [(ob, queries.short_title(ob, ctx.rules), st.get((u.unit_id, ob.id)), standings.get((u.unit_id, ob.id)))
            for ob in ctx.obligations]
    history = queries.unit_history(ctx, u)
    actions = actionlog.history(ctx, unit_id=u.unit_id)
    return render_template("unit.html", unit=u, rows=rows, history=history, actions=actions,
                           reminder_titles=_reminder_titles(ctx, history.reminders),
                           forms=list(ctx.rules.blank_forms(ctx.campaign.forms)))


def _reminder_titles(ctx: Any, rows: list[Any]) -> dict[int, str]:
    """Each reminder's obligation as its own campaign names it ("Báo cáo quý I/2022"), and the year when
    it is not the one in view."""
    out = {}
    for r in rows:
        plan = ctx.campaigns.get(r.campaign) if r.campaign is not None else None
        ob = next((o for o in plan.obligations if o.id == r.obligation_id), None) if plan else None
        title = ob.title if ob is not None else r.obligation_id
        out[r.id] = title if r.campaign == ctx.year else f"{title} (năm {r.campaign})"
    return out


@bp.route("/mail/<int:pk>.eml")
def original(pk: int) -> Any:
    ctx = desk().ctx
    row = queries.message_row(ctx, pk)
    if row is None:
        abort(404, f"Không có thư #{pk}.")
    try:
        raw = ctx.archive.get(row.sha256)
    except OSError as exc:
        log.error("desk: archived copy of message %s unreadable: %s", pk, exc)
        abort(404, f"Không đọc được bản lưu trữ của thư #{pk}.")
    return send_file(io.BytesIO(raw), mimetype="message/rfc822", as_attachment=True,
                     download_name=f"thu-{pk}.eml", max_age=0)

