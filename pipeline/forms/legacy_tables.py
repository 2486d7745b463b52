"""The old Vietnamese font encodings, as data: TCVN3 (ABC, the ".Vn…" fonts) and VNI (the "VNI-…" fonts).

A legacy font draws Vietnamese letters in the places of Western ones, so a cell typed in .VnTime holds
"Tªn" where the person saw "Tên". Office files store those places as the Latin-1 characters of the same
code (byte 0xAA → "ª"), and these tables map them back.

Written by hand, row by row in the order plain, sắc, huyền, hỏi, ngã, nặng, and checked entry by entry
against UniKey's converter tables (vnconv, unikey/data.cpp: SingleByteTables "TCVN3", DoubleByteTables
"VNI-WIN", UnicodeTable; as kept in fcitx5-unikey): every one of the 134 Vietnamese letters agrees.

TCVN3 is one byte a letter and has no upper-case toned vowels: a heading is typed with the lower-case codes
and drawn in capitals by the upper-case fonts (.VnTimeH, .VnArialH: names ending in "H"). Only the bare
capitals Ă Â Đ Ê Ô Ơ Ư have codes of their own. 0xAD (ư) is the soft hyphen of Latin-1.

VNI writes a toned vowel as its base letter followed by one mark character (á = "a" + "ù", ấ = "a" + "á"),
with its own capital marks (Á = "A" + "Ù"); ơ, ư, đ and the toned i are single characters ("ô" is ơ and ô is
"oâ"). Reading VNI is therefore a longest match over one or two characters.
"""
from __future__ import annotations

# (Unicode letters, the same letters in TCVN3), position by position.
TCVN3_ROWS: tuple[tuple[str, str], ...] = (
    ("aáàảãạ", "a¸µ¶·¹"),
    ("ăắằẳẵặ", "¨¾»¼½Æ"),
    ("âấầẩẫậ", "©ÊÇÈÉË"),
    ("eéèẻẽẹ", "eÐÌÎÏÑ"),
    ("êếềểễệ", "ªÕÒÓÔÖ"),
    ("iíìỉĩị", "iÝ×ØÜÞ"),
    ("oóòỏõọ", "oãßáâä"),
    ("ôốồổỗộ", "«èåæçé"),
    ("ơớờởỡợ", "¬íêëìî"),
    ("uúùủũụ", "uóïñòô"),
    ("ưứừửữự", "\u00adøõö÷ù"),
    ("yýỳỷỹỵ", "yýúûüþ"),
    ("đ", "®"),
    ("ĂÂĐÊÔƠƯ", "¡¢§£¤¥¦"),
)

# (Unicode letters, the same letters in VNI, space-separated), position by position.
VNI_ROWS: tuple[tuple[str, str], ...] = (
    ("aáàảãạ", "a aù aø aû aõ aï"),
    ("ăắằẳẵặ", "aê aé aè aú aü aë"),
    ("âấầẩẫậ", "aâ aá aà aå aã aä"),
    ("eéèẻẽẹ", "e eù eø eû eõ eï"),
    ("êếềểễệ", "eâ eá eà eå eã eä"),
    ("iíìỉĩị", "i í ì æ ó ò"),
    ("oóòỏõọ", "o où oø oû oõ oï"),
    ("ôốồổỗộ", "oâ oá oà oå oã oä"),
    ("ơớờởỡợ", "ô ôù ôø ôû ôõ ôï"),
    ("uúùủũụ", "u uù uø uû uõ uï"),
    ("ưứừửữự", "ö öù öø öû öõ öï"),
    ("yýỳỷỹỵ", "y yù yø yû yõ î"),
    ("đ", "ñ"),
    ("AÁÀẢÃẠ", "A AÙ AØ AÛ AÕ AÏ"),
    ("ĂẮẰẲẴẶ", "AÊ AÉ AÈ AÚ AÜ AË"),
    ("ÂẤẦẨẪẬ", "AÂ AÁ AÀ AÅ AÃ AÄ"),
    ("EÉÈẺẼẸ", "E EÙ EØ EÛ EÕ EÏ"),
    ("ÊẾỀỂỄỆ", "EÂ EÁ EÀ EÅ EÃ EÄ"),
    ("IÍÌỈĨỊ", "I Í Ì Æ Ó Ò"),
    ("OÓÒỎÕỌ", "O OÙ OØ OÛ OÕ OÏ"),
    ("ÔỐỒỔỖỘ", "OÂ OÁ OÀ OÅ OÃ OÄ"),
    ("ƠỚỜỞỠỢ", "Ô ÔÙ ÔØ ÔÛ ÔÕ ÔÏ"),
    ("UÚÙỦŨỤ", "U UÙ UØ UÛ UÕ UÏ"),
    ("ƯỨỪỬỮỰ", "Ö ÖÙ ÖØ ÖÛ ÖÕ ÖÏ"),
    ("YÝỲỶỸỴ", "Y YÙ YØ YÛ YÕ Î"),
    ("Đ", "Ñ"),
)


def _pairs(rows: tuple[tuple[str, str], ...], split: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for uni, legacy in rows:
        codes = legacy.split(" ") if split else list(legacy)
        assert len(codes) == len(uni), (uni, legacy)
        for u, code in zip(uni, codes):
            if code != u:  # "a" is "a" in both
                assert code not in out, code
                out[code] = u
    return out


TCVN3: dict[str, str] = _pairs(TCVN3_ROWS, split=False)  # TCVN3 character → Unicode letter
VNI: dict[str, str] = _pairs(VNI_ROWS, split=True)  # VNI sequence (1 or 2 characters) → Unicode letter
