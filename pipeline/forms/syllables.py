"""Is a word a well-formed Vietnamese syllable? The evidence the legacy-encoding detector weighs.

Vietnamese writes one syllable per word: an initial consonant (or none), a rhyme from a closed list, one
tone mark at most, and spelling rules that tie them (k/gh/ngh before e ê i y, c/g/ng elsewhere; a rhyme
ending in p t c ch takes only the sắc or nặng tone). Text in an old font encoding read as Unicode breaks
these rules almost everywhere ("Tªn", "c¸"), and once converted keeps them ("Tên", "cá").
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache

_ONSETS = ("ngh", "ng", "gh", "gi", "kh", "nh", "ph", "qu", "th", "tr", "ch",
           "b", "c", "d", "đ", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "x", "")
_RHYMES = frozenset("""
a ac ach ai am an ang anh ao ap at au ay
ăc ăm ăn ăng ăp ăt
âc âm ân âng âp ât âu ây
e ec em en eng eo ep et
ê êch êm ên ênh êp êt êu
i ia ich im in inh ip it iu iêc iêm iên iêng iêp iêt iêu
o oc oi om on ong op ot oa oac oach oai oam oan oang oanh oao oap oat oay oăc oăm oăn oăng oăt
oe oen oeo oet ooc oong
ô ôc ôi ôm ôn ông ôp ôt
ơ ơi ơm ơn ơp ơt
u uc ui um un ung up ut ua uân uâng uât uây uê uêch uênh uơ uy uya uych uyên uyêt uyn uynh uyp uyt uyu
uôc uôi uôm uôn uông uôt
ư ưa ưc ưi ưm ưn ưng ưt ưu ươc ươi ươm ươn ương ươp ươt ươu
y yêm yên yêng yêt yêu
""".split())
_FRONT = ("e", "ê", "i", "y")  # vowels that take k, gh, ngh
_STOPS = ("p", "t", "c", "ch")
_Y_ONSETS = frozenset(("", "h", "k", "l", "m", "n", "s", "t", "th", "v"))
_TONES = {"\u0301": "sắc", "\u0300": "huyền", "\u0309": "hỏi", "\u0303": "ngã", "\u0323": "nặng"}
_LETTERS = frozenset("abcdeghiklmnopqrstuvxyđ")


@lru_cache(maxsize=8192)
def is_syllable(word: str) -> bool:
    """Whether ``word`` (any case, NFC or not) is a well-formed Vietnamese syllable."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    tones = [c for c in decomposed if c in _TONES]
    if len(tones) > 1:
        return False
    base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES))
    if not base or any(unicodedata.normalize("NFD", c)[0] not in _LETTERS for c in base):
        return False
    tone = _TONES[tones[0]] if tones else ""
    return any(_fits(base[len(onset):], onset, tone) for onset in _ONSETS if base.startswith(onset))


def _fits(rhyme: str, onset: str, tone: str) -> bool:
    if onset == "gi" and not rhyme:
        return True  # "gì": the i of gi is the vowel
    if rhyme not in _RHYMES:
        return False
    if rhyme.endswith(_STOPS) and tone not in ("sắc", "nặng"):
        return False
    front = rhyme.startswith(_FRONT)
    if onset in ("k", "gh", "ngh"):
        return front
    if onset in ("c", "ng") or (onset == "g" and not rhyme.startswith("i")):  # "gìn": gi + in
        return not front
    if onset == "qu":
        return not rhyme.startswith(("u", "o"))
    if rhyme.startswith("yê"):
        return not onset  # "yên"; after a consonant it is spelt iê, after u it is part of "uyên"
    if rhyme == "y":
        return onset in _Y_ONSETS  # "kỳ", "lý", "mỹ", "Vy"; elsewhere it is spelt i ("chi", not "chy")
    return True
