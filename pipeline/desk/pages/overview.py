"""Tổng quan: where every unit stands on every obligation, the headline figures and the weekly charts, of the
campaign in view (pipeline.desk.web.view_ctx).

Every figure on the page comes from one ReportData (pipeline.plan.staffreport.report_data), the one the staff
mail and the workbook of the same day are made from: the table of obligations, its lists of units and the
targets cannot disagree."""
from __future__ import annotations

from typing import Any

from flask import render_template

from pipeline.desk import charts, queries
from pipeline.desk.web import bp, desk, view_ctx


@bp.route("/")
def overview() -> Any:
    from pipeline.plan import reports
    from pipeline.plan.staffreport import report_data

    ctx = view_ctx()
    today = desk().today()
    data = report_data(ctx, today)
    views = queries.obligation_views(data, ctx.rules)
    head = reports.headline(data)
    category_chart = charts.hbar_chart(list(head.models_by_category))
    docs = ctx.documents()
    week_charts, no_documents = [], []
    for ob in ctx.obligations:
        series = queries.weekly_submissions(ob, docs, ctx.cfg.tz)
        if series.total and series.weeks:
            week_charts.append(charts.week_chart(series, ctx.cfg.tz))
        else:
            no_documents.append(ob)
    return render_template("overview.html", views=views, head=head, data=data, today=today,
                           category_chart=category_chart, week_charts=week_charts, no_documents=no_documents,
                           units=queries.sort_units(ctx.units.units), campaign=ctx.campaign)
