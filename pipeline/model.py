"""Frozen value types shared by every module.

Nothing here does I/O. Times are timezone-aware datetimes; the core never reads the clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# A document's kind is the id of its form definition (rules/forms/<id>.yaml), or "unknown".
# The states of a document and a message, as they appear in the export.
DOC_STATES = ("accepted", "rejected", "needs_review", "ignored")  # ignored: only by staff, on the desk
MAIL_STATES = ("received", "processed", "quarantined", "ignored", "error")
# The 2022 plan's category codes, as its shipped definitions list them. The pipeline takes a form's
# categories from its definition (FormDef.categories); this stays for the demo's and the tests' samples.
CATEGORIES = ("gpmb", "kinh_te", "chinh_trang_do_thi", "bvmt", "vhxh", "anqp", "khac")
SECTIONS = ("collective", "individual")
GROUPS = ("hcsn", "doanh_nghiep", "truong_hoc")


@dataclass(frozen=True)
class Unit:
    """A grassroots union (CĐCS) from the units file."""

    unit_id: str
    name: str
    group: str
    emails: tuple[str, ...]


@dataclass(frozen=True)
class MessageRef:
    folder: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class Attachment:
    """One attachment, already decoded. ``filename`` is sanitised and safe for disk and display."""

    filename: str
    content_type: str
    data: bytes
    sha256: str
    original_filename: str | None = None
    part: str = ""  # MIME path, e.g. "2" or "3.2" inside a forwarded message


@dataclass(frozen=True)
class ParsedMail:
    """What mime.parse_message makes of one raw message."""

    message_id: str | None
    from_addr: str | None  # lower-cased addr-spec, None when absent or unparseable
    from_name: str | None
    subject: str
    references: tuple[str, ...]
    kind: str  # "normal" | "auto_reply" | "bounce"
    kind_reason: str | None  # why it is an auto-reply / bounce, in Vietnamese
    auth_failure: str | None  # e.g. "dmarc=fail" when Authentication-Results says the From failed
    attachments: tuple[Attachment, ...]
    skipped_parts: tuple[str, ...] = ()  # signature images etc., described for the log
    defects: tuple[str, ...] = ()
    bounced_recipients: tuple[str, ...] = ()  # for delivery-status bounces
    bounced_message_id: str | None = None


@dataclass(frozen=True)
class Finding:
    """One issue with a document. Bad data is a value, not an exception."""

    code: str  # stable kebab-case, e.g. "no-category"
    severity: str  # "error" (rejects the document) | "warning" (only shown)
    message: str  # Vietnamese, what is wrong and how to fix it
    location: str | None = None  # as the unit sees it: "Sheet1!F9" or "Bảng 1, dòng 5"
    row: int | None = None
    column: str | None = None  # the column as printed in the header, e.g. "GPMB"


@dataclass(frozen=True)
class Entry:
    section: str  # "collective" | "individual"
    name: str
    model: str
    categories: tuple[str, ...]
    result: str | None = None
    note: str | None = None
    row: int | None = None
    location: str | None = None
    # The values of the form's other columns (those its definition in rules/forms/ adds), as
    # (column key, text as written), in the form's column order.
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DocumentReading:
    """What the form readers make of one attachment."""

    kind: str  # a form id (rules/forms/<id>.yaml) or "unknown"
    period: str | None  # "2022-Q1" | "2022-H1" | "2022-Q3" | "2022-Y" | None
    state: str  # one of DOC_STATES
    entries: tuple[Entry, ...] = ()
    findings: tuple[Finding, ...] = ()
    unit_line: str | None = None  # the text after "ĐƠN VỊ:" in the file
    format: str | None = None  # "xlsx", "xls", "docx", "pdf", ...
    title: str | None = None  # the title text the kind was read from
    campaign: int | None = None  # the year of the campaign the document belongs to (None: none known)


@dataclass(frozen=True)
class DocumentRecord:
    """A recorded document as the deadline logic and reports see it."""

    document_id: int
    unit_id: str
    kind: str
    period: str | None
    state: str
    received_at: datetime
    superseded: bool = False
    first_attempt_at: datetime | None = None  # earliest received_at of this unit/kind/period
    findings: tuple[Finding, ...] = field(default=())
    campaign: int | None = None  # the campaign (year) the document counts for


# Labels shown to people (Vietnamese, as the plan prints them).
# The 2022 plan's names of categories and kinds, as the shipped definitions give them: what people see comes
# from the configured definitions (Rules.kind_label, FormDef.category_labels()). KIND_LABELS stays for the
# name of "unknown" (Rules.kind_label's fallback) and the desk; CATEGORY_LABELS for the tests.
CATEGORY_LABELS = {
    "gpmb": "GPMB",
    "kinh_te": "Kinh tế",
    "chinh_trang_do_thi": "Chỉnh trang đô thị",
    "bvmt": "BVMT",
    "vhxh": "VHXH",
    "anqp": "ANQP",
    "khac": "Lĩnh vực khác",
}
KIND_LABELS = {
    "registration": "Biểu đăng ký mô hình “Dân vận khéo”",
    "summary": "Biểu tổng hợp đăng ký mô hình (Mẫu M2)",
    "commendation": "Danh sách đề xuất khen thưởng",
    "report": "Báo cáo kết quả thực hiện",
    "unknown": "Chưa xác định được loại văn bản",
}
SECTION_LABELS = {"collective": "I. Tập thể", "individual": "II. Cá nhân"}
DOC_STATE_LABELS = {
    "accepted": "đã ghi nhận",
    "rejected": "chưa ghi nhận, cần sửa và gửi lại",
    "needs_review": "chờ cán bộ xem xét",
    "ignored": "cán bộ đã bỏ qua",
}
MAIL_STATE_LABELS = {
    "received": "đang xử lý",
    "processed": "đã xử lý",
    "quarantined": "cách ly, chờ xem xét",
    "ignored": "bỏ qua",
    "error": "lỗi, chờ xử lý lại",
}


def period_label(period: str | None) -> str | None:
    """'2022-Q1' → 'quý I/2022'; None stays None."""
    if not period or "-" not in period:
        return period
    year, part = period.split("-", 1)
    return {
        "Q1": f"quý I/{year}",
        "Q2": f"quý II/{year}",
        "H1": f"6 tháng đầu năm {year}",
        "Q3": f"quý III (9 tháng) năm {year}",
        "Q4": f"quý IV/{year}",
        "Y": f"năm {year}",
    }.get(part, period)
