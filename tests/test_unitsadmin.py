"""The units list managed from the desk / CLI: an upload is checked before it replaces anything."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from openpyxl import Workbook
import pytest

from conftest import UNITS_CSV, write_config
from pipeline.desk import actionlog
from pipeline.desk import unitsadmin
from pipeline.config import load_config
from pipeline.plan.units import parse_units
from pipeline.context import Context

pytestmark = pytest.mark.servers

BAD = (
    "unit_id,name,group,emails\n"
    "cq001,Công đoàn cơ quan UBND quận,hcsn,a@longbien.gov.vn\n"
    "cq001,Công đoàn trùng mã,hcsn,b@longbien.gov.vn\n"
    "th014,Trường Ái Mộ,truong_hoc,a@longbien.gov.vn;khong-phai-email\n"
    "dn027,,nha_may,c@maydg.com.vn\n"
)


def _ctx(tmp_path: Path, units_name: str = "units.csv") -> Context:
    cfg_path = write_config(tmp_path, imap_port=1, smtp_port=2)
    if units_name != "units.csv":
        data = parse_units(UNITS_CSV.encode("utf-8"), "x")
        from pipeline.plan.units import units_xlsx

        (tmp_path / units_name).write_bytes(units_xlsx(data.units))
        text = cfg_path.read_text(encoding="utf-8").replace("units: units.csv", f"units: {units_name}")
        cfg_path.write_text(text, encoding="utf-8")
    return Context(load_config(cfg_path))


def test_a_bad_upload_is_refused_with_every_reason_and_nothing_changes(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    before = ctx.cfg.units_file.read_bytes()
    check = unitsadmin.replace_units(ctx, BAD.encode("utf-8"), "don-vi-moi.csv", actor="hoa")
    assert not check.ok
    text = "\n".join(check.problems)
    assert "dòng 3: unit_id 'cq001' trùng với dòng 2" in text
    assert "dòng 4: địa chỉ a@longbien.gov.vn đã thuộc đơn vị cq001 (dòng 2)" in text
    assert "dòng 4: địa chỉ email không hợp lệ 'khong-phai-email'" in text
    assert "dòng 5: đơn vị dn027 thiếu tên" in text and "dòng 5: group 'nha_may' không hợp lệ" in text
    assert ctx.cfg.units_file.read_bytes() == before
    assert unitsadmin.last_replacements(ctx) == []


def test_other_bad_files_get_a_clear_reason(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    cases = {
        "a.csv": (b"", "rỗng"),
        "b.csv": ("mã,tên\ncq1,x\n".encode("utf-8"), "thiếu cột"),
        "c.csv": ("unit_id,name,group,emails\ncq1,Tên,hcsn,a@b.vn\n".encode("cp1258", errors="replace")
                  + "Tiếng Việt".encode("utf-16"), "UTF-8"),
        "d.xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, ".xls"),
        "e.pdf": (b"%PDF-1.4", "không được hỗ trợ"),
        "f.xlsx": (b"PK\x03\x04broken", "không đọc được tệp Excel"),
    }
    for name, (data, expected) in cases.items():
        check = unitsadmin.check_upload(data, name, ctx.units)
        assert not check.ok and any(expected in p for p in check.problems), (name, check.problems)


def test_a_good_upload_replaces_the_list_keeps_a_backup_and_can_be_undone(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    original = ctx.cfg.units_file.read_bytes()
    wb = Workbook()
    ws = wb.active
    ws.append(["unit_id", "name", "group", "emails"])
    ws.append(["cq001", "Công đoàn cơ quan Ủy ban nhân dân quận Long Biên", "hcsn", "CDCS.UBND@longbien.gov.vn"])
    ws.append(["th014", "Công đoàn Trường Tiểu học Ái Mộ", "truong_hoc", "thaimo.longbien@gmail.com; moi@gmail.com"])
    ws.append(["mn003", "Công đoàn Trường Mầm non Hoa Sữa", "truong_hoc", "mnhoasua@longbien.edu.vn"])
    buf = io.BytesIO()
    wb.save(buf)
    check = unitsadmin.replace_units(ctx, buf.getvalue(), "Danh sách mới.xlsx", actor="hoa")
    assert check.ok, check.problems
    assert check.added == ("mn003",) and check.changed == ("th014",)
    assert set(check.removed) == {"dn027", "peer1", "peer2"} and check.warnings
    # the configured file keeps its own format (CSV with the BOM Excel wants) and the worker sees the new list
    data = ctx.cfg.units_file.read_bytes()
    assert data.startswith("\ufeffunit_id,name,group,emails".encode("utf-8"))
    assert ctx.units.by_id("mn003").name == "Công đoàn Trường Mầm non Hoa Sữa"
    assert ctx.units.by_email("moi@gmail.com").unit_id == "th014"
    backups = list(unitsadmin.history_dir(ctx).iterdir())
    assert [b.read_bytes() for b in backups] == [original]
    [row] = unitsadmin.last_replacements(ctx)
    assert row.actor == "hoa"
    res = actionlog.undo(ctx, row.id, actor="lan")
    assert "khôi phục" in res.message
    assert ctx.units.by_id("mn003") is None and ctx.units.by_id("dn027") is not None


def test_an_xlsx_units_file_stays_xlsx_and_addresses_can_be_added(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "donvi.xlsx")
    assert unitsadmin.add_address(ctx, "dn027", "KeToan@MayDG.com.vn")
    assert not unitsadmin.add_address(ctx, "dn027", "ketoan@maydg.com.vn")
    assert ctx.cfg.units_file.read_bytes()[:4] == b"PK\x03\x04"
    assert ctx.units.by_email("ketoan@maydg.com.vn").unit_id == "dn027"
    try:
        unitsadmin.add_address(ctx, "cq001", "ketoan@maydg.com.vn")
    except unitsadmin.UnitsError as exc:
        assert "đã thuộc đơn vị dn027" in str(exc)
    else:
        raise AssertionError("an address of another unit was accepted")
    assert unitsadmin.remove_address(ctx, "dn027", "ketoan@maydg.com.vn")
    assert ctx.units.by_email("ketoan@maydg.com.vn") is None
    data, name, mime = unitsadmin.units_file_bytes(ctx)
    assert name == "donvi.xlsx" and mime.startswith("application/vnd.openxml") and data[:2] == b"PK"


def test_units_cli_check_and_replace(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD, encoding="utf-8")
    good = tmp_path / "good.csv"
    good.write_text(UNITS_CSV + "mn003,Công đoàn Trường Mầm non Hoa Sữa,truong_hoc,hoasua@gmail.com\n",
                    encoding="utf-8")
    env = {**os.environ, "INTAKE_TEST_IMAP_PW": "x"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline", "--config", str(ctx.cfg.path), *args],
                              capture_output=True, text=True, env=env, timeout=120)

    r = run("units", "check", str(bad))
    assert r.returncode == 1 and "trùng với dòng 2" in r.stdout
    r = run("units", "replace", str(bad))
    assert r.returncode == 1 and "KHÔNG được thay thế" in r.stdout
    r = run("units", "replace", str(good))
    assert r.returncode == 0 and "thêm 1" in r.stdout
    assert ctx.units.by_id("mn003") is not None
    out = tmp_path / "export.csv"
    r = run("units", "export", "--out", str(out))
    assert r.returncode == 0 and b"mn003" in out.read_bytes()
