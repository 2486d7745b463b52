"""The fonts a file names, when some are old Vietnamese font encodings (.VnTime → TCVN3, VNI-Times → VNI).

Read from the file's own bytes, beside the readers (which keep only text): .xlsx and .xls per cell (the
cell's style → its font, or the font of a rich-text run of its shared string), .docx from the runs' and
styles' w:rFonts, OpenDocument from the fonts its styles use. A file naming no legacy font costs one small
read (xlsx styles.xml and a small sharedStrings.xml, docx fontTable.xml); the sheets are walked only when a
legacy font is named. Nothing here raises: a part that cannot be read names no font.
"""
from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TCVN3 = "TCVN3"
VNI = "VNI"

_S = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_LEGACY_VAL = re.compile(rb'val="(?:\.vn|vni-)', re.IGNORECASE)  # a legacy font named in a spreadsheet part
_RFONTS = re.compile(rb"<w:rFonts\b([^>]*)>")
_RUN = re.compile(rb"<w:r[ >].*?</w:r>", re.DOTALL)
_T = re.compile(rb"<w:t(?: [^>]*)?>([^<]*)</w:t>")
_ATTR = re.compile(rb'w:(?:ascii|hAnsi|cs|eastAsia)="([^"]+)"')
_ODF_FACE = re.compile(rb"<style:font-face\b[^>]*>")
_ODF_NAME = re.compile(rb'style:name="([^"]+)"')
_ODF_FAMILY = re.compile(rb'svg:font-family="([^"]+)"')
_ODF_FONT = re.compile(rb'style:font-name(?:-asian|-complex)?="([^"]+)"')
_BINARY_HINT = re.compile(rb"\.Vn|VNI-|\.\x00V\x00n\x00|V\x00N\x00I\x00-\x00")
_CELL_REF = re.compile(r"([A-Z]+)(\d+)")
_MAX_SCAN = 64 * 2**20  # a part bigger than this is not searched for fonts (the reader refuses it anyway)
_SMALL_PART = 2**20
_MAX_CELLS = 200_000  # past this many legacy-font cells in a sheet, its cells are decided without their fonts
_TEXT_TYPES = ("s", "inlineStr", "str")


def encoding_of_font(name: str) -> str | None:
    """TCVN3 for the ABC fonts (".VnTime", ".VnArialH"), VNI for the VNI fonts ("VNI-Times"), else None."""
    n = name.strip().strip("'\"").upper()
    if n.startswith(".VN"):
        return TCVN3
    if n.startswith("VNI-"):
        return VNI
    return None


def is_upper_font(name: str) -> bool:
    """The TCVN3 fonts that draw every letter as a capital: .VnTimeH, .VnArialH, .VnArial NarrowH."""
    return encoding_of_font(name) == TCVN3 and name.strip().endswith("H")


@dataclass
class Fonts:
    """The legacy fonts a file names, most used first; per cell where the format says which cell uses which."""

    names: tuple[str, ...] = ()
    cells: dict[str, dict[tuple[int, int], str]] | None = None  # sheet → (row, column index) → legacy font
    known: set[str] = field(default_factory=set)  # sheets whose every cell's font is known
    texts: tuple[str, ...] | None = None  # docx: the text of the runs set in a legacy font


def read_fonts(fmt: str, data: bytes) -> Fonts:
    try:
        if fmt in ("xlsx", "xlsm"):
            return _xlsx(data)
        if fmt == "docx":
            return _docx(data)
        if fmt in ("ods", "odt"):
            return _odf(data)
        if fmt == "xls":
            return _xls(data)
    except Exception:  # noqa: BLE001 - a part that cannot be read names no font; the characters still tell
        return Fonts()
    return Fonts()


def _ranked(counts: Counter[str]) -> tuple[str, ...]:
    return tuple(n for n, _ in counts.most_common() if encoding_of_font(n))


def _member(zf: zipfile.ZipFile, name: str, limit: int | None = None) -> bytes | None:
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    return zf.read(info) if info.file_size <= (limit or _MAX_SCAN) else None


# ---------------------------------------------------------------- xlsx: styles.xml + each cell's style
def _parse(xml: bytes) -> Any:
    from lxml import etree

    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False))


def _xlsx(data: bytes) -> Fonts:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        styles = _member(zf, "xl/styles.xml") or b""
        # Rich text runs name their fonts in the shared strings: looked for there when the styles name one,
        # or when the strings are few (a big Unicode workbook is not read twice for it).
        named = bool(_LEGACY_VAL.search(styles))
        shared = _member(zf, "xl/sharedStrings.xml", None if named else _SMALL_PART) or b""
        if not named and not _LEGACY_VAL.search(shared):
            return Fonts()
        xf_font = _xf_fonts(styles)  # style index → font name (the cells' own fonts)
        string_font = _string_fonts(shared) if _LEGACY_VAL.search(shared) else {}
        cells: dict[str, dict[tuple[int, int], str]] = {}
        counts: Counter[str] = Counter()
        for sheet, path in _sheets(zf):
            xml = _member(zf, path)
            if xml is None:
                continue
            found = _legacy_cells(xml, xf_font, string_font, counts)
            if found is not None:
                cells[sheet] = found
    return Fonts(_ranked(counts), cells, set(cells))


def _xf_fonts(styles: bytes) -> dict[int, str]:
    if not styles:
        return {}
    root = _parse(styles)
    names = [next((n.get("val", "") for n in f.iterfind(_S + "name")), "")
             for f in root.iterfind(f"{_S}fonts/{_S}font")]
    out: dict[int, str] = {}
    for i, xf in enumerate(root.iterfind(f"{_S}cellXfs/{_S}xf")):
        fid = int(xf.get("fontId", "0") or 0)
        if 0 <= fid < len(names) and names[fid]:
            out[i] = names[fid]
    return out


def _string_fonts(shared: bytes) -> dict[int, str]:
    """Shared strings with a rich-text run in a legacy font: index → that font."""
    out: dict[int, str] = {}
    for i, si in enumerate(_parse(shared).iterfind(_S + "si")):
        for rf in si.iterfind(f"{_S}r/{_S}rPr/{_S}rFont"):
            name = rf.get("val", "")
            if encoding_of_font(name):
                out[i] = name
                break
    return out


def _sheets(zf: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, member path) in workbook order."""
    book = _member(zf, "xl/workbook.xml")
    rels = _member(zf, "xl/_rels/workbook.xml.rels")
    if not book or not rels:
        return []
    targets = {}
    for rel in _parse(rels):
        target = rel.get("Target", "")
        targets[rel.get("Id")] = target.lstrip("/") if target.startswith("/") else "xl/" + target
    out = []
    for sheet in _parse(book).iterfind(f"{_S}sheets/{_S}sheet"):
        path = targets.get(sheet.get(_R + "id"))
        if path:
            out.append((sheet.get("name", ""), path))
    return out


def _col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _legacy_cells(xml: bytes, xf_font: dict[int, str], string_font: dict[int, str],
                  counts: Counter[str]) -> dict[tuple[int, int], str] | None:
    """(row, column index) → font, for the sheet's cells holding text in a legacy font; None past _MAX_CELLS."""
    from lxml import etree

    out: dict[tuple[int, int], str] = {}
    row, col = 0, -1
    for _, el in etree.iterparse(io.BytesIO(xml), events=("end",), tag=(_S + "c", _S + "row"),
                                 resolve_entities=False, no_network=True):
        if el.tag == _S + "row":
            el.clear()
            while el.getprevious() is not None:  # the rows read so far are not kept
                del el.getparent()[0]
            continue
        ref = _CELL_REF.fullmatch(el.get("r", ""))
        if ref:
            row, col = int(ref.group(2)), _col_index(ref.group(1))
        else:  # r is optional: the next cell of the row
            col += 1
            parent = el.getparent()
            row = int(parent.get("r", row)) if parent is not None else row
        kind = el.get("t")
        if kind in _TEXT_TYPES:  # numbers and dates are not converted: their fonts do not matter
            font = xf_font.get(int(el.get("s", "0") or 0), "")
            if kind == "s":
                v = el.findtext(_S + "v")
                if v and v.isdigit() and int(v) in string_font:
                    font = string_font[int(v)]
            elif kind == "inlineStr":  # rich text kept in the cell (openpyxl writes it so)
                font = next((n for rf in el.iterfind(f"{_S}is/{_S}r/{_S}rPr/{_S}rFont")
                             if encoding_of_font(n := rf.get("val", ""))), font)
            if encoding_of_font(font):
                out[(row, col)] = font
                counts[font] += 1
                if len(out) > _MAX_CELLS:
                    return None
        el.clear()
    return out


# ---------------------------------------------------------------- docx: w:rFonts of runs and styles
def _docx(data: bytes) -> Fonts:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        table = _member(zf, "word/fontTable.xml")
        if table is not None and not re.search(rb'w:name="(?:\.vn|vni-)', table, re.IGNORECASE):
            return Fonts()  # Word and LibreOffice list every font the document uses there
        document, styles = _member(zf, "word/document.xml") or b"", _member(zf, "word/styles.xml") or b""
    counts: Counter[str] = Counter()
    for xml in (document, styles):
        for attrs in _RFONTS.findall(xml):
            for name in set(_ATTR.findall(attrs)):
                counts[name.decode("utf-8", "replace")] += 1
    # The text of the runs that name a legacy font themselves (none: the styles set it for all the text).
    texts = []
    for run in _RUN.findall(document):
        fonts = _RFONTS.search(run)
        if fonts and any(encoding_of_font(n.decode("utf-8", "replace")) for n in _ATTR.findall(fonts.group(1))):
            texts.append(_xml_text(b"".join(_T.findall(run))))
    return Fonts(_ranked(counts), texts=tuple(texts) if texts else None)


def _xml_text(raw: bytes) -> str:
    from html import unescape

    return unescape(raw.decode("utf-8", "replace"))


def has_soft_hyphens(data: bytes) -> bool:
    """Whether a .docx holds soft hyphens, which Word and LibreOffice write as <w:softHyphen/>: in TCVN3
    that character (0xAD) is the letter ư, and the reader, which keeps only w:t text, would lose it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return b"softHyphen" in (_member(zf, "word/document.xml") or b"")
    except Exception:  # noqa: BLE001
        return False


def soft_hyphens_as_text(data: bytes) -> bytes:
    """The same .docx with each <w:softHyphen/> written as the character U+00AD in a w:t."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "word/document.xml":
                body = re.sub(rb"<w:softHyphen\s*/>", '<w:t xml:space="preserve">\u00ad</w:t>'.encode(), body)
            dst.writestr(info, body)
    return out.getvalue()


# ---------------------------------------------------------------- OpenDocument and Excel 97-2003
def _odf(data: bytes) -> Fonts:
    """The fonts the styles use (style:font-name refers to a declared font face by its style:name)."""
    counts: Counter[str] = Counter()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        parts = [_member(zf, part) or b"" for part in ("styles.xml", "content.xml")]
    faces: dict[bytes, bytes] = {}
    for xml in parts:
        for decl in _ODF_FACE.findall(xml):
            name, family = _ODF_NAME.search(decl), _ODF_FAMILY.search(decl)
            if name and family:
                faces[name.group(1)] = family.group(1)
    for xml in parts:
        for ref in _ODF_FONT.findall(xml):
            counts[faces.get(ref, ref).decode("utf-8", "replace").replace("&apos;", "'").strip("'")] += 1
    return Fonts(_ranked(counts))


def _xls(data: bytes) -> Fonts:
    """Excel 97-2003: each cell's XF record names its font (xlrd, with the formatting records)."""
    if not _BINARY_HINT.search(data):
        return Fonts()  # the name is stored as 8-bit or UTF-16 text: no legacy font is named
    import xlrd

    book = xlrd.open_workbook(file_contents=data, formatting_info=True, on_demand=True, logfile=io.StringIO())
    fonts = [f.name for f in book.font_list]
    xf_font = {i: fonts[xf.font_index] for i, xf in enumerate(book.xf_list) if xf.font_index < len(fonts)}
    cells: dict[str, dict[tuple[int, int], str]] = {}
    counts: Counter[str] = Counter()
    for index in range(book.nsheets):
        sheet = book.get_sheet(index)
        found: dict[tuple[int, int], str] = {}
        text = ((r, c, xf_font.get(cell.xf_index, "")) for r in range(sheet.nrows)
                for c, cell in enumerate(sheet.row(r)) if cell.ctype == xlrd.XL_CELL_TEXT)
        for r, c, font in text:
            if encoding_of_font(font):
                found[(r + 1, c)] = font
                counts[font] += 1
                if len(found) > _MAX_CELLS:
                    break
        else:
            cells[sheet.name] = found
        book.unload_sheet(index)
    return Fonts(_ranked(counts), cells, set(cells))
