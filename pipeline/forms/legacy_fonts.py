"""Old Vietnamese font encodings (TCVN3/ABC, VNI): recognise them in a document and read it as Unicode.

A form typed in .VnTime or VNI-Times holds "Tªn tËp thÓ, c¸ nh©n" or "Teân taäp theå, caù nhaân" where the
person saw "Tên tập thể, cá nhân". Before the header is looked for, ``prepare`` decides whether the document
is in such an encoding and, if so, converts its paragraphs and, lazily as the rows are read, its cells:

- by the fonts the file names (fontnames.py: ".Vn…" → TCVN3, "VNI-…" → VNI), unless its characters say
  otherwise (the text of a template set in .VnTime but typed in Unicode is Unicode);
- else by its characters: a word typed in a legacy encoding is no Vietnamese syllable as it stands and is
  one once converted ("c¸" → "cá"); Unicode Vietnamese, English or a stray "ª" do not gain that way.

Each cell is decided again on its own, for forms where a unit typed legacy text into the district's Unicode
form: a cell with letters only Unicode has (ă đ ơ ư ạ…ỹ) is Unicode; else it is converted when that makes
more of its words Vietnamese, and on a tie unless the file says the cell is in a Unicode font. Documents
that name no legacy font and whose first rows have no character a legacy font uses cost one scan of those
rows.
"""
from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator

from pipeline.forms import fontnames
from pipeline.forms.fontnames import TCVN3, VNI, Fonts, encoding_of_font, is_upper_font
from pipeline.forms.legacy_tables import TCVN3 as TCVN3_MAP
from pipeline.forms.legacy_tables import TCVN3_ROWS, VNI_ROWS
from pipeline.forms.legacy_tables import VNI as VNI_MAP
from pipeline.forms.readers import Cell, Document, Grid, read_docx
from pipeline.forms.syllables import is_syllable
from pipeline.forms.rules import Rules
from pipeline.model import DocumentReading

LABELS = {TCVN3: "TCVN3/ABC", VNI: "VNI"}
SAMPLE_ROWS = 60  # rows of each table read before deciding (the title, the header and the first entries)
MIN_GAIN = 3  # words that must become Vietnamese, with no font named, before a document is taken as legacy
MIN_SHARE = 0.25  # ... and that share of its changed words more must be Vietnamese after than before

_TCVN3_TRANS = str.maketrans(TCVN3_MAP)
_VNI_SEQ = re.compile("|".join(sorted(map(re.escape, VNI_MAP), key=len, reverse=True)))
# Letters a legacy font's text never holds (it is Latin-1 through and through), and combining marks.
_UNICODE_ONLY = re.compile("[\u0102\u0103\u0110\u0111\u0128\u0129\u0168\u0169\u01a0\u01a1\u01af\u01b0"
                           "\u1ea0-\u1ef9\u0300-\u036f]")
_PROBE = {TCVN3: re.compile("[" + re.escape("".join(TCVN3_MAP)) + "]"),
          VNI: re.compile("[" + re.escape("".join({seq[-1] for seq in VNI_MAP})) + "]")}
# Characters legacy text is full of and Vietnamese Unicode never uses ("ª", "¸", "®"; VNI's "ø", "ï", "ñ"):
# a document with none of them and no legacy font named is not looked at further.
_VIETNAMESE_LATIN1 = frozenset("àáâãèéêìíòóôõùúýÀÁÂÃÈÉÊÌÍÒÓÔÕÙÚÝ")
_SUSPECT = re.compile("[" + re.escape("".join(sorted((set(TCVN3_MAP) | {q[-1] for q in VNI_MAP})
                                                     - _VIETNAMESE_LATIN1))) + "]")
# A word: letters, the Latin-1 signs TCVN3 uses as letters (¡…¾ × ÷), combining marks.
_TOKEN = re.compile(r"(?:[^\W\d_]|[\u00a1-\u00bf\u00d7\u00f7\u0300-\u036f])+")
_WORD = re.compile(r"[^\W\d_]+")
_ASCII_LETTER = re.compile(r"[A-Za-z]")


# ---------------------------------------------------------------- conversion
def to_unicode(text: str, encoding: str, *, upper: bool = False) -> str:
    """``text`` read in ``encoding`` (TCVN3 | VNI), NFC. ``upper``: set in a TCVN3 capitals font (.VnTimeH)."""
    if encoding == TCVN3:
        out = text.translate(_TCVN3_TRANS)
        out = out.upper() if upper else _capitals(text, out)
    else:
        out = _VNI_SEQ.sub(lambda m: VNI_MAP[m.group()], text)
    return unicodedata.normalize("NFC", out)


def _capitals(source: str, out: str) -> str:
    """TCVN3 has no capital toned vowels: "TËP" reads "TậP". A line whose every Latin letter is a capital
    was typed in capitals; so was a word with a capital after its first letter ("TậP"), and a capitalised
    word with no small Latin letter ("Cá" of "C¸") next to such a word. (``out`` is ``source`` translated
    character for character: positions agree.)"""
    lines = []
    for src, line in zip(source.split("\n"), out.split("\n")):
        letters = _ASCII_LETTER.findall(src)
        if len(letters) >= 2 and all(c.isupper() for c in letters):
            lines.append(line.upper())
            continue
        words = list(_WORD.finditer(line))
        caps = [any(c.isupper() for c in m.group()[1:]) for m in words]
        # Only a Vietnamese word in capitals carries it over: "III. Tổ chức" stays as typed.
        spoken = [c and not m.group().isascii() for c, m in zip(caps, words)]
        maybe = [len(m.group()) >= 2 and m.group()[0].isupper()
                 and not any(c.islower() for c in _ASCII_LETTER.findall(src[m.start():m.end()])) for m in words]
        chars = list(line)
        for i, m in enumerate(words):
            if caps[i] or (maybe[i] and ((i > 0 and spoken[i - 1]) or (i + 1 < len(words) and spoken[i + 1]))):
                chars[m.start():m.end()] = m.group().upper()
        lines.append("".join(chars))
    return "\n".join(lines)


def _reverse(rows: tuple[tuple[str, str], ...], split: bool, fold_capitals: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for uni, legacy in rows:
        for u, code in zip(uni, legacy.split(" ") if split else legacy):
            if fold_capitals and u.upper() != u and not u.upper().isascii():
                out.setdefault(u.upper(), code)  # the capitals font draws it
            out[u] = code
    return {u: c for u, c in out.items() if u != c}


_FROM = {TCVN3: _reverse(TCVN3_ROWS, split=False, fold_capitals=True),
         VNI: _reverse(VNI_ROWS, split=True, fold_capitals=False)}


def from_unicode(text: str, encoding: str) -> str:
    """Unicode text as a legacy font stores it (TCVN3 writes capital toned vowels with the small codes)."""
    table = _FROM[encoding]
    return "".join(table.get(ch, ch) for ch in unicodedata.normalize("NFC", text))


# ---------------------------------------------------------------- detection
@dataclass(frozen=True)
class Score:
    changed: int = 0  # words the conversion changes
    before: int = 0  # of those, Vietnamese syllables as they stand
    after: int = 0  # ... and once converted

    @property
    def gain(self) -> int:
        return self.after - self.before


def score(texts: Iterable[str], encoding: str) -> Score:
    changed = before = after = 0
    probe = _PROBE[encoding]
    for text in texts:
        if not probe.search(text):
            continue
        for word in _TOKEN.findall(text):
            if len(word) < 2 or _UNICODE_ONLY.search(word):
                continue  # one sign is no evidence ("ª", "©", "·"); a Unicode-only letter is Unicode
            conv = to_unicode(word, encoding)
            if conv != word:
                changed += 1
                before += is_syllable(word)
                after += is_syllable(conv)
    return Score(changed, before, after)


def looks_legacy(s: Score) -> bool:
    """By characters alone: enough words become Vietnamese, and a clear share of the changed ones."""
    return s.gain >= MIN_GAIN and s.gain >= MIN_SHARE * s.changed


def detect(texts: list[str], fonts: Fonts | None = None,
           in_fonts: list[str] | None = None) -> tuple[str, tuple[str, ...]] | None:
    """(encoding, the legacy fonts named for it) of a document's ``texts``, or None for Unicode.
    ``in_fonts``: the texts the file sets in a legacy font, where it says which (default: all)."""
    named: dict[str, list[str]] = {}
    for name in fonts.names if fonts else ():
        named.setdefault(encoding_of_font(name) or "", []).append(name)
    if not named and not any(_SUSPECT.search(t) for t in texts):
        return None
    if named:
        # A font named is believed unless its text contradicts it (more words Vietnamese as they stand).
        marked = {e: score(texts if in_fonts is None else in_fonts, e) for e in named}
        backed = [e for e in (TCVN3, VNI) if e in marked and (marked[e].changed == 0 or marked[e].gain > 0)]
        if backed:
            best = max(backed, key=lambda e: marked[e].gain)
            return best, tuple(named[best])
    scores = {e: score(texts, e) for e in (TCVN3, VNI)}
    found = [e for e in (TCVN3, VNI) if looks_legacy(scores[e])]
    if found:
        return max(found, key=lambda e: scores[e].gain), ()
    return None


# ---------------------------------------------------------------- a document
@dataclass
class Legacy:
    """A document found in a legacy encoding; ``converted`` counts the cells and paragraphs converted."""

    encoding: str
    fonts: tuple[str, ...]  # the legacy fonts the file names; () when found by its characters
    cell_fonts: dict[str, dict[tuple[int, int], str]] | None = None
    known: frozenset[str] = frozenset()  # tables (sheets) whose every cell's font is known
    mixed: bool = False  # some of its text is plainly Unicode (a legacy font's text typed into a Unicode form)
    converted: int = 0

    def text(self, value: str, font: str | None = None, unicode_font: bool = False) -> str:
        """One cell or paragraph: converted, or left when it is Unicode (see the module's docstring).
        ``font``: the legacy font the file gives it; ``unicode_font``: the file gives it another font."""
        if not _PROBE[self.encoding].search(value) or _UNICODE_ONLY.search(value):
            return value
        conv = to_unicode(value, self.encoding, upper=bool(font) and is_upper_font(font or ""))
        if conv == value:
            return value
        before = sum(map(is_syllable, _TOKEN.findall(value)))
        after = sum(map(is_syllable, _TOKEN.findall(conv)))
        if after == before:
            # As many words read both ways ("cá" is "cỏ" in TCVN3): the cell's font decides, else the document.
            keep = unicode_font if font or unicode_font else bool(before) and self.mixed
        else:
            keep = after < before
        if keep:
            return value
        self.converted += 1
        return conv

    def rows(self, grid: Grid, head: list[tuple[int, list[Cell]]]) -> Iterator[tuple[int, list[Cell]]]:
        fonts = (self.cell_fonts or {}).get(grid.name)
        known = grid.name in self.known
        for rno, cells in itertools.chain(head, grid.rows):
            out: list[Any] = []
            for col, v in enumerate(cells):
                if type(v) is str and v:
                    font = fonts.get((rno, col)) if fonts else None
                    v = self.text(v, font, known and font is None)
                out.append(v)
            yield rno, out


def prepare(doc: Document, fmt: str, data: bytes) -> tuple[Document, Legacy | None]:
    """The document as Unicode (cells converted as they are read) and what was found; None when Unicode."""
    fonts = fontnames.read_fonts(fmt, data)
    heads = [(g, list(itertools.islice(g.rows, SAMPLE_ROWS))) for g in doc.grids]
    texts = [*doc.paragraphs, *(v for _, head in heads for _, cells in head for v in cells if type(v) is str)]
    found = detect(texts, fonts, _in_fonts(heads, fonts))
    if found is None:
        return replace(doc, grids=[replace(g, rows=itertools.chain(head, g.rows)) for g, head in heads]), None
    encoding, named = found
    mixed = any(_UNICODE_ONLY.search(t) for t in texts)
    legacy = Legacy(encoding, named, fonts.cells, frozenset(fonts.known), mixed)
    if fmt == "docx" and encoding == TCVN3 and fontnames.has_soft_hyphens(data):
        # Its ư letters were written as soft hyphens, which the reader drops: read it again with them.
        try:
            doc = read_docx(fontnames.soft_hyphens_as_text(data))
        except Exception:  # noqa: BLE001 - the file as first read is still read, without those letters
            pass
        else:
            heads = [(g, []) for g in doc.grids]
    grids = [replace(g, rows=legacy.rows(g, head)) for g, head in heads]
    return replace(doc, grids=grids, paragraphs=[legacy.text(p) for p in doc.paragraphs]), legacy


def _in_fonts(heads: list[tuple[Grid, list[tuple[int, list[Cell]]]]], fonts: Fonts) -> list[str] | None:
    """The texts the file sets in a legacy font, where it says which: the sampled cells (xlsx, xls), the
    runs (docx)."""
    if fonts.texts is not None:
        return list(fonts.texts)
    if fonts.cells is None or not heads or any(g.name not in fonts.known for g, _ in heads):
        return None
    return [v for g, head in heads for rno, cells in head for col, v in enumerate(cells)
            if type(v) is str and (rno, col) in fonts.cells[g.name]]


def noted(reading: DocumentReading, legacy: Legacy | None, rules: Rules) -> DocumentReading:
    """The reading with the warning that the file was in a legacy encoding and was read converted."""
    if legacy is None or not legacy.converted:
        return reading
    shown = ", ".join(legacy.fonts[:3]) if legacy.fonts else "không ghi trong tệp"
    f = rules.finding("legacy-encoding", form=rules.forms.get(reading.kind), encoding=LABELS[legacy.encoding],
                      font=shown)
    return replace(reading, findings=(f, *reading.findings)) if f else reading
