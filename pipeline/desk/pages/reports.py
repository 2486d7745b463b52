"""Báo cáo: the staff report (download the workbook, send it by mail) and the blank forms, of the campaign
in view."""
from __future__ import annotations

import io
import logging
from datetime import date
from typing import Any

from flask import abort, g, redirect, render_template, request, send_file, url_for

from pipeline.desk import queries
from pipeline.desk.web import XLSX, bp, desk, flash, view_ctx

log = logging.getLogger(__name__)


def _day(text: str | None) -> date:
    if not text:
        return desk().today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        abort(400, f"Ngày không hợp lệ: {text[:20]} (chọn ngày trên lịch).")


@bp.route("/reports")
def reports_page() -> Any:
    from pipeline.forms.blank import form_filename

    ctx = view_ctx()
    forms = [(k, form_filename(k, year=ctx.year, rules=ctx.rules)) for k in ctx.rules.blank_forms(ctx.campaign.forms)]
    return render_template("reports.html", today=desk().today(), forms=forms, staff=ctx.cfg.staff,
                           units=queries.sort_units(ctx.units.units))


@bp.route("/reports/workbook")
def reports_workbook() -> Any:
    from pipeline.plan.staffreport import report_data, workbook_name
    from pipeline.plan.workbook import build_workbook

    ctx = view_ctx()
    day = _day(request.args.get("date"))
    data = build_workbook(report_data(ctx, day))
    return send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True,
                     download_name=workbook_name(day, ctx.year), max_age=0)


@bp.route("/reports/send", methods=["POST"])
def reports_send() -> Any:
    from pipeline.plan.staffreport import run_report

    d = desk()
    ctx = view_ctx()
    day = _day(request.form.get("date"))
    if not ctx.cfg.staff:
        flash("error", "Chưa cấu hình địa chỉ cán bộ nhận báo cáo (mục staff trong config.yaml).")
        return redirect(url_for("desk.reports_page"))
    summary = run_report(ctx, today=day, send=True, clock=d.clock)
    log.info("desk: %s asked for the %s report of %s: %s", g.account.username, ctx.year, day, summary.text())
    what = f"báo cáo tổng hợp năm {ctx.year} ngày {day:%d/%m/%Y}"
    if summary.queued:
        sent = summary.outbox.get("sent", 0)
        flash("ok", f"Đã gửi {what} tới {', '.join(ctx.cfg.staff)}."
              if sent else f"{what[:1].upper()}{what[1:]} đã vào hộp thư đi; sẽ gửi khi máy chủ thư sẵn sàng.")
    else:
        flash("warn", f"{what[:1].upper()}{what[1:]} đã được gửi cho cán bộ trước đó "
                      "(mỗi ngày gửi một lần); có thể tải tệp về ở trên.")
    return redirect(url_for("desk.reports_page"))


@bp.route("/forms/<kind>.xlsx")
def blank_form(kind: str) -> Any:
    from pipeline.forms.blank import blank_form as make, form_filename

    ctx = view_ctx()
    if kind not in ctx.rules.blank_forms(ctx.campaign.forms):
        abort(404, f"Kế hoạch năm {ctx.year} không có biểu mẫu này.")
    unit_name = None
    unit_id = request.args.get("unit")
    if unit_id:
        u = ctx.units.by_id(unit_id)
        if u is None:
            abort(404, f"Không có đơn vị mã {unit_id}.")
        unit_name = u.name
    data = make(kind, year=ctx.year, unit_name=unit_name, rules=ctx.rules)
    return send_file(io.BytesIO(data), mimetype=XLSX, as_attachment=True,
                     download_name=form_filename(kind, year=ctx.year, unit_name=unit_name, rules=ctx.rules), max_age=0)
