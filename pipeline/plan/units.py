"""The units file: unit_id,name,group,emails (CSV in UTF-8 with or without BOM, or .xlsx)."""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.model import GROUPS, Unit
from pipeline.textnorm import fold, nfc

COLUMNS = ("unit_id", "name", "group", "emails")
_ADDR = re.compile(r"^[^@\s<>;,]+@[^@\s<>;,]+\.[^@\s<>;,]+$")


@dataclass(frozen=True)
class UnitDirectory:
    units: tuple[Unit, ...]

    def by_email(self, address: str | None) -> Unit | None:
        if not address:
            return None
        key = address.strip().lower()
        for unit in self.units:
            if key in unit.emails:
                return unit
        return None

    def by_id(self, unit_id: str | None) -> Unit | None:
        return next((u for u in self.units if u.unit_id == unit_id), None)


def _rows_from_xlsx(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    ws = wb.worksheets[0]
    rows = [["" if v is None else str(v) for v in row] for row in ws.iter_rows(values_only=True)]
    wb.close()
    return rows


def parse_units(data: bytes, source: str) -> UnitDirectory:
    """Parse and check a units file; raise ConfigError naming the source, row and problem."""
    units, problems = check_units(data)
    if problems:
        if len(problems) == 1 and not problems[0].startswith("dòng "):
            raise ConfigError(f"{source}: {problems[0]}")
        raise ConfigError(f"{source}: danh sách đơn vị có lỗi:\n  " + "\n  ".join(problems))
    return UnitDirectory(tuple(units))


def _rows(data: bytes) -> list[list[str]]:
    if data[:4] == b"PK\x03\x04":
        try:
            return _rows_from_xlsx(data)
        except Exception as exc:  # openpyxl raises many kinds on a broken workbook
            raise ValueError(f"không đọc được tệp Excel danh sách đơn vị: {exc}") from exc
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise ValueError("tệp Excel 97-2003 (.xls) không được hỗ trợ cho danh sách đơn vị: "
                         "hãy lưu thành .xlsx hoặc CSV UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"tệp phải là UTF-8 (trong Excel chọn 'CSV UTF-8'): {exc}") from exc
    first = text[:2048].splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def check_units(data: bytes) -> tuple[list[Unit], list[str]]:
    """Every unit of a units file and every problem found, each problem naming its row (Vietnamese)."""
    try:
        rows = _rows(data)
    except ValueError as exc:
        return [], [str(exc)]
    rows = [r for r in rows if any((c or "").strip() for c in r)]
    if not rows:
        return [], ["tệp danh sách đơn vị rỗng"]
    header = [fold(c).replace(" ", "_") for c in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return [], [f"thiếu cột {', '.join(missing)} ở dòng tiêu đề (cần: {','.join(COLUMNS)})"]
    idx = {c: header.index(c) for c in COLUMNS}
    units: list[Unit] = []
    seen_ids: dict[str, int] = {}
    seen_addr: dict[str, tuple[str, int]] = {}
    problems: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        cell = lambda c: nfc(row[idx[c]]) if idx[c] < len(row) else ""  # noqa: E731
        unit_id, name, group = cell("unit_id"), cell("name"), fold(cell("group")).replace(" ", "_")
        emails = tuple(dict.fromkeys(e.strip().lower() for e in re.split(r"[;,\s]+", cell("emails")) if e.strip()))
        if not unit_id:
            problems.append(f"dòng {line}: thiếu unit_id")
            continue
        if unit_id in seen_ids:
            problems.append(f"dòng {line}: unit_id {unit_id!r} trùng với dòng {seen_ids[unit_id]}")
        seen_ids[unit_id] = line
        if not name:
            problems.append(f"dòng {line}: đơn vị {unit_id} thiếu tên")
        if group not in GROUPS:
            problems.append(f"dòng {line}: group {cell('group')!r} không hợp lệ (dùng {', '.join(GROUPS)})")
        for addr in emails:
            if not _ADDR.match(addr):
                problems.append(f"dòng {line}: địa chỉ email không hợp lệ {addr!r}")
            elif addr in seen_addr and seen_addr[addr][0] != unit_id:
                other, other_line = seen_addr[addr]
                problems.append(f"dòng {line}: địa chỉ {addr} đã thuộc đơn vị {other} (dòng {other_line}); "
                                "một địa chỉ chỉ được thuộc một đơn vị")
            seen_addr.setdefault(addr, (unit_id, line))
        units.append(Unit(unit_id=unit_id, name=name, group=group, emails=emails))
    if not units and not problems:
        problems.append("danh sách không có đơn vị nào")
    return units, problems


def units_csv(units: tuple[Unit, ...] | list[Unit]) -> bytes:
    """A units file as CSV in UTF-8 with the BOM Excel expects, so that it opens with its accents."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for u in units:
        w.writerow([u.unit_id, u.name, u.group, ";".join(u.emails)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def units_xlsx(units: tuple[Unit, ...] | list[Unit]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "DonVi"
    ws.append(list(COLUMNS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for u in units:
        ws.append([u.unit_id, u.name, u.group, ";".join(u.emails)])
    for col, width in zip("ABCD", (12, 60, 14, 60)):
        ws.column_dimensions[col].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def load_units(path: Path) -> UnitDirectory:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: không đọc được danh sách đơn vị: {exc.strerror or exc}") from exc
    return parse_units(data, str(path))
