"""The staff email of the consolidated report: subject, HTML (templates/report_email.html.j2) and plain text.

Pure: ReportData in, strings out. Every figure comes from reports.py (headline, ObligationCounts,
missing_rows), the same the desk and the workbook show; nothing is counted here.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.plan.deadlines import STANDING_LABELS_VI
from pipeline.plan.reports import Headline, MissingRow, ObligationCounts, ReportData, headline, missing_rows, percent
from pipeline.plan.vn import vn_date

if TYPE_CHECKING:
    import jinja2


def progress_line(counts: ObligationCounts) -> str:
    """One obligation as the text mail says it: every standing a unit can have, by name, and the total."""
    due = f"hạn {vn_date(counts.due_date)}" if counts.due_date else "chưa quy định hạn"
    parts = [f"{STANDING_LABELS_VI[s].lower()} {counts.count(s)}" for s in ("on_time", "late", "rejected",
                                                                              "under_review")]
    parts.append(f"{counts.not_sent_label.lower()} {counts.not_sent}")
    return f"- {counts.title} ({due}): {counts.owed} đơn vị phải nộp; " + "; ".join(parts)


def registered_line(h: Headline, share: str, target: str) -> str:
    line = f"- CĐCS đã đăng ký mô hình: {h.units_registered}/{h.units_total} ({share}; chỉ tiêu {target})"
    if h.units_without_entries:
        line += (f"; trong đó {h.units_without_entries} đơn vị chưa có số liệu mô hình (văn bản đã được chấp "
                 "nhận nhưng chưa nhập các dòng)")
    return line


def render_staff_email(
    env: jinja2.Environment,
    data: ReportData,
    *,
    headline_figures: Headline | None = None,
    missing: Sequence[MissingRow] | None = None,
    attachment_name: str | None = None,
) -> tuple[str, str, str]:
    """Subject, HTML (templates/report_email.html.j2, autoescaped) and plain text of the staff email."""
    figures = headline_figures or headline(data)
    owing = tuple(missing) if missing is not None else missing_rows(data)
    dated = [o for o in figures.obligations if o.due_date is not None]
    subject = (f"[{data.organisation}] Tổng hợp “Dân vận khéo” năm {data.year} – "
               f"số liệu đến ngày {vn_date(data.today)}")
    context = {
        "organisation": data.organisation,
        "year": data.year,
        "today": vn_date(data.today),
        "h": figures,
        "progress": dated,
        "share_registered": f"{figures.share_registered * 100:.1f}%".replace(".", ","),
        "target": percent(data.registration_share),
        "overdue": [m for m in owing if m.overdue],
        "upcoming": [m for m in owing if not m.overdue],
        "attachment_name": attachment_name,
        "labels": STANDING_LABELS_VI,
    }
    html = env.get_template("report_email.html.j2").render(**context)

    lines = [
        f"Kính gửi: Thường trực {data.organisation}",
        "",
        f"Tổng hợp phong trào thi đua “Dân vận khéo” năm {data.year}, số liệu đến ngày {vn_date(data.today)}:",
        registered_line(figures, context["share_registered"], context["target"]),
        f"- Tổng số mô hình: {figures.models_total} (tập thể {figures.collective_models}, "
        f"cá nhân {figures.individual_models})",
        "- Theo lĩnh vực: " + ", ".join(f"{name} {n}" for name, n in figures.models_by_category),
        f"- Đề xuất khen thưởng: {figures.commendations_total}",
    ]
    if dated:
        lines += ["", "Tiến độ theo từng nội dung:"]
        lines += [progress_line(o) for o in dated]
    for label, rows in (("Đơn vị chưa gửi, đã quá hạn:", context["overdue"]),
                        ("Đơn vị chưa gửi, sắp đến hạn:", context["upcoming"])):
        if rows:
            lines += ["", label]
            lines += [f"- {m.unit_name} ({m.group}) – {m.obligation_title}, hạn {m.deadline}: {m.state}" for m in rows]
    if attachment_name:
        lines += ["", f"Chi tiết xem tệp đính kèm {attachment_name}."]
    lines += ["", "(Thư tổng hợp tự động)"]
    return subject.replace("\n", " "), html, "\n".join(lines) + "\n"


__all__ = ["progress_line", "registered_line", "render_staff_email"]
