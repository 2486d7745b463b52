"""Managing the units file from the desk and the CLI: check an upload, replace the list, add an address.

The units file named in config stays the one source of truth: every change here rewrites that file
atomically (in its own format, .csv or .xlsx), after keeping a dated copy of the old one under
``<storage>/units-history/``. A running worker picks the new list up on its next message (Context.units
re-reads the file when it changes). Each replacement is recorded in review_actions and can be undone.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pipeline.mail.archive import write_atomically
from pipeline.errors import IntakeError
from pipeline.model import Unit
from pipeline.ledger.schema import review_actions
from pipeline.plan.units import _ADDR, UnitDirectory, check_units, units_csv, units_xlsx

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import Context

MAX_UPLOAD = 2 * 1024 * 1024
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_lock = threading.Lock()  # one writer of the units file per process (desk threads, CLI)


class UnitsError(IntakeError):
    """A change to the units list that cannot be made; the text says why, in Vietnamese."""


@dataclass(frozen=True)
class UnitsCheck:
    ok: bool
    problems: tuple[str, ...]
    units: UnitDirectory | None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def text(self) -> str:
        if not self.ok:
            return "Danh sách đơn vị KHÔNG được thay thế vì có lỗi:\n  " + "\n  ".join(self.problems)
        parts = [f"{len(self.units.units) if self.units else 0} đơn vị",
                 f"thêm {len(self.added)}", f"bỏ {len(self.removed)}", f"sửa {len(self.changed)}"]
        lines = ["Danh sách hợp lệ: " + ", ".join(parts)]
        if self.added:
            lines.append("  thêm: " + ", ".join(self.added))
        if self.removed:
            lines.append("  bỏ: " + ", ".join(self.removed))
        if self.changed:
            lines.append("  sửa: " + ", ".join(self.changed))
        lines += [f"  lưu ý: {w}" for w in self.warnings]
        return "\n".join(lines)


def check_upload(data: bytes, filename: str, current: UnitDirectory) -> UnitsCheck:
    """Check an uploaded units list (CSV in UTF-8, or .xlsx) against the current one; nothing is written."""
    if not data:
        return UnitsCheck(False, ("tệp tải lên rỗng",), None)
    if len(data) > MAX_UPLOAD:
        return UnitsCheck(False, (f"tệp quá lớn ({len(data) // 1024} KB; tối đa {MAX_UPLOAD // 1024} KB)",), None)
    ext = Path(filename or "").suffix.lower()
    if ext and ext not in (".csv", ".xlsx", ".txt"):
        return UnitsCheck(False, (f"định dạng {ext} không được hỗ trợ: hãy tải lên .csv (UTF-8) hoặc .xlsx",), None)
    units, problems = check_units(data)
    if problems:
        return UnitsCheck(False, tuple(problems), None)
    new = UnitDirectory(tuple(units))
    old_by_id = {u.unit_id: u for u in current.units}
    new_by_id = {u.unit_id: u for u in new.units}
    added = tuple(i for i in new_by_id if i not in old_by_id)
    removed = tuple(i for i in old_by_id if i not in new_by_id)
    changed = tuple(i for i in new_by_id if i in old_by_id and new_by_id[i] != old_by_id[i])
    warnings = []
    if removed:
        warnings.append(f"{len(removed)} đơn vị có trong danh sách cũ nhưng không có trong danh sách mới: "
                        "thư của họ sẽ bị cách ly chờ xem xét")
    return UnitsCheck(True, (), new, added, removed, changed, tuple(warnings))


def _encode(path: Path, units: tuple[Unit, ...]) -> bytes:
    return units_xlsx(units) if path.suffix.lower() in (".xlsx", ".xlsm") else units_csv(units)


def history_dir(ctx: Context) -> Path:
    return ctx.cfg.archive_dir.parent / "units-history"


def _backup(ctx: Context, now: datetime) -> Path:
    src = ctx.cfg.units_file
    folder = history_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = folder / f"{src.stem}-{stamp}{src.suffix}"
    write_atomically(dest, src.read_bytes())
    return dest


def replace_units(ctx: Context, data: bytes, filename: str, *, actor: str,
                  now: datetime | None = None) -> UnitsCheck:
    """Replace the units file with an upload when (and only when) it passes every check."""
    now = now or datetime.now(timezone.utc)
    with _lock:
        check = check_upload(data, filename, ctx.units)
        if not check.ok or check.units is None:
            return check
        backup = _rewrite(ctx, check.units.units, now)
        ctx.store.record_action("units_replace", "units", 0, {
            "filename": filename, "added": list(check.added), "removed": list(check.removed),
            "changed": list(check.changed)}, {"backup": str(backup)}, actor, now)
    return check


def restore_backup(ctx: Context, backup: str, now: datetime) -> None:
    """Put a kept copy back as the units file (undo of a replacement); the current one is kept too."""
    path = Path(backup)
    data = path.read_bytes()
    units, problems = check_units(data)
    if problems:
        raise UnitsError(f"bản lưu {path.name} không còn hợp lệ: " + "; ".join(problems))
    with _lock:
        _rewrite(ctx, tuple(units), now)


def _rewrite(ctx: Context, units: tuple[Unit, ...], now: datetime) -> Path:
    """Write a new units list over the units file, keeping the old one; return where it was kept."""
    backup = _backup(ctx, now)
    write_atomically(ctx.cfg.units_file, _encode(ctx.cfg.units_file, units))
    return backup


def add_address(ctx: Context, unit_id: str, address: str, now: datetime | None = None) -> bool:
    """Add a sender address to a unit; False when it is already there. Refused when another unit has it."""
    now = now or datetime.now(timezone.utc)
    addr = address.strip().lower()
    if not _ADDR.match(addr):
        raise UnitsError(f"địa chỉ email không hợp lệ: {address!r}")
    with _lock:
        current = ctx.units
        unit = current.by_id(unit_id)
        if unit is None:
            raise UnitsError(f"không có đơn vị {unit_id!r} trong danh sách")
        owner = current.by_email(addr)
        if owner is not None and owner.unit_id != unit_id:
            raise UnitsError(f"địa chỉ {addr} đã thuộc đơn vị {owner.unit_id} ({owner.name})")
        if addr in unit.emails:
            return False
        units = tuple(replace(u, emails=u.emails + (addr,)) if u.unit_id == unit_id else u for u in current.units)
        _rewrite(ctx, units, now)
    return True


def remove_address(ctx: Context, unit_id: str, address: str, now: datetime | None = None) -> bool:
    """Take an address off a unit; False when it was not there."""
    now = now or datetime.now(timezone.utc)
    addr = address.strip().lower()
    with _lock:
        current = ctx.units
        unit = current.by_id(unit_id)
        if unit is None or addr not in unit.emails:
            return False
        units = tuple(replace(u, emails=tuple(e for e in u.emails if e != addr)) if u.unit_id == unit_id else u
                      for u in current.units)
        _rewrite(ctx, units, now)
    return True


def units_file_bytes(ctx: Context) -> tuple[bytes, str, str]:
    """The current units file as it is on disk: (data, download filename, content type)."""
    path = ctx.cfg.units_file
    mime = XLSX_MIME if path.suffix.lower() in (".xlsx", ".xlsm") else "text/csv; charset=utf-8"
    return path.read_bytes(), path.name, mime


def last_replacements(ctx: Context, limit: int = 20) -> list[Any]:
    with ctx.store.tx() as c:
        return list(c.execute(sa.select(review_actions).where(review_actions.c.action == "units_replace")
                              .order_by(review_actions.c.id.desc()).limit(limit)))
