"""The cells of a spreadsheet or a Word table, for the desk's preview: read by the intake's own readers in a
child process, under the intake's limits.

Why a child: a spreadsheet a unit sends can kill its reader (calamine aborts the whole process on a sheet
with cells at A1 and XFD1048576, tafia/calamine#693) or cost gigabytes; the desk must outlive it. So the
preview uses the same readers as the intake (pipeline.forms.readers: calamine for xlsx/xls/ods, the w:tbl
walk for docx), after the same precheck (magic bytes, zip directory, bombs, dimensions), in a child under
the same memory limit and timeout (``rules.limits``: worker_memory_bytes, worker_timeout_seconds), started
anew after it dies, overruns or grows (isolation.Reader does all of that).

Why not the intake's own reading process: its child answers one question, "read this form" (core.parse),
and pipeline/forms is not the desk's to change. ``_CellsReader`` is that same Reader (protocol, lock,
timeout, restart, recycling) started on this file instead, which answers "the first cells of this file".

The child runs this file as a script (``python -P <this file>``), not as ``pipeline.desk.cells``: importing
the desk package loads Flask and the whole desk, which the child neither needs nor should carry under its
memory limit (``-P``: the script's folder, which holds a queue.py, is not put on sys.path). For the same
reason its replies are plain lists and dicts: a class of the child's ``__main__`` would not unpickle here.
"""
from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pipeline.forms import isolation, precheck


# What one preview shows at most (the page says when there is more).
CAPS = {"sheets": 10, "rows": 200, "columns": 40, "chars": 300, "paragraphs": 60}
# what the intake's readers read as cells (.doc and .rtf through LibreOffice, as the intake reads them)
TABLE_FORMATS = ("xlsx", "xlsm", "xlsb", "xls", "ods", "docx", "odt", "doc", "rtf")
# The precheck's verdicts in the words of staff (the findings' own texts tell a unit how to fix its file).
PROBLEMS = {"file-bomb": "tệp nén bất thường (có thể là “bom nén”), không mở để bảo vệ hệ thống",
            "file-too-large": "tệp quá lớn để xem trước", "file-encrypted": "tệp có đặt mật khẩu",
            "file-corrupt": "tệp bị hỏng"}


@dataclass(frozen=True)
class Sheet:
    name: str
    columns: tuple[str, ...]  # column letters of a spreadsheet; () for a Word table
    rows: tuple[tuple[int, tuple[str, ...]], ...]  # (row number as shown, cell texts)
    more_rows: bool = False
    more_columns: bool = False


@dataclass(frozen=True)
class Cells:
    """What the preview shows of a file: its first sheets (or Word tables) and paragraphs, or why not."""

    sheets: tuple[Sheet, ...] = ()
    paragraphs: tuple[str, ...] = ()
    more_sheets: int = 0  # sheets or tables not shown
    more_paragraphs: bool = False
    problem: str | None = None  # why nothing could be shown, in Vietnamese


# ---------------------------------------------------------------------------------------- child side

def _text(value: Any, limit: int) -> str:
    """A cell as a person reads it: the stored value (a formula's last computed result), dates as dd/mm/yyyy."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.10g}".replace(".", ",")
    elif isinstance(value, datetime):
        text = value.strftime("%d/%m/%Y %H:%M" if (value.hour, value.minute) != (0, 0) else "%d/%m/%Y")
    elif isinstance(value, date):
        text = value.strftime("%d/%m/%Y")
    elif isinstance(value, time):
        text = value.strftime("%H:%M")
    elif isinstance(value, timedelta):
        text = str(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def cells_of(fmt: str, data: bytes, caps: dict[str, int]) -> dict[str, Any]:
    """The first cells of a file, as plain data (see ``Cells``). Runs in the child."""
    from pipeline.forms.readers import col_letter, read_docx, read_odt, read_spreadsheet

    if fmt in ("doc", "rtf"):
        from pipeline.forms.convert import conversion_seconds, soffice, to_docx

        exe = soffice()
        if exe is None:
            raise RuntimeError("LibreOffice is not installed")
        data, fmt = to_docx(exe, data, fmt, conversion_seconds(caps.get("seconds", 20))), "docx"
    doc = read_docx(data) if fmt == "docx" else read_odt(data) if fmt == "odt" else read_spreadsheet(data)
    sheets = []
    for grid in doc.grids[:caps["sheets"]]:
        rows: list[tuple[int, list[str]]] = []
        more_rows = more_columns = False
        for n, (number, cells) in enumerate(grid.rows):
            if n >= caps["rows"]:
                more_rows = True
                break
            more_columns = more_columns or any(c not in (None, "") for c in cells[caps["columns"]:])
            rows.append((number, [_text(c, caps["chars"]) for c in cells[:caps["columns"]]]))
        while rows and not any(rows[-1][1]):
            rows.pop()
        width = max((max((i + 1 for i, c in enumerate(r) if c), default=0) for _, r in rows), default=0)
        sheets.append({"name": grid.name, "rows": [(number, r[:width] + [""] * (width - len(r))) for number, r in rows],
                       "columns": [col_letter(i) for i in range(width)] if fmt != "docx" else [],
                       "more_rows": more_rows, "more_columns": more_columns})
    paragraphs = [_text(p, caps["chars"]) for p in doc.paragraphs[:caps["paragraphs"]]]
    return {"sheets": sheets, "more_sheets": max(0, len(doc.grids) - caps["sheets"]), "paragraphs": paragraphs,
            "more_paragraphs": len(doc.paragraphs) > caps["paragraphs"]}


def child_main() -> None:
    """Answer each request ``(rules, (fmt, data, caps))`` on stdin with ``(reply, stats)``, as the intake's
    reading process does (isolation.child_main: same limit, signals and framing)."""
    requests, replies = isolation.enter_child()

    while True:
        try:
            _rules, (fmt, data, caps) = isolation._read_message(requests)
        except EOFError:
            return
        try:
            reply: dict[str, Any] = cells_of(fmt, data, caps)
        except MemoryError:
            reply = {"problem": "không đủ bộ nhớ để đọc tệp"}
        except Exception as exc:  # noqa: BLE001 - a broken file is an answer, not the child's end
            reply = {"problem": f"tệp hỏng hoặc không đọc được ({type(exc).__name__})"}
        stats = {"rss": isolation._resident_bytes()}
        try:
            message = isolation._frame((reply, stats))
        except MemoryError:
            message = isolation._frame(({"problem": "kết quả quá lớn"}, stats))
        replies.write(message)
        replies.flush()


# ---------------------------------------------------------------------------------------- desk side

class _CellsReader(isolation.Reader):
    """isolation.Reader (one child, one file at a time, killed and restarted when it dies or overruns),
    started on this file."""

    def _command(self, memory_bytes: int) -> list[str]:
        return [sys.executable, "-P", str(Path(__file__).resolve()), str(memory_bytes)]


_READER: _CellsReader | None = None
_LOCK = threading.Lock()
_CACHE: OrderedDict[str, Cells] = OrderedDict()  # by the file's sha256: a page viewed twice is read once
_CACHE_SIZE = 32


def _reader() -> _CellsReader:
    global _READER
    with _LOCK:
        if _READER is None or _READER.owner != os.getpid():
            import atexit

            _READER = _CellsReader()
            atexit.register(_READER.stop)
        return _READER


def read_cells(filename: str, data: bytes, sha256: str, rules: Any) -> Cells:
    """The preview of a spreadsheet or Word file; never raises for a bad file (``Cells.problem`` says why)."""
    with _LOCK:
        if sha256 in _CACHE:
            _CACHE.move_to_end(sha256)
            return _CACHE[sha256]
    verdict = precheck.check(filename, data, rules.limits)
    if verdict.problem:
        what = PROBLEMS.get(verdict.problem, "tệp không đọc được")
        cells = Cells(problem=f"{what} ({verdict.detail})" if verdict.detail else what)
    elif verdict.format not in TABLE_FORMATS:
        cells = Cells(problem=f"không phải bảng tính hay văn bản Word (.{verdict.format or '?'})")
    else:
        cells = _read(verdict.format, data, rules)
    with _LOCK:
        _CACHE[sha256] = cells
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return cells


def _read(fmt: str, data: bytes, rules: Any) -> Cells:
    try:
        reply = _reader().read((fmt, bytes(data), CAPS), rules)  # type: ignore[arg-type]
    except isolation.ReaderDied as died:
        if died.reason == "timeout":
            return Cells(problem=f"đọc tệp quá {rules.limits['worker_timeout_seconds']} giây nên đã dừng")
        return Cells(problem=f"tệp quá lớn hoặc hỏng, việc đọc đã bị dừng ({died.detail})")
    if reply.get("problem"):
        return Cells(problem=reply["problem"])
    sheets = tuple(Sheet(name=s["name"], columns=tuple(s["columns"]),
                         rows=tuple((n, tuple(r)) for n, r in s["rows"]),
                         more_rows=s["more_rows"], more_columns=s["more_columns"]) for s in reply["sheets"])
    return Cells(sheets=sheets, paragraphs=tuple(reply["paragraphs"]), more_sheets=reply["more_sheets"],
                 more_paragraphs=reply["more_paragraphs"])


if __name__ == "__main__":
    child_main()
