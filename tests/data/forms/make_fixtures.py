"""Regenerate the small committed fixtures and their expected readings.

    .venv/bin/python tests/data/forms/make_fixtures.py          # write files, keep expected.json
    .venv/bin/python tests/data/forms/make_fixtures.py --expect # also rewrite expected.json (review the diff!)

The files are made the way units make them (openpyxl as Excel, xlwt as legacy Excel, odfpy as
LibreOffice, python-docx as Word); big and hostile files are generated at test time instead.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parents[1]))

import formfiles as ff  # noqa: E402

from pipeline.forms import read_document  # noqa: E402
from intake_demo import samples
from pipeline.model import Unit  # noqa: E402

UNIT = Unit("th014", "Công đoàn Trường Tiểu học Ái Mộ", "truong_hoc", ())
E = [
    ("Tổ Văn phòng", "Dọn vệ sinh ngõ xóm cùng nhân dân", "bvmt"),
    ("Nguyễn Văn An", "Vận động gia đình bàn giao mặt bằng", "gpmb"),
    ("Tổ chuyên môn khối 5", "Tuyên truyền an toàn giao thông", "anqp"),
]
IND = [("Trần Thị Bình", "Nhắn tin nhắc đoàn viên tham gia", "vhxh")]


def files() -> dict[str, bytes]:
    reg = samples.registration_xlsx(UNIT.name, E)
    rows = ff.rows_of(UNIT.name, E)
    rows[7][3] = None  # a forgotten mark
    rows[8][4] = "có"  # a mark nobody can read
    return {
        "dang-ky.xlsx": reg,
        "dang-ky-dau-x.xlsx": samples.registration_xlsx(UNIT.name, E, variant="marks"),
        "dang-ky-lech-cot.xlsx": samples.registration_xlsx(UNIT.name, E, variant="offset"),
        "dang-ky.xls": ff.registration_xls(UNIT.name, E),
        "dang-ky.ods": ff.registration_ods(UNIT.name, E),
        "dang-ky.xlsm": ff.with_macro(reg),
        "dang-ky.docx": samples.registration_docx(UNIT.name, E),
        "mau-m2-tong-hop.xlsx": samples.summary_xlsx(UNIT.name, E, IND),
        "tong-hop.docx": samples.summary_docx(UNIT.name, E, IND),
        "de-xuat-khen-thuong.xlsx": samples.commendation_xlsx(
            UNIT.name, [(*e, "Hoàn thành xuất sắc") for e in E], [(*IND[0], "Hoàn thành")]
        ),
        "bao-cao-quy-1.docx": samples.report_docx(UNIT.name),
        "bao-cao-9-thang.pdf": ff.text_pdf(["CONG DOAN TRUONG TIEU HOC AI MO", "BAO CAO",
                                            "Ket qua thuc hien 9 thang nam 2022"]),
        "dang-ky-thieu-dau.xlsx": ff.fast_xlsx(rows),
        "dang-ky-mat-khau.xlsx": ff.encrypted(reg),
        "dang-ky-hong.xlsx": ff.corrupt_zip(reg),
        "o-xa-XFD1048576.xlsx": ff.far_cell_sheet(),
    }


def main() -> None:
    expected = {}
    for name, data in files().items():
        (HERE / name).write_bytes(data)
        r = read_document(name, data, unit=UNIT)
        expected[name] = {
            "kind": r.kind,
            "state": r.state,
            "period": r.period,
            "findings": [[f.code, f.location] for f in r.findings],
            "entries": [[e.section, e.name, list(e.categories)] for e in r.entries],
        }
    if "--expect" in sys.argv:
        (HERE / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n",
                                            encoding="utf-8")
    print(json.dumps({k: [v["kind"], v["state"], v["findings"]] for k, v in expected.items()},
                     ensure_ascii=False, indent=0))


if __name__ == "__main__":
    main()
