"""`intake demo`: a full pass on a fresh machine with nothing configured.

Starts an embedded IMAP server and SMTP server on loopback, fills the mailbox with realistic mail from
several units (made here, on the fly), writes a config and units file for them, runs one pass, and
prints where the results are.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from intake_demo.embedded import EmbeddedMailbox, EmbeddedSmtp
from intake_demo import samples
from intake_demo import samplemail

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DISTRICT = "ldldlongbien@gmail.com"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

UNITS = [
    ("cq001", "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", "hcsn", "cdcs.ubnd@longbien.gov.vn"),
    ("th014", "Công đoàn Trường Tiểu học Ái Mộ", "truong_hoc", "thaimo.longbien@gmail.com;hieutruong.aimo@gmail.com"),
    ("dn027", "Công đoàn Công ty Cổ phần May Đức Giang", "doanh_nghiep", "congdoan@maydg.com.vn"),
    ("dv032", "Công đoàn Trung tâm Y tế quận Long Biên", "hcsn", "congdoan.ttyt.lb@gmail.com"),
    ("th021", "Công đoàn Trường Mầm non Hoa Sữa", "truong_hoc", "mnhoasua@gmail.com"),
]


def _when(day: int, month: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2022, month, day, hour, minute, tzinfo=TZ)


def _date_header(dt: datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(dt)


def sample_mail() -> list[tuple[bytes, datetime]]:
    """The demo's mailbox: what a real week in February 2022 looks like."""
    out: list[tuple[bytes, datetime]] = []
    t = _when(14, 2, 9, 12)
    reg = samples.registration_xlsx(UNITS[0][1], [
        ("Tổ công đoàn Văn phòng", "Cải cách hành chính, một cửa thân thiện", "khac"),
        ("Phòng Tài nguyên và Môi trường", "Phân loại rác thải tại nguồn ở khu dân cư", "bvmt"),
        ("Đồng chí Nguyễn Thị Lan", "Vận động hiến đất mở rộng ngõ 102", "gpmb"),
    ])
    out.append((samplemail.gmail_message(UNITS[0][3], DISTRICT, "Đăng ký mô hình Dân vận khéo năm 2022 - UBND quận",
                                         "Kính gửi LĐLĐ quận, đơn vị gửi biểu đăng ký.",
                                         [("Biểu đăng ký Dân vận khéo 2022.xlsx", reg, XLSX)], date=_date_header(t)), t))
    t = _when(18, 2, 15, 40)
    m2 = samples.summary_xlsx(UNITS[1][1], [
        ("Tổ chuyên môn khối 1", "Lớp học thân thiện, sạch đẹp", "vhxh"),
        ("Tổ văn phòng", "Tiết kiệm điện nước trong trường học", "kinh_te"),
    ], [
        ("Cô Trần Thu Hà", "Góc đọc sách cho học sinh", "vhxh"),
    ])
    out.append((samplemail.outlook_message(UNITS[1][3].split(";")[0], DISTRICT, "Tổng hợp đăng ký mô hình - TH Ái Mộ",
                                           "Trường Tiểu học Ái Mộ gửi biểu tổng hợp M2.",
                                           [("Mẫu M2 - Tổng hợp đăng ký (TH Ái Mộ).xlsx", m2, XLSX)],
                                           date=_date_header(t)), t))
    t = _when(21, 2, 20, 5)
    bad = samples.registration_xlsx(UNITS[2][1], [
        ("Tổ may số 3", "Năng suất cao, an toàn lao động", "kinh_te"),
        ("Anh Lê Văn Tùng", "Sáng kiến cải tiến dây chuyền", "kinh_te"),
    ])
    bad = samples.without_mark(bad, "Anh Lê Văn Tùng")  # a unit forgot to mark the category
    out.append((samplemail.thunderbird_message(UNITS[2][3], DISTRICT, "Đăng ký Dân vận khéo - May Đức Giang",
                                               "Công ty gửi biểu đăng ký.",
                                               [("Đăng ký mô hình DVK - Công ty May Đức Giang.xlsx", bad, XLSX)],
                                               date=_date_header(t)), t))
    t = _when(22, 2, 16, 30)
    photo = samplemail.SIGNATURE_PNG
    out.append((samplemail.gmail_message(UNITS[3][3], DISTRICT, "Ảnh biểu đăng ký đã ký - TTYT",
                                         "Đơn vị gửi ảnh chụp biểu đăng ký có chữ ký.",
                                         [("Ảnh chụp biểu đăng ký.png", photo, "image/png")], date=_date_header(t)), t))
    t = _when(23, 2, 8, 15)
    out.append((samplemail.gmail_message("nguoi.la@yahoo.com", DISTRICT, "Gửi biểu đăng ký",
                                         "Em gửi biểu đăng ký của đơn vị.",
                                         [("dang ky.xlsx", reg, XLSX)], date=_date_header(t)), t))
    t = _when(23, 2, 8, 16)
    out.append((samplemail.auto_reply(UNITS[4][3], DISTRICT, "Nhắc nộp biểu đăng ký", date=_date_header(t)), t))
    t = _when(10, 3, 10, 0)
    rep = samples.report_docx(UNITS[0][1], "BÁO CÁO Kết quả thực hiện chủ đề năm 2022 quý I")
    out.append((samplemail.gmail_message(UNITS[0][3], DISTRICT, "Báo cáo quý I năm 2022",
                                         "Kính gửi LĐLĐ quận báo cáo quý I.",
                                         [("Báo cáo quý I-2022.docx", rep, DOCX)], date=_date_header(t)), t))
    return out


def run_demo(out_dir: Path) -> int:
    from pipeline.config import load_config
    from pipeline.ledger.export import export, status_text
    from pipeline.context import Context
    from pipeline.worker.mailpass import run_pass

    out_dir = out_dir.resolve()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    with EmbeddedMailbox() as imap, EmbeddedSmtp(out_dir / "sent") as smtp:
        for raw, when in sample_mail():
            imap.deliver(raw, when)
        units_csv = out_dir / "units.csv"
        units_csv.write_text("\ufeffunit_id,name,group,emails\n" + "".join(
            f'{u},"{n}",{g},{e}\n' for u, n, g, e in UNITS), encoding="utf-8")
        os.environ["INTAKE_DEMO_IMAP_PASSWORD"] = imap.password
        cfg = {
            "organisation": "Liên đoàn Lao động quận Long Biên",
            "year": 2022,
            "timezone": "Asia/Ho_Chi_Minh",
            "mailbox": {"host": imap.host, "port": imap.port, "security": "plain", "username": imap.username,
                        "password_env": "INTAKE_DEMO_IMAP_PASSWORD", "folder": imap.folder, "timeout": 30},
            "smtp": {"host": smtp.host, "port": smtp.port, "security": "plain",
                     "sender": f"LĐLĐ quận Long Biên <{DISTRICT}>", "timeout": 30},
            "storage": {"database": "intake.sqlite3", "archive": "archive"},
            "units": "units.csv",
            "staff": ["vanphong.ldld@example.org"],
        }
        cfg_path = out_dir / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        ctx = Context(load_config(cfg_path))
        summary = run_pass(ctx)
        export_path = out_dir / "export.json"
        export_path.write_text(json.dumps(export(ctx.store, ctx.cfg.tz), ensure_ascii=False, indent=2) + "\n",
                               encoding="utf-8")
        status = status_text(ctx.store, ctx.units, ctx.cfg.tz)
        (out_dir / "status.txt").write_text(status + "\n", encoding="utf-8")
        sent = sorted((out_dir / "sent").glob("*.eml"))
    print(status)
    print()
    print(f"Một lượt xử lý: {summary.fetched} thư, trạng thái {summary.states}, hộp thư đi {summary.outbox}")
    print(f"Kết quả (results) in {out_dir}:")
    print(f"  export:   {export_path}")
    print(f"  status:   {out_dir / 'status.txt'}")
    print(f"  receipts: {out_dir / 'sent'} ({len(sent)} thư đã gửi)")
    print(f"  config:   {cfg_path}  (try: intake --config {cfg_path} status)")
    return 0 if summary.error is None else 1
