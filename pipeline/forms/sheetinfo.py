"""What a sheet shows besides its values, which calamine does not tell: hidden rows and columns, and formula
cells that have no stored result. Runs inside the isolated worker, beside the readers.

Hidden rows and columns are what a unit hides when it re-uses last year's file: they are not this year's
entries. A formula with no stored result (files written by some tools, which leave the computing to Excel)
reads as an empty cell in every reader; the unit is told which cells and how to store their values.

    sheet_info(data) → {sheet name: SheetInfo}   ({} for a format that has none, or that cannot be read)

xlsx/xlsm: the sheet XML is scanned in chunks for ``<row hidden="1">``, ``<col hidden="1">`` and ``<c>`` with
``<f>`` but no ``<v>`` (bytes regular expressions: a sheet of 100,000 rows is scanned in a fraction of the time
a full XML parse takes, holding one chunk). xls: xlrd's row and column records (``formatting_info``). ods:
``table:visibility`` ("collapse", "filter") of rows and columns, by a streaming parse of content.xml.
"""
from __future__ import annotations

import io
import logging
import posixpath
import re
import zipfile
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import IO, Iterator

log = logging.getLogger(__name__)

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CHUNK = 1 << 20


class Ranges:
    """A set of integers kept as ranges: a sheet can hide a million rows with one record."""

    def __init__(self) -> None:
        self._pairs: list[tuple[int, int]] = []
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def add(self, first: int, last: int) -> None:
        if last >= first:
            self._pairs.append((first, last))
            self._starts = None

    def _freeze(self) -> None:
        merged: list[list[int]] = []
        for a, b in sorted(self._pairs):
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._starts = [a for a, _ in merged]
        self._ends = [b for _, b in merged]

    def __contains__(self, n: object) -> bool:
        if not self._pairs or not isinstance(n, int):
            return False
        if self._starts is None:
            self._freeze()
        assert self._starts is not None
        i = bisect_right(self._starts, n) - 1
        return i >= 0 and n <= self._ends[i]

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def below(self, limit: int) -> Iterator[int]:
        """The members smaller than ``limit``, in order."""
        if self._starts is None:
            self._freeze()
        assert self._starts is not None
        for a, b in zip(self._starts, self._ends):
            yield from range(a, min(b, limit - 1) + 1)


@dataclass
class SheetInfo:
    hidden_rows: Ranges = field(default_factory=Ranges)  # row numbers as shown (1 = the first row)
    hidden_cols: Ranges = field(default_factory=Ranges)  # column indexes (0 = column A)
    no_value: set[tuple[int, int]] = field(default_factory=set)  # (row number, column index) of formulas without a result


def sheet_info(data: bytes) -> dict[str, SheetInfo]:
    """Hidden rows and columns and formulas without results, by sheet name. Never raises: what cannot be read
    is left out (the reader reports a broken file)."""
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = set(zf.namelist())
                if "xl/workbook.xml" in names:
                    return _xlsx(zf)
                if "content.xml" in names:
                    return _ods(zf)
        elif data[:8] == OLE_MAGIC:
            return _xls(data)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - the marks are extra; the reader still reads the values
        log.debug("sheet info unreadable", exc_info=True)
    return {}


# ---------------------------------------------------------------- xlsx
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _xlsx(zf: zipfile.ZipFile) -> dict[str, SheetInfo]:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    book = etree.fromstring(zf.read("xl/workbook.xml"), parser)
    rels = etree.fromstring(zf.read("xl/_rels/workbook.xml.rels"), parser)
    targets = {r.get("Id"): r.get("Target", "") for r in rels if r.get("Id")}
    out: dict[str, SheetInfo] = {}
    for sheet in book.iter("{*}sheet"):
        name, rid = sheet.get("name"), sheet.get(f"{{{_REL_NS}}}id")
        target = targets.get(rid or "")
        if not name or not target:
            continue
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        try:
            with zf.open(path) as fh:
                out[name] = _scan_sheet(fh)
        except KeyError:
            continue
    return out


_ROOT = re.compile(rb"<(\w+:)?worksheet[\s>]")
_HIDDEN = re.compile(rb'hidden="(?:1|true)"')
_ROW_R = re.compile(rb'\sr="(\d+)"')
_MIN = re.compile(rb'\smin="(\d+)"')
_MAX = re.compile(rb'\smax="(\d+)"')
_CELL_R = re.compile(rb'\sr="([A-Z]{1,3})(\d+)"')
_CELL_T = re.compile(rb'\st="(\w+)"')
_TEXT_TYPES = (b"str", b"s", b"inlineStr")  # an empty <v> of these is an empty text result, a stored value


class _Patterns:
    """The sheet's tags with its namespace prefix ("" or e.g. "x:", as the .NET SDK writes): each pattern
    starts with literal text, which the regular expression engine finds at memchr speed."""

    def __init__(self, prefix: bytes) -> None:
        p = re.escape(prefix)
        self.tag = re.compile(rb"<" + p + rb"(row|col)\s")
        self.f = re.compile(rb"<" + p + rb"f[\s/>]")
        self.c = re.compile(rb"<" + p + rb"c(\s[^>]*)>")
        self.c_end = b"</" + prefix + b"c>"
        self.v = re.compile(rb"<" + p + rb"v(?:\s[^>]*)?(?:/>|>([^<]*)</" + p + rb"v>)")


def _scan_sheet(fh: IO[bytes]) -> SheetInfo:
    info = SheetInfo()
    rest = b""
    pats: _Patterns | None = None
    while True:
        chunk = fh.read(_CHUNK)
        buf = rest + chunk
        if pats is None:
            root = _ROOT.search(buf)
            if root is None and chunk:
                rest = buf  # the root tag opens the part: it is in the first chunk or two
                continue
            pats = _Patterns(root.group(1) or b"" if root else b"")
        end = len(buf) if not chunk else buf.rfind(b">") + 1  # never cut inside a tag
        done = _scan(buf, end, info, pats, final=not chunk)
        rest = buf[done:]
        if not chunk:
            return info


def _scan(buf: bytes, end: int, info: SheetInfo, pats: _Patterns, *, final: bool) -> int:
    """Scan ``buf[:end]``; return where the next scan starts (a formula cell whose end is not read yet)."""
    for m in _HIDDEN.finditer(buf, 0, end):
        start = buf.rfind(b"<", 0, m.start())  # the tag the attribute belongs to (no "<" inside a value)
        tag = pats.tag.match(buf, start) if start >= 0 else None
        if tag is None:
            continue
        attrs = buf[start:buf.find(b">", m.end())]
        if tag.group(1) == b"row":
            r = _ROW_R.search(attrs)
            if r:
                info.hidden_rows.add(int(r.group(1)), int(r.group(1)))
        else:
            a, b = _MIN.search(attrs), _MAX.search(attrs)
            if a and b:
                info.hidden_cols.add(int(a.group(1)) - 1, int(b.group(1)) - 1)
    for m in pats.f.finditer(buf, 0, end):
        # <f> is a cell's first child (CT_Cell: f, v, is): the tag before it is the cell's own start tag.
        start = buf.rfind(b"<", 0, m.start())
        cell = pats.c.match(buf, start) if start >= 0 else None
        if cell is None:
            continue
        close = buf.find(pats.c_end, m.end(), end)
        if close < 0:
            if final:
                break
            return start  # read again with the next chunk
        v = pats.v.search(buf, m.end(), close)
        if v is not None and v.group(1):
            continue
        attrs = cell.group(1)
        t = _CELL_T.search(attrs)
        if v is not None and t is not None and t.group(1) in _TEXT_TYPES:
            continue
        ref = _CELL_R.search(attrs)
        if ref:
            info.no_value.add((int(ref.group(2)), _col_index(ref.group(1))))
    return end


def _col_index(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n - 1


# ---------------------------------------------------------------- xls
def _xls(data: bytes) -> dict[str, SheetInfo]:
    import xlrd

    book = xlrd.open_workbook(file_contents=data, formatting_info=True, on_demand=True, logfile=io.StringIO())
    out: dict[str, SheetInfo] = {}
    try:
        for index, name in enumerate(book.sheet_names()):
            sheet = book.sheet_by_index(index)
            info = SheetInfo()
            for r, row in sheet.rowinfo_map.items():
                if row.hidden:
                    info.hidden_rows.add(r + 1, r + 1)
            for c, col in sheet.colinfo_map.items():
                if col.hidden:
                    info.hidden_cols.add(c, c)
            out[name] = info
            book.unload_sheet(index)
    finally:
        book.release_resources()
    return out


# ---------------------------------------------------------------- ods
_T = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"


def _ods(zf: zipfile.ZipFile) -> dict[str, SheetInfo]:
    from lxml import etree

    out: dict[str, SheetInfo] = {}
    depth = 0  # a table inside a cell is part of its cell, not a sheet
    info, row, col = SheetInfo(), 0, 0
    with zf.open("content.xml") as fh:
        events = etree.iterparse(fh, events=("start", "end"), tag=(f"{_T}table", f"{_T}table-row", f"{_T}table-column"),
                                 resolve_entities=False, no_network=True)
        for event, el in events:
            tag = el.tag
            if tag == f"{_T}table":
                if event == "start":
                    depth += 1
                    if depth == 1:
                        info, row, col = SheetInfo(), 0, 0
                    continue
                if depth == 1:
                    out[el.get(f"{_T}name", "")] = info
                depth -= 1
            elif event == "end" and depth == 1:
                hidden = el.get(f"{_T}visibility", "visible") != "visible"  # "collapse" or "filter"
                if tag == f"{_T}table-row":
                    n = _repeat(el.get(f"{_T}number-rows-repeated"))
                    if hidden:
                        info.hidden_rows.add(row + 1, row + n)
                    row += n
                else:
                    n = _repeat(el.get(f"{_T}number-columns-repeated"))
                    if hidden:
                        info.hidden_cols.add(col, col + n - 1)
                    col += n
            if event == "end" and depth <= 1:
                el.clear()
                parent = el.getparent()
                while parent is not None and el.getprevious() is not None:
                    del parent[0]
    return out


def _repeat(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1
